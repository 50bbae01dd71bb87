//! Remote write into the real Prometheus 2.42 receiver
//! (`--web.enable-remote-write-receiver`), then query the data back.

#[path = "../../promlib/tests/common/mod.rs"]
mod common;
mod remote_common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promshard_collector::remote::{QueueOptions, RemoteWriteQueue, Undelivered};
use promshard_collector::series::stale_marker;
use remote_common::{batch, def, remote_config, sample};

fn result(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"].as_array().expect("result array")
}

#[test]
fn prometheus_receives_and_serves_what_we_send() {
    let prom = common::Prometheus::start("scrape_configs: []\n");
    let url = format!("{}/api/v1/write", prom.base_url());
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now_ms - 60_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let u = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = remote_config(&url, "      min_shards: 2\n      max_shards: 2\n", "");
        let mut q = RemoteWriteQueue::start(&cfg, dir.path(), QueueOptions::default()).unwrap();
        let mut defs: Vec<_> = (0..3)
            .map(|i| {
                def(
                    i,
                    &[
                        ("__name__", "rw_check_total"),
                        ("instance", &format!("i{i}")),
                    ],
                )
            })
            .collect();
        defs.push(def(10, &[("__name__", "rw_stale"), ("job", "j")]));
        defs.push(def(11, &[("__name__", "rw_nan"), ("job", "j")]));
        q.push(1, batch(defs, vec![])).await.unwrap();
        for step in 0..5i64 {
            let ts = t0 + step * 10_000;
            let mut samples: Vec<_> = (0..3)
                .map(|i| sample(i, ts, (step * 10 + i as i64) as f64))
                .collect();
            if step == 0 {
                samples.push(sample(10, ts, 1.0));
            }
            if step == 1 {
                samples.push(sample(10, ts, stale_marker()));
                samples.push(sample(11, ts, f64::NAN));
            }
            q.push(2 + step as u64, batch(vec![], samples))
                .await
                .unwrap();
        }
        let mut rx = q.delivered();
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|d| *d >= 6))
            .await
            .expect("delivered in time")
            .unwrap();
        assert_eq!(q.stats().dropped_total(), 0);
        q.shutdown(Duration::from_secs(5)).await
    });
    assert_eq!(
        u,
        Undelivered {
            samples: 0,
            delivered_position: 6
        }
    );

    let at = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let last = t0 + 40_000;
    // Every sample of every series arrived once.
    let v = prom.get_json(&format!(
        "/api/v1/query?query=count_over_time%28rw_check_total%5B2m%5D%29&time={}",
        at(last)
    ));
    let res = result(&v);
    assert_eq!(res.len(), 3, "{v}");
    for r in res {
        assert_eq!(r["value"][1], "5", "{r}");
    }
    // The latest values, per instance.
    let v = prom.get_json(&format!(
        "/api/v1/query?query=rw_check_total&time={}",
        at(last)
    ));
    let mut got: Vec<(String, String)> = result(&v)
        .iter()
        .map(|r| {
            (
                r["metric"]["instance"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("i0".to_string(), "40".to_string()),
            ("i1".to_string(), "41".to_string()),
            ("i2".to_string(), "42".to_string()),
        ]
    );
    // The staleness marker ends the series; an ordinary NaN is a value.
    let after = at(t0 + 15_000);
    let v = prom.get_json(&format!("/api/v1/query?query=rw_stale&time={after}"));
    assert!(result(&v).is_empty(), "stale marker honored: {v}");
    let v = prom.get_json(&format!("/api/v1/query?query=rw_nan&time={after}"));
    let res = result(&v);
    assert_eq!(res.len(), 1, "{v}");
    assert_eq!(res[0]["value"][1], "NaN");
}
