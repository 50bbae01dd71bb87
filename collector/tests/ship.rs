//! WAL -> remote write shipping: a real WAL, real queues, a loopback
//! receiver.

mod remote_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use promshard_collector::series::AppendBatch;
use promshard_collector::ship::{Shippers, consumer_name, decode_position};
use promshard_collector::wal::{FsyncPolicy, Wal, WalOptions};
use promshard_promlib::config::RemoteWriteConfig;
use remote_common::{Receiver, accepted_samples, batch, def, remote_config, sample, wait_until};

const WAIT: Duration = Duration::from_secs(20);

fn wal_opts(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        fsync: FsyncPolicy::Never,
        maintenance_interval: Duration::from_millis(100),
        ..WalOptions::default()
    }
}

fn open(dir: &Path, segment_size: u64) -> Arc<Wal> {
    Arc::new(Wal::open(dir, wal_opts(segment_size)).expect("open WAL"))
}

fn cfg(r: &Receiver, name: &str) -> RemoteWriteConfig {
    remote_config(&r.url(), "", &format!("    name: {name}\n"))
}

/// `n` batches, each defining series `first..first+4` (labels `s=<ref>`)
/// and one sample for each at `ts = first_ts + i`.
fn batches(first_ts: i64, n: i64) -> Vec<AppendBatch> {
    (0..n)
        .map(|i| {
            let ts = first_ts + i;
            let defs = (0..4)
                .map(|s| def(s, &[("__name__", "m"), ("s", &s.to_string())]))
                .collect();
            let samples = (0..4).map(|s| sample(s, ts, ts as f64)).collect();
            batch(defs, samples)
        })
        .collect()
}

fn append_all(wal: &Wal, bs: &[AppendBatch]) {
    for b in bs {
        wal.append(b).expect("append");
    }
}

/// How often each (series, ts) arrived.
fn counts(r: &Receiver) -> BTreeMap<(String, i64), usize> {
    let mut m = BTreeMap::new();
    for (name, ts, _) in accepted_samples(r) {
        *m.entry((name, ts)).or_insert(0) += 1;
    }
    m
}

fn assert_exactly_once(r: &Receiver, ts: std::ops::Range<i64>) {
    let c = counts(r);
    for t in ts.clone() {
        for s in 0..4 {
            let key = (format!("__name__=m,s={s}"), t);
            assert_eq!(c.get(&key), Some(&1), "{key:?} must arrive exactly once");
        }
    }
    assert_eq!(c.len(), 4 * ts.count(), "nothing else arrives");
}

fn checkpoint(wal: &Wal, consumer: &str) -> promshard_collector::wal::WalPosition {
    wal.stats()
        .consumers
        .into_iter()
        .find(|c| c.name == consumer)
        .unwrap_or_else(|| panic!("consumer {consumer} registered"))
        .checkpoint
}

#[tokio::test]
async fn everything_appended_arrives_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 64 << 20);
    let r = Receiver::start().await;
    // Data appended before the shippers start is delivered too.
    append_all(&wal, &batches(1000, 50));
    let shippers = Shippers::start(wal.clone(), &[cfg(&r, "a")], dir.path()).unwrap();
    append_all(&wal, &batches(2000, 50));
    wait_until(WAIT, "all samples", || accepted_samples(&r).len() >= 400).await;
    let left = shippers.shutdown(Duration::from_secs(5)).await;
    assert_eq!(left, 0);
    let mut want: Vec<i64> = (1000..1050).collect();
    want.extend(2000..2050);
    let c = counts(&r);
    assert_eq!(c.len(), 400);
    assert!(c.values().all(|n| *n == 1), "no duplicates: {c:?}");
    for t in want {
        assert!(c.contains_key(&("__name__=m,s=0".to_string(), t)));
    }
    // The final checkpoint is the WAL's head: nothing left for a restart.
    assert_eq!(checkpoint(&wal, &consumer_name(&cfg(&r, "a"))), wal.head());
}

