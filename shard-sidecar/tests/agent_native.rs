//! The shard agent embedded with a real collector against a fake
//! coordinator on loopback: Hello, jobs and deltas, Ack, Report, handover
//! removal, bad input, and a coordinator restart.

mod common;

use std::time::Duration;

use common::*;
use promshard_collector::scrape::Health;
use promshard_proto::v1;

const T: Duration = Duration::from_secs(10);

/// Bounds every test in time.
async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test took longer than 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_delta_start_scraping_ack_report_and_handover_stops_without_staleness() {
    bounded(async {
        let fixture = Fixture::start().await;
        let capture = Capture::start().await;
        let mut coord = FakeCoordinator::start("127.0.0.1:0".parse().unwrap(), None).await;
        let shard = Shard::start(&coord.url(), &capture, None).await;

        let hello = coord.accept(T).await;
        assert_eq!(hello.shard_id, "s1");
        assert!(hello.targets.is_empty(), "no targets before any assignment");
        assert_eq!(hello.assignment_version, 0);
        assert_eq!(hello.backend, v1::BackendKind::Native as i32);
        assert_eq!(hello.capacity.unwrap().max_series, 1000);
        assert!(hello.job_config_hashes.is_empty());
        // The config file's own job is not discovered in coordinated mode.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            shard.statuses().is_empty(),
            "no discovery of the file's jobs"
        );

        let t = target(JOB, fixture.addr);
        coord.send(jobs_msg(&[(JOB, &job_yaml(JOB))])).await;
        coord.send(delta(1, 0, vec![add(t.clone())], vec![])).await;
        let ack = coord.ack(T).await;
        assert_eq!(ack.assignment_version, 1);
        assert!(ack.ok, "{}", ack.error);
        assert!(ack.rejected_target_ids.is_empty());

        assert!(
            wait_until(T, || shard
                .statuses()
                .iter()
                .any(|s| s.target.id == t.id && s.health == Health::Up))
            .await,
            "target up"
        );
        assert!(
            wait_until(T, || !capture.named("fx_a").is_empty()).await,
            "samples delivered"
        );

        let report = coord
            .report_where(T, |r| {
                r.targets
                    .iter()
                    .any(|x| x.target_id == t.id && x.series > 0)
            })
            .await;
        let tr = report.targets.iter().find(|x| x.target_id == t.id).unwrap();
        // fx_a and 2 x fx_b (the collector counts scraped series).
        assert_eq!(tr.series, 3, "{tr:?}");
        assert_eq!(tr.samples_per_scrape, 3, "{tr:?}");
        assert_eq!(tr.health, v1::TargetHealth::Up as i32);
        assert!((tr.interval_seconds - 0.5).abs() < 1e-9);
        assert_eq!(report.total_series, 3);
        assert!(report.total_samples_per_second > 0.0);

        // A reload of the shard's own file keeps the coordinator's jobs.
        shard.collector.as_ref().unwrap().reload().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let st = shard.statuses();
        assert_eq!(st.len(), 1, "only the assigned target after a reload");
        assert_eq!(st[0].target.id, t.id);

        // Handover: last slot included a little ahead, then nothing more,
        // and no staleness marker.
        // `stop_after` is exactly a slot of the target: that slot is the
        // last one scraped (included).
        let stop_after = promshard_collector::scrape::next_slot_ms(
            t.id,
            Duration::from_millis(INTERVAL_MS as u64),
            now_ms() + 1200,
        );
        coord
            .send(delta(
                2,
                1,
                vec![],
                vec![v1::TargetRemove {
                    target_id: t.id,
                    stop_after_unix_ms: stop_after,
                    handover: true,
                }],
            ))
            .await;
        let ack = coord.ack(T).await;
        assert!(ack.ok && ack.assignment_version == 2, "{ack:?}");
        assert!(
            wait_until(T, || shard.statuses().iter().all(|s| s.target.id != t.id)).await,
            "target gone from the collector"
        );
        let hits_then = fixture.hits().len();
        tokio::time::sleep(Duration::from_millis(3 * INTERVAL_MS as u64)).await;
        assert_eq!(
            fixture.hits().len(),
            hits_then,
            "no scrape after the handover"
        );
        let last_hit = *fixture.hits().last().unwrap();
        assert!(
            last_hit <= stop_after + 300,
            "last scrape {last_hit} after stop {stop_after}"
        );
        let up = capture.named("up");
        let last_ts = up
            .iter()
            .filter(|s| s.2 != STALE_NAN_BITS)
            .map(|s| s.1)
            .max()
            .unwrap();
        assert_eq!(
            last_ts, stop_after,
            "the last slot is the one at stop_after"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stale = capture
            .named("fx_a")
            .into_iter()
            .chain(capture.named("up"))
            .filter(|s| s.2 == STALE_NAN_BITS)
            .count();
        assert_eq!(stale, 0, "no staleness marker after a handover");

        // The next Hello-relevant view: no targets.
        shard.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_in_the_ack_and_the_agent_keeps_working() {
    bounded(async {
        let fixture = Fixture::start().await;
        let capture = Capture::start().await;
        let mut coord = FakeCoordinator::start("127.0.0.1:0".parse().unwrap(), None).await;
        let shard = Shard::start(&coord.url(), &capture, None).await;
        coord.accept(T).await;

        // An invalid job definition next to a good one.
        coord
            .send(jobs_msg(&[
                ("broken", "job_name: broken\nscrape_interval: [nope\n"),
                ("mismatch", "job_name: other\n"),
                (JOB, &job_yaml(JOB)),
            ]))
            .await;

        let good = target(JOB, fixture.addr);
        let of_broken = target("broken", fixture.addr);
        let unknown = target("nojob", fixture.addr);
        let mut wrong_id = target(JOB, fixture.addr);
        wrong_id.id ^= 1;
        let mut no_address = target(JOB, fixture.addr);
        no_address.labels.retain(|l| l.name != "__address__");
        no_address.id = promshard_promlib::labels::target_id(
            JOB,
            &promshard_promlib::labels::Labels::from_pairs(
                no_address
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone())),
            ),
        );
        let mut unsorted = target(JOB, fixture.addr);
        unsorted.labels.reverse();
        coord
            .send(delta(
                1,
                0,
                vec![
                    add(of_broken.clone()),
                    add(unknown.clone()),
                    add(wrong_id.clone()),
                    add(no_address.clone()),
                    add(unsorted.clone()),
                    v1::TargetAdd {
                        target: None,
                        start_at_unix_ms: 0,
                    },
                    add(good.clone()),
                ],
                vec![],
            ))
            .await;
        let ack = coord.ack(T).await;
        assert!(ack.ok, "the version is applied: {ack:?}");
        assert_eq!(ack.assignment_version, 1);
        let mut rejected = ack.rejected_target_ids.clone();
        rejected.sort_unstable();
        let mut want = vec![
            of_broken.id,
            unknown.id,
            wrong_id.id,
            no_address.id,
            unsorted.id,
            0,
        ];
        want.sort_unstable();
        assert_eq!(rejected, want, "{}", ack.error);
        assert!(
            ack.error.contains("\"nojob\" is not defined"),
            "{}",
            ack.error
        );
        assert!(
            ack.error.contains("\"broken\" is not in force"),
            "{}",
            ack.error
        );
        assert!(ack.error.contains("does not match"), "{}", ack.error);
        assert!(ack.error.contains("__address__"), "{}", ack.error);

        // A delta that does not follow the applied version: refused whole.
        coord.send(delta(5, 3, vec![], vec![])).await;
        let ack = coord.ack(T).await;
        assert!(!ack.ok);
        assert_eq!(ack.assignment_version, 5);
        assert!(
            ack.error.contains("send a full assignment"),
            "{}",
            ack.error
        );

        // Invalid global config: refused, the agent goes on.
        coord
            .send(v1::coordinator_message::Msg::Jobs(v1::JobDefinitions {
                jobs: vec![],
                removed_jobs: vec![],
                global_config_yaml: "global: [\n".to_string(),
            }))
            .await;
        // Ping still answered.
        coord
            .send(v1::coordinator_message::Msg::Ping(v1::Ping { unix_ms: 42 }))
            .await;
        loop {
            if let Some(v1::shard_message::Msg::Pong(p)) = coord.next(T).await.msg {
                assert_eq!(p.ping_unix_ms, 42);
                break;
            }
        }

        // The good target runs; a full assignment replaces everything.
        assert!(
            wait_until(T, || shard
                .statuses()
                .iter()
                .any(|s| s.target.id == good.id && s.health == Health::Up))
            .await
        );
        coord
            .send(v1::coordinator_message::Msg::Assignment(
                v1::AssignmentDelta {
                    version: 7,
                    base_version: 0,
                    full: true,
                    add: vec![],
                    remove: vec![],
                },
            ))
            .await;
        let ack = coord.ack(T).await;
        assert!(ack.ok && ack.assignment_version == 7, "{ack:?}");
        assert!(
            wait_until(T, || shard.statuses().is_empty()).await,
            "full assignment without the target drops it"
        );
        assert_eq!(shard.status.borrow().assignment_version, 7);
        assert!(shard.status.borrow().connected);
        shard.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_restart_reconnects_and_hello_lists_the_target_still_scraped() {
    bounded(async {
        let fixture = Fixture::start().await;
        let capture = Capture::start().await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let mut coord =
            FakeCoordinator::start("127.0.0.1:0".parse().unwrap(), Some("s3cret")).await;
        let shard = Shard::start(&coord.url(), &capture, Some(token)).await;
        coord.accept(T).await;
        let t = target(JOB, fixture.addr);
        coord.send(jobs_msg(&[(JOB, &job_yaml(JOB))])).await;
        coord.send(delta(1, 0, vec![add(t.clone())], vec![])).await;
        assert!(coord.ack(T).await.ok);
        assert!(wait_until(T, || fixture.hits().len() >= 2).await);

        // The coordinator dies; scraping goes on.
        let addr = coord.kill().await;
        assert!(
            wait_until(T, || !shard.status.borrow().connected).await,
            "the agent sees the coordinator gone"
        );
        let before = fixture.hits().len();
        tokio::time::sleep(Duration::from_millis(4 * INTERVAL_MS as u64)).await;
        assert!(
            fixture.hits().len() >= before + 3,
            "scraping goes on without a coordinator"
        );

        // It comes back on the same port: the agent says what it scrapes.
        let mut coord = FakeCoordinator::start(addr, Some("s3cret")).await;
        let hello = coord.accept(T).await;
        assert_eq!(hello.assignment_version, 1);
        assert_eq!(hello.targets, vec![t.clone()]);
        assert_eq!(
            hello.job_config_hashes.get(JOB).map(String::as_str),
            Some(&*format!("h-{}", job_yaml(JOB).len()))
        );
        assert!(wait_until(T, || shard.status.borrow().sessions >= 2).await);

        // No gap: consecutive `up` samples one interval apart throughout.
        assert!(wait_until(T, || capture.named("up").len() >= 10).await);
        let mut ts: Vec<i64> = capture.named("up").iter().map(|s| s.1).collect();
        ts.sort_unstable();
        ts.dedup();
        assert!(ts.len() >= 10, "{ts:?}");
        assert!(
            ts.windows(2).all(|w| w[1] - w[0] == INTERVAL_MS),
            "a gap in the scrapes: {ts:?}"
        );
        // The session works: a delta applies on top of version 1.
        coord.send(delta(2, 1, vec![], vec![])).await;
        let ack = coord.ack(T).await;
        assert!(ack.ok && ack.assignment_version == 2, "{ack:?}");
        shard.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_retried_without_touching_targets() {
    bounded(async {
        let capture = Capture::start().await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "wrong").unwrap();
        let mut coord = FakeCoordinator::start("127.0.0.1:0".parse().unwrap(), Some("right")).await;
        let shard = Shard::start(&coord.url(), &capture, Some(token.clone())).await;
        assert!(
            wait_until(T, || shard
                .status
                .borrow()
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("bad token")))
            .await,
            "the refusal is reported: {:?}",
            shard.status.borrow()
        );
        assert_eq!(shard.status.borrow().sessions, 0);
        // The token file is re-read at the next connect.
        std::fs::write(&token, "right").unwrap();
        let hello = coord.accept(T).await;
        assert_eq!(hello.shard_id, "s1");
        shard.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_coordinator_with_a_private_ca() {
    bounded(async {
        let capture = Capture::start().await;
        let (ca, cert, key) = pki();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        let mut coord = FakeCoordinator::start_with_tls(
            "127.0.0.1:0".parse().unwrap(),
            None,
            Some((cert, key)),
        )
        .await;
        let url = format!("https://{}", coord.addr);
        let shard = Shard::start_with(&url, &capture, |o| {
            o.tls.ca_file = Some(ca_file);
            o.tls.domain = Some("localhost".to_string());
        })
        .await;
        let hello = coord.accept(T).await;
        assert_eq!(hello.shard_id, "s1");
        coord
            .send(v1::coordinator_message::Msg::Ping(v1::Ping { unix_ms: 7 }))
            .await;
        loop {
            if let Some(v1::shard_message::Msg::Pong(p)) = coord.next(T).await.msg {
                assert_eq!(p.ping_unix_ms, 7);
                break;
            }
        }
        shard.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_moves_the_agent_to_the_leader() {
    bounded(async {
        let capture = Capture::start().await;
        let mut follower = FakeCoordinator::start("127.0.0.1:0".parse().unwrap(), None).await;
        let mut leader = FakeCoordinator::start("127.0.0.1:0".parse().unwrap(), None).await;
        let shard = Shard::start(&follower.url(), &capture, None).await;
        follower.accept(T).await;
        // Not an http(s) address: ignored, the session goes on.
        follower
            .send(v1::coordinator_message::Msg::Redirect(v1::Redirect {
                leader_address: "somewhere".to_string(),
            }))
            .await;
        follower
            .send(v1::coordinator_message::Msg::Redirect(v1::Redirect {
                leader_address: leader.url(),
            }))
            .await;
        let hello = leader.accept(T).await;
        assert_eq!(hello.shard_id, "s1");
        assert!(
            wait_until(T, || shard.status.borrow().coordinator == leader.url()).await,
            "{:?}",
            shard.status.borrow()
        );
        shard.stop().await;
    })
    .await;
}
