//! The sink over real loopback HTTP with hand-made write requests.

use std::time::Duration;

use promshard_loadtest::sink::{Matcher, encode_request};
use promshard_loadtest::{Fault, Sink, SinkConfig};
use promshard_proto::STALE_NAN_BITS;
use promshard_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn request(ts: Vec<TimeSeries>) -> WriteRequest {
    WriteRequest {
        timeseries: ts,
        ..Default::default()
    }
}

async fn post(sink: &Sink, body: Vec<u8>) -> reqwest::Response {
    post_with(
        sink,
        body,
        &[
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
    )
    .await
}

async fn post_with(sink: &Sink, body: Vec<u8>, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(sink.write_url()).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn start(interval: Option<Duration>) -> Sink {
    Sink::start(SinkConfig {
        interval,
        ..SinkConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn counts_duplicates_out_of_order_gaps_and_stale_markers() {
    let sink = start(Some(Duration::from_secs(1))).await;
    let stale = f64::from_bits(STALE_NAN_BITS);
    let a = [("__name__", "a_total"), ("instance", "x:1"), ("job", "j1")];
    let b = [("__name__", "b"), ("job", "j2")];
    // a: 1000 2000 2000(dup) 1500(ooo) 5000(gap) 6000 stale@7000, then back at 20000 (no gap after stale)
    let r1 = request(vec![
        series(&a, &[(1000, 1.0), (2000, 2.0), (2000, 2.0)]),
        series(&b, &[(1000, f64::NAN), (2000, 5.0)]),
    ]);
    let r2 = request(vec![series(
        &a,
        &[
            (1500, 1.5),
            (5000, 5.0),
            (6000, 6.0),
            (7000, stale),
            (20000, 1.0),
        ],
    )]);
    for r in [r1, r2] {
        assert_eq!(post(&sink, encode_request(&r)).await.status(), 204);
    }
    let s: promshard_loadtest::Summary = reqwest::get(format!("http://{}/summary", sink.addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s.requests, 2);
    assert_eq!(s.accepted_requests, 2);
    assert_eq!(s.totals.series, 2);
    assert_eq!(s.totals.samples, 10);
    assert_eq!(s.totals.duplicates, 1);
    assert_eq!(s.totals.out_of_order, 1);
    assert_eq!(
        s.totals.gaps, 1,
        "2000 -> 5000 only; the return after stale is no gap"
    );
    assert_eq!(
        s.totals.stale_markers, 1,
        "an ordinary NaN is not a staleness marker"
    );
    assert_eq!(s.jobs["j1"].samples, 8);
    assert_eq!(s.jobs["j2"].samples, 2);
    assert_eq!(
        s.totals.counter_decreases, 0,
        "a reset after staleness is no decrease"
    );

    let found = sink.series(&Matcher::parse(r#"a_total{job="j1"}"#).unwrap(), 10);
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].first_timestamp, found[0].last_timestamp),
        (1000, 20000)
    );
    let over_http: Vec<promshard_loadtest::sink::SeriesReport> = reqwest::Client::new()
        .get(format!(
            "http://{}/series?match=%7Bjob%3D%22j2%22%7D",
            sink.addr()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http.len(), 1);
    assert_eq!(over_http[0].labels["__name__"], "b");
}

#[tokio::test]
async fn learned_interval_detects_a_missing_slot() {
    let sink = start(None).await;
    let s = [("__name__", "g"), ("job", "j")];
    let r = request(vec![series(
        &s,
        &[
            (0, 1.0),
            (15000, 1.0),
            (30000, 1.0),
            (60000, 1.0),
            (75000, 1.0),
        ],
    )]);
    assert_eq!(post(&sink, encode_request(&r)).await.status(), 204);
    assert_eq!(sink.summary().totals.gaps, 1);
}

#[tokio::test]
async fn counter_decrease_is_counted_for_counter_like_series() {
    let sink = start(None).await;
    let r = request(vec![
        series(&[("__name__", "c_total")], &[(0, 5.0), (1000, 3.0)]),
        series(&[("__name__", "g")], &[(0, 5.0), (1000, 3.0)]),
    ]);
    assert_eq!(post(&sink, encode_request(&r)).await.status(), 204);
    assert_eq!(sink.summary().totals.counter_decreases, 1);
}

#[tokio::test]
async fn sender_rule_violations_are_rejected_and_counted() {
    let sink = start(None).await;
    let ok = request(vec![series(&[("__name__", "x"), ("a", "1")], &[(0, 1.0)])]);
    let cases: Vec<(WriteRequest, &str)> = vec![
        (
            request(vec![series(
                &[("__name__", "x"), ("b", "1"), ("a", "1")],
                &[(0, 1.0)],
            )]),
            "unsorted_labels",
        ),
        (
            request(vec![series(
                &[("__name__", "x"), ("a", "1"), ("a", "2")],
                &[(0, 1.0)],
            )]),
            "repeated_label_name",
        ),
        (
            request(vec![series(&[("__name__", "x"), ("a", "")], &[(0, 1.0)])]),
            "empty_label",
        ),
        (
            request(vec![series(&[("a", "1")], &[(0, 1.0)])]),
            "missing_metric_name",
        ),
    ];
    for (req, _) in &cases {
        let resp = post(&sink, encode_request(req)).await;
        assert_eq!(resp.status(), 400);
    }
    // Malformed bodies: not snappy; snappy of garbage protobuf.
    assert_eq!(
        post(&sink, b"\xff\xff\xff\xff\xff\x0fnot snappy".to_vec())
            .await
            .status(),
        400
    );
    let garbage = snap::raw::Encoder::new().compress_vec(&[0xff; 32]).unwrap();
    assert_eq!(post(&sink, garbage).await.status(), 400);
    // Framed snappy is not the block format remote write uses.
    let mut framed = snap::write::FrameEncoder::new(Vec::new());
    std::io::Write::write_all(&mut framed, &prost::Message::encode_to_vec(&ok)).unwrap();
    assert_eq!(
        post(&sink, framed.into_inner().unwrap()).await.status(),
        400
    );
    // Headers.
    let body = encode_request(&ok);
    let headers_missing: [&[(&str, &str)]; 3] = [
        &[
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &[
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &[
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
        ],
    ];
    for h in headers_missing {
        assert_eq!(post_with(&sink, body.clone(), h).await.status(), 400);
    }
    // The sink keeps working.
    assert_eq!(post(&sink, body).await.status(), 204);

    let s = sink.summary();
    for (_, reason) in &cases {
        assert_eq!(
            s.rejected.get(*reason),
            Some(&1),
            "{reason}: {:?}",
            s.rejected
        );
    }
    assert_eq!(s.rejected.get("snappy"), Some(&2), "{:?}", s.rejected);
    assert_eq!(s.rejected.get("protobuf"), Some(&1), "{:?}", s.rejected);
    for r in ["content_encoding", "content_type", "version_header"] {
        assert_eq!(s.rejected.get(r), Some(&1), "{r}: {:?}", s.rejected);
    }
    assert_eq!(s.requests, 11);
    assert_eq!(s.accepted_requests, 1);
    assert_eq!(s.totals.series, 1, "rejected requests record nothing");
}

#[tokio::test]
async fn fault_injection_answers_n_requests_then_recovers() {
    let sink = start(None).await;
    let body = encode_request(&request(vec![series(&[("__name__", "x")], &[(0, 1.0)])]));
    for (status, retry) in [(500u16, None), (503, None), (400, None), (429, Some("7"))] {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/control", sink.addr()))
            .json(&serde_json::json!({"status": status, "count": 2, "retry_after_secs": retry.map(|_| 7)}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        for _ in 0..2 {
            let resp = post(&sink, body.clone()).await;
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(
                resp.headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap()),
                retry
            );
        }
        assert_eq!(
            post(&sink, body.clone()).await.status(),
            204,
            "recovered after {status}"
        );
    }
    // For a duration, through the in-process API.
    sink.inject(Fault {
        status: 503,
        duration_secs: Some(0.3),
        ..Fault::default()
    })
    .unwrap();
    assert_eq!(post(&sink, body.clone()).await.status(), 503);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(post(&sink, body.clone()).await.status(), 204);
    // Until cleared.
    sink.inject(Fault {
        status: 500,
        ..Fault::default()
    })
    .unwrap();
    assert_eq!(post(&sink, body.clone()).await.status(), 500);
    let resp = reqwest::Client::new()
        .post(format!("http://{}/control", sink.addr()))
        .json(&serde_json::json!({"clear": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(post(&sink, body).await.status(), 204);
    assert!(
        sink.inject(Fault {
            status: 418,
            ..Fault::default()
        })
        .is_err()
    );

    let s = sink.summary();
    assert_eq!(s.injected_faults, 10);
    assert!(s.rejected.is_empty(), "injected faults are not rejections");
}
