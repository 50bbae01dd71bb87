//! What each scenario does and claims.
//!
//! Sizes: 3 shards of 2,000 series each, 100-series targets (plus 5
//! synthetic series each), a 1 s interval; coordinator timing of
//! [`Timing::default`]. The short versions keep each quiet part around
//! 10-20 s, the full ones a minute or more.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::analysis::Analysis;
use super::report::Claim;
use super::world::{World, now_ms, secs};
use super::{Scenario, ScenarioConfig, ScenarioError, ScenarioReport};

/// Capacity (`--shard.max-series`) of every shard: 20 targets of the
/// configured size (2000 series at the default 100 per target), so that
/// every scenario keeps its utilizations when `--series` changes.
pub fn max_series(config: &ScenarioConfig) -> u64 {
    20 * config.series_per_target.max(1) as u64
}

/// Runs `config.scenario`.
pub async fn run(config: &ScenarioConfig) -> Result<ScenarioReport, ScenarioError> {
    match config.scenario {
        Scenario::Steady => steady(config).await,
        Scenario::CoordinatorKill => coordinator_kill(config).await,
        Scenario::ShardKill => shard_kill(config).await,
        Scenario::StorageOutage => storage_outage(config).await,
        Scenario::Churn => churn(config).await,
        Scenario::HeavyTarget => heavy_target(config).await,
        Scenario::ScaleOut => super::scale::scale_out(config).await,
        Scenario::ScaleIn => super::scale::scale_in(config).await,
    }
}

/// `short` or `full` seconds, unless --duration overrides (then scaled
/// from the full value).
pub fn pick(config: &ScenarioConfig, short: u64, full: u64) -> Duration {
    match config.duration {
        Some(d) => d
            .mul_f64(full as f64 / 60.0)
            .max(Duration::from_secs(short.min(5))),
        None if config.short => Duration::from_secs(short),
        None => Duration::from_secs(full),
    }
}

/// How long the drain may take by default.
pub fn drain(config: &ScenarioConfig) -> Duration {
    pick(config, 30, 60)
}

/// The fleet's base address for a scenario (each its own /24, so a
/// leftover process of one run never scrapes another's targets).
fn base(s: Scenario) -> Ipv4Addr {
    let i = Scenario::ALL.iter().position(|x| *x == s).unwrap_or(0) as u8;
    Ipv4Addr::new(127, 0, 70 + i, 1)
}

/// Fleet + sink + coordinator + `shards` shards, converged, window open.
async fn coordinated(
    config: &ScenarioConfig,
    targets: usize,
    active: usize,
    shards: usize,
) -> Result<World, ScenarioError> {
    let mut w = World::start(config, targets, active, base(config.scenario)).await?;
    let capacity = max_series(config);
    w.start_coordinator(&[format!("--shard.max-series={capacity}")])
        .await?;
    for i in 1..=shards {
        w.start_shard(&format!("shard-{i}"), capacity).await?;
    }
    let secs = w.converge(shards, Duration::from_secs(90)).await?;
    w.event(format!("converged after {secs:.1} s"));
    w.open_window(false).await;
    Ok(w)
}

fn shards_of(config: &ScenarioConfig) -> usize {
    config.shards.unwrap_or(3).max(2)
}

fn targets_of(config: &ScenarioConfig, default: usize) -> usize {
    config.targets.unwrap_or(default).max(2)
}

async fn steady(config: &ScenarioConfig) -> Result<ScenarioReport, ScenarioError> {
    let n = targets_of(config, 24);
    let w = coordinated(config, n, n, shards_of(config)).await?;
    tokio::time::sleep(pick(config, 20, 120)).await;
    w.finish(drain(config)).await
}

