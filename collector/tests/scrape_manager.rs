//! The scrape manager against loopback HTTP targets and a collecting sink:
//! slots, timestamps, target-set changes, stops, reloads, timeouts.

mod scrape_common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use promshard_collector::scrape::{Health, ManagedTarget, Stop, next_slot_ms, slot_offset};
use promshard_collector::series::is_stale_marker;
use scrape_common::*;

const IV: u64 = 300;
const IVI: i64 = IV as i64;

fn on_slot(id: u64, ts: i64) -> bool {
    ts.rem_euclid(IVI) == slot_offset(id, Duration::from_millis(IV)).as_millis() as i64
}

/// Bounds every test in time.
async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test took longer than 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_is_scraped_every_interval_on_its_slots() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        let names = ["t1", "t2", "t3"];
        let targets: Vec<_> = names
            .iter()
            .map(|n| {
                server.set(n, Behaviour::Body(body(1)));
                target(&cfg, "a", &server, n)
            })
            .collect();
        m.set_targets(targets.iter().map(managed).collect());
        sleep_ms(6 * IV + 100).await;
        for (n, t) in names.iter().zip(&targets) {
            let ups = sink.ups(n);
            assert!(ups.len() >= 5, "{n}: {} scrapes in 6 intervals", ups.len());
            assert!(ups.iter().all(|s| s.value == 1.0), "{n} up");
            let ts: Vec<i64> = ups.iter().map(|s| s.ts).collect();
            assert!(ts.iter().all(|&x| on_slot(t.id, x)), "{n}: off slot {ts:?}");
            assert_contiguous(n, &ts, IVI);
            // The scraped samples carry the same slot timestamps.
            let foo: Vec<i64> = sink.metric(n, "foo_total").iter().map(|s| s.ts).collect();
            assert_eq!(foo, ts, "{n}: foo_total timestamps");
            // Requests arrive at (or just after) the slots.
            for r in server.requests(n) {
                let slot = next_slot_ms(t.id, Duration::from_millis(IV), r - 50);
                assert!(r - slot < 50, "{n}: request at {r}, slot {slot}");
            }
        }
        let st = m.statuses();
        assert_eq!(st.len(), 3);
        assert!(
            st.iter()
                .all(|s| s.health == Health::Up && s.samples_per_scrape > 0)
        );
        assert!(st.windows(2).all(|w| w[0].target.id < w[1].target.id));
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_targets_keeps_unchanged_loops_and_stops_removed_with_stale_markers() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        for n in ["keep", "gone", "new"] {
            server.set(n, Behaviour::Body(body(2)));
        }
        let keep = target(&cfg, "a", &server, "keep");
        let gone = target(&cfg, "a", &server, "gone");
        let new = target(&cfg, "a", &server, "new");
        m.set_targets(vec![managed(&keep), managed(&gone)]);
        sleep_ms(3 * IV).await;
        let removed_at = now_ms();
        m.set_targets(vec![managed(&keep), managed(&new)]);
        sleep_ms(4 * IV).await;

        let keep_ts: Vec<i64> = sink.ups("keep").iter().map(|s| s.ts).collect();
        assert_contiguous("keep", &keep_ts, IVI);
        assert!(*keep_ts.last().unwrap() > removed_at + 2 * IVI);
        assert!(sink.stale("keep").is_empty());

        let gone_ups = sink.ups("gone");
        let last = gone_ups.last().unwrap().ts;
        assert!(last <= removed_at);
        let stale = sink.stale("gone");
        assert!(!stale.is_empty(), "no stale markers for the removed target");
        let stale_ts = next_slot_ms(gone.id, Duration::from_millis(IV), removed_at);
        assert!(
            stale.iter().all(|s| s.ts == stale_ts),
            "stale markers at {:?}, expected the next slot {stale_ts}",
            stale.iter().map(|s| s.ts).collect::<Vec<_>>()
        );
        for metric in ["up", "foo_total", "bar"] {
            assert!(
                stale
                    .iter()
                    .any(|s| s.labels.get("__name__") == Some(metric)),
                "no stale marker for {metric}"
            );
        }
        assert!(server.requests("gone").iter().all(|&r| r < stale_ts));

        let new_ups = sink.ups("new");
        assert!(new_ups.len() >= 3);
        assert!(new_ups[0].ts >= removed_at - 10);
        assert!(new_ups.iter().all(|s| on_slot(new.id, s.ts)));
        assert_eq!(m.statuses().len(), 2);
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readding_before_the_next_slot_cancels_the_stop() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        server.set("x", Behaviour::Body(body(3)));
        let x = target(&cfg, "a", &server, "x");
        m.add_target(managed(&x));
        sleep_ms(2 * IV).await;
        // Remove and add back right after a scrape: long before the next
        // slot. On a loaded host the sink may see a scrape late; wait for
        // one that is still recent, so the next slot is not already near.
        let after = loop {
            let last = sink.ups("x").last().unwrap().ts;
            let now = now_ms();
            if now >= last + 30 && now < last + IVI / 3 {
                break last;
            }
            sleep_ms(5).await;
        };
        m.remove_target(
            x.id,
            Stop {
                stop_before_ms: None,
                handover: false,
            },
        );
        sleep_ms(20).await;
        m.add_target(managed(&x));
        sleep_ms(3 * IV).await;
        assert!(
            sink.stale("x").is_empty(),
            "stale {:?} ups {:?} removed after {after}",
            sink.stale("x"),
            sink.ups("x")
                .iter()
                .map(|s| (s.ts, s.value))
                .collect::<Vec<_>>()
        );
        let ts: Vec<i64> = sink.ups("x").iter().map(|s| s.ts).collect();
        assert_contiguous("x", &ts, IVI);
        assert!(ts.len() >= 4);
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_stop_scrapes_until_stop_before_and_writes_no_stale_markers() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        server.set("h", Behaviour::Body(body(4)));
        let h = target(&cfg, "a", &server, "h");
        m.add_target(managed(&h));
        sleep_ms(2 * IV).await;
        let stop_before = now_ms() + 2 * IVI + 50;
        m.remove_target(
            h.id,
            Stop {
                stop_before_ms: Some(stop_before),
                handover: true,
            },
        );
        sleep_ms(4 * IV).await;
        let ts: Vec<i64> = sink.ups("h").iter().map(|s| s.ts).collect();
        assert_contiguous("h", &ts, IVI);
        let last = *ts.last().unwrap();
        assert!(last < stop_before, "scraped at {last} >= {stop_before}");
        assert!(
            last + IVI >= stop_before,
            "stopped early: last {last}, stop_before {stop_before}"
        );
        assert!(sink.stale("h").is_empty(), "handover wrote stale markers");
        assert!(server.requests("h").iter().all(|&r| r < stop_before));
        assert!(m.statuses().is_empty());
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_is_respected() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        server.set("s", Behaviour::Body(body(5)));
        let s = target(&cfg, "a", &server, "s");
        let start_at = now_ms() + 2 * IVI + 17;
        m.add_target(ManagedTarget {
            target: s.clone(),
            start_at_ms: Some(start_at),
        });
        sleep_ms(4 * IV).await;
        let reqs = server.requests("s");
        assert!(!reqs.is_empty());
        assert!(
            reqs[0] >= start_at - 10,
            "request at {} < {start_at}",
            reqs[0]
        );
        let ups = sink.ups("s");
        assert_eq!(
            ups[0].ts,
            next_slot_ms(s.id, Duration::from_millis(IV), start_at)
        );
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_unchanged_job_leaves_loops_alone_and_changed_relabeling_applies_without_gap() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        server.set("r", Behaviour::Body(body(6)));
        let r = target(&cfg, "a", &server, "r");
        m.add_target(managed(&r));
        sleep_ms(2 * IV).await;
        // The same config again: nothing happens.
        m.set_config(&config(&[("a", IV, 200, "")])).unwrap();
        sleep_ms(2 * IV).await;
        assert!(!sink.metric("r", "bar").is_empty());
        // Now drop `bar` by metric relabeling.
        let reload_at = now_ms();
        let drop_bar = "metric_relabel_configs:\n  - source_labels: [__name__]\n    regex: bar\n    action: drop";
        m.set_config(&config(&[("a", IV, 200, drop_bar)])).unwrap();
        sleep_ms(3 * IV).await;
        let ts: Vec<i64> = sink.ups("r").iter().map(|s| s.ts).collect();
        assert_contiguous("r", &ts, IVI);
        assert!(*ts.last().unwrap() > reload_at + IVI);
        let bar_after: Vec<_> = sink
            .metric("r", "bar")
            .into_iter()
            .filter(|s| s.ts > reload_at + 10 && !is_stale_marker(s.value))
            .collect();
        assert!(bar_after.is_empty(), "bar still scraped: {bar_after:?}");
        assert!(!sink.metric("r", "foo_total").is_empty());
        assert_eq!(m.statuses().len(), 1);
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_config_is_refused_and_changes_nothing() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        server.set("b", Behaviour::Body(body(7)));
        let b = target(&cfg, "a", &server, "b");
        m.add_target(managed(&b));
        sleep_ms(IV).await;
        let drop_bar = "metric_relabel_configs:\n  - source_labels: [__name__]\n    regex: bar\n    action: drop";
        let bad = config(&[
            ("a", IV, 200, drop_bar),
            (
                "broken",
                IV,
                200,
                "tls_config:\n  ca_file: /nonexistent/promshard-test-ca.pem",
            ),
        ]);
        let err = m.set_config(&bad).unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
        let refused_at = now_ms();
        sleep_ms(3 * IV).await;
        // Job a's change was not applied: bar still scraped.
        assert!(
            sink.metric("b", "bar")
                .iter()
                .any(|s| s.ts > refused_at && !is_stale_marker(s.value))
        );
        let ts: Vec<i64> = sink.ups("b").iter().map(|s| s.ts).collect();
        assert_contiguous("b", &ts, IVI);
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_answers_times_out_without_disturbing_others() {
    bounded(async {
        let server = Server::start().await;
        // Timeout == interval: every hanging scrape overruns its next slot.
        let cfg = config(&[("a", IV, IV, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        server.set("hang", Behaviour::Hang);
        server.set("trickle", Behaviour::Trickle);
        server.set("ok", Behaviour::Body(body(8)));
        let ts_of = |n| target(&cfg, "a", &server, n);
        let (hang, trickle, ok) = (ts_of("hang"), ts_of("trickle"), ts_of("ok"));
        m.set_targets(vec![managed(&hang), managed(&trickle), managed(&ok)]);
        sleep_ms(8 * IV).await;
        for n in ["hang", "trickle"] {
            let ups = sink.ups(n);
            assert!(ups.len() >= 2, "{n}: {} scrapes", ups.len());
            assert!(ups.iter().all(|s| s.value == 0.0), "{n} up=1?");
            // Each scrape lasts the whole timeout (= the interval): the
            // next one never starts before it ended.
            let reqs = server.requests(n);
            assert!(reqs.len() >= 2, "{n}: overlap needs two requests: {reqs:?}");
            for w in reqs.windows(2) {
                assert!(w[1] - w[0] >= IVI - 5, "{n}: overlapping scrapes {reqs:?}");
            }
        }
        let st = m.statuses();
        let hs = st.iter().find(|s| s.target.id == hang.id).unwrap();
        assert_eq!(hs.health, Health::Down);
        assert!(hs.last_error.contains("deadline"), "{}", hs.last_error);
        assert!(hs.last_scrape_duration >= Duration::from_millis(IV - 20));
        let ok_ts: Vec<i64> = sink.ups("ok").iter().map(|s| s.ts).collect();
        assert!(ok_ts.len() >= 7);
        assert_contiguous("ok", &ok_ts, IVI);
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_job_stops_its_targets_with_stale_markers_and_unknown_jobs_wait() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, ""), ("b", IV, 200, "")]);
        let (m, sink) = manager();
        server.set("ja", Behaviour::Body(body(9)));
        server.set("jb", Behaviour::Body(body(9)));
        let ja = target(&cfg, "a", &server, "ja");
        let jb = target(&cfg, "b", &server, "jb");
        // No config yet: both wait.
        m.set_targets(vec![managed(&ja), managed(&jb)]);
        let mut pending = vec![ja.id, jb.id];
        pending.sort_unstable();
        assert_eq!(m.pending_targets(), pending);
        sleep_ms(IV).await;
        assert!(server.requests("ja").is_empty());
        m.set_config(&cfg).unwrap();
        assert!(m.pending_targets().is_empty());
        sleep_ms(2 * IV).await;
        let removed_at = now_ms();
        m.set_config(&config(&[("a", IV, 200, "")])).unwrap();
        sleep_ms(3 * IV).await;
        assert!(sink.stale("ja").is_empty());
        let stale = sink.stale("jb");
        let at = next_slot_ms(jb.id, Duration::from_millis(IV), removed_at);
        assert!(!stale.is_empty() && stale.iter().all(|s| s.ts == at));
        assert_eq!(m.statuses().len(), 1);
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_everything_without_stale_markers() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        server.set("d", Behaviour::Body(body(10)));
        server.set("hang", Behaviour::Hang);
        let d = target(&cfg, "a", &server, "d");
        let hang = target(&cfg, "a", &server, "hang");
        m.set_targets(vec![managed(&d), managed(&hang)]);
        sleep_ms(2 * IV).await;
        let t0 = std::time::Instant::now();
        m.shutdown().await;
        assert!(
            t0.elapsed() < Duration::from_millis(150),
            "{:?}",
            t0.elapsed()
        );
        let n = server.requests("d").len();
        sleep_ms(2 * IV).await;
        assert_eq!(server.requests("d").len(), n);
        assert!(sink.stale("d").is_empty());
        assert!(m.statuses().is_empty());
        m.add_target(managed(&d));
        sleep_ms(IV).await;
        assert_eq!(server.requests("d").len(), n, "added after shutdown");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_series_is_redefined_and_retried_and_other_append_errors_are_counted() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        server.set("u", Behaviour::Body(body(11)));
        let u = target(&cfg, "a", &server, "u");
        m.add_target(managed(&u));
        sleep_ms(2 * IV).await;
        sink.forget_all();
        let forgot_at = now_ms();
        sleep_ms(2 * IV).await;
        assert!(sink.unknown_refusals() >= 1, "the sink never refused");
        let stats = m.stats();
        assert_eq!(stats.append_failures.load(Ordering::Relaxed), 0);
        assert!(sink.ups("u").iter().any(|s| s.ts > forgot_at));

        sink.fail_all.store(true, Ordering::SeqCst);
        sleep_ms(2 * IV).await;
        assert!(stats.append_failures.load(Ordering::Relaxed) >= 1);
        sink.fail_all.store(false, Ordering::SeqCst);
        let healed_at = now_ms();
        sleep_ms(2 * IV).await;
        assert!(sink.ups("u").iter().any(|s| s.ts > healed_at));
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overrunning_scrape_skips_slots_and_never_overlaps() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        server.set("o", Behaviour::Body(body(12)));
        let o = target(&cfg, "a", &server, "o");
        // Every append takes 1.5 intervals (a stalled disk).
        sink.append_delay_ms.store(IV * 3 / 2, Ordering::SeqCst);
        m.add_target(managed(&o));
        sleep_ms(8 * IV).await;
        let ts: Vec<i64> = sink.ups("o").iter().map(|s| s.ts).collect();
        assert!(ts.len() >= 2, "{ts:?}");
        for w in ts.windows(2) {
            assert_eq!(w[1] - w[0], 2 * IVI, "expected every other slot: {ts:?}");
        }
        assert!(ts.iter().all(|&t| on_slot(o.id, t)));
        assert!(m.stats().missed_slots.load(Ordering::Relaxed) >= 1);
        let reqs = server.requests("o");
        assert!(reqs.len() >= 2, "overlap needs two requests: {reqs:?}");
        for w in reqs.windows(2) {
            assert!(w[1] - w[0] >= 2 * IVI - 20, "overlapping scrapes {reqs:?}");
        }
        sink.append_delay_ms.store(0, Ordering::SeqCst);
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_between_two_managers_continues_the_series_on_the_same_slots() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (from, from_sink) = manager();
        let (to, to_sink) = manager();
        from.set_config(&cfg).unwrap();
        to.set_config(&cfg).unwrap();
        server.set("m", Behaviour::Body(body(13)));
        let t = target(&cfg, "a", &server, "m");
        from.add_target(managed(&t));
        sleep_ms(2 * IV).await;
        let at = now_ms() + IVI + 100;
        from.remove_target(
            t.id,
            Stop {
                stop_before_ms: Some(at),
                handover: true,
            },
        );
        to.add_target(ManagedTarget {
            target: t.clone(),
            start_at_ms: Some(at),
        });
        sleep_ms(4 * IV).await;
        let a: Vec<i64> = from_sink.ups("m").iter().map(|s| s.ts).collect();
        let b: Vec<i64> = to_sink.ups("m").iter().map(|s| s.ts).collect();
        assert!(a.iter().all(|&x| x < at) && b.iter().all(|&x| x >= at));
        assert!(from_sink.stale("m").is_empty() && to_sink.stale("m").is_empty());
        let all: Vec<i64> = a.iter().chain(&b).copied().collect();
        assert!(b.len() >= 2, "{b:?}");
        assert_contiguous("handover", &all, IVI);
        from.shutdown().await;
        to.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_job_interval_moves_a_target_without_interval_label_to_the_new_slots() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        server.set("i", Behaviour::Body(body(14)));
        let mut t = target(&cfg, "a", &server, "i");
        // Without the label the job's interval applies (the id stays).
        t.labels.remove("__scrape_interval__");
        t.labels.remove("__scrape_timeout__");
        m.add_target(managed(&t));
        sleep_ms(2 * IV).await;
        let reload_at = now_ms();
        m.set_config(&config(&[("a", 200, 150, "")])).unwrap();
        sleep_ms(5 * 200).await;
        let after: Vec<i64> = sink
            .ups("i")
            .iter()
            .map(|s| s.ts)
            .filter(|&x| x > reload_at + IVI)
            .collect();
        assert!(after.len() >= 3, "{after:?}");
        assert_contiguous("new interval", &after, 200);
        let off = slot_offset(t.id, Duration::from_millis(200)).as_millis() as i64;
        assert!(after.iter().all(|x| x.rem_euclid(200) == off));
        assert!(sink.stale("i").is_empty());
        let st = m.statuses();
        assert_eq!(st[0].interval, Duration::from_millis(200));
        m.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_reach_a_real_wal_with_every_sample_defined() {
    use promshard_collector::pipeline::RefAllocator;
    use promshard_collector::scrape::{BatchSink, ScrapeManager};
    use promshard_collector::wal::{FsyncPolicy, Wal, WalOptions, WalRecord};
    use std::collections::HashMap;
    use std::sync::Arc;

    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(
            Wal::open(
                dir.path(),
                WalOptions {
                    // Each append waits for a disk flush: the path that
                    // needs block_in_place.
                    fsync: FsyncPolicy::Always,
                    ..WalOptions::default()
                },
            )
            .unwrap(),
        );
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let m = ScrapeManager::new(
            Arc::clone(&wal) as Arc<dyn BatchSink>,
            Arc::new(RefAllocator::new(wal.next_series_ref())),
            dir.path().to_path_buf(),
        );
        m.set_config(&cfg).unwrap();
        let names = ["w1", "w2"];
        let targets: Vec<_> = names
            .iter()
            .map(|n| {
                server.set(n, Behaviour::Body(body(15)));
                managed(&target(&cfg, "a", &server, n))
            })
            .collect();
        m.set_targets(targets);
        sleep_ms(4 * IV).await;
        m.shutdown().await;
        assert_eq!(m.stats().append_failures.load(Ordering::Relaxed), 0);

        let mut reader = wal.reader("test").unwrap();
        let mut defs = HashMap::new();
        let mut ups: HashMap<String, usize> = HashMap::new();
        while let Some(e) = reader.try_next().unwrap() {
            match e.record {
                WalRecord::Series(s) => {
                    for d in s {
                        defs.insert(d.series, d.labels);
                    }
                }
                WalRecord::Samples(s) => {
                    for x in s {
                        let l = defs.get(&x.series).expect("sample before its series");
                        if l.get("__name__") == Some("up") {
                            *ups.entry(l.get("tname").unwrap().to_string()).or_default() += 1;
                        }
                    }
                }
                WalRecord::Metadata(_) => {}
            }
        }
        for n in names {
            assert!(ups.get(n).copied().unwrap_or(0) >= 3, "{n}: {ups:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_variants_now_handover_deferred_stale_and_never_scraped() {
    bounded(async {
        let server = Server::start().await;
        let cfg = config(&[("a", IV, 200, "")]);
        let (m, sink) = manager();
        m.set_config(&cfg).unwrap();
        for n in ["now", "later", "never"] {
            server.set(n, Behaviour::Body(body(16)));
        }
        let now_t = target(&cfg, "a", &server, "now");
        let later = target(&cfg, "a", &server, "later");
        let never = target(&cfg, "a", &server, "never");
        m.set_targets(vec![
            managed(&now_t),
            managed(&later),
            ManagedTarget {
                target: never.clone(),
                start_at_ms: Some(now_ms() + 60_000),
            },
        ]);
        sleep_ms(2 * IV).await;
        let t0 = now_ms();
        let stop_before = t0 + IVI + 50;
        m.remove_target(
            now_t.id,
            Stop {
                stop_before_ms: None,
                handover: true,
            },
        );
        m.remove_target(
            later.id,
            Stop {
                stop_before_ms: Some(stop_before),
                handover: false,
            },
        );
        m.remove_target(
            never.id,
            Stop {
                stop_before_ms: None,
                handover: false,
            },
        );
        sleep_ms(30).await;
        // Stopped at once: listed no more.
        let ids: Vec<u64> = m.statuses().iter().map(|s| s.target.id).collect();
        assert_eq!(ids, vec![later.id]);
        sleep_ms(3 * IV).await;
        assert!(server.requests("now").iter().all(|&r| r < t0 + 30));
        assert!(sink.stale("now").is_empty());
        assert!(server.requests("never").is_empty() && sink.stale("never").is_empty());
        let ups: Vec<i64> = sink.ups("later").iter().map(|s| s.ts).collect();
        assert!(ups.iter().all(|&x| x < stop_before));
        let stale_at = next_slot_ms(later.id, Duration::from_millis(IV), stop_before);
        let stale = sink.stale("later");
        assert!(!stale.is_empty() && stale.iter().all(|s| s.ts == stale_at));
        assert_eq!(
            *ups.last().unwrap() + IVI,
            stale_at,
            "a slot without a scrape"
        );
        assert!(m.statuses().is_empty());
        m.shutdown().await;
    })
    .await;
}
