//! Session lifecycle of the shard hub over a real tonic server and real
//! tonic clients on 127.0.0.1: attach, reports, acks, deadlines, hung and
//! non-reading shards, garbage, duplicates, hub restart.

mod hub_support;

use std::time::{Duration, Instant};

use hub_support::*;
use promshard_coordinator::hub::{DetachReason, HubError, HubEvent, HubOptions};
use promshard_coordinator::model::ShardId;
use promshard_proto::v1::{
    Ack, AssignmentDelta, JobDefinition, JobDefinitions, Report, TargetAdd, TargetReport,
    coordinator_message, shard_message,
};

fn delta(version: u64) -> AssignmentDelta {
    AssignmentDelta {
        version,
        base_version: version - 1,
        full: false,
        add: vec![TargetAdd {
            target: Some(target(42, "node", "10.0.0.42:9100")),
            start_at_unix_ms: 1_700_000_000_000,
        }],
        remove: vec![],
    }
}

#[tokio::test]
async fn attach_report_and_acked_delta() {
    let mut hub = start_hub(fast_opts()).await;
    let sent_hello = hello("shard-0");
    let mut shard = attach(hub.addr, sent_hello.clone()).await;

    let HubEvent::Attached {
        shard: id,
        hello,
        session,
    } = hub.lifecycle_event().await
    else {
        panic!("first event must be Attached");
    };
    assert_eq!(id, ShardId::from("shard-0"));
    assert_eq!(hello, sent_hello);

    // Report -> Report event, and the snapshot's summary.
    let report = Report {
        targets: vec![TargetReport {
            target_id: 1,
            series: 1234,
            samples_per_scrape: 1234,
            scrape_duration_seconds: 0.02,
            health: 1,
            last_error: String::new(),
            last_scrape_unix_ms: 1,
            interval_seconds: 15.0,
        }],
        total_series: 1234,
        total_samples_per_second: 82.3,
        wal_backlog_bytes: 10,
        wal_backlog_samples: 2,
        unix_ms: 5,
    };
    shard.send(shard_message::Msg::Report(report.clone())).await;
    match hub.event().await {
        HubEvent::Report {
            shard: s,
            session: sess,
            report: r,
        } => {
            assert_eq!(s.0, "shard-0");
            assert_eq!(sess, session);
            assert_eq!(r, report);
        }
        other => panic!("expected Report, got {other:?}"),
    }
    let snap = hub
        .hub
        .shard(&"shard-0".into())
        .expect("snapshot of shard-0");
    assert_eq!(snap.session, session);
    assert_eq!(
        snap.acked_version, 7,
        "initial acked version comes from the Hello"
    );
    assert_eq!(snap.backend, "BACKEND_KIND_NATIVE");
    assert_eq!(snap.hello_targets, 2);
    assert!(
        snap.peer
            .as_deref()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{:?}",
        snap.peer
    );
    assert!(snap.healthy);
    assert_eq!(
        snap.last_report.as_ref().map(|r| r.total_series),
        Some(1234)
    );

    // Job definitions arrive as sent.
    let jobs = JobDefinitions {
        jobs: vec![JobDefinition {
            job_name: "node".into(),
            config_hash: "h1".into(),
            scrape_config_yaml: "job_name: node\n".into(),
        }],
        removed_jobs: vec![],
        global_config_yaml: String::new(),
    };
    hub.hub
        .send_jobs(&"shard-0".into(), jobs.clone())
        .await
        .unwrap();
    match shard.next_non_ping().await.unwrap() {
        Some(m) => assert_eq!(m.msg, Some(coordinator_message::Msg::Jobs(jobs))),
        None => panic!("stream ended"),
    }

    // send_delta -> the shard acks ok -> AckOutcome ok.
    let h = hub.hub.clone();
    let pending = tokio::spawn(async move { h.send_delta(&"shard-0".into(), delta(8)).await });
    let got = shard.next_non_ping().await.unwrap().expect("a message");
    assert_eq!(
        got.msg,
        Some(coordinator_message::Msg::Assignment(delta(8)))
    );
    shard
        .send(shard_message::Msg::Ack(Ack {
            assignment_version: 8,
            ok: true,
            ..Default::default()
        }))
        .await;
    let outcome = pending.await.unwrap().expect("acked");
    assert!(outcome.fully_applied(), "{outcome:?}");
    assert_eq!(outcome.version, 8);

    // An Ack with ok=false and rejected targets is returned as such.
    let h = hub.hub.clone();
    let pending = tokio::spawn(async move { h.send_delta(&"shard-0".into(), delta(9)).await });
    shard.next_non_ping().await.unwrap().expect("a message");
    shard
        .send(shard_message::Msg::Ack(Ack {
            assignment_version: 9,
            ok: false,
            error: "target 42: bad scheme".into(),
            rejected_target_ids: vec![42],
        }))
        .await;
    let outcome = pending.await.unwrap().expect("answered");
    assert!(!outcome.ok);
    assert_eq!(outcome.rejected_target_ids, vec![42]);
    assert_eq!(outcome.error, "target 42: bad scheme");

    // A second Hello and an empty message are counted and ignored.
    shard
        .send(shard_message::Msg::Hello(hub_support::hello(
            "shard-0-renamed",
        )))
        .await;
    shard
        .tx
        .send(promshard_proto::v1::ShardMessage { msg: None })
        .await
        .unwrap();
    // An Ack nobody waits for is counted, not fatal.
    shard
        .send(shard_message::Msg::Ack(Ack {
            assignment_version: 1234,
            ok: true,
            ..Default::default()
        }))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = hub.hub.stats();
    assert_eq!(st.acks.ok, 1);
    assert_eq!(st.acks.failed, 1);
    assert_eq!(st.acks.unexpected, 1);
    assert_eq!(st.anomalies.hello_after_hello, 1);
    assert_eq!(st.messages_in.empty, 1);
    assert!(hub.hub.shard(&"shard-0-renamed".into()).is_none());
    assert_eq!(st.attached, 1);
    assert_eq!(
        st.messages_in.hello, 2,
        "the first Hello and the ignored second one"
    );
    assert_eq!(st.messages_in.report, 1);
    assert_eq!(st.messages_out.jobs, 1);
    assert_eq!(st.messages_out.assignment, 2);
    assert_eq!(
        hub.hub.shard(&"shard-0".into()).unwrap().acked_version,
        1234
    );
    assert!(hub.hub.shard(&"shard-0".into()).unwrap().healthy);

    // Closing the shard's side -> Detached(closed).
    drop(shard);
    match hub.lifecycle_event().await {
        HubEvent::Detached {
            shard: s, reason, ..
        } => {
            assert_eq!(s.0, "shard-0");
            assert!(
                matches!(reason, DetachReason::Closed | DetachReason::StreamError(_)),
                "{reason}"
            );
        }
        other => panic!("expected Detached, got {other:?}"),
    }
    assert!(hub.hub.shards().is_empty());
    hub.stop().await;
}

