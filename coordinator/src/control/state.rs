//! The coordinator's state between events: shards, the believed
//! assignment, moves in flight. Pure bookkeeping (no IO, no clocks read
//! here: times are passed in), so the rules can be tested alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use promshard_promlib::config::Config;
use promshard_proto::v1::{self, Hello};

use crate::hub::SessionId;
use crate::model::{Capacity, Load, ShardId, TargetId};
use crate::planner::{Plan, PlanShard, PlanTarget};
use crate::registry::{LoadModel, Registry};

/// One shard as the coordinator sees it.
#[derive(Clone, Debug)]
pub struct ShardState {
    pub id: ShardId,
    pub capacity: Capacity,
    /// native, prometheus, vmagent.
    pub backend: String,
    pub address: String,
    /// The live session, `None` while detached.
    pub session: Option<SessionId>,
    /// When it detached (it keeps its targets for the grace period).
    pub detached_at: Option<Instant>,
    /// The last assignment version the shard applied (next delta's base).
    pub version: u64,
    /// The shard refused a delta (base mismatch) or came back with other
    /// targets than it should have: send it the whole assignment.
    pub needs_full: bool,
    /// Take nothing new; everything moves off (scale-in).
    pub draining: bool,
    pub last_report: Option<SystemTime>,
    /// Its own totals from the last report.
    pub reported: Load,
    /// Deltas in a row it did not acknowledge (timeout, transport). A
    /// shard that answers pings but never acks would otherwise keep the
    /// targets the planner gives it unscraped forever: while this is
    /// above 0 it takes nothing, its targets are placed elsewhere as if it
    /// were gone, and only a background probe (its full assignment) goes
    /// to it, so no round waits on it; an ack makes it live again.
    pub unacked_deltas: u32,
    /// A probe (full assignment) to this unresponsive shard is in flight.
    pub probing: bool,
    /// Addresses of sessions of this id that a newer session replaced,
    /// and when (kept for [`CONTEST_WINDOW`]).
    pub replaced: Vec<(String, Instant)>,
    /// Two processes use this shard id (they keep replacing each other's
    /// session): until then it takes nothing and is told to scrape
    /// nothing, so no target is scraped twice; its targets go elsewhere.
    pub contested_until: Option<Instant>,
}

/// How long a replaced session's address is remembered, and how long a
/// shard id stays contested after the last sign of two processes.
pub const CONTEST_WINDOW: std::time::Duration = std::time::Duration::from_secs(20);

impl ShardState {
    pub fn attached(&self) -> bool {
        self.session.is_some()
    }

    /// Attached, acknowledging and not contested: it may receive targets
    /// and hand them over.
    pub fn live(&self) -> bool {
        self.attached() && self.unacked_deltas == 0 && !self.contested(Instant::now())
    }

    /// Two processes claimed this id recently.
    pub fn contested(&self, now: Instant) -> bool {
        self.contested_until.is_some_and(|until| now < until)
    }
}

/// A move in flight: the target is added on `to` from `start_at_ms` and
/// removed from `from` after `start_at_ms - 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    pub from: ShardId,
    pub to: ShardId,
    pub start_at_ms: i64,
}

/// Everything the control loop knows.
pub struct State {
    pub config: Arc<Config>,
    pub registry: Registry,
    pub loads: LoadModel,
    pub shards: BTreeMap<ShardId, ShardState>,
    /// Target -> the shard that scrapes it (acknowledged).
    pub assignment: BTreeMap<TargetId, ShardId>,
    pub migrating: BTreeMap<TargetId, Migration>,
    /// Targets whose explore is running (placed once it ends or times out).
    pub exploring: BTreeMap<TargetId, Instant>,
    /// The last plan computed (for the API).
    pub last_plan: Option<Plan>,
    /// Each target's last scrape as its shard reported it (for the API).
    pub scrapes: HashMap<TargetId, ScrapeStatus>,
    /// Initial discovery settled: targets unknown to the registry may be
    /// removed from shards, and plans run.
    pub discovery_ready: bool,
    pub counters: Counters,
}

/// A target's last scrape, from its shard's report.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeStatus {
    /// `up`, `down` or `unknown` (Prometheus' words).
    pub health: &'static str,
    pub last_error: String,
    pub last_scrape_unix_ms: i64,
    pub duration_seconds: f64,
}

impl ScrapeStatus {
    /// From a report entry; the error is cut to a bounded length (a report
    /// comes from outside).
    pub fn from_report(r: &promshard_proto::v1::TargetReport) -> Self {
        use promshard_proto::v1::TargetHealth;
        const MAX_ERROR: usize = 512;
        let mut last_error = r.last_error.clone();
        if last_error.len() > MAX_ERROR {
            let mut cut = MAX_ERROR;
            while !last_error.is_char_boundary(cut) {
                cut -= 1;
            }
            last_error.truncate(cut);
        }
        ScrapeStatus {
            health: match TargetHealth::try_from(r.health) {
                Ok(TargetHealth::Up) => "up",
                Ok(TargetHealth::Down) => "down",
                _ => "unknown",
            },
            last_error,
            last_scrape_unix_ms: r.last_scrape_unix_ms,
            duration_seconds: if r.scrape_duration_seconds.is_finite() {
                r.scrape_duration_seconds.max(0.0)
            } else {
                0.0
            },
        }
    }
}

