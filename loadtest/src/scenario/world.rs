//! One scenario run's world: the fleet and the sink in this process, the
//! config files, the coordinator and shard processes, a monitor sampling
//! the coordinator's API, and the phases every scenario shares.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::analysis::{self, Analysis, Presence, Window};
use super::report::{Claim, Event, Moves, ScenarioReport, Utilization};
use super::system::{Admin, Proc, free_port, wait_port_healthy};
use super::{ScenarioConfig, ScenarioError};
use crate::fleet::{Fleet, FleetConfig};
use crate::sink::{Matcher, Sink, SinkConfig};

/// The job every scenario scrapes.
pub const JOB: &str = "fleet";

/// Coordinator timing of every scenario.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `--shard.failure-timeout`.
    pub failure_timeout: Duration,
    /// `--shard.grace`.
    pub grace: Duration,
    /// `--plan.interval`.
    pub plan_interval: Duration,
    /// `--handover.lead`.
    pub handover_lead: Duration,
    /// The shards' `--shard.report-interval`.
    pub report_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            failure_timeout: Duration::from_secs(4),
            grace: Duration::from_secs(2),
            plan_interval: Duration::from_secs(2),
            handover_lead: Duration::from_secs(2),
            report_interval: Duration::from_secs(1),
        }
    }
}

/// `1500ms`.
pub fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Unix ms now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A coordinator process (`coordinator` or `local`) and its ports.
#[derive(Debug)]
pub struct CoordinatorProc {
    /// The process.
    pub proc: Proc,
    /// Admin HTTP port.
    pub web: u16,
    /// gRPC port.
    pub grpc: u16,
    /// `promshard local` (its shards are its children).
    pub local: bool,
}

/// A `promshard collector` shard.
#[derive(Debug)]
pub struct ShardProc {
    /// `--shard.id`.
    pub id: String,
    /// The process.
    pub proc: Proc,
    /// Its HTTP port.
    pub web: u16,
}

/// What the monitor saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// (unix ms, shards up, max utilization, mean utilization).
    pub utilization: Vec<(i64, u64, f64, f64)>,
    /// (unix ms, current shards, desired shards) from `/api/v1/scale`.
    pub scale: Vec<(i64, u64, u64)>,
    /// Last shard seen per instance.
    pub placement: HashMap<String, String>,
    /// (unix ms, instance, from, to, series) of every change of shard.
    pub moves: Vec<(i64, String, String, String, u64)>,
    /// The last time an assignment changed or a target was not settled
    /// (migrating or unassigned).
    pub last_unsettled_ms: i64,
    /// The latest targets view.
    pub targets: Vec<super::system::TargetView>,
}

/// Samples the coordinator's API once per `every` until stopped.
#[derive(Debug)]
pub struct Monitor {
    seen: Arc<Mutex<Seen>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Monitor {
    fn start(admin: Admin, every: Duration, scale: bool) -> Monitor {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, mut stopped) = watch::channel(false);
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                sample(&admin, &shared, scale).await;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
        });
        Monitor { seen, stop, task }
    }

    /// A copy of what it saw so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn stop(self) -> Seen {
        let _ = self.stop.send(true);
        let seen = self.seen.clone();
        let _ = self.task.await;
        seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn sample(admin: &Admin, seen: &Mutex<Seen>, scale: bool) {
    let t = now_ms();
    let shards = admin.shards().await;
    let targets = admin.targets().await;
    let sc = if scale { admin.scale().await } else { None };
    let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shards) = shards {
        let up: Vec<f64> = shards
            .iter()
            .filter(|s| s.health == "up")
            .map(|s| s.utilization)
            .collect();
        if !up.is_empty() {
            let max = up.iter().copied().fold(0.0, f64::max);
            let mean = up.iter().sum::<f64>() / up.len() as f64;
            s.utilization.push((t, up.len() as u64, max, mean));
        }
    }
    if let Some((current, desired)) = sc {
        s.scale.push((t, current, desired));
    }
    if let Some(targets) = targets {
        let mut unsettled = false;
        for tv in &targets {
            if tv.state == "migrating" || tv.state == "unassigned" || tv.shard.is_none() {
                unsettled = true;
            }
            if let Some(shard) = &tv.shard {
                let before = s.placement.insert(tv.instance.clone(), shard.clone());
                if let Some(before) = before
                    && &before != shard
                {
                    s.moves
                        .push((t, tv.instance.clone(), before, shard.clone(), tv.series));
                    unsettled = true;
                }
            }
        }
        if unsettled {
            s.last_unsettled_ms = t;
        }
        s.targets = targets;
    }
}

