//! WAL behaviour: round trips, rollover, readers, consumers, deletion,
//! bounds, restart and concurrency.

mod wal_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use promshard_collector::series::{AppendBatch, SeriesRef, stale_marker};
use promshard_collector::wal::{FsyncPolicy, Wal, WalError, WalOptions, WalPosition, WalRecord};
use promshard_promlib::labels::Labels;
use wal_common::*;

fn opts() -> WalOptions {
    WalOptions {
        fsync: FsyncPolicy::Never,
        ..WalOptions::default()
    }
}

fn seg_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_record_kind_round_trips_with_exact_nan_bits_and_huge_label_sets() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    let huge =
        Labels::from_pairs((0..2000).map(|i| (format!("label_{i:05}"), "v".repeat(i % 300))));
    let mut defs = vec![def(1, "up"), def(2, "x")];
    defs.push(promshard_collector::series::SeriesDef {
        series: SeriesRef(u64::MAX),
        labels: huge.clone(),
    });
    let weird_nan = f64::from_bits(0x7ff8_dead_beef_0001);
    let values = [
        stale_marker(),
        f64::NAN,
        weird_nan,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        1e308,
    ];
    let samples: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| sample([1, 2, u64::MAX][i % 3], i64::MIN / 2 + i as i64 * 7, *v))
        .chain([sample(1, i64::MAX, 1.0), sample(2, i64::MIN, 2.0)])
        .collect();
    let metadata = vec![meta("up"), meta("ünïcode_help")];
    let batch = AppendBatch {
        series: defs.clone(),
        samples: samples.clone(),
        metadata: metadata.clone(),
    };
    let pos = wal.append(&batch).unwrap();
    let mut r = wal.reader("q").unwrap();
    let got = drain(&mut r);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].record, WalRecord::Series(defs));
    let WalRecord::Samples(s) = &got[1].record else {
        panic!("expected samples, got {:?}", got[1].record)
    };
    assert_eq!(s.len(), samples.len());
    for (a, b) in s.iter().zip(&samples) {
        assert_eq!(a.series, b.series);
        assert_eq!(a.timestamp_ms, b.timestamp_ms);
        assert_eq!(
            a.value.to_bits(),
            b.value.to_bits(),
            "value bits must round-trip"
        );
    }
    assert_eq!(got[2].record, WalRecord::Metadata(metadata));
    assert_eq!(got[2].position, pos);
    assert!(got[0].position < got[1].position && got[1].position < got[2].position);
}

