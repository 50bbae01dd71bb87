//! Many shards on one hub: one hung shard among 100 does not slow the
//! others; prints the Ack round-trip figures.

mod hub_support;

use std::time::{Duration, Instant};

use hub_support::*;
use promshard_coordinator::hub::{HubError, HubEvent, HubOptions};
use promshard_coordinator::model::ShardId;
use promshard_proto::v1::AssignmentDelta;

const SHARDS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_shards_with_one_hung_ack_promptly() {
    let opts = HubOptions {
        ack_timeout: Duration::from_secs(3),
        ..fast_opts()
    };
    let ack_timeout = opts.ack_timeout;
    let mut hub = start_hub(opts).await;
    let _hung = attach(hub.addr, hello("hung")).await;
    let mut responders = Vec::new();
    for i in 0..SHARDS {
        let s = attach(hub.addr, hello(&format!("shard-{i:03}"))).await;
        responders.push(s.spawn_responder());
    }
    let mut attached = 0;
    while attached < SHARDS + 1 {
        if let HubEvent::Attached { .. } = hub.lifecycle_event().await {
            attached += 1;
        }
    }
    assert_eq!(hub.hub.shards().len(), SHARDS + 1);

    let h = hub.hub.clone();
    let hung = tokio::spawn(async move {
        h.send_delta(
            &"hung".into(),
            AssignmentDelta {
                version: 1,
                ..Default::default()
            },
        )
        .await
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..SHARDS {
        let h = hub.hub.clone();
        tasks.push(tokio::spawn(async move {
            let shard = ShardId(format!("shard-{i:03}"));
            let mut rtts = Vec::new();
            for v in 1..=10u64 {
                let out = h
                    .send_delta(
                        &shard,
                        AssignmentDelta {
                            version: v,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("acked");
                assert!(out.fully_applied());
                rtts.push(out.round_trip);
            }
            rtts
        }));
    }
    let mut rtts = Vec::new();
    for t in tasks {
        rtts.extend(t.await.unwrap());
    }
    let all_done = started.elapsed();
    rtts.sort();
    let p50 = rtts[rtts.len() / 2];
    let p99 = rtts[rtts.len() * 99 / 100];
    let max = *rtts.last().unwrap();
    eprintln!(
        "{} deltas to {SHARDS} shards (1 hung) in {all_done:?}: ack round trip p50 {p50:?} p99 {p99:?} max {max:?}",
        rtts.len()
    );
    assert!(
        all_done < ack_timeout,
        "the responsive shards took {all_done:?}, as long as the hung one's deadline"
    );
    assert!(!hung.is_finished(), "the hung shard's send still waits");
    assert!(matches!(hung.await.unwrap(), Err(HubError::Timeout { .. })));
    let st = hub.hub.stats();
    assert_eq!(st.acks.ok, (SHARDS * 10) as u64);
    assert_eq!(st.acks.timeout, 1);
    hub.stop().await;
}