/// Everything of one run.
pub struct World {
    /// The run's settings.
    pub config: ScenarioConfig,
    /// Coordinator timing.
    pub timing: Timing,
    /// The run directory (logs, storage, configs).
    pub dir: Option<tempfile::TempDir>,
    /// The fleet (every target that may ever be in discovery).
    pub fleet: Fleet,
    /// The sink.
    pub sink: Sink,
    /// The file_sd file.
    pub sd_file: PathBuf,
    /// The coordinator's prometheus.yml (with remote_write, for `local`).
    pub coordinator_config: PathBuf,
    /// The shards' config (global + remote_write).
    pub shard_config: PathBuf,
    /// The coordinator.
    pub coordinator: Option<CoordinatorProc>,
    /// The shards started by the scenario (not by `local`).
    pub shards: Vec<ShardProc>,
    /// Fleet target indices in discovery now.
    pub active: Vec<usize>,
    /// Discovery history by instance.
    pub presence: HashMap<String, Presence>,
    /// Events (unix ms, what).
    pub events: Vec<(i64, String)>,
    /// The monitor, once started.
    pub monitor: Option<Monitor>,
    /// When the run started.
    pub started: Instant,
    /// Seconds the first convergence took.
    pub startup_secs: f64,
    /// Target series of the fleet when the window opened.
    pub series_at_open: usize,
    /// The window's start (unix ms), once open.
    pub window_from_ms: i64,
    /// Coordinator moves by reason when the window opened.
    pub moves_at_open: BTreeMap<String, f64>,
    /// Scenario-specific figures.
    pub figures: BTreeMap<String, serde_json::Value>,
    /// Scenario-specific claims.
    pub claims: Vec<Claim>,
    /// When the disturbance began (unix ms).
    pub disturbed_ms: Option<i64>,
    /// Time to converge as the scenario measured it (else: from the last
    /// disturbance to the last assignment change the monitor saw).
    pub converge_secs: Option<f64>,
    /// Scenario claims judged on the drained sink's analysis.
    pub deferred_judge: Option<Judge>,
}

/// Claims (with a figure each) judged once the window is drained, from
/// the run's analysis.
pub type Judge = Box<dyn FnOnce(&Analysis) -> Vec<(String, serde_json::Value, Claim)>>;