#[test]
fn rollover_at_segment_size_demands_definitions_again_in_each_segment() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size: 4096,
            ..opts()
        },
    )
    .unwrap();
    let defs: Vec<_> = (0..10).map(|r| def(r, &format!("m{r}"))).collect();
    wal.append(&AppendBatch {
        series: defs.clone(),
        ..Default::default()
    })
    .unwrap();
    let mut refused = 0;
    for ts in 0..200 {
        let samples: Vec<_> = (0..10).map(|r| sample(r, ts, ts as f64)).collect();
        let plain = AppendBatch {
            samples: samples.clone(),
            ..Default::default()
        };
        match wal.append(&plain) {
            Ok(_) => {}
            // A new segment: the caller repeats the definitions.
            Err(WalError::UnknownSeries(_)) => {
                refused += 1;
                wal.append(&AppendBatch {
                    series: defs.clone(),
                    samples,
                    ..Default::default()
                })
                .unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    let files = seg_files(dir.path());
    assert!(files.len() >= 5, "expected several segments, got {files:?}");
    for f in &files {
        let len = std::fs::metadata(dir.path().join(f)).unwrap().len();
        assert!(len <= 4096 + 512, "{f} is {len} bytes");
    }
    // Every segment's samples are resolvable from that segment alone.
    let mut r = wal.reader("q").unwrap();
    let all = drain(&mut r);
    let mut known: HashMap<u64, HashMap<u64, Labels>> = HashMap::new();
    let mut n = 0;
    for e in &all {
        match &e.record {
            WalRecord::Series(d) => {
                for d in d {
                    known
                        .entry(e.position.segment)
                        .or_default()
                        .insert(d.series.0, d.labels.clone());
                }
            }
            WalRecord::Samples(s) => {
                for s in s {
                    let l = known
                        .get(&e.position.segment)
                        .and_then(|m| m.get(&s.series.0))
                        .unwrap_or_else(|| {
                            panic!(
                                "ref {} unresolved in segment {}",
                                s.series.0, e.position.segment
                            )
                        });
                    assert_eq!(l, &defs[s.series.0 as usize].labels);
                    n += 1;
                }
            }
            WalRecord::Metadata(_) => {}
        }
    }
    assert_eq!(n, 2000);
    assert_eq!(known.len(), files.len());
    // Each rollover refused exactly one append (the first in the segment).
    assert_eq!(refused, files.len() - 1);
}

#[test]
fn sample_of_undefined_series_is_rejected_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    wal.append(&numbered_batch(1)).unwrap();
    let head = wal.head();
    let err = wal
        .append(&AppendBatch {
            samples: vec![sample(1, 5, 1.0), sample(99, 5, 1.0)],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, WalError::UnknownSeries(99)), "{err}");
    assert_eq!(wal.head(), head);
}

#[tokio::test]
async fn reader_waits_at_the_end_then_receives_new_appends() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), opts()).unwrap());
    let mut r = wal.reader("q").unwrap();
    assert!(r.try_next().unwrap().is_none());
    let w2 = Arc::clone(&wal);
    let task = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 6 {
            got.push(r.next().await.unwrap());
        }
        got
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished(), "reader must wait for appends");
    for i in 0..3 {
        w2.append(&numbered_batch(i)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    let s = samples_of(&got);
    assert_eq!(
        s.iter().map(|s| s.value).collect::<Vec<_>>(),
        vec![0.0, 1.0, 2.0]
    );
}

#[test]
fn two_consumers_resume_from_their_own_checkpoints_and_deletion_waits_for_both() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions {
        segment_size: 512,
        ..opts()
    };
    let wal = Wal::open(dir.path(), o.clone()).unwrap();
    let mut a = wal.reader("a").unwrap();
    let mut b = wal.reader("b").unwrap();
    for i in 0..100 {
        wal.append(&numbered_batch(i)).unwrap();
    }
    let segs_before = seg_files(dir.path()).len();
    assert!(segs_before > 5);
    let ea = drain(&mut a);
    let eb = drain(&mut b);
    assert_eq!(samples_of(&ea).len(), 100);
    // a delivered everything; b only up to batch 29.
    let b_cut = eb
        .iter()
        .find(|e| matches!(&e.record, WalRecord::Samples(s) if s[0].value == 29.0))
        .unwrap()
        .position;
    a.commit(ea.last().unwrap().position).unwrap();
    b.commit(b_cut).unwrap();
    let after = seg_files(dir.path());
    assert!(
        after.len() < segs_before,
        "segments before b's checkpoint go"
    );
    let first_left: u64 = after[0].trim_end_matches(".seg").parse().unwrap();
    assert_eq!(first_left, b_cut.segment, "b's segment must stay");
    drop((a, b));
    drop(wal);

    let wal = Wal::open(dir.path(), o).unwrap();
    let mut b = wal.reader("b").unwrap();
    let got = samples_of(&drain(&mut b));
    assert_eq!(
        got.iter().map(|s| s.value as u64).collect::<Vec<_>>(),
        (30..100).collect::<Vec<_>>()
    );
    let mut a = wal.reader("a").unwrap();
    assert!(samples_of(&drain(&mut a)).is_empty());
    // Series records before a checkpoint are still yielded for resolution.
    let mut b2 = wal.reader("b").unwrap();
    let defs = defs_of(&drain(&mut b2));
    assert!(defs.iter().any(|d| d.series.0 == 29));
}