async fn coordinator_kill(config: &ScenarioConfig) -> Result<ScenarioReport, ScenarioError> {
    let n = targets_of(config, 24);
    let shards = shards_of(config);
    let mut w = coordinated(config, n, n, shards).await?;
    tokio::time::sleep(pick(config, 5, 20)).await;
    let before = w.placement().await;
    if let Some(c) = w.coordinator.as_mut() {
        c.proc.kill();
    }
    w.disturb("coordinator SIGKILLed");
    tokio::time::sleep(pick(config, 4, 20)).await;
    let admin = w.admin();
    let restarted = async {
        let c = w.coordinator.as_mut()?;
        for _ in 0..50 {
            if c.proc.restart().is_ok()
                && admin
                    .wait_healthy(&mut c.proc, Duration::from_secs(10))
                    .await
                    .is_ok()
            {
                return Some(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
    .await;
    if restarted.is_none() {
        return Err(w.system_error("the coordinator did not restart on its ports".into()));
    }
    let back = Instant::now();
    w.event("coordinator restarted");
    let mut reattached = None;
    while back.elapsed() < Duration::from_secs(30) {
        let up = admin.shards_up().await.unwrap_or(0);
        if up == shards {
            reattached = Some(back.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    w.event(format!("shards reattached: {}", secs(reattached)));
    // Several plan rounds with reports in.
    tokio::time::sleep(pick(config, 10, 40)).await;
    let after = w.placement().await;
    let moves = admin.moves().await.unwrap_or_default();
    let total: f64 = moves.values().fold(0.0, |a, b| a + b);
    // The restarted coordinator counts from zero.
    w.moves_at_open.clear();
    w.figures
        .insert("reattach_secs".into(), serde_json::json!(reattached));
    w.figures
        .insert("moves_after_restart".into(), serde_json::json!(total));
    w.claims.push(Claim::new(
        "every shard reattached",
        reattached.is_some(),
        format!("{} after the restart", secs(reattached)),
    ));
    w.claims.push(Claim::new(
        "zero moves after the restart",
        total == 0.0 && before == after,
        format!(
            "moves_total {total} ({moves:?}); placement {}",
            if before == after {
                "unchanged"
            } else {
                "CHANGED"
            }
        ),
    ));
    w.finish(drain(config)).await
}

async fn shard_kill(config: &ScenarioConfig) -> Result<ScenarioReport, ScenarioError> {
    let n = targets_of(config, 24);
    let shards = shards_of(config);
    let mut w = coordinated(config, n, n, shards).await?;
    tokio::time::sleep(pick(config, 5, 20)).await;
    let victim_id = format!("shard-{shards}");
    let victims: Vec<String> = w.placement().await.remove(&victim_id).unwrap_or_default();
    let kill_ms = now_ms();
    if let Some(s) = w.shards.iter_mut().find(|s| s.id == victim_id) {
        s.proc.kill();
    }
    w.disturb(format!("{victim_id} SIGKILLed ({} targets)", victims.len()));
    // Until its targets are scraped elsewhere.
    let killed = Instant::now();
    let admin = w.admin();
    let mut replaced = None;
    while killed.elapsed() < Duration::from_secs(60) {
        let targets = admin.targets().await.unwrap_or_default();
        let moved = victims.iter().all(|v| {
            targets
                .iter()
                .any(|t| &t.instance == v && t.shard.as_ref().is_some_and(|s| s != &victim_id))
        });
        if moved {
            replaced = Some(killed.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    w.event(format!("its targets re-placed: {}", secs(replaced)));
    let down = pick(config, 8, 30);
    tokio::time::sleep(down.saturating_sub(killed.elapsed())).await;
    let restarted = match w.shards.iter_mut().find(|s| s.id == victim_id) {
        Some(s) => s.proc.restart().is_ok(),
        None => false,
    };
    if !restarted {
        return Err(w.system_error(format!("{victim_id} did not restart")));
    }
    w.event(format!("{victim_id} restarted on its storage"));
    tokio::time::sleep(pick(config, 10, 30)).await;
    let interval_ms = config.interval_ms();
    // Judge now (the window closes in finish; this only reads the victims'
    // series as they are, for the scenario's own claims below).
    let bound_ms =
        i64::try_from((w.timing.failure_timeout + config.interval).as_millis()).unwrap_or(0);
    w.figures
        .insert("victim_targets".into(), serde_json::json!(victims.len()));
    w.figures
        .insert("replaced_secs".into(), serde_json::json!(replaced));
    w.figures
        .insert("gap_bound_ms".into(), serde_json::json!(bound_ms));
    finish_with(w, drain(config), move |a| {
        let mut longest = 0u64;
        let mut early = Vec::new();
        let mut split = Vec::new();
        let mut other_gaps = 0u64;
        let mut dups = [0u64; 2];
        let mut ooo = [0u64; 2];
        for (inst, series) in &a.by_instance {
            let victim = victims.contains(inst);
            for v in series {
                dups[usize::from(victim)] += v.duplicates;
                ooo[usize::from(victim)] += v.out_of_order;
                if !victim {
                    other_gaps += v.missing_runs.len() as u64;
                    continue;
                }
                for r in &v.missing_runs {
                    longest = longest.max(r.slots * interval_ms as u64);
                    if r.from_ms < kill_ms - interval_ms {
                        early.push(format!("{inst} {} from {}", v.series, r.from_ms));
                    }
                }
                if v.missing_runs.len() > 1 {
                    split.push(format!("{inst} {} {:?}", v.series, v.missing_runs));
                }
            }
        }
        vec![
            (
                "duplicates_victims_others".to_owned(),
                serde_json::json!(dups.iter().rev().collect::<Vec<_>>()),
                Claim::new(
                    "the other shards' targets: zero duplicates",
                    dups[0] == 0,
                    format!(
                        "{} duplicates, {} out of order (victims: {} duplicates, {} out of order, from the replayed WAL)",
                        dups[0], ooo[0], dups[1], ooo[1]
                    ),
                ),
            ),
            (
                "victim_longest_gap_ms".to_owned(),
                serde_json::json!(longest),
                Claim::new(
                    "the killed shard's targets: gap <= failure timeout + one interval",
                    longest <= bound_ms as u64,
                    format!("longest {longest} ms, bound {bound_ms} ms"),
                ),
            ),
            (
                "victim_missing_before_kill".to_owned(),
                serde_json::json!(early.len() + split.len()),
                Claim::new(
                    "every sample the killed shard appended is delivered after its restart",
                    early.is_empty() && split.is_empty(),
                    if early.is_empty() && split.is_empty() {
                        "each victim series misses at most one run of slots, starting after the kill".to_owned()
                    } else {
                        format!(
                            "missing before the kill: {:?}; several runs: {:?}",
                            &early[..early.len().min(3)],
                            &split[..split.len().min(3)]
                        )
                    },
                ),
            ),
            (
                "other_targets_gaps".to_owned(),
                serde_json::json!(other_gaps),
                Claim::new(
                    "the other shards' targets: zero gaps",
                    other_gaps == 0,
                    format!("{other_gaps} gaps"),
                ),
            ),
        ]
    })
    .await
}

/// [`World::finish`] with claims computed by `judge` from the analysis of
/// the drained sink before the report is built.
async fn finish_with<F>(
    mut w: World,
    drain: Duration,
    judge: F,
) -> Result<ScenarioReport, ScenarioError>
where
    F: FnOnce(&Analysis) -> Vec<(String, serde_json::Value, Claim)> + 'static,
{
    w.deferred_judge = Some(Box::new(judge));
    w.finish(drain).await
}

async fn storage_outage(config: &ScenarioConfig) -> Result<ScenarioReport, ScenarioError> {
    let n = targets_of(config, 24);
    let mut w = coordinated(config, n, n, shards_of(config)).await?;
    tokio::time::sleep(pick(config, 5, 15)).await;
    let outage = pick(config, 20, 120);
    let fault = crate::sink::Fault {
        status: 503,
        count: None,
        duration_secs: Some(outage.as_secs_f64()),
        retry_after_secs: None,
    };
    if let Err(e) = w.sink.inject(fault) {
        return Err(w.system_error(format!("cannot inject the outage: {e}")));
    }
    w.disturb(format!("sink answers 503 for {outage:?}"));
    tokio::time::sleep(outage).await;
    w.sink.clear_fault();
    w.event("sink recovered");
    let interval_ms = config.interval_ms();
    // The backlog is delivered in order per series: caught up once every
    // series has a sample of the last two intervals.
    let settle = pick(config, 10, 20);
    let recovered = Instant::now();
    let mut caught_up = None;
    while recovered.elapsed() < settle {
        if w.all_fresh(2 * interval_ms) {
            caught_up = Some(recovered.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    w.event(format!("backlog delivered: {}", secs(caught_up)));
    tokio::time::sleep(settle.saturating_sub(recovered.elapsed())).await;
    w.figures
        .insert("catch_up_secs".into(), serde_json::json!(caught_up));
    let injected = w.sink.summary().injected_faults;
    w.figures
        .insert("requests_refused".into(), serde_json::json!(injected));
    w.figures.insert(
        "outage_secs".into(),
        serde_json::json!(outage.as_secs_f64()),
    );
    let drain = drain(config) + outage;
    finish_with(w, drain, move |a| {
        let d = &a.totals;
        vec![(
            "samples_lost".to_owned(),
            serde_json::json!(d.samples_missing),
            Claim::new(
                "zero samples lost once the sink recovers",
                d.samples_missing == 0 && d.samples_expected > 0,
                format!(
                    "{} of {} expected samples missing ({} gaps)",
                    d.samples_missing, d.samples_expected, d.gaps
                ),
            ),
        )]
    })
    .await
}

async fn churn(config: &ScenarioConfig) -> Result<ScenarioReport, ScenarioError> {
    let active = targets_of(config, 16);
    let steps = if config.short { 4 } else { 12 };
    let total = active + steps * 2;
    let mut w = coordinated(config, total, active, shards_of(config)).await?;
    let every = pick(config, 4, 10);
    let mut next = active;
    for step in 0..steps {
        // The two oldest leave, two fresh ones join; none comes back.
        let mut set: Vec<usize> = w.active.iter().copied().skip(2).collect();
        set.push(next);
        set.push(next + 1);
        let left: Vec<String> = w.active.iter().take(2).map(|&i| w.instance(i)).collect();
        next += 2;
        w.set_active(set)?;
        w.disturb(format!(
            "churn step {}: {} left, 2 joined",
            step + 1,
            left.join(" ")
        ));
        tokio::time::sleep(every).await;
    }
    tokio::time::sleep(pick(config, 8, 15)).await;
    let joined: Vec<String> = (active..next).map(|i| w.instance(i)).collect();
    w.figures
        .insert("targets_joined".into(), serde_json::json!(joined.len()));
    w.figures
        .insert("targets_left".into(), serde_json::json!(joined.len()));
    finish_with(w, drain(config), move |a| {
        let unscraped: Vec<&String> = joined
            .iter()
            .filter(|i| {
                a.per_instance
                    .get(*i)
                    .is_none_or(|d| d.samples_received == 0)
            })
            .collect();
        vec![(
            "joined_unscraped".to_owned(),
            serde_json::json!(unscraped.len()),
            Claim::new(
                "every target that joined is scraped",
                unscraped.is_empty(),
                format!(
                    "{} of {} never delivered: {unscraped:?}",
                    unscraped.len(),
                    joined.len()
                ),
            ),
        )]
    })
    .await
}

async fn heavy_target(config: &ScenarioConfig) -> Result<ScenarioReport, ScenarioError> {
    let n = targets_of(config, 12);
    let shards = shards_of(config);
    let mut w = coordinated(config, n, n, shards).await?;
    tokio::time::sleep(pick(config, 5, 15)).await;
    let heavy = w.instance(0);
    let capacity = max_series(config);
    let grown = (capacity as usize) * 13 / 10;
    if let Err(e) = w.fleet.set_series(0, grown) {
        return Err(w.system_error(e.to_string()));
    }
    w.disturb(format!(
        "{heavy} grows to {grown} series (a shard holds {capacity})"
    ));
    let admin = w.admin();
    let started = Instant::now();
    let mut isolated = None;
    let mut last = String::new();
    while started.elapsed() < pick(config, 60, 120) {
        let targets = admin.targets().await.unwrap_or_default();
        let h = targets.iter().find(|t| t.instance == heavy);
        let shard = h.and_then(|t| t.shard.clone());
        let alone = shard.as_ref().is_some_and(|s| {
            targets
                .iter()
                .filter(|t| t.shard.as_ref() == Some(s) || t.state == "migrating")
                .count()
                == 1
        });
        let flagged = h.is_some_and(|t| t.state == "oversized");
        last = format!(
            "{heavy}: state {:?} on {shard:?}, alone {alone}",
            h.map(|t| t.state.clone())
        );
        if alone && flagged {
            isolated = Some(started.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    w.event(format!(
        "heavy target isolated: {} ({last})",
        secs(isolated)
    ));
    tokio::time::sleep(pick(config, 8, 20)).await;
    let targets = admin.targets().await.unwrap_or_default();
    let h = targets.iter().find(|t| t.instance == heavy).cloned();
    let shard = h.as_ref().and_then(|t| t.shard.clone());
    let companions: Vec<String> = targets
        .iter()
        .filter(|t| t.instance != heavy && t.shard.is_some() && t.shard == shard)
        .map(|t| t.instance.clone())
        .collect();
    w.figures
        .insert("isolated_secs".into(), serde_json::json!(isolated));
    w.figures.insert(
        "heavy_target".into(),
        serde_json::json!({"instance": heavy, "series": grown, "shard": shard, "state": h.as_ref().map(|t| t.state.clone())}),
    );
    w.claims.push(Claim::new(
        "the heavy target ends on a shard of its own, flagged oversized",
        companions.is_empty() && h.as_ref().is_some_and(|t| t.state == "oversized"),
        format!(
            "on {shard:?} state {:?}, {} other targets there",
            h.map(|t| t.state),
            companions.len()
        ),
    ));
    // Who moved (the targets that made room, or the heavy one itself).
    let from = w.window_from_ms;
    let moved: Vec<String> = w
        .monitor
        .as_ref()
        .map(|m| m.seen().moves)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.0 >= from)
        .map(|m| m.1)
        .collect();
    finish_with(w, drain(config), move |a| {
        let lossy: Vec<&String> = moved
            .iter()
            .filter(|i| {
                a.per_instance
                    .get(*i)
                    .is_none_or(|d| d.samples_missing > 0 || d.duplicates > 0)
            })
            .collect();
        vec![(
            "moved_targets".to_owned(),
            serde_json::json!(moved),
            Claim::new(
                "the targets that made room moved by handover: no missing or duplicate sample",
                !moved.is_empty() && lossy.is_empty(),
                format!(
                    "{} moved, {} of them lost or doubled samples {lossy:?}",
                    moved.len(),
                    lossy.len()
                ),
            ),
        )]
    })
    .await
}
