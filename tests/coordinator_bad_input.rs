//! The coordinator against bad input, real processes on loopback: an
//! invalid config on reload, targets whose explore fails, fake shards that
//! send garbage or hang, and two processes with the same shard id. In each
//! case the real shards keep (or get) their assignment and every target
//! ends up scraped by exactly one shard.
//!
//! The tests run one at a time (a lock): each has its own coordinator, two
//! shards, fleet and sink, and timing bounds that assume the machine is not
//! running the others at once.

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::cluster::{Coord, Coverage, ShardProc, Timing, World};
use common::fake_shard::{self, Manner};
use common::{now_ms, runtime, wait_until};
use promshard_loadtest::fleet::FleetConfig;
use promshard_proto::v1::shard_message;

const MAX_SERIES: u64 = 2500;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn fleet_config(base: u8, targets: usize) -> FleetConfig {
    FleetConfig {
        targets,
        series_per_target: 60,
        zipf_exponent: 0.8,
        base: SocketAddrV4::new(Ipv4Addr::new(127, 0, base, 1), 0),
        ..FleetConfig::default()
    }
}

fn start_shards(world: &World, coord: &Coord, ids: &[&str], timing: &Timing) -> Vec<ShardProc> {
    ids.iter()
        .map(|id| {
            ShardProc::start(
                world.path(),
                id,
                id,
                &world.shard_config,
                &coord.address(),
                MAX_SERIES,
                timing,
            )
        })
        .collect()
}

/// Waits until every fleet target is scraped by exactly one of `shards`;
/// returns how long it took, or panics with the coverage and the logs.
fn wait_exact(world: &World, shards: &[&ShardProc], timeout: Duration, what: &str) -> Duration {
    let fleet = world.instances();
    let t0 = Instant::now();
    if wait_until(timeout, || Coverage::of(shards).exact(&fleet)) {
        return t0.elapsed();
    }
    let cov = Coverage::of(shards);
    panic!(
        "{what}: not every target scraped exactly once after {timeout:?}: missing {:?} doubles {:?}\n{}",
        fleet.difference(&cov.union()).collect::<Vec<_>>(),
        cov.doubles(),
        world.logs()
    );
}

/// Every instance of the fleet has a sample newer than `since_ms` in the
/// sink (healthy targets only: `only`).
fn sink_fresh(world: &World, only: &BTreeSet<String>, since_ms: i64) -> bool {
    only.iter().all(|i| {
        let (n, oldest) = world.sink_instance(i);
        n > 0 && oldest > since_ms
    })
}