impl World {
    /// Starts the fleet (`targets` targets, `active` of them in discovery)
    /// and the sink, and writes the configs.
    pub async fn start(
        config: &ScenarioConfig,
        targets: usize,
        active: usize,
        base: Ipv4Addr,
    ) -> Result<World, ScenarioError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("promshard-scenario-{}-", config.scenario.name()))
            .tempdir()
            .map_err(|source| ScenarioError::Io {
                what: "cannot create a run directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let fleet = Fleet::start(FleetConfig {
            targets,
            series_per_target: config.series_per_target,
            base: SocketAddrV4::new(base, 0),
            ..FleetConfig::default()
        })
        .await?;
        let sink = Sink::start(SinkConfig {
            record_labels: true,
            interval: Some(config.interval),
            ..SinkConfig::default()
        })
        .await?;
        sink.record_timelines(true);
        let interval = ms(config.interval);
        let sd_file = dir.path().join("targets.json");
        let remote_write = format!(
            "remote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 500ms\n      min_backoff: 100ms\n      max_backoff: 2s\n",
            sink.write_url()
        );
        let coordinator_config = dir.path().join("prometheus.yml");
        write(
            &coordinator_config,
            &format!(
                "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
scrape_configs:\n  - job_name: {JOB}\n    file_sd_configs:\n      - files: [{}]\n        refresh_interval: 1s\n{remote_write}",
                sd_file.display()
            ),
        )?;
        let shard_config = dir.path().join("shard.yml");
        write(
            &shard_config,
            &format!(
                "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n{remote_write}"
            ),
        )?;
        let mut w = World {
            config: config.clone(),
            timing: Timing::default(),
            dir: Some(dir),
            fleet,
            sink,
            sd_file,
            coordinator_config,
            shard_config,
            coordinator: None,
            shards: Vec::new(),
            active: Vec::new(),
            presence: HashMap::new(),
            events: Vec::new(),
            monitor: None,
            started: Instant::now(),
            startup_secs: 0.0,
            series_at_open: 0,
            window_from_ms: 0,
            moves_at_open: BTreeMap::new(),
            figures: BTreeMap::new(),
            claims: Vec::new(),
            disturbed_ms: None,
            deferred_judge: None,
            converge_secs: None,
        };
        w.set_active((0..active.min(targets)).collect())?;
        Ok(w)
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("."), |d| d.path())
    }

    /// The instance (`host:port`) of fleet target `i`.
    pub fn instance(&self, i: usize) -> String {
        self.fleet
            .target_infos()
            .get(i)
            .map(|t| t.address.clone())
            .unwrap_or_default()
    }

    /// Notes an event.
    pub fn event(&mut self, what: impl Into<String>) {
        let what = what.into();
        tracing::info!(scenario = self.config.scenario.name(), "{what}");
        self.events.push((now_ms(), what));
    }

    /// Rewrites the file_sd file with the targets `indices` (atomically)
    /// and books who joined and who left.
    pub fn set_active(&mut self, indices: Vec<usize>) -> Result<(), ScenarioError> {
        let t = now_ms();
        let first = self.coordinator.is_none();
        let addrs: Vec<String> = indices.iter().map(|&i| self.instance(i)).collect();
        let doc =
            serde_json::json!([{ "targets": addrs, "labels": {"fleet": "promshard-loadtest"} }]);
        let tmp = self.sd_file.with_extension("json.tmp");
        write(&tmp, &doc.to_string())?;
        std::fs::rename(&tmp, &self.sd_file).map_err(|source| ScenarioError::Io {
            what: "cannot replace the file_sd file",
            path: self.sd_file.clone(),
            source,
        })?;
        for &i in &self.active {
            if !indices.contains(&i) {
                let inst = self.instance(i);
                self.presence.entry(inst).or_default().until_ms = Some(t);
            }
        }
        for &i in &indices {
            if !self.active.contains(&i) {
                let inst = self.instance(i);
                self.presence.insert(
                    inst,
                    Presence {
                        from_ms: (!first).then_some(t),
                        until_ms: None,
                    },
                );
            }
        }
        self.active = indices;
        Ok(())
    }

    fn coordinator_flags(&self) -> Vec<String> {
        let t = &self.timing;
        vec![
            format!("--config.file={}", self.coordinator_config.display()),
            format!("--shard.failure-timeout={}", ms(t.failure_timeout)),
            format!("--shard.grace={}", ms(t.grace)),
            format!("--plan.interval={}", ms(t.plan_interval)),
            format!("--handover.lead={}", ms(t.handover_lead)),
        ]
    }

    /// Starts `promshard coordinator` with `extra` flags.
    pub async fn start_coordinator(&mut self, extra: &[String]) -> Result<(), ScenarioError> {
        self.start_coordinator_cmd("coordinator", extra).await
    }

    /// Starts `promshard SUB` (coordinator or local) on free ports.
    pub async fn start_coordinator_cmd(
        &mut self,
        sub: &str,
        extra: &[String],
    ) -> Result<(), ScenarioError> {
        let mut last = String::new();
        for _ in 0..3 {
            let web = free_port()?;
            let grpc = free_port()?;
            let mut args = vec![sub.to_owned()];
            args.extend(self.coordinator_flags());
            args.push(format!("--web.listen-address=127.0.0.1:{web}"));
            args.push(format!("--grpc.listen-address=127.0.0.1:{grpc}"));
            args.extend(extra.iter().cloned());
            let log = self.path().join(format!("{sub}.log"));
            let mut proc = Proc::spawn(sub, &self.config.binary, args, &log)?;
            // `local`'s shards outlive it when it is SIGKILLed.
            proc.set_graceful(sub == "local");
            match wait_port_healthy(web, &mut proc, Duration::from_secs(30)).await {
                Ok(()) => {
                    self.coordinator = Some(CoordinatorProc {
                        proc,
                        web,
                        grpc,
                        local: sub == "local",
                    });
                    return Ok(());
                }
                Err(why) => {
                    last = why;
                    if !proc.log_text().contains("in use") {
                        break;
                    }
                }
            }
        }
        Err(self.system_error(format!("{sub} did not start: {last}")))
    }

    /// The coordinator's admin API.
    pub fn admin(&self) -> Admin {
        Admin::new(self.coordinator.as_ref().map_or(0, |c| c.web))
    }

    /// Starts shard `id` (`promshard collector`, capacity `max_series`).
    pub async fn start_shard(&mut self, id: &str, max_series: u64) -> Result<(), ScenarioError> {
        let grpc = self.coordinator.as_ref().map_or(0, |c| c.grpc);
        let mut last = String::new();
        for _ in 0..3 {
            let web = free_port()?;
            let args = vec![
                "collector".to_owned(),
                format!("--config.file={}", self.shard_config.display()),
                format!("--storage.path={}", self.path().join(id).display()),
                format!("--web.listen-address=127.0.0.1:{web}"),
                format!("--coordinator.address=http://127.0.0.1:{grpc}"),
                format!("--shard.id={id}"),
                format!("--shard.max-series={max_series}"),
                format!(
                    "--shard.report-interval={}",
                    ms(self.timing.report_interval)
                ),
                "--shutdown.grace=2s".to_owned(),
                "--storage.wal.segment-size=4MiB".to_owned(),
            ];
            let log = self.path().join(format!("{id}.log"));
            let mut proc = Proc::spawn(id, &self.config.binary, args, &log)?;
            match wait_port_healthy(web, &mut proc, Duration::from_secs(30)).await {
                Ok(()) => {
                    self.shards.push(ShardProc {
                        id: id.to_owned(),
                        proc,
                        web,
                    });
                    return Ok(());
                }
                Err(why) => {
                    last = why;
                    if !proc.log_text().contains("in use") {
                        break;
                    }
                }
            }
        }
        Err(self.system_error(format!("shard {id} did not start: {last}")))
    }

    /// A [`ScenarioError::System`] with the logs' tails.
    pub fn system_error(&self, what: String) -> ScenarioError {
        ScenarioError::System {
            scenario: self.config.scenario.name(),
            what,
            logs: self.log_tails(30),
        }
    }

    /// The last `n` lines of every log in the run directory.
    pub fn log_tails(&self, n: usize) -> String {
        let mut out = String::new();
        let Ok(rd) = std::fs::read_dir(self.path()) else {
            return out;
        };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "log"))
        {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ---\n", f.display()));
            for l in &lines[lines.len().saturating_sub(n)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// True when the sink holds a sample of the last `recent_ms` of every
    /// series of every active target.
    pub fn all_fresh(&self, recent_ms: i64) -> bool {
        let fresh = self.fresh_series(recent_ms);
        self.series_per_target()
            .iter()
            .all(|(i, n)| fresh.get(i).copied().unwrap_or(0) >= *n)
    }

    /// Series each active target exposes (targets serving none left out).
    pub fn series_per_target(&self) -> HashMap<String, usize> {
        self.active
            .iter()
            .filter_map(|&i| {
                let t = self.fleet.target_infos().get(i)?;
                (t.series > 0).then(|| (t.address.clone(), t.series))
            })
            .collect()
    }

    /// Target series the sink holds per instance with a sample in the last
    /// `recent_ms`.
    pub fn fresh_series(&self, recent_ms: i64) -> HashMap<String, usize> {
        let since = now_ms() - recent_ms;
        let m = job_matcher();
        let mut out: HashMap<String, usize> = HashMap::new();
        for s in self.sink.series(&m, usize::MAX) {
            let name = s.labels.get("__name__").map_or("", String::as_str);
            if analysis::scraper_made(name) || s.last_timestamp < since {
                continue;
            }
            if let Some(i) = s.labels.get("instance") {
                *out.entry(i.clone()).or_default() += 1;
            }
        }
        out
    }

    /// Waits (at most `timeout`) until every active target is placed and
    /// settled, `shards` shards are up, and the sink receives every series
    /// of every active target; twice in a row.
    pub async fn converge(
        &mut self,
        shards: usize,
        timeout: Duration,
    ) -> Result<f64, ScenarioError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let admin = self.admin();
        let recent = 3 * self.config.interval_ms();
        let mut good = 0;
        let mut why = String::from("not checked");
        while Instant::now() < deadline {
            for s in &mut self.shards {
                if let Some(e) = s.proc.exited() {
                    return Err(self.system_error(e));
                }
            }
            why = self
                .unconverged(&admin, shards, recent)
                .await
                .unwrap_or_default();
            if why.is_empty() {
                good += 1;
                if good >= 2 {
                    return Ok(start.elapsed().as_secs_f64());
                }
            } else {
                good = 0;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(self.system_error(format!("no convergence within {timeout:?}: {why}")))
    }

    /// Why the system is not converged (`Some("")`: it is).
    async fn unconverged(&self, admin: &Admin, shards: usize, recent: i64) -> Option<String> {
        let targets = admin.targets().await?;
        let up = admin.shards_up().await?;
        if up != shards {
            return Some(format!("{up} shards up, want {shards}"));
        }
        let want: HashMap<String, usize> = self.series_per_target();
        let placed = targets.iter().filter(|t| t.settled()).count();
        if targets.len() != self.active.len() || placed != targets.len() {
            return Some(format!(
                "{} targets known ({} in discovery), {placed} placed and settled",
                targets.len(),
                self.active.len()
            ));
        }
        let fresh = self.fresh_series(recent);
        let short: Vec<String> = want
            .iter()
            .filter(|(i, n)| fresh.get(*i).copied().unwrap_or(0) < **n)
            .map(|(i, n)| format!("{i} {}/{n}", fresh.get(i).copied().unwrap_or(0)))
            .take(3)
            .collect();
        if !short.is_empty() {
            return Some(format!("sink lacks fresh series of {}", short.join(", ")));
        }
        Some(String::new())
    }

    /// Starts the monitor and opens the judged window one interval ahead.
    pub async fn open_window(&mut self, scale: bool) {
        self.startup_secs = self.started.elapsed().as_secs_f64();
        self.series_at_open = self.series_per_target().values().sum();
        let admin = self.admin();
        self.moves_at_open = admin.moves().await.unwrap_or_default();
        self.monitor = Some(Monitor::start(admin, Duration::from_secs(1), scale));
        let interval = self.config.interval_ms();
        let from = (now_ms() / 1000 + 1) * 1000 + interval;
        self.window_from_ms = from;
        sleep_until_ms(from).await;
        self.event("window opens");
    }

    /// Notes a disturbance (convergence is timed from the last one).
    pub fn disturb(&mut self, what: impl Into<String>) {
        self.disturbed_ms = Some(now_ms());
        self.event(what);
    }

    /// Closes the window now, waits (at most `drain`) for its samples, and
    /// judges the run (coordinator moves counted from `moves_at_open`,
    /// which a scenario that restarts the coordinator clears).
    pub async fn finish(mut self, drain: Duration) -> Result<ScenarioReport, ScenarioError> {
        let to = now_ms();
        self.event("window closes");
        let admin = self.admin();
        let moves_now = admin.moves().await.unwrap_or_default();
        let seen = match self.monitor.take() {
            Some(m) => m.stop().await,
            None => Seen::default(),
        };
        self.drain(to, drain).await;
        self.stop_local().await;
        let interval_ms = self.config.interval_ms();
        let analysis = self.analyze(to);
        if let Some(judge) = self.deferred_judge.take() {
            for (name, figure, claim) in judge(&analysis) {
                self.figures.insert(name, figure);
                self.claims.push(claim);
            }
        }
        let mut claims = std::mem::take(&mut self.claims);
        let d = &analysis.totals;
        if self.config.scenario.claims_no_loss() {
            claims.insert(
                0,
                Claim::new(
                    "zero gaps",
                    d.gaps == 0,
                    format!("{} gaps, {} missing samples", d.gaps, d.samples_missing),
                ),
            );
            claims.insert(
                1,
                Claim::new(
                    "zero duplicates",
                    d.duplicates == 0,
                    format!("{} duplicates", d.duplicates),
                ),
            );
            claims.insert(
                2,
                Claim::new(
                    "zero staleness markers for series whose target still exists",
                    d.stale_markers_present_targets == 0,
                    format!(
                        "{} (and {} for targets that left)",
                        d.stale_markers_present_targets, d.stale_markers_departed_targets
                    ),
                ),
            );
        }
        let mut by_reason = BTreeMap::new();
        for (r, v) in &moves_now {
            let before = self.moves_at_open.get(r).copied().unwrap_or(0.0);
            let delta = if v >= &before { v - before } else { *v };
            if delta > 0.0 {
                by_reason.insert(r.clone(), delta);
            }
        }
        let in_window: Vec<_> = seen
            .moves
            .iter()
            .filter(|m| m.0 >= self.window_from_ms)
            .collect();
        let moves = Moves {
            targets_moved: in_window.len() as u64,
            series_moved: in_window.iter().map(|m| m.4).sum(),
            by_reason,
        };
        let utilization = utilization(&seen, self.window_from_ms, to);
        let converge_secs = self.converge_secs.or_else(|| {
            self.disturbed_ms
                .map(|d| (seen.last_unsettled_ms.max(d) - d) as f64 / 1000.0)
        });
        let pass = claims.iter().all(|c| c.pass);
        let keep = self.config.keep_dir || !pass;
        let logs = if keep {
            self.dir.take().map(|d| d.keep().display().to_string())
        } else {
            None
        };
        let from = self.window_from_ms;
        Ok(ScenarioReport {
            scenario: self.config.scenario.name().to_owned(),
            short: self.config.short,
            interval_ms,
            targets: self.presence.len(),
            series: self.series_at_open,
            window_secs: (to - from) as f64 / 1000.0,
            startup_secs: self.startup_secs,
            converge_secs,
            delivery: analysis.totals.clone(),
            moves,
            utilization,
            figures: std::mem::take(&mut self.figures),
            events: self
                .events
                .iter()
                .map(|(t, w)| Event {
                    at_secs: (t - from) as f64 / 1000.0,
                    what: w.clone(),
                })
                .collect(),
            faulty_series: analysis.faulty.iter().take(10).cloned().collect(),
            claims,
            pass,
            logs,
        })
    }

    /// Stops a `promshard local` in order (SIGTERM: it stops its shards,
    /// which outlive a SIGKILLed parent).
    async fn stop_local(&mut self) {
        if let Some(c) = self.coordinator.as_mut()
            && c.local
        {
            c.proc.terminate(Duration::from_secs(20));
        }
    }

    /// Judges the window [open, `to`) against the sink's timelines now.
    fn analyze(&self, to: i64) -> Analysis {
        let m = job_matcher();
        let timelines = self.sink.timelines(&m);
        let per = self.series_per_target();
        analysis::analyze(
            &timelines,
            &Window {
                from_ms: self.window_from_ms,
                to_ms: to,
                interval_ms: self.config.interval_ms(),
                presence: &self.presence,
                series_per_target: &per,
            },
        )
    }

    /// Waits until every series of every active target reached `to` (or
    /// `drain` passed), and 2 s more.
    async fn drain(&mut self, to: i64, drain: Duration) {
        let deadline = Instant::now() + drain;
        let interval = self.config.interval_ms();
        let mut reached_for = 0;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let reached = self.all_fresh(now_ms() - to + interval);
            // Two more seconds for stragglers (a replayed WAL).
            reached_for = if reached { reached_for + 1 } else { 0 };
            if reached_for > 2 {
                break;
            }
        }
        self.event("drained");
    }

    /// Fleet target indices by the shard that scrapes them now.
    pub async fn placement(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.admin().targets().await.unwrap_or_default() {
            if let Some(s) = t.shard {
                out.entry(s).or_default().push(t.instance);
            }
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
    }
}

impl super::Scenario {
    /// Whether the issue claims zero gaps, duplicates and staleness markers
    /// for this scenario.
    pub fn claims_no_loss(self) -> bool {
        use super::Scenario::*;
        matches!(
            self,
            Steady | ScaleOut | ScaleIn | Churn | HeavyTarget | CoordinatorKill
        )
    }
}

fn utilization(seen: &Seen, from: i64, to: i64) -> Utilization {
    let samples: Vec<_> = seen
        .utilization
        .iter()
        .filter(|s| s.0 >= from && s.0 <= to)
        .collect();
    let mut u = Utilization {
        samples: samples.len() as u64,
        ..Utilization::default()
    };
    if samples.is_empty() {
        return u;
    }
    u.max = samples.iter().map(|s| s.2).fold(0.0, f64::max);
    u.mean = samples.iter().map(|s| s.3).sum::<f64>() / samples.len() as f64;
    let ratio = |s: &(i64, u64, f64, f64)| if s.3 > 0.0 { s.2 / s.3 } else { 0.0 };
    u.max_imbalance = samples.iter().map(|s| ratio(s)).fold(0.0, f64::max);
    u.final_imbalance = samples.last().map_or(0.0, |s| ratio(s));
    let step = samples.len().div_ceil(200).max(1);
    u.series = samples
        .iter()
        .step_by(step)
        .map(|s| {
            let r = |x: f64| (x * 1000.0).round() / 1000.0;
            ((s.0 - from) as f64 / 1000.0, s.1, r(s.2), r(s.3))
        })
        .collect();
    u
}

/// `2.3 s`, or `never` for `None`.
pub fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "never".to_owned(), |s| format!("{s:.1} s"))
}

/// The series of the scenarios' job.
fn job_matcher() -> Matcher {
    Matcher::parse(&format!("{{job=\"{JOB}\"}}")).unwrap_or_default()
}

/// Sleeps until unix ms `t`.
pub async fn sleep_until_ms(t: i64) {
    let d = t - now_ms();
    if d > 0 {
        tokio::time::sleep(Duration::from_millis(d as u64)).await;
    }
}

fn write(path: &Path, text: &str) -> Result<(), ScenarioError> {
    std::fs::write(path, text).map_err(|source| ScenarioError::Io {
        what: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}