#[test]
fn no_segment_deleted_until_every_consumer_passed_it() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size: 300,
            ..opts()
        },
    )
    .unwrap();
    let a = wal.reader("a").unwrap();
    let _b = wal.reader("b").unwrap();
    for i in 0..50 {
        wal.append(&numbered_batch(i)).unwrap();
    }
    let n = seg_files(dir.path()).len();
    a.commit(wal.head()).unwrap();
    assert_eq!(seg_files(dir.path()).len(), n, "b has not read anything");
    assert_eq!(wal.stats().deleted_segments, 0);
    // Removing b (no longer configured) frees them.
    wal.retain_consumers(&["a"]).unwrap();
    assert_eq!(wal.consumers(), vec!["a".to_string()]);
    assert_eq!(seg_files(dir.path()).len(), 1);
    assert!(!dir.path().join("consumers/b.ckpt").exists());
    let st = wal.stats();
    assert_eq!(st.deleted_segments as usize, n - 1);
    assert_eq!(st.dropped_segments, 0);
}

#[test]
fn size_bound_drops_oldest_undelivered_segments_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size: 1000,
            max_bytes: Some(5000),
            ..opts()
        },
    )
    .unwrap();
    let _r = wal.reader("slow").unwrap();
    for i in 0..300 {
        wal.append(&numbered_batch(i)).unwrap();
    }
    let st = wal.stats();
    assert!(st.bytes_on_disk <= 5000 + 1000, "{st:?}");
    assert!(st.dropped_segments > 0);
    assert!(st.dropped_samples > 0 && st.dropped_samples < 300);
    // What is left is the newest data, readable from the dropped checkpoint.
    let mut r = wal.reader("slow").unwrap();
    let got = samples_of(&drain(&mut r));
    assert_eq!(got.last().unwrap().value, 299.0);
    assert_eq!(got.len() as u64 + st.dropped_samples, 300);
    assert!(st.consumers[0].backlog_bytes > 0);
}

#[test]
fn age_bound_drops_old_segments_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size: 300,
            max_age: Some(Duration::from_millis(200)),
            maintenance_interval: Duration::from_millis(50),
            ..opts()
        },
    )
    .unwrap();
    let _r = wal.reader("q").unwrap();
    for i in 0..40 {
        wal.append(&numbered_batch(i)).unwrap();
    }
    let before = wal.stats();
    assert!(before.segments > 3);
    assert_eq!(before.dropped_segments, 0);
    std::thread::sleep(Duration::from_millis(600));
    let after = wal.stats();
    assert_eq!(
        after.segments, 1,
        "only the current segment is left: {after:?}"
    );
    assert_eq!(after.dropped_segments, before.segments - 1);
    assert_eq!(after.dropped_samples, {
        // Everything but the current segment's samples.
        let mut r = wal.reader("q").unwrap();
        40 - samples_of(&drain(&mut r)).len() as u64
    });
}

#[test]
fn next_series_ref_after_restart_is_above_every_ref_seen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(
            dir.path(),
            WalOptions {
                segment_size: 400,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(wal.next_series_ref(), 0);
        for r in [5u64, 1_000_000, 17] {
            wal.append(&numbered_batch(r)).unwrap();
        }
        for i in 0..30 {
            wal.append(&numbered_batch(i)).unwrap();
        }
    }
    let wal = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(wal.next_series_ref(), 1_000_001);
    // Refs from before the restart are unknown to the writer until redefined.
    assert!(matches!(
        wal.append(&AppendBatch {
            samples: vec![sample(5, 1, 1.0)],
            ..Default::default()
        }),
        Err(WalError::UnknownSeries(5))
    ));
}