#[test]
fn invalid_config_on_reload_answers_500_naming_the_file_and_line_and_keeps_the_old_one() {
    let _serial = serial();
    let timing = Timing::default();
    let world = World::start(fleet_config(51, 12), "1s");
    let coord = Coord::start(world.path(), &world.coordinator_config, &timing, &[]);
    let shards = start_shards(&world, &coord, &["shard-1", "shard-2"], &timing);
    let all: Vec<&ShardProc> = shards.iter().collect();
    wait_exact(&world, &all, Duration::from_secs(40), "before the reload");
    let good = std::fs::read_to_string(&world.coordinator_config).expect("config");
    let (_, config_before) = common::prom::http("GET", coord.web, "/api/v1/status/config")
        .expect("GET /api/v1/status/config");

    // Line 4 holds a duration that is not one.
    let bad = good.replacen(
        "scrape_configs:\n  - job_name: fleet\n",
        "scrape_configs:\n  - job_name: fleet\n    scrape_interval: soon\n",
        1,
    );
    assert_ne!(bad, good);
    std::fs::write(&world.coordinator_config, &bad).expect("write bad config");
    let (status, body) = coord.reload();
    let body_bad = body.clone();
    assert_eq!(status, 500, "reload of an invalid config: {body}");
    let file = world.coordinator_config.display().to_string();
    assert!(
        body.contains(&file),
        "the error does not name the file {file}: {body}"
    );
    let line = bad
        .lines()
        .position(|l| l.contains("soon"))
        .map(|i| i + 1)
        .expect("bad line");
    assert!(
        body.contains(&format!("{file}:{line}")),
        "the error does not name line {line}: {body}"
    );
    // The old config stays, the coordinator keeps working, targets are
    // still scraped and delivered.
    let (_, config_after) = common::prom::http("GET", coord.web, "/api/v1/status/config")
        .expect("GET /api/v1/status/config");
    assert_eq!(config_after, config_before, "the config changed");
    assert_eq!(
        coord.metric_sum_where("promshard_coordinator_reloads_total", "result=\"failure\""),
        1.0,
        "reload failure not counted"
    );
    let after_ms = now_ms();
    std::thread::sleep(timing.plan_interval * 2);
    assert!(Coverage::of(&all).exact(&world.instances()));
    assert!(
        wait_until(Duration::from_secs(10), || sink_fresh(
            &world,
            &world.instances(),
            after_ms
        )),
        "targets not delivered after the failed reload"
    );
    // A good reload afterwards works.
    std::fs::write(&world.coordinator_config, &good).expect("write good config");
    let (status, body) = coord.reload();
    assert_eq!(status, 200, "reload of the good config: {body}");
    eprintln!("invalid reload: 500 {:?}", first_line(&body_bad));
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[test]
fn targets_whose_explore_fails_are_still_placed_and_scraped() {
    let _serial = serial();
    let timing = Timing::default();
    // Targets 0..3 answer 500, target 3 never answers; the rest are fine.
    let mut cfg = fleet_config(52, 12);
    cfg.error_targets = 3;
    cfg.hanging_targets = 1;
    let world = World::start(cfg, "1s");
    let coord = Coord::start(world.path(), &world.coordinator_config, &timing, &[]);
    let t0 = Instant::now();
    let shards = start_shards(&world, &coord, &["shard-1", "shard-2"], &timing);
    let all: Vec<&ShardProc> = shards.iter().collect();
    let took = wait_exact(&world, &all, Duration::from_secs(45), "failed explores");
    let placed = coord.targets();
    assert_eq!(placed.len(), 12, "coordinator targets: {placed:?}");
    assert!(
        placed.values().all(|(s, _)| s.is_some()),
        "unplaced targets: {placed:?}"
    );
    // The healthy ones are delivered; the coordinator keeps planning.
    let healthy: BTreeSet<String> = world
        .fleet()
        .target_infos()
        .iter()
        .filter(|t| t.behaviour.serves_series())
        .map(|t| t.address.clone())
        .collect();
    assert_eq!(healthy.len(), 8);
    let since = now_ms();
    assert!(
        wait_until(Duration::from_secs(10), || sink_fresh(
            &world, &healthy, since
        )),
        "healthy targets not delivered"
    );
    let rounds = coord.metric_sum("promshard_coordinator_plan_rounds_total");
    std::thread::sleep(timing.plan_interval * 2);
    let rounds2 = coord.metric_sum("promshard_coordinator_plan_rounds_total");
    assert!(rounds2 > rounds, "planning stopped: {rounds} -> {rounds2}");
    eprintln!(
        "failed explores: all 12 targets scraped exactly once {:?} after the shards started ({:?} since start)",
        took,
        t0.elapsed()
    );
}

#[test]
fn garbage_and_hanging_fake_shards_do_not_stop_real_shards() {
    let _serial = serial();
    let timing = Timing::default();
    let world = World::start(fleet_config(53, 12), "1s");
    let coord = Coord::start(world.path(), &world.coordinator_config, &timing, &[]);
    let rt = runtime();
    let addr = coord.address();

    // Garbage: an empty shard id, a Report before Hello. Both are refused
    // with InvalidArgument (3) and a message naming the problem.
    let empty = rt.block_on(fake_shard::attach_with_first(
        &addr,
        shard_message::Msg::Hello(fake_shard::hello("", 1000)),
        Duration::from_secs(5),
    ));
    let (code, msg) = empty.expect("empty shard id: the call stays open");
    assert_eq!(code, 3, "empty shard id: {msg}");
    assert!(
        msg.contains("shard id") || msg.contains("shard_id"),
        "{msg}"
    );
    let report = rt.block_on(fake_shard::attach_with_first(
        &addr,
        fake_shard::report_first(),
        Duration::from_secs(5),
    ));
    let (code, msg) = report.expect("Report before Hello: the call stays open");
    assert_eq!(code, 3, "Report before Hello: {msg}");
    assert!(msg.contains("Hello"), "{msg}");

    // Hanging: one never reads, one answers pings but never acknowledges.
    // Both offer a huge capacity, so the planner wants them.
    let mute = fake_shard::spawn_fake(rt, &addr, "fake-mute", 1_000_000, Manner::Mute);
    let noack = fake_shard::spawn_fake(rt, &addr, "fake-noack", 1_000_000, Manner::PongNoAck);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let up = coord.shards_up();
            up.contains("fake-mute") && up.contains("fake-noack")
        }),
        "fakes not attached: {:?}",
        coord.shards()
    );
    let t0 = Instant::now();
    let shards = start_shards(&world, &coord, &["shard-1", "shard-2"], &timing);
    let all: Vec<&ShardProc> = shards.iter().collect();
    let bound = Duration::from_secs(45);
    let took = wait_exact(&world, &all, bound, "with hanging fake shards");
    let since = now_ms();
    assert!(
        wait_until(Duration::from_secs(10), || sink_fresh(
            &world,
            &world.instances(),
            since
        )),
        "targets not delivered"
    );
    // The coordinator believes the real shards have everything.
    let placed = coord.targets();
    let on_real = placed
        .values()
        .filter(|(s, _)| s.as_deref().is_some_and(|s| s.starts_with("shard-")))
        .count();
    eprintln!(
        "hanging fakes: real shards cover the fleet {took:?} after they started ({:?}); coordinator places {on_real}/12 on real shards; shards {:?}",
        t0.elapsed(),
        coord
            .shards()
            .iter()
            .map(|(id, s)| (id.clone(), s["health"].clone(), s["targets"].clone()))
            .collect::<Vec<_>>()
    );
    assert!(
        wait_until(Duration::from_secs(20), || coord.targets().values().all(
            |(s, _)| s.as_deref().is_some_and(|s| s.starts_with("shard-"))
        )),
        "the coordinator still assigns targets to a fake: {:?}",
        coord.targets()
    );
    mute.abort();
    noack.abort();
}