/// Totals since start (for `/metrics`).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub rounds: u64,
    pub moves: BTreeMap<&'static str, u64>,
    pub moves_cancelled: u64,
    pub delta_failures: u64,
    pub reloads: u64,
    pub reload_failures: u64,
}

impl State {
    pub fn new(config: Arc<Config>, loads: LoadModel) -> Self {
        State {
            registry: Registry::new(&config),
            config,
            loads,
            shards: BTreeMap::new(),
            assignment: BTreeMap::new(),
            migrating: BTreeMap::new(),
            exploring: BTreeMap::new(),
            last_plan: None,
            scrapes: HashMap::new(),
            discovery_ready: false,
            counters: Counters::default(),
        }
    }

    /// A shard said hello. Targets it scrapes that nobody else has are
    /// adopted (a coordinator restart rebuilds its assignment this way,
    /// moving nothing); when what it scrapes differs from what it should,
    /// it is marked for a full assignment.
    pub fn attach(
        &mut self,
        shard: &ShardId,
        session: SessionId,
        hello: &Hello,
        default_capacity: Capacity,
    ) {
        let capacity = hello
            .capacity
            .as_ref()
            .map(|c| Capacity {
                max_series: c.max_series,
                max_samples_per_second: c.max_samples_per_second,
            })
            .filter(|c| c.max_series > 0 || c.max_samples_per_second > 0.0)
            .unwrap_or(default_capacity);
        let backend = match v1::BackendKind::try_from(hello.backend) {
            Ok(v1::BackendKind::Prometheus) => "prometheus",
            Ok(v1::BackendKind::Vmagent) => "vmagent",
            _ => "native",
        };
        let st = self
            .shards
            .entry(shard.clone())
            .or_insert_with(|| ShardState {
                id: shard.clone(),
                capacity,
                backend: backend.to_string(),
                address: String::new(),
                session: None,
                detached_at: None,
                version: 0,
                needs_full: false,
                draining: false,
                last_report: None,
                reported: Load::default(),
                unacked_deltas: 0,
                probing: false,
                replaced: Vec::new(),
                contested_until: None,
            });
        // The same id from another address than the session it just
        // replaced, where that address had itself been replaced by this
        // one a moment ago: two processes take turns with one id (a
        // restart elsewhere replaces once and stops).
        let now = Instant::now();
        st.replaced
            .retain(|(_, at)| now.duration_since(*at) < CONTEST_WINDOW);
        if st.address != hello.address && st.replaced.iter().any(|(a, _)| a == &hello.address) {
            if !st.contested(now) {
                tracing::error!(shard = %shard, a = %st.address, b = %hello.address,
                    "two processes use this shard id; it gets no targets until one of them is gone");
            }
            st.contested_until = Some(now + CONTEST_WINDOW);
        }
        st.capacity = capacity;
        st.backend = backend.to_string();
        st.address = hello.address.clone();
        st.session = Some(session);
        st.detached_at = None;
        st.version = hello.assignment_version;
        // A new session gets a fresh chance.
        st.unacked_deltas = 0;
        st.probing = false;

        let has: BTreeSet<TargetId> = hello.targets.iter().map(|t| t.id).collect();
        for t in &hello.targets {
            // Adopt only what nobody else scrapes; the registry decides
            // later whether the target still exists.
            self.assignment.entry(t.id).or_insert_with(|| shard.clone());
        }
        let should: BTreeSet<TargetId> = self
            .assignment
            .iter()
            .filter(|(_, s)| *s == shard)
            .map(|(t, _)| *t)
            .collect();
        if should != has
            && let Some(st) = self.shards.get_mut(shard)
        {
            st.needs_full = true;
        }
    }

    /// A session ended; the shard keeps its targets until the grace ends.
    /// `replaced`: a newer session of the same id took over.
    pub fn detach(&mut self, shard: &ShardId, session: SessionId, now: Instant, replaced: bool) {
        if let Some(st) = self.shards.get_mut(shard)
            && st.session == Some(session)
        {
            st.session = None;
            st.detached_at = Some(now);
            if replaced {
                st.replaced.push((st.address.clone(), now));
            }
        }
    }

    /// Shards the planner may place on: live ones, and detached ones
    /// still within `grace` (they keep their targets while they restart).
    /// An attached shard that does not acknowledge is left out: its
    /// targets go elsewhere.
    pub fn plan_shards(&self, now: Instant, grace: std::time::Duration) -> Vec<PlanShard> {
        self.shards
            .values()
            .filter(|s| {
                s.live()
                    || !s.attached()
                        && s.detached_at
                            .is_some_and(|at| now.duration_since(at) < grace)
            })
            .map(|s| PlanShard {
                id: s.id.clone(),
                capacity: s.capacity,
                draining: s.draining,
            })
            .collect()
    }

