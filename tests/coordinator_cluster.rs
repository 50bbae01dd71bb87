//! The coordinator with three native shards, all real processes on
//! loopback, a Zipf-sized fleet and the verifying sink:
//! 1. convergence: every target scraped by exactly one shard, max/mean
//!    utilization <= 1.10, the sink sees every fleet series, no duplicate;
//! 2. coordinator SIGKILL + restart on the same ports: zero moves, every
//!    shard keeps its targets, no gap in the sink;
//! 3. shard SIGKILL: its targets are scraped by the others within failure
//!    timeout + two plan intervals, and the sink sees their series again.
//!
//! `cargo test --test coordinator_cluster -- --nocapture` prints the
//! figures (convergence time, re-placement time, gaps).

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use common::cluster::{Coord, Coverage, ShardProc, Timing, World};
use common::{now_ms, wait_until};
use promshard_loadtest::fleet::FleetConfig;

const SHARDS: usize = 3;
const MAX_SERIES: u64 = 2500;

#[test]
fn cluster_converges_survives_coordinator_restart_and_replaces_a_killed_shard() {
    let timing = Timing::default();
    let world = World::start(
        FleetConfig {
            targets: 30,
            series_per_target: 100,
            zipf_exponent: 0.8,
            base: SocketAddrV4::new(Ipv4Addr::new(127, 0, 41, 1), 0),
            ..FleetConfig::default()
        },
        "1s",
    );
    let fleet: BTreeSet<String> = world.instances();
    let fleet_series = world.fleet().expected_series_total() as u64;
    let started = Instant::now();
    let mut coord = Coord::start(world.path(), &world.coordinator_config, &timing, &[]);
    let shards: Vec<ShardProc> = (1..=SHARDS)
        .map(|i| {
            ShardProc::start(
                world.path(),
                &format!("shard-{i}"),
                &format!("shard-{i}"),
                &world.shard_config,
                &coord.address(),
                MAX_SERIES,
                &timing,
            )
        })
        .collect();
    let all: Vec<&ShardProc> = shards.iter().collect();

    // 1. Convergence: exact coverage, balanced, nothing migrating, twice in
    // a row (2 s apart).
    let mut stable = 0;
    let mut last = Coverage::default();
    let converged = wait_until(Duration::from_secs(75), || {
        let cov = Coverage::of(&all);
        let targets = coord.targets();
        let settled = targets.len() == fleet.len()
            && targets
                .values()
                .all(|(s, state)| s.is_some() && state == "assigned");
        let balanced = coord.imbalance().is_some_and(|i| i <= 1.10);
        if cov.exact(&fleet) && settled && balanced && cov == last {
            stable += 1;
        } else {
            stable = 0;
        }
        last = cov;
        if stable < 2 {
            std::thread::sleep(Duration::from_secs(1));
        }
        stable >= 2
    });
    let converge_time = started.elapsed();
    let imbalance = coord.imbalance();
    assert!(
        converged,
        "no convergence in 75 s: coverage {:?} doubles {:?} missing {:?} imbalance {imbalance:?}\nshards {:#?}\n{}",
        last.per_shard.values().map(|s| s.len()).collect::<Vec<_>>(),
        last.doubles(),
        fleet.difference(&last.union()).collect::<Vec<_>>(),
        coord.shards(),
        world.logs()
    );
    let imbalance = imbalance.expect("utilization known");
    assert!(imbalance <= 1.10, "max/mean utilization {imbalance}");
    let sizes: Vec<usize> = last.per_shard.values().map(|s| s.len()).collect();
    let series_per_shard: Vec<u64> = coord
        .shards()
        .values()
        .filter_map(|s| s.get("series")?.as_u64())
        .collect();
    eprintln!(
        "converged after {converge_time:?}: targets per shard {sizes:?}, series per shard {series_per_shard:?}, max/mean {imbalance:.3}"
    );

    // The coordinator's target list carries each target's last scrape as
    // its shard reported it (shards report every second here).
    let reported_up = wait_until(Duration::from_secs(10), || {
        let list = coord.active_targets();
        list.len() == fleet.len()
            && list.iter().all(|t| {
                t.get("health").and_then(|h| h.as_str()) == Some("up")
                    && t.get("lastScrape").and_then(|h| h.as_str())
                        != Some(promshard_promlib::api::NEVER_SCRAPED)
                    && t.get("lastError").and_then(|h| h.as_str()) == Some("")
            })
    });
    assert!(
        reported_up,
        "targets not all up with a last scrape in /api/v1/targets: {:?}",
        coord.active_targets()
    );

    // The sink sees every fleet series (fleet + 5 synthetic per target).
    let seen_all = wait_until(Duration::from_secs(10), || {
        world.fleet_counts().series >= fleet_series + 5 * fleet.len() as u64
    });
    let job = world.fleet_counts();
    assert!(
        seen_all,
        "sink has {} series of job fleet, fleet exposes {fleet_series} (+5 per target)",
        job.series
    );
    assert_eq!(job.duplicates, 0, "duplicates in the sink: {job:?}");
    assert_eq!(job.out_of_order, 0, "out-of-order samples: {job:?}");
    let gaps_before = job.gaps;
    eprintln!("sink after convergence: {job:?}");

    // 2. Coordinator SIGKILL + restart on the same ports.
    let before = Coverage::of(&all);
    let moves_first = coord.metric_sum("promshard_coordinator_moves_total");
    coord.kill();
    let killed_at = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    coord.restart();
    let all_back = wait_until(Duration::from_secs(20), || {
        coord.shards_up().len() == SHARDS
    });
    assert!(all_back, "shards did not reattach: {:#?}", coord.shards());
    let reattach = killed_at.elapsed();
    // Several plan rounds with reports in: nothing may move.
    let mut moves_after = 0.0;
    let mut changed = None;
    let watch_until = Instant::now() + timing.plan_interval * 4 + Duration::from_secs(2);
    while Instant::now() < watch_until {
        moves_after = coord.metric_sum("promshard_coordinator_moves_total");
        let cov = Coverage::of(&all);
        if cov != before && changed.is_none() {
            changed = Some(cov);
        }
        if moves_after > 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        moves_after,
        0.0,
        "the restarted coordinator moved targets (first run placed {moves_first})\n{}",
        world.logs()
    );
    assert!(
        changed.is_none(),
        "a shard's targets changed across the coordinator restart: before {:?} after {:?}",
        before.per_shard,
        changed.map(|c| c.per_shard)
    );
    assert_eq!(
        Coverage::of(&all),
        before,
        "targets changed after the restart"
    );
    std::thread::sleep(Duration::from_secs(3));
    let job = world.fleet_counts();
    assert_eq!(
        job.gaps, gaps_before,
        "gaps in the sink across the coordinator restart: {job:?}"
    );
    assert_eq!(job.duplicates, 0, "duplicates after the restart: {job:?}");
    eprintln!(
        "coordinator restart: shards reattached {reattach:?} after the kill, moves 0 (first run {moves_first}), gaps {} -> {}",
        gaps_before, job.gaps
    );

    // 3. Shard SIGKILL.
    let mut shards = shards;
    let victim = shards.pop().expect("a shard");
    let orphans = victim.targets().unwrap_or_default();
    assert!(!orphans.is_empty(), "the victim scrapes nothing");
    let mut victim = victim;
    let kill_ms = now_ms();
    victim.proc.kill();
    let killed = Instant::now();
    let rest: Vec<&ShardProc> = shards.iter().collect();
    let bound = timing.failure_timeout + timing.plan_interval * 2;
    let replaced = wait_until(bound + Duration::from_secs(20), || {
        Coverage::of(&rest).exact(&fleet)
    });
    let replace_time = killed.elapsed();
    let cov = Coverage::of(&rest);
    assert!(
        replaced,
        "the killed shard's targets were not re-placed: missing {:?} doubles {:?}\n{}",
        fleet.difference(&cov.union()).collect::<Vec<_>>(),
        cov.doubles(),
        world.logs()
    );
    eprintln!(
        "shard kill: {} targets re-placed after {replace_time:?} (bound {bound:?})",
        orphans.len()
    );
    assert!(
        replace_time <= bound,
        "re-placing took {replace_time:?}, more than failure timeout + 2 plan intervals = {bound:?}"
    );
    // The sink sees every series of those targets again.
    let fresh = wait_until(Duration::from_secs(10), || {
        orphans.iter().all(|i| {
            let (n, oldest) = world.sink_instance(i);
            n > 0 && oldest > kill_ms
        })
    });
    let stale: Vec<_> = orphans
        .iter()
        .filter(|i| world.sink_instance(i).1 <= kill_ms)
        .collect();
    assert!(fresh, "no fresh samples after the kill for {stale:?}");
    let job = world.fleet_counts();
    assert_eq!(
        job.duplicates, 0,
        "duplicates after the shard kill: {job:?}"
    );
    eprintln!(
        "after the shard kill: sink {job:?} (gaps {} from the kill: the dead shard's missed scrapes)",
        job.gaps - gaps_before
    );
}