#[test]
fn duplicate_shard_ids_do_not_leave_a_target_scraped_twice() {
    let _serial = serial();
    let timing = Timing::default();
    let world = World::start(fleet_config(54, 12), "1s");
    let coord = Coord::start(world.path(), &world.coordinator_config, &timing, &[]);
    let shards = start_shards(&world, &coord, &["shard-1", "shard-2"], &timing);
    let all: Vec<&ShardProc> = shards.iter().collect();
    wait_exact(
        &world,
        &all,
        Duration::from_secs(40),
        "before the duplicate",
    );

    // A second process calls itself shard-2. The two keep replacing each
    // other's session; the coordinator sees the id come from two
    // addresses in turn, calls it contested, gives it nothing (both
    // processes are told to scrape nothing) and places its targets on
    // shard-1.
    let mut dup = ShardProc::start(
        world.path(),
        "shard-2-dup",
        "shard-2",
        &world.shard_config,
        &coord.address(),
        MAX_SERIES,
        &timing,
    );
    let fleet = world.instances();
    let t0 = Instant::now();
    let mut doubled = Duration::ZERO;
    let mut last_double = None;
    let mut max_doubles = 0;
    let mut contested_seen = None;
    let watch = Duration::from_secs(20);
    while t0.elapsed() < watch {
        let with_dup: Vec<&ShardProc> = shards.iter().chain(std::iter::once(&dup)).collect();
        let d = Coverage::of(&with_dup).doubles().len();
        max_doubles = max_doubles.max(d);
        if d > 0 {
            doubled += Duration::from_millis(500);
            last_double = Some(t0.elapsed());
        }
        if contested_seen.is_none()
            && coord
                .shards()
                .get("shard-2")
                .and_then(|s| s["health"].as_str())
                == Some("contested")
        {
            contested_seen = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let with_dup: Vec<&ShardProc> = shards.iter().chain(std::iter::once(&dup)).collect();
    let cov = Coverage::of(&with_dup);
    let attaches = coord
        .proc
        .log()
        .lines()
        .filter(|l| {
            l.contains("hub::service") && l.contains("shard attached") && l.contains("shard-2")
        })
        .count();
    eprintln!(
        "duplicate id: contested after {contested_seen:?}; shard-2 sessions {attaches} in {watch:?}; up to {max_doubles} targets scraped twice, for ~{doubled:?}, last at {last_double:?}; targets per process now {:?}",
        cov.per_shard
            .iter()
            .map(|(k, v)| (
                k.rsplit('/').next().unwrap_or_default().to_string(),
                v.len()
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        contested_seen.is_some(),
        "shard-2 never reported contested: {:#?}",
        coord.shards()
    );
    assert!(
        cov.doubles().is_empty(),
        "targets still scraped twice after {watch:?}: {:?}\n{}",
        cov.doubles(),
        world.logs()
    );
    assert_eq!(cov.union(), fleet, "targets lost with a duplicate shard id");
    assert!(
        last_double.is_none_or(|t| t < Duration::from_secs(10)),
        "targets were scraped twice until {last_double:?}"
    );

    // The duplicate goes away: shard-2 takes targets again.
    dup.proc.kill();
    let back = Instant::now();
    let ok = wait_until(Duration::from_secs(45), || {
        coord
            .shards()
            .get("shard-2")
            .and_then(|s| s["health"].as_str())
            == Some("up")
            && shards[1].targets().is_some_and(|t| !t.is_empty())
            && Coverage::of(&all).exact(&fleet)
    });
    assert!(
        ok,
        "shard-2 did not recover after the duplicate left: {:#?}\n{}",
        coord.shards(),
        world.logs()
    );
    eprintln!(
        "duplicate id: shard-2 takes targets again {:?} after the duplicate died",
        back.elapsed()
    );
}

/// Target id (hex in the API) -> series the coordinator believes.
fn believed_series(coord: &Coord) -> Vec<(u64, u64)> {
    coord
        .active_targets()
        .iter()
        .filter_map(|t| {
            let id = u64::from_str_radix(t.get("id")?.as_str()?, 16).ok()?;
            Some((id, t.get("series")?.as_u64()?))
        })
        .collect()
}

#[test]
fn a_shard_reporting_load_of_targets_it_does_not_have_does_not_steer_the_plan() {
    let _serial = serial();
    let timing = Timing::default();
    let world = World::start(fleet_config(55, 12), "1s");
    let coord = Coord::start(world.path(), &world.coordinator_config, &timing, &[]);
    let shards = start_shards(&world, &coord, &["shard-1", "shard-2"], &timing);
    let all: Vec<&ShardProc> = shards.iter().collect();
    wait_exact(&world, &all, Duration::from_secs(40), "before the liar");
    // Loads from the real shards' reports are in.
    assert!(
        wait_until(Duration::from_secs(10), || believed_series(&coord)
            .iter()
            .all(|(_, s)| *s > 0 && *s < 10_000)),
        "loads: {:?}",
        believed_series(&coord)
    );
    let ids: Vec<u64> = believed_series(&coord).iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 12);
    let before = Coverage::of(&all);
    let moves = coord.metric_sum("promshard_coordinator_moves_total");

    // It says 1e6 series for every target, a second Hello, a stray Ack,
    // NaN samples/s; it answers pings and never acks.
    let liar = fake_shard::spawn_fake(
        runtime(),
        &coord.address(),
        "fake-liar",
        1_000_000,
        Manner::Liar(ids),
    );
    assert!(
        wait_until(Duration::from_secs(10), || coord
            .shards()
            .contains_key("fake-liar")),
        "liar not attached"
    );
    std::thread::sleep(timing.plan_interval * 4);
    let loads = believed_series(&coord);
    assert!(
        loads.iter().all(|(_, s)| *s < 10_000),
        "the coordinator believes the liar: {loads:?}"
    );
    let fleet = world.instances();
    let now = Coverage::of(&all);
    assert!(now.exact(&fleet), "coverage broke: {:?}", now.per_shard);
    // The liar got targets (it offered the most room) and then lost them
    // when it did not ack; real shards may have been rebalanced toward it,
    // but no target may be lost or doubled.
    eprintln!(
        "liar: loads stay real (max {:?}), moves {moves} -> {}, coverage unchanged: {}, liar health {:?}",
        loads.iter().map(|(_, s)| *s).max(),
        coord.metric_sum("promshard_coordinator_moves_total"),
        now == before,
        coord.shards().get("fake-liar").map(|s| s["health"].clone())
    );
    liar.abort();
}