#[tokio::test]
async fn shutdown_delivers_what_the_wal_holds() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 64 << 20);
    let r = Receiver::start().await;
    let shippers = Shippers::start(wal.clone(), &[cfg(&r, "a")], dir.path()).unwrap();
    append_all(&wal, &batches(0, 200));
    // No waiting: shutdown itself reads up to the head and delivers.
    let left = shippers.shutdown(Duration::from_secs(10)).await;
    assert_eq!(left, 0);
    assert_exactly_once(&r, 0..200);
}

#[tokio::test]
async fn restart_after_receiver_outage_delivers_the_rest_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Receiver::start().await;
    let c = cfg(&r, "a");
    let consumer = consumer_name(&c);

    // Run 1: delivered.
    let wal = open(dir.path(), 4096);
    let shippers = Shippers::start(wal.clone(), std::slice::from_ref(&c), dir.path()).unwrap();
    append_all(&wal, &batches(0, 100));
    wait_until(WAIT, "run 1 delivered", || {
        accepted_samples(&r).len() >= 400
    })
    .await;
    assert_eq!(shippers.shutdown(Duration::from_secs(5)).await, 0);
    drop(wal);

    // Run 2: the receiver is down; nothing is delivered.
    r.stop();
    let wal = open(dir.path(), 4096);
    let before = checkpoint(&wal, &consumer);
    let shippers = Shippers::start(wal.clone(), std::slice::from_ref(&c), dir.path()).unwrap();
    append_all(&wal, &batches(100, 100));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = shippers.shutdown(Duration::from_millis(300)).await;
    assert!(left > 0, "the receiver was down: samples are left");
    assert_eq!(
        checkpoint(&wal, &consumer),
        before,
        "nothing delivered, checkpoint kept"
    );
    drop(wal);
    assert_eq!(accepted_samples(&r).len(), 400);

    // Run 3: the receiver is back; a new WAL handle on the same directory.
    r.restart().await;
    let wal = open(dir.path(), 4096);
    let shippers = Shippers::start(wal.clone(), std::slice::from_ref(&c), dir.path()).unwrap();
    append_all(&wal, &batches(200, 100));
    wait_until(WAIT, "runs 2 and 3 delivered", || {
        accepted_samples(&r).len() >= 1200
    })
    .await;
    assert_eq!(shippers.shutdown(Duration::from_secs(5)).await, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_exactly_once(&r, 0..300);
}

#[tokio::test]
async fn checkpoint_moves_and_delivered_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 2048);
    let r = Receiver::start().await;
    let c = cfg(&r, "a");
    let shippers = Shippers::start(wal.clone(), std::slice::from_ref(&c), dir.path()).unwrap();
    append_all(&wal, &batches(0, 300));
    let segments_written = wal.head().segment;
    assert!(segments_written > 5, "the test writes many segments");
    wait_until(WAIT, "all delivered", || accepted_samples(&r).len() >= 1200).await;
    let consumer = consumer_name(&c);
    wait_until(WAIT, "checkpoint at head", || {
        checkpoint(&wal, &consumer) == wal.head()
    })
    .await;
    let st = wal.stats();
    assert!(
        st.segments <= 2,
        "delivered segments are deleted: {} left",
        st.segments
    );
    assert!(st.deleted_segments >= segments_written - 2);
    assert_eq!(st.dropped_segments, 0);
    let status = &shippers.statuses()[0];
    assert_eq!(status.backlog_bytes, 0);
    assert_eq!(decode_position(status.delivered_position), wal.head());
    shippers.shutdown(Duration::from_secs(5)).await;
    assert_exactly_once(&r, 0..300);
}