    /// The planner's targets: every registered target except new ones
    /// still being explored (within `explore_wait`).
    pub fn plan_targets(&self, now: Instant, explore_wait: std::time::Duration) -> Vec<PlanTarget> {
        self.registry
            .targets()
            .filter(|t| {
                self.assignment.contains_key(&t.id)
                    || self
                        .exploring
                        .get(&t.id)
                        .is_none_or(|since| now.duration_since(*since) >= explore_wait)
            })
            .map(|t| PlanTarget {
                id: t.id,
                job: t.job.clone(),
                load: self.loads.load_of(t.id).0,
            })
            .collect()
    }

    /// Assigned targets discovery no longer has (only once discovery
    /// settled: before that, a restarted coordinator has adopted targets
    /// its registry does not know yet).
    pub fn vanished(&self) -> Vec<(TargetId, ShardId)> {
        if !self.discovery_ready {
            return Vec::new();
        }
        self.assignment
            .iter()
            .filter(|(t, _)| !self.registry.contains(**t))
            .map(|(t, s)| (*t, s.clone()))
            .collect()
    }

    /// Targets assigned to `shard`.
    pub fn targets_of(&self, shard: &ShardId) -> Vec<TargetId> {
        self.assignment
            .iter()
            .filter(|(_, s)| *s == shard)
            .map(|(t, _)| *t)
            .collect()
    }

    /// Load per shard from the load model and the assignment.
    pub fn shard_loads(&self) -> BTreeMap<ShardId, (Load, usize)> {
        let mut out: BTreeMap<ShardId, (Load, usize)> = BTreeMap::new();
        // Targets that left discovery are being removed: the load model
        // already forgot them (it would count each at the default size).
        for (t, s) in self
            .assignment
            .iter()
            .filter(|(t, _)| self.registry.contains(**t))
        {
            let e = out.entry(s.clone()).or_default();
            e.0 = e.0.add(self.loads.load_of(*t).0);
            e.1 += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{LoadDefaults, ReportLimits};

    fn state() -> State {
        let config = promshard_promlib::config::load_str("scrape_configs: []\n", "test.yml")
            .expect("config");
        State::new(
            Arc::new(config),
            LoadModel::new(LoadDefaults::default(), ReportLimits::default()),
        )
    }

    fn hello(id: &str, address: &str) -> Hello {
        Hello {
            shard_id: id.into(),
            address: address.into(),
            ..Hello::default()
        }
    }

    fn cap() -> Capacity {
        Capacity {
            max_series: 1000,
            max_samples_per_second: 1000.0,
        }
    }

    fn planned(st: &State) -> Vec<String> {
        st.plan_shards(Instant::now(), std::time::Duration::from_secs(5))
            .into_iter()
            .map(|s| s.id.0)
            .collect()
    }

    #[test]
    fn a_shard_that_does_not_acknowledge_takes_nothing_until_it_does() {
        let mut st = state();
        let a = ShardId("a".into());
        st.attach(&a, SessionId(1), &hello("a", "http://a"), cap());
        assert_eq!(planned(&st), vec!["a"]);
        st.shards.get_mut(&a).unwrap().unacked_deltas = 1;
        assert!(
            planned(&st).is_empty(),
            "an unresponsive shard is planned on"
        );
        // A new session gets a fresh chance.
        st.attach(&a, SessionId(2), &hello("a", "http://a"), cap());
        assert_eq!(planned(&st), vec!["a"]);
    }

    #[test]
    fn two_processes_taking_turns_with_one_id_make_it_contested() {
        let mut st = state();
        let id = ShardId("s".into());
        let now = Instant::now();
        st.attach(&id, SessionId(1), &hello("s", "http://p1"), cap());
        // p2 replaces p1: a restart elsewhere looks like this, not contested.
        st.detach(&id, SessionId(1), now, true);
        st.attach(&id, SessionId(2), &hello("s", "http://p2"), cap());
        assert!(!st.shards[&id].contested(Instant::now()));
        assert_eq!(planned(&st), vec!["s"]);
        // p1 comes back and replaces p2: two processes.
        st.detach(&id, SessionId(2), now, true);
        st.attach(&id, SessionId(3), &hello("s", "http://p1"), cap());
        assert!(st.shards[&id].contested(Instant::now()));
        assert!(planned(&st).is_empty(), "a contested id is planned on");
        assert!(!st.shards[&id].contested(Instant::now() + CONTEST_WINDOW));
    }

    #[test]
    fn a_restart_at_the_same_address_is_not_contested() {
        let mut st = state();
        let id = ShardId("s".into());
        let now = Instant::now();
        for session in 1..5 {
            st.attach(&id, SessionId(session), &hello("s", "http://p1"), cap());
            st.detach(&id, SessionId(session), now, true);
        }
        st.attach(&id, SessionId(9), &hello("s", "http://p1"), cap());
        assert!(!st.shards[&id].contested(Instant::now()));
    }
}