#[test]
fn concurrent_appenders_keep_each_appenders_order() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(
        Wal::open(
            dir.path(),
            WalOptions {
                segment_size: 8 << 10,
                ..opts()
            },
        )
        .unwrap(),
    );
    let threads = 4u64;
    let per = 500u64;
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                wal.append(&AppendBatch {
                    series: vec![def(t, &format!("t{t}"))],
                    ..Default::default()
                })
                .unwrap();
                for i in 0..per {
                    let mut batch = AppendBatch {
                        samples: vec![sample(t, i as i64, i as f64)],
                        ..Default::default()
                    };
                    if let Err(WalError::UnknownSeries(_)) = wal.append(&batch) {
                        // Another thread rolled the segment over.
                        batch.series.push(def(t, &format!("t{t}")));
                        wal.append(&batch).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let mut r = wal.reader("q").unwrap();
    let got = samples_of(&drain(&mut r));
    assert_eq!(got.len() as u64, threads * per);
    for t in 0..threads {
        let seq: Vec<i64> = got
            .iter()
            .filter(|s| s.series.0 == t)
            .map(|s| s.timestamp_ms)
            .collect();
        assert_eq!(seq, (0..per as i64).collect::<Vec<_>>(), "thread {t}");
    }
    assert!(wal.stats().segments > 1, "the test should cross segments");
}

#[test]
fn checkpoint_commit_never_moves_backwards_and_stats_show_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    let mut r = wal.reader("q").unwrap();
    for i in 0..10 {
        wal.append(&numbered_batch(i)).unwrap();
    }
    let all = drain(&mut r);
    let mid = all[9].position;
    r.commit(mid).unwrap();
    r.commit(WalPosition {
        segment: mid.segment,
        offset: 1,
    })
    .unwrap();
    let st = wal.stats();
    assert_eq!(st.consumers[0].checkpoint, mid);
    assert_eq!(st.consumers[0].backlog_bytes, st.head.offset - mid.offset);
    assert_eq!(st.appended_samples, 10);
    assert_eq!(st.appended_series, 10);
    assert!(matches!(
        wal.commit("nobody", mid),
        Err(WalError::UnknownConsumer(_))
    ));
}

#[test]
fn interval_policy_fsyncs_in_the_background_and_always_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            fsync: FsyncPolicy::Interval(Duration::from_millis(20)),
            segment_size: 300,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let mut pos = wal.head();
    for i in 0..20 {
        pos = wal.append(&numbered_batch(i)).unwrap();
    }
    assert!(pos.segment > 2, "crosses segments: {pos}");
    let deadline = std::time::Instant::now() + WAIT;
    while wal.synced() < pos {
        assert!(
            std::time::Instant::now() < deadline,
            "background fsync never ran"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(wal);
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            fsync: FsyncPolicy::Always,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let pos = wal.append(&numbered_batch(1)).unwrap();
    assert!(wal.synced() >= pos);
}

#[test]
fn reader_keeps_going_after_passed_segments_are_deleted_and_skips_dropped_ones() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size: 300,
            ..opts()
        },
    )
    .unwrap();
    let mut r = wal.reader("q").unwrap();
    for i in 0..30 {
        wal.append(&numbered_batch(i)).unwrap();
    }
    let first = drain(&mut r);
    r.commit(first.last().unwrap().position).unwrap();
    assert_eq!(seg_files(dir.path()).len(), 1, "passed segments deleted");
    for i in 30..60 {
        wal.append(&numbered_batch(i)).unwrap();
    }
    let v: Vec<u64> = samples_of(&drain(&mut r))
        .iter()
        .map(|s| s.value as u64)
        .collect();
    assert_eq!(v, (30..60).collect::<Vec<_>>());
    r.commit(wal.head()).unwrap();
    drop(wal);

    // Segments this consumer never read are dropped by a size bound: a
    // reader at the old checkpoint skips ahead to what is left.
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size: 300,
            max_bytes: Some(1200),
            ..opts()
        },
    )
    .unwrap();
    for i in 60..120 {
        wal.append(&numbered_batch(i)).unwrap();
    }
    let st = wal.stats();
    assert!(st.dropped_segments > 0);
    let mut r = wal.reader("q").unwrap();
    let v: Vec<u64> = samples_of(&drain(&mut r))
        .iter()
        .map(|s| s.value as u64)
        .collect();
    assert_eq!(v.last(), Some(&119));
    // A dropped segment counts all its samples, also those before the
    // checkpoint inside it: an upper bound.
    assert!(v.len() as u64 + st.dropped_samples >= 60, "{st:?}");
    assert!(v.len() < 60);
    assert_eq!(v, (120 - v.len() as u64..120).collect::<Vec<_>>());
}
