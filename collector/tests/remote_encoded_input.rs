//! `RemoteWriteQueue::push_encoded`: series definitions handed over with
//! their labels already encoded (as the WAL shipper does) are sent like
//! definitions given as `Labels`, with and without write relabeling.

mod remote_common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use promshard_collector::remote::encode::EncodedSeries;
use promshard_collector::remote::{QueueOptions, RemoteWriteQueue};
use promshard_collector::series::{AppendBatch, SeriesRef};
use remote_common::*;

const T0: i64 = 1_700_000_000_000;

fn encoded(defs: &[(u64, &[(&str, &str)])]) -> EncodedSeries {
    let mut e = EncodedSeries::default();
    for (r, labels) in defs {
        e.push(SeriesRef(*r), labels);
    }
    e
}

async fn wait_delivered(q: &RemoteWriteQueue, pos: u64) {
    let mut rx = q.delivered();
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|d| *d >= pos))
        .await
        .expect("delivered in time")
        .expect("queue alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_definitions_are_sent_like_labels() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(&r.url(), "", "");
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), QueueOptions::default()).unwrap();
    assert!(!q.wants_labels());
    let defs = encoded(&[
        (1, &[("__name__", "a"), ("empty", ""), ("x", "1")]),
        (2, &[("x", "no name")]),
    ]);
    let samples = vec![sample(1, T0, 1.0), sample(2, T0, 2.0)];
    q.push_encoded(1, batch(vec![], samples), defs)
        .await
        .unwrap();
    // A repeated definition (as each WAL segment repeats them) changes
    // nothing; a new one for the same ref replaces it.
    let again = encoded(&[(1, &[("__name__", "a"), ("x", "1")])]);
    q.push_encoded(2, batch(vec![], vec![sample(1, T0 + 1, 3.0)]), again)
        .await
        .unwrap();
    // (A ref gets other labels only once its samples are delivered: one
    // request holds one label set per ref.)
    wait_delivered(&q, 2).await;
    let renamed = encoded(&[(1, &[("__name__", "b")])]);
    q.push_encoded(3, batch(vec![], vec![sample(1, T0 + 2, 4.0)]), renamed)
        .await
        .unwrap();
    wait_delivered(&q, 3).await;
    let mut got = accepted_samples(&r);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("__name__=a,x=1".to_string(), T0, 1f64.to_bits()),
            ("__name__=a,x=1".to_string(), T0 + 1, 3f64.to_bits()),
            ("__name__=b".to_string(), T0 + 2, 4f64.to_bits()),
        ]
    );
    assert_eq!(q.stats().dropped_no_metric_name.load(Relaxed), 1);
    q.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_definitions_still_pass_write_relabel_configs() {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = remote_config(
        &r.url(),
        "",
        "    write_relabel_configs:\n      - source_labels: [__name__]\n        regex: drop_me\n        action: drop\n",
    );
    let mut q = RemoteWriteQueue::start(&cfg, dir.path(), QueueOptions::default()).unwrap();
    assert!(q.wants_labels());
    let defs = encoded(&[
        (1, &[("__name__", "kept")]),
        (2, &[("__name__", "drop_me")]),
    ]);
    q.push_encoded(
        1,
        AppendBatch {
            samples: vec![sample(1, T0, 1.0), sample(2, T0, 2.0)],
            ..Default::default()
        },
        defs,
    )
    .await
    .unwrap();
    wait_delivered(&q, 1).await;
    assert_eq!(
        accepted_samples(&r),
        vec![("__name__=kept".to_string(), T0, 1f64.to_bits())]
    );
    assert_eq!(q.stats().dropped_relabel.load(Relaxed), 1);
    q.shutdown(Duration::from_secs(2)).await;
}
