//! Remote write against an in-test loopback receiver: wire format,
//! relabeling, retry policy, outages, backpressure, shutdown.

mod remote_common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use promshard_collector::remote::{QueueOptions, RemoteWriteQueue, Undelivered};
use promshard_collector::series::{AppendBatch, Metadata, stale_marker};
use remote_common::*;

const T0: i64 = 1_700_000_000_000;
const WAIT: Duration = Duration::from_secs(20);

fn opts() -> QueueOptions {
    QueueOptions::default()
}

/// Series 1 (`m`) defined, with one sample at T0.
fn one_sample() -> AppendBatch {
    batch(vec![def(1, &[("__name__", "m")])], vec![sample(1, T0, 1.0)])
}

async fn wait_delivered(q: &RemoteWriteQueue, pos: u64) {
    let mut rx = q.delivered();
    tokio::time::timeout(WAIT, rx.wait_for(|d| *d >= pos))
        .await
        .unwrap_or_else(|_| panic!("delivered position never reached {pos}"))
        .expect("queue alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_encoding_and_labels_are_correct() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(
        &r.url(),
        "",
        "    headers:\n      X-Scope-OrgID: tenant-1\n    basic_auth:\n      username: u\n      password: p\n",
    );
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    q.push(
        1,
        batch(
            vec![
                def(
                    1,
                    &[
                        ("zeta", "z"),
                        ("__name__", "m1"),
                        ("alpha", "a"),
                        ("empty", ""),
                    ],
                ),
                def(2, &[("__name__", "m2"), ("job", "j")]),
            ],
            vec![
                sample(1, T0, 1.0),
                sample(2, T0, 2.0),
                sample(1, T0 + 1000, 3.0),
            ],
        ),
    )
    .await
    .unwrap();
    wait_delivered(&q, 1).await;
    let got = r.accepted();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.header("content-encoding"), Some("snappy"));
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(
        req.header("x-prometheus-remote-write-version"),
        Some("0.1.0")
    );
    assert_eq!(
        req.header("user-agent"),
        Some(format!("promshard/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(req.header("x-scope-orgid"), Some("tenant-1"));
    assert_eq!(req.header("authorization"), Some("Basic dTpw"));
    assert_eq!(req.request.timeseries.len(), 2);
    for ts in &req.request.timeseries {
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "labels sorted by name, no repeats");
        assert!(names.contains(&"__name__"));
        assert!(
            ts.labels.iter().all(|l| !l.value.is_empty()),
            "no empty values"
        );
        let t: Vec<i64> = ts.samples.iter().map(|s| s.timestamp).collect();
        assert!(t.windows(2).all(|w| w[0] < w[1]));
    }
    let m1 = &req.request.timeseries[0];
    let names: Vec<&str> = m1.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, vec!["__name__", "alpha", "zeta"]);
    assert_eq!(m1.samples.len(), 2);
    let stats = q.stats();
    assert_eq!(stats.samples_sent.load(Relaxed), 3);
    assert_eq!(stats.highest_sent_timestamp_ms.load(Relaxed), T0 + 1000);
    assert!(stats.bytes_sent.load(Relaxed) > 0);
    assert_eq!(stats.pending_samples.load(Relaxed), 0);
    let u = q.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        u,
        Undelivered {
            samples: 0,
            delivered_position: 1
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_series_is_kept_across_shards() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(
        &r.url(),
        "      min_shards: 4\n      max_shards: 4\n      max_samples_per_send: 7\n      capacity: 50\n",
        "",
    );
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    let series = 20u64;
    let steps = 50i64;
    let defs = (0..series)
        .map(|s| def(s, &[("__name__", "ordered"), ("s", &s.to_string())]))
        .collect();
    q.push(1, batch(defs, vec![])).await.unwrap();
    for t in 0..steps {
        let samples = (0..series)
            .map(|s| sample(s, T0 + t * 1000, t as f64))
            .collect();
        q.push(2 + t as u64, batch(vec![], samples)).await.unwrap();
    }
    wait_delivered(&q, 1 + steps as u64).await;
    assert_eq!(q.stats().current_shards.load(Relaxed), 4);
    let mut per_series: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (name, ts, _) in accepted_samples(&r) {
        per_series.entry(name).or_default().push(ts);
    }
    assert_eq!(per_series.len(), series as usize);
    let want: Vec<i64> = (0..steps).map(|t| T0 + t * 1000).collect();
    for (name, ts) in per_series {
        assert_eq!(ts, want, "series {name}: every sample once, in order");
    }
    assert!(r.accepted().len() >= (series as usize * steps as usize) / 7);
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_relabel_configs_apply_and_drops_are_counted() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(
        &r.url(),
        "",
        concat!(
            "    write_relabel_configs:\n",
            "      - source_labels: [__name__]\n        regex: drop_me\n        action: drop\n",
            "      - source_labels: [env]\n        regex: prod|dev\n        action: keep\n",
            "      - source_labels: [env]\n        target_label: stage\n        replacement: s-$1\n",
        ),
    );
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    q.push(
        1,
        batch(
            vec![
                def(1, &[("__name__", "kept"), ("env", "prod")]),
                def(2, &[("__name__", "drop_me"), ("env", "prod")]),
                def(3, &[("__name__", "other"), ("env", "test")]),
            ],
            vec![
                sample(1, T0, 1.0),
                sample(2, T0, 2.0),
                sample(3, T0, 3.0),
                sample(2, T0 + 1, 2.0),
                sample(9, T0, 9.0), // never defined
            ],
        ),
    )
    .await
    .unwrap();
    wait_delivered(&q, 1).await;
    let got = accepted_samples(&r);
    assert_eq!(
        got,
        vec![(
            "__name__=kept,env=prod,stage=s-prod".to_string(),
            T0,
            1f64.to_bits()
        )]
    );
    let stats = q.stats();
    assert_eq!(stats.dropped_relabel.load(Relaxed), 3);
    assert_eq!(stats.dropped_unknown_series.load(Relaxed), 1);
    assert_eq!(stats.samples_sent.load(Relaxed), 1);
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_500_then_204_resends_the_same_data() {
    let r = Receiver::start().await;
    r.script([Reply::status(500)]);
    let dir = tempfile::tempdir().unwrap();
    // A long first backoff leaves time to look at the delivered position.
    let cfg = remote_config(&r.url(), "", "");
    let mut cfg = cfg;
    cfg.queue_config.min_backoff = promshard_promlib::duration::Duration::from_millis(1500);
    cfg.queue_config.max_backoff = promshard_promlib::duration::Duration::from_millis(3000);
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    q.push(
        7,
        batch(
            vec![def(1, &[("__name__", "m")])],
            vec![sample(1, T0, 1.0), sample(1, T0 + 1, 2.0)],
        ),
    )
    .await
    .unwrap();
    wait_until(WAIT, "first attempt", || r.received().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*q.delivered().borrow(), 0, "not delivered before the 204");
    wait_delivered(&q, 7).await;
    let all = r.received();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].status, 500);
    assert_eq!(all[1].status, 204);
    assert_eq!(all[0].request, all[1].request, "the same data is resent");
    let stats = q.stats();
    assert_eq!(stats.samples_retried.load(Relaxed), 2);
    assert_eq!(stats.samples_sent.load(Relaxed), 2);
    assert_eq!(stats.failed_requests.load(Relaxed), 1);
    assert_eq!(stats.dropped_total(), 0);
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_400_is_dropped_counted_and_not_retried() {
    let r = Receiver::start().await;
    r.script([Reply::status(400)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(&r.url(), "", "");
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    let samples = (0..3).map(|i| sample(1, T0 + i, 1.0)).collect();
    q.push(3, batch(vec![def(1, &[("__name__", "m")])], samples))
        .await
        .unwrap();
    wait_delivered(&q, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(r.received().len(), 1, "a 400 is never retried");
    let stats = q.stats();
    assert_eq!(stats.dropped_client_error.load(Relaxed), 3);
    assert_eq!(stats.samples_sent.load(Relaxed), 0);
    assert_eq!(stats.samples_retried.load(Relaxed), 0);
    // The queue keeps working after a rejected batch.
    q.push(4, batch(vec![], vec![sample(1, T0 + 10, 2.0)]))
        .await
        .unwrap();
    wait_delivered(&q, 4).await;
    assert_eq!(r.accepted().len(), 1);
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_429_waits_for_retry_after() {
    let r = Receiver::start().await;
    r.script([Reply {
        retry_after: Some("2".to_string()),
        ..Reply::status(429)
    }]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(&r.url(), "", "");
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    q.push(1, one_sample()).await.unwrap();
    wait_delivered(&q, 1).await;
    let all = r.received();
    assert_eq!(all.len(), 2);
    let gap = all[1].at - all[0].at;
    assert!(
        gap >= Duration::from_millis(1500),
        "retried after {gap:?}, not Retry-After: 2"
    );
    assert!(gap < Duration::from_secs(5), "waited {gap:?}");
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_followed_with_the_same_body() {
    // The plain-HTTP fast path hands a redirect to the general client,
    // which follows it (follow_redirects defaults to true).
    let r = Receiver::start().await;
    let moved = Reply {
        location: Some(format!("{}?moved=1", r.url())),
        ..Reply::status(307)
    };
    r.script([moved.clone(), moved]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(&r.url(), "", "");
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    q.push(1, one_sample()).await.unwrap();
    wait_delivered(&q, 1).await;
    let all = r.received();
    let statuses: Vec<u16> = all.iter().map(|x| x.status).collect();
    assert_eq!(statuses, [307, 307, 204]);
    assert!(all.iter().all(|x| x.request == all[0].request));
    let stats = q.stats();
    assert_eq!(stats.failed_requests.load(Relaxed), 0);
    assert_eq!(stats.samples_sent.load(Relaxed), 1);
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_then_back_gets_everything_once() {
    let mut r = Receiver::start().await;
    r.stop();
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(&r.url(), "      min_shards: 2\n      max_shards: 2\n", "");
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    let defs = (0..5)
        .map(|s| def(s, &[("__name__", "outage"), ("s", &s.to_string())]))
        .collect();
    q.push(1, batch(defs, vec![])).await.unwrap();
    for t in 0..10i64 {
        let samples = (0..5).map(|s| sample(s, T0 + t, t as f64)).collect();
        q.push(2 + t as u64, batch(vec![], samples)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        *q.delivered().borrow(),
        1,
        "only the series-only batch is delivered while down"
    );
    assert!(q.stats().failed_requests.load(Relaxed) > 0);
    r.restart().await;
    wait_delivered(&q, 11).await;
    let got = accepted_samples(&r);
    let unique: HashSet<_> = got.iter().cloned().collect();
    assert_eq!(got.len(), 50, "every sample arrives");
    assert_eq!(unique.len(), 50, "no duplicates");
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_marker_and_ordinary_nan_keep_their_bits() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(&r.url(), "", "");
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    q.push(
        1,
        batch(
            vec![def(1, &[("__name__", "m")])],
            vec![sample(1, T0, f64::NAN), sample(1, T0 + 1, stale_marker())],
        ),
    )
    .await
    .unwrap();
    wait_delivered(&q, 1).await;
    let bits: Vec<u64> = accepted_samples(&r)
        .into_iter()
        .map(|(_, _, b)| b)
        .collect();
    assert_eq!(
        bits,
        vec![f64::NAN.to_bits(), promshard_proto::STALE_NAN_BITS]
    );
    assert_ne!(f64::NAN.to_bits(), promshard_proto::STALE_NAN_BITS);
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_blocks_when_capacity_is_full() {
    let r = Receiver::start().await;
    r.set_default_delay(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(
        &r.url(),
        "      capacity: 5\n      max_samples_per_send: 5\n      min_shards: 1\n      max_shards: 1\n",
        "",
    );
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    q.push(1, batch(vec![def(1, &[("__name__", "m")])], vec![]))
        .await
        .unwrap();
    let mut pushed = 0u64;
    let mut blocked = false;
    for i in 0..50u64 {
        let samples = (0..5)
            .map(|j| sample(1, T0 + (i * 5 + j) as i64, 1.0))
            .collect();
        match tokio::time::timeout(
            Duration::from_millis(300),
            q.push(2 + i, batch(vec![], samples)),
        )
        .await
        {
            Ok(res) => {
                res.unwrap();
                pushed += 1;
            }
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(blocked, "push never blocked ({pushed} batches taken)");
    // One batch in flight, `capacity` queued in the shard, one batch held
    // by the dispatcher, one in the input channel.
    let pending = q.stats().pending_samples.load(Relaxed);
    assert!(
        pending <= 20,
        "pending {pending} samples: memory not bounded"
    );
    assert!(pushed <= 4, "{pushed} batches taken before blocking");
    r.set_default_delay(Duration::ZERO);
    let u = q.shutdown(Duration::from_secs(15)).await;
    // The blocked push was cancelled by the timeout: its samples never
    // entered the queue.
    assert_eq!(u.samples, 0);
    assert_eq!(u.delivered_position, 1 + pushed);
    assert_eq!(accepted_samples(&r).len() as u64, pushed * 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_what_is_queued() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A long deadline: the samples would sit in the shard for a minute.
    let mut cfg = remote_config(&r.url(), "", "");
    cfg.queue_config.batch_send_deadline = promshard_promlib::duration::Duration::from_secs(60);
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    let samples = (0..10).map(|i| sample(1, T0 + i, 1.0)).collect();
    q.push(5, batch(vec![def(1, &[("__name__", "m")])], samples))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(r.received().is_empty(), "batch held until its deadline");
    let start = Instant::now();
    let u = q.shutdown(Duration::from_secs(5)).await;
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(
        u,
        Undelivered {
            samples: 0,
            delivered_position: 5
        }
    );
    assert_eq!(accepted_samples(&r).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_what_it_could_not_deliver() {
    let r = Receiver::start().await;
    r.script((0..1000).map(|_| Reply::status(503)));
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(&r.url(), "", "");
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    q.push(1, one_sample()).await.unwrap();
    q.push(
        2,
        batch(vec![], vec![sample(1, T0 + 1, 1.0), sample(1, T0 + 2, 1.0)]),
    )
    .await
    .unwrap();
    wait_until(WAIT, "a failed attempt", || !r.received().is_empty()).await;
    let start = Instant::now();
    let u = q.shutdown(Duration::from_millis(500)).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_eq!(
        u,
        Undelivered {
            samples: 3,
            delivered_position: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_sent_in_its_own_requests() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(
        &r.url(),
        "",
        "    metadata_config:\n      send_interval: 200ms\n",
    );
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    let mut b = batch(
        vec![def(1, &[("__name__", "reqs_total")])],
        vec![sample(1, T0, 1.0)],
    );
    b.metadata.push(Metadata {
        metric_family_name: "reqs".to_string(),
        kind: "counter".to_string(),
        help: "Requests.".to_string(),
        unit: String::new(),
    });
    q.push(1, b).await.unwrap();
    wait_until(WAIT, "a metadata request", || {
        r.accepted().iter().any(|x| !x.request.metadata.is_empty())
    })
    .await;
    for req in r.accepted() {
        assert!(
            req.request.metadata.is_empty() || req.request.timeseries.is_empty(),
            "metadata and samples travel in separate requests"
        );
    }
    let md = r
        .accepted()
        .into_iter()
        .find(|x| !x.request.metadata.is_empty())
        .unwrap();
    let m = &md.request.metadata[0];
    assert_eq!(m.metric_family_name, "reqs");
    assert_eq!(m.help, "Requests.");
    assert_eq!(m.r#type, 1, "COUNTER");
    assert!(q.stats().metadata_sent.load(Relaxed) >= 1);
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_grow_with_backlog() {
    let r = Receiver::start().await;
    r.set_default_delay(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(
        &r.url(),
        "      min_shards: 1\n      max_shards: 4\n      max_samples_per_send: 10\n      capacity: 1000\n",
        "",
    );
    let mut q = RemoteWriteQueue::start(
        &cfg,
        dir.path(),
        QueueOptions {
            reshard_interval: Duration::from_millis(200),
            ..opts()
        },
    )
    .unwrap();
    let defs = (0..10)
        .map(|s| def(s, &[("__name__", "grow"), ("s", &s.to_string())]))
        .collect();
    q.push(1, batch(defs, vec![])).await.unwrap();
    for t in 0..30i64 {
        let samples = (0..10).map(|s| sample(s, T0 + t, 1.0)).collect();
        q.push(2 + t as u64, batch(vec![], samples)).await.unwrap();
    }
    let stats = q.stats();
    let t = Instant::now();
    wait_until(WAIT, "more shards", || {
        stats.current_shards.load(Relaxed) > 1
    })
    .await;
    assert!(
        stats.pending_samples.load(Relaxed) > 100,
        "grew only after the backlog was sent ({:?})",
        t.elapsed()
    );
    r.set_default_delay(Duration::ZERO);
    wait_delivered(&q, 31).await;
    let mut per_series: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (name, ts, _) in accepted_samples(&r) {
        per_series.entry(name).or_default().push(ts);
    }
    let want: Vec<i64> = (0..30).map(|t| T0 + t).collect();
    for (name, ts) in per_series {
        assert_eq!(ts, want, "series {name} across a reshard");
    }
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_must_increase() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(&r.url(), "", "");
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    q.push(2, batch(vec![], vec![])).await.unwrap();
    assert!(q.push(2, batch(vec![], vec![])).await.is_err());
    assert!(q.push(1, batch(vec![], vec![])).await.is_err());
    wait_delivered(&q, 2).await;
    q.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bad_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = remote_config("http://127.0.0.1:9/api/v1/write", "", "");
    cfg.sigv4 = Some(Default::default());
    let err = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap_err();
    assert!(err.to_string().contains("sigv4"), "{err}");
    let mut cfg = remote_config("http://127.0.0.1:9/api/v1/write", "", "");
    cfg.queue_config.min_shards = 3;
    cfg.queue_config.max_shards = 2;
    let err = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap_err();
    assert!(err.to_string().contains("min_shards"), "{err}");
}

/// Queue position of `offset` in WAL segment `segment`.
fn wal_position(segment: u64, offset: u64) -> u64 {
    segment << promshard_collector::ship::OFFSET_BITS | offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_not_redefined_for_two_segments_are_forgotten() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(&r.url(), "", "");
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    // Segment 0 defines a live series (1) and one that churns away (2).
    let defs = vec![
        def(1, &[("__name__", "live")]),
        def(2, &[("__name__", "gone")]),
    ];
    let samples = vec![sample(1, T0, 1.0), sample(2, T0, 1.0)];
    q.push(wal_position(0, 10), batch(defs, samples))
        .await
        .unwrap();
    // Segments 1 and 2 redefine only the live series, as the WAL does.
    for seg in 1..=2 {
        let ts = T0 + seg as i64;
        let b = batch(
            vec![def(1, &[("__name__", "live")])],
            vec![sample(1, ts, 1.0)],
        );
        q.push(wal_position(seg, 10), b).await.unwrap();
    }
    // A sample of series 2 in segment 2 (a WAL would refuse it): by then
    // its labels are forgotten, so it is dropped as an unknown series.
    q.push(
        wal_position(2, 20),
        batch(vec![], vec![sample(1, T0 + 3, 1.0), sample(2, T0 + 3, 1.0)]),
    )
    .await
    .unwrap();
    wait_delivered(&q, wal_position(2, 20)).await;
    let got: Vec<(String, i64)> = accepted_samples(&r)
        .into_iter()
        .map(|(name, ts, _)| (name, ts))
        .collect();
    let want: Vec<(String, i64)> = [
        ("gone", T0),
        ("live", T0),
        ("live", T0 + 1),
        ("live", T0 + 2),
        ("live", T0 + 3),
    ]
    .iter()
    .map(|(n, t)| (format!("__name__={n}"), *t))
    .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "received {got:?}");
    assert_eq!(q.stats().dropped_unknown_series.load(Relaxed), 1);
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_label_values_keep_their_labels_through_pair_renewals() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(&r.url(), "", "");
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), opts()).unwrap();
    // Each segment: the live series and 3000 new ones with unique values
    // (more pairs than the interner keeps before renewing), sampled once.
    let mut want = Vec::new();
    let mut next_ref = 2;
    let mut last = 0;
    for seg in 0..6u64 {
        let ts = T0 + seg as i64;
        let pods: Vec<String> = (0..3000).map(|i| format!("pod-{seg}-{i}")).collect();
        let mut defs = vec![def(1, &[("__name__", "live"), ("job", "j")])];
        let mut samples = vec![sample(1, ts, 1.0)];
        want.push(("__name__=live,job=j".to_string(), ts));
        for p in &pods {
            defs.push(def(next_ref, &[("__name__", "churn"), ("pod", p)]));
            samples.push(sample(next_ref, ts, 2.0));
            want.push((format!("__name__=churn,pod={p}"), ts));
            next_ref += 1;
        }
        last = wal_position(seg, 10);
        q.push(last, batch(defs, samples)).await.unwrap();
    }
    wait_delivered(&q, last).await;
    let mut got: Vec<(String, i64)> = accepted_samples(&r)
        .into_iter()
        .map(|(name, ts, _)| (name, ts))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "labels changed on the way");
    assert_eq!(q.stats().dropped_unknown_series.load(Relaxed), 0);
    q.shutdown(Duration::from_secs(2)).await;
}