#[tokio::test]
async fn two_remotes_progress_independently() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 4096);
    let up = Receiver::start().await;
    let mut down = Receiver::start().await;
    down.stop();
    let (cu, cd) = (cfg(&up, "up"), cfg(&down, "down"));
    let shippers = Shippers::start(wal.clone(), &[cu.clone(), cd.clone()], dir.path()).unwrap();
    append_all(&wal, &batches(0, 100));
    wait_until(WAIT, "up delivered", || accepted_samples(&up).len() >= 400).await;
    wait_until(WAIT, "up's checkpoint at head", || {
        checkpoint(&wal, &consumer_name(&cu)) == wal.head()
    })
    .await;
    let held = checkpoint(&wal, &consumer_name(&cd));
    assert!(
        held < wal.head(),
        "the down remote's checkpoint stays behind"
    );
    let st = shippers.statuses();
    let by_name = |n: &str| st.iter().find(|s| s.name == n).unwrap().clone();
    assert!(by_name("down").backlog_bytes > 0);
    assert_eq!(by_name("up").backlog_bytes, 0);
    assert!(
        wal.stats().segments > 2,
        "segments kept for the down remote"
    );

    down.restart().await;
    wait_until(WAIT, "down delivered", || {
        accepted_samples(&down).len() >= 400
    })
    .await;
    shippers.shutdown(Duration::from_secs(5)).await;
    assert_exactly_once(&up, 0..100);
    assert_exactly_once(&down, 0..100);
}

#[tokio::test]
async fn reload_keeps_unchanged_remotes_and_restarts_changed_ones_at_their_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 4096);
    let ra = Receiver::start().await;
    let rb = Receiver::start().await;
    let rc = Receiver::start().await;
    let (ca, cb) = (cfg(&ra, "a"), cfg(&rb, "b"));
    let mut shippers = Shippers::start(wal.clone(), &[ca.clone(), cb.clone()], dir.path()).unwrap();
    append_all(&wal, &batches(0, 50));
    wait_until(WAIT, "first part", || {
        accepted_samples(&ra).len() >= 200 && accepted_samples(&rb).len() >= 200
    })
    .await;
    let stats_a = shippers
        .statuses()
        .into_iter()
        .find(|s| s.name == "a")
        .unwrap()
        .stats;

    // b changes (same url and name: same consumer), c is new.
    let mut cb2 = cb.clone();
    cb2.queue_config.max_samples_per_send = 7;
    let cc = cfg(&rc, "c");
    shippers
        .reload(&[ca.clone(), cb2, cc.clone()], dir.path())
        .await
        .unwrap();
    let st = shippers.statuses();
    let a = st.iter().find(|s| s.name == "a").unwrap();
    assert!(Arc::ptr_eq(&a.stats, &stats_a), "a kept running");
    let b = st.iter().find(|s| s.name == "b").unwrap();
    assert_eq!(
        b.stats
            .samples_sent
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "b restarted"
    );
    append_all(&wal, &batches(50, 50));
    wait_until(WAIT, "second part", || {
        accepted_samples(&ra).len() >= 400
            && accepted_samples(&rb).len() >= 400
            && counts(&rc).keys().filter(|(_, t)| *t >= 50).count() >= 200
    })
    .await;

    // Removing b drops its WAL consumer.
    shippers
        .reload(&[ca.clone(), cc.clone()], dir.path())
        .await
        .unwrap();
    assert!(!wal.consumers().contains(&consumer_name(&cb)));
    assert_eq!(shippers.statuses().len(), 2);

    // A bad entry changes nothing.
    let mut bad = cc.clone();
    bad.queue_config.min_shards = 0;
    let err = shippers.reload(&[ca.clone(), bad], dir.path()).await;
    assert!(err.is_err());
    assert_eq!(shippers.statuses().len(), 2);

    shippers.shutdown(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_exactly_once(&ra, 0..100);
    assert_exactly_once(&rb, 0..100);
    // c is new: it gets everything the WAL still held for it from the
    // oldest segment on, each sample once.
    let c = counts(&rc);
    assert!(c.values().all(|n| *n == 1), "c: no duplicates");
    assert!(c.len() >= 200);
}

#[test]
fn consumer_names_are_stable_and_distinct() {
    let a = remote_config("http://127.0.0.1:1/w", "", "");
    let mut b = a.clone();
    b.name = "x".into();
    assert_eq!(consumer_name(&a), consumer_name(&a.clone()));
    assert_ne!(consumer_name(&a), consumer_name(&b));
    assert!(consumer_name(&a).starts_with("rw-"));
    let mut q = a.clone();
    q.queue_config.capacity = 1;
    assert_eq!(
        consumer_name(&a),
        consumer_name(&q),
        "queue settings do not change the consumer"
    );
}