#[tokio::test]
async fn hung_shard_times_out_while_another_acks_promptly() {
    let opts = HubOptions {
        ack_timeout: Duration::from_millis(1500),
        ..fast_opts() // failure_timeout 30 s
    };
    let ack_timeout = opts.ack_timeout;
    let mut hub = start_hub(opts).await;
    // The hung shard reads nothing and acks nothing (it stays alive: the
    // failure timeout is long).
    let _hung = attach(hub.addr, hello("hung")).await;
    expect_attached(&mut hub, "hung").await;
    let good = attach(hub.addr, hello("good")).await;
    expect_attached(&mut hub, "good").await;
    let _responder = good.spawn_responder();

    let h = hub.hub.clone();
    let started = Instant::now();
    let hung_send = tokio::spawn(async move {
        let r = h.send_delta(&"hung".into(), delta(8)).await;
        (r, started.elapsed())
    });
    // While the hung shard's send waits, the other shard's completes promptly.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = Instant::now();
    let good_outcome = hub
        .hub
        .send_delta(&"good".into(), delta(8))
        .await
        .expect("good acks");
    let good_took = t.elapsed();
    assert!(good_outcome.fully_applied());
    assert!(
        good_took < ack_timeout / 2,
        "the responsive shard waited {good_took:?} (stalled by the hung one?)"
    );
    assert!(!hung_send.is_finished(), "the hung send is still waiting");

    let (r, took) = hung_send.await.unwrap();
    match r {
        Err(HubError::Timeout { shard, version, .. }) => {
            assert_eq!(shard.0, "hung");
            assert_eq!(version, 8);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(took >= ack_timeout, "timed out early: {took:?}");
    assert!(
        took < ack_timeout + Duration::from_secs(1),
        "timed out late: {took:?}"
    );
    assert_eq!(hub.hub.stats().acks.timeout, 1);
    // A late Ack is harmless, and the version can be sent again.
    assert!(hub.hub.shard(&"hung".into()).is_some());
    hub.stop().await;
}

#[tokio::test]
async fn silent_non_reading_shard_is_detached_after_failure_timeout() {
    let failure_timeout = Duration::from_millis(700);
    let opts = HubOptions {
        ping_interval: Duration::from_millis(50),
        failure_timeout,
        ..fast_opts()
    };
    let mut hub = start_hub(opts).await;
    // Never polls its inbound stream, never sends after the Hello.
    let silent = attach(hub.addr, hello("silent")).await;
    let attached_at = Instant::now();
    expect_attached(&mut hub, "silent").await;
    let alive = attach(hub.addr, hello("alive")).await;
    expect_attached(&mut hub, "alive").await;
    let _responder = alive.spawn_responder();

    let reason = match hub.lifecycle_event().await {
        HubEvent::Detached { shard, reason, .. } => {
            assert_eq!(shard.0, "silent", "only the silent shard is detached");
            reason
        }
        other => panic!("unexpected {other:?}"),
    };
    let took = attached_at.elapsed();
    assert_eq!(reason, DetachReason::FailureTimeout(failure_timeout));
    assert!(took >= failure_timeout, "detached early: {took:?}");
    assert!(
        took < failure_timeout + Duration::from_secs(1),
        "detached late: {took:?}"
    );

    // The hub keeps serving the other shard.
    let out = hub.hub.send_delta(&"alive".into(), delta(8)).await.unwrap();
    assert!(out.fully_applied());
    let shards = hub.hub.shards();
    assert_eq!(shards.len(), 1);
    assert_eq!(shards[0].shard.0, "alive");
    assert!(shards[0].healthy, "pongs keep it healthy");
    assert!(shards[0].last_ping_rtt.is_some());
    assert_eq!(hub.hub.stats().detaches.failure_timeout, 1);
    assert!(matches!(
        hub.hub.send_delta(&"silent".into(), delta(8)).await,
        Err(HubError::NotAttached(_))
    ));
    // Its connection was closed by the hub.
    let mut silent = silent;
    let end = tokio::time::timeout(BOUND, async {
        loop {
            match silent.inbound.message().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("the silent peer's stream ends");
    assert!(end.is_err(), "{end:?}");
    hub.stop().await;
}

#[tokio::test]
async fn non_reading_shard_is_detached_when_its_queue_fills() {
    let opts = HubOptions {
        session_queue: 8,
        ping_interval: Duration::from_secs(60),
        ..fast_opts()
    };
    let mut hub = start_hub(opts).await;
    let mut stuck = attach(hub.addr, hello("stuck")).await; // never reads (until the end)
    expect_attached(&mut hub, "stuck").await;
    let good = attach(hub.addr, hello("good")).await;
    expect_attached(&mut hub, "good").await;
    let _responder = good.spawn_responder();

    let big = JobDefinitions {
        jobs: vec![JobDefinition {
            job_name: "big".into(),
            config_hash: "h".into(),
            scrape_config_yaml: "x".repeat(256 << 10),
        }],
        ..Default::default()
    };
    let mut result = Ok(());
    let mut sent = 0;
    for _ in 0..2000 {
        result = hub.hub.send_jobs(&"stuck".into(), big.clone()).await;
        if result.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        matches!(result, Err(HubError::QueueFull { capacity: 8, .. })),
        "after {sent} sends: {result:?}"
    );
    match hub.lifecycle_event().await {
        HubEvent::Detached { shard, reason, .. } => {
            assert_eq!(shard.0, "stuck");
            assert_eq!(reason, DetachReason::QueueFull);
        }
        other => panic!("unexpected {other:?}"),
    }
    // The stuck peer's connection was closed: reading now drains what was
    // buffered, then fails.
    let mut drained = 0;
    let end = loop {
        match tokio::time::timeout(BOUND, stuck.inbound.message()).await {
            Ok(Ok(Some(_))) => drained += 1,
            Ok(other) => break other,
            Err(_) => panic!("the stuck peer's stream did not end (drained {drained})"),
        }
    };
    // A transport error, not the ResourceExhausted trailers (those could
    // only arrive if the hub had kept the stuck stream open).
    let status = end.expect_err("the stuck stream ends with an error");
    assert_ne!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_ne!(status.code(), tonic::Code::Ok, "{status:?}");
    // The other shard is unaffected.
    let t = Instant::now();
    assert!(
        hub.hub
            .send_delta(&"good".into(), delta(8))
            .await
            .unwrap()
            .fully_applied()
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(hub.hub.stats().detaches.queue_full, 1);
    eprintln!("queue full after {sent} x 256 KiB JobDefinitions");
    // The stuck peer still holds its connection (it never reads): shutdown
    // closes it after the grace instead of waiting forever.
    let took = hub.stop().await;
    assert!(
        took < Duration::from_millis(500 + 1000),
        "shutdown took {took:?}"
    );
}

#[tokio::test]
async fn garbage_first_messages_are_refused_with_invalid_argument() {
    let mut hub = start_hub(fast_opts()).await;

    let err = attach_with(
        hub.addr,
        Some(shard_message::Msg::Report(Report::default())),
        None,
    )
    .await
    .err()
    .expect("Report before Hello refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("must be Hello, got Report"),
        "{}",
        err.message()
    );

    let err = attach_with(hub.addr, Some(shard_message::Msg::Hello(hello(""))), None)
        .await
        .err()
        .expect("empty shard id refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("shard_id is empty"),
        "{}",
        err.message()
    );

    let err = attach_with(
        hub.addr,
        Some(shard_message::Msg::Hello(hello("bad\nid"))),
        None,
    )
    .await
    .err()
    .expect("control character refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("shard_id contains"),
        "{}",
        err.message()
    );

    let err = attach_with(
        hub.addr,
        Some(shard_message::Msg::Hello(hello(&"x".repeat(300)))),
        None,
    )
    .await
    .err()
    .expect("overlong id refused");
    assert!(err.message().contains("300 bytes"), "{}", err.message());

    // Nothing attached, the hub serves a good shard afterwards.
    assert!(hub.hub.shards().is_empty());
    let _ok = attach(hub.addr, hello("fine")).await;
    expect_attached(&mut hub, "fine").await;
    let st = hub.hub.stats();
    assert_eq!(st.rejections.invalid_hello, 4);
    assert_eq!(st.attached, 1);
    hub.stop().await;
}

#[tokio::test]
async fn hello_that_never_comes_is_refused_after_hello_timeout() {
    let opts = HubOptions {
        hello_timeout: Duration::from_millis(300),
        ..fast_opts()
    };
    let hub = start_hub(opts).await;
    let t = Instant::now();
    let err = attach_with(hub.addr, None, None)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(hub.hub.stats().rejections.hello_timeout, 1);
    hub.stop().await;
}

#[tokio::test]
async fn oversize_message_ends_that_session_only() {
    let opts = HubOptions {
        max_message_bytes: 64 << 10,
        ..fast_opts()
    };
    let mut hub = start_hub(opts).await;
    let big = attach(hub.addr, hello("big")).await;
    expect_attached(&mut hub, "big").await;
    let other = attach(hub.addr, hello("other")).await;
    expect_attached(&mut hub, "other").await;
    let _responder = other.spawn_responder();

    let report = Report {
        targets: (0..5000)
            .map(|i| TargetReport {
                target_id: i,
                last_error: "e".repeat(20),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    big.send(shard_message::Msg::Report(report)).await;
    match hub.lifecycle_event().await {
        HubEvent::Detached { shard, reason, .. } => {
            assert_eq!(shard.0, "big");
            assert!(matches!(reason, DetachReason::ProtocolError(_)), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(hub.hub.stats().anomalies.oversize, 1);
    assert!(
        hub.hub
            .send_delta(&"other".into(), delta(8))
            .await
            .unwrap()
            .fully_applied()
    );
    // Too large outbound messages are refused before sending.
    let huge = JobDefinitions {
        jobs: vec![JobDefinition {
            scrape_config_yaml: "y".repeat(70 << 10),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(matches!(
        hub.hub.send_jobs(&"other".into(), huge).await,
        Err(HubError::TooLarge { .. })
    ));
    hub.stop().await;
}

#[tokio::test]
async fn duplicate_shard_id_replaces_the_older_session() {
    let mut hub = start_hub(fast_opts()).await;
    let mut first = attach(hub.addr, hello("dup")).await;
    let HubEvent::Attached { session: s1, .. } = expect_attached(&mut hub, "dup").await else {
        unreachable!()
    };
    let second = attach(hub.addr, hello("dup")).await;
    match hub.lifecycle_event().await {
        HubEvent::Detached {
            shard,
            session,
            reason,
        } => {
            assert_eq!(shard.0, "dup");
            assert_eq!(session, s1);
            assert_eq!(reason, DetachReason::Replaced);
            assert_eq!(reason.to_string(), "replaced");
        }
        other => panic!("expected Detached(replaced) first, got {other:?}"),
    }
    let HubEvent::Attached { session: s2, .. } = hub.lifecycle_event().await else {
        panic!("expected Attached of the new session")
    };
    assert_ne!(s1, s2);
    // The old stream ends with a status that says so.
    let status = loop {
        match first.next_non_ping().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("old stream ended without a status"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert!(
        status.message().contains("replaced"),
        "{}",
        status.message()
    );

    let shards = hub.hub.shards();
    assert_eq!(shards.len(), 1);
    assert_eq!(shards[0].session, s2);
    let _responder = second.spawn_responder();
    assert!(
        hub.hub
            .send_delta(&"dup".into(), delta(8))
            .await
            .unwrap()
            .fully_applied()
    );
    assert_eq!(hub.hub.stats().detaches.replaced, 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_restarted_hub_receives_the_hello_with_targets_intact() {
    let mut hub1 = start_hub(fast_opts()).await;
    let sent = hello("shard-7");
    let mut shard = attach(hub1.addr, sent.clone()).await;
    expect_attached(&mut hub1, "shard-7").await;
    hub1.stop().await; // shutdown detaches every session, serve returns
    let status = loop {
        match shard.next_non_ping().await {
            Ok(Some(_)) => continue,
            Ok(None) => break None,
            Err(s) => break Some(s),
        }
    };
    if let Some(s) = status {
        assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
    }

    // A new hub (the restarted coordinator): the shard reconnects and says
    // what it scrapes.
    let mut hub2 = start_hub(fast_opts()).await;
    let mut again = sent.clone();
    again
        .targets
        .push(target(u64::MAX, "other-job", "[::1]:8080"));
    again.assignment_version = 8;
    let _shard = attach(hub2.addr, again.clone()).await;
    let HubEvent::Attached { hello, .. } = expect_attached(&mut hub2, "shard-7").await else {
        unreachable!()
    };
    assert_eq!(hello, again);
    assert_eq!(hello.targets.len(), 3);
    assert_eq!(hub2.hub.shard(&"shard-7".into()).unwrap().acked_version, 8);
    hub2.stop().await;
}

#[tokio::test]
async fn a_pending_send_fails_with_detached_when_the_shard_goes_away() {
    let opts = HubOptions {
        ack_timeout: Duration::from_secs(5),
        ..fast_opts()
    };
    let mut hub = start_hub(opts).await;
    let mut shard = attach(hub.addr, hello("leaver")).await;
    expect_attached(&mut hub, "leaver").await;
    let h = hub.hub.clone();
    let pending = tokio::spawn(async move { h.send_delta(&"leaver".into(), delta(8)).await });
    shard
        .next_non_ping()
        .await
        .unwrap()
        .expect("the delta arrives");
    // The same version cannot wait twice.
    assert!(matches!(
        hub.hub.send_delta(&"leaver".into(), delta(8)).await,
        Err(HubError::VersionInFlight { version: 8, .. })
    ));
    let t = Instant::now();
    drop(shard);
    match pending.await.unwrap() {
        Err(HubError::Detached {
            version, reason, ..
        }) => {
            assert_eq!(version, 8);
            assert!(
                matches!(reason, DetachReason::Closed | DetachReason::StreamError(_)),
                "{reason}"
            );
        }
        other => panic!("expected Detached, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    hub.stop().await;
}