#[tokio::test]
async fn shutdown_with_the_receiver_down_ends_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 1 << 20);
    let mut r = Receiver::start().await;
    r.stop();
    // A tiny queue: the shipper blocks in push.
    let c = remote_config(
        &r.url(),
        "      capacity: 10\n      max_samples_per_send: 5\n      min_shards: 1\n      max_shards: 1\n",
        "",
    );
    let shippers = Shippers::start(wal.clone(), &[c], dir.path()).unwrap();
    // More than two pushes of BATCH_SAMPLES: the third waits.
    append_all(&wal, &batches(0, 4000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = std::time::Instant::now();
    let left = tokio::time::timeout(
        Duration::from_secs(10),
        shippers.shutdown(Duration::from_millis(500)),
    )
    .await
    .expect("shutdown ends");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert!(left > 0, "undelivered samples are reported");
}

#[tokio::test]
async fn after_a_crash_everything_arrives_at_least_once() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start().await;
    r.set_default_delay(Duration::from_millis(30));
    let c = remote_config(&r.url(), "      max_samples_per_send: 20\n", "");
    let wal = open(dir.path(), 4096);
    let shippers = Shippers::start(wal.clone(), std::slice::from_ref(&c), dir.path()).unwrap();
    append_all(&wal, &batches(0, 200));
    wait_until(WAIT, "some delivered", || accepted_samples(&r).len() >= 100).await;
    // A crash: no shutdown, no final commit.
    drop(shippers);
    drop(wal);
    r.set_default_delay(Duration::ZERO);
    let wal = open(dir.path(), 4096);
    let shippers = Shippers::start(wal.clone(), std::slice::from_ref(&c), dir.path()).unwrap();
    wait_until(WAIT, "everything", || {
        let c = counts(&r);
        (0..200).all(|t| (0..4).all(|s| c.contains_key(&(format!("__name__=m,s={s}"), t))))
    })
    .await;
    assert_eq!(shippers.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test]
async fn metadata_records_reach_the_remote() {
    use promshard_collector::series::Metadata;
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 1 << 20);
    let r = Receiver::start().await;
    let c = remote_config(
        &r.url(),
        "",
        "    metadata_config:\n      send_interval: 200ms\n",
    );
    let shippers = Shippers::start(wal.clone(), &[c], dir.path()).unwrap();
    let mut b = batches(0, 1).remove(0);
    b.metadata.push(Metadata {
        metric_family_name: "m".into(),
        kind: "gauge".into(),
        help: "a gauge".into(),
        unit: String::new(),
    });
    wal.append(&b).unwrap();
    wait_until(WAIT, "metadata", || {
        r.accepted().iter().any(|x| {
            x.request
                .metadata
                .iter()
                .any(|m| m.metric_family_name == "m")
        })
    })
    .await;
    shippers.shutdown(Duration::from_secs(5)).await;
    assert_exactly_once(&r, 0..1);
}

/// A rough figure, not a benchmark: `cargo test --test ship throughput --
/// --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 8 << 20);
    let r = Receiver::start().await;
    let c = remote_config(&r.url(), "      max_samples_per_send: 2000\n", "");
    let (series, scrapes) = (1000u64, 200i64);
    let defs: Vec<_> = (0..series)
        .map(|s| def(s, &[("__name__", "m"), ("s", &s.to_string())]))
        .collect();
    wal.append(&batch(defs, vec![])).unwrap();
    for t in 0..scrapes {
        let samples = (0..series).map(|s| sample(s, t, 1.0)).collect();
        wal.append(&batch(vec![], samples)).unwrap();
    }
    let total = series as usize * scrapes as usize;
    let t0 = std::time::Instant::now();
    let shippers = Shippers::start(wal.clone(), &[c], dir.path()).unwrap();
    wait_until(Duration::from_secs(60), "all", || {
        r.accepted().iter().map(|x| x.sample_count()).sum::<usize>() >= total
    })
    .await;
    let took = t0.elapsed();
    shippers.shutdown(Duration::from_secs(5)).await;
    eprintln!(
        "shipped {total} samples in {took:?}: {:.0} samples/s",
        total as f64 / took.as_secs_f64()
    );
}
