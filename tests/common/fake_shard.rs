//! Misbehaving shards for the coordinator's bad-input tests: raw gRPC
//! clients of `promshard.v1.Coordinator/Attach` that send garbage, say
//! Hello and then hang, or answer pings but never acknowledge.

use std::time::Duration;

use promshard_proto::v1::coordinator_client::CoordinatorClient;
use promshard_proto::v1::{
    Ack, Capacity, CoordinatorMessage, Hello, Pong, Report, ShardMessage, TargetHealth,
    TargetReport, coordinator_message, shard_message,
};
use tokio::sync::mpsc;

/// How a fake shard behaves after its first message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Manner {
    /// Never reads, never sends again.
    Mute,
    /// Answers pings, never acknowledges an assignment.
    PongNoAck,
    /// Answers pings, never acknowledges, and reports a huge load (1e6
    /// series) for these target ids, which it does not scrape, plus a
    /// second Hello and an Ack nobody asked for.
    Liar(Vec<u64>),
}

fn outbound(
    rx: mpsc::Receiver<ShardMessage>,
) -> impl futures_util::Stream<Item = ShardMessage> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

/// A Hello with `id` and a capacity of `max_series`.
pub fn hello(id: &str, max_series: u64) -> Hello {
    Hello {
        shard_id: id.to_string(),
        capacity: Some(Capacity {
            max_series,
            max_samples_per_second: 1e9,
        }),
        address: format!("http://fake-{id}.invalid:1"),
        version: "fake".into(),
        ..Hello::default()
    }
}

/// Sends `first` as the first message of an Attach call; returns the gRPC
/// status the call ends with (code and message), or `None` if it is still
/// open after `wait`.
pub async fn attach_with_first(
    address: &str,
    first: shard_message::Msg,
    wait: Duration,
) -> Option<(i32, String)> {
    let mut client = CoordinatorClient::connect(address.to_string())
        .await
        .expect("connect to the coordinator");
    let (tx, rx) = mpsc::channel(4);
    tx.send(ShardMessage { msg: Some(first) }).await.ok()?;
    let call = async {
        match client.attach(outbound(rx)).await {
            Err(status) => Some((status.code() as i32, status.message().to_string())),
            Ok(resp) => {
                let mut inbound = resp.into_inner();
                loop {
                    match inbound.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => return Some((0, "stream ended".into())),
                        Err(status) => {
                            return Some((status.code() as i32, status.message().to_string()));
                        }
                    }
                }
            }
        }
    };
    let r = tokio::time::timeout(wait, call).await.ok().flatten();
    drop(tx);
    r
}

/// A Report as the first message.
pub fn report_first() -> shard_message::Msg {
    shard_message::Msg::Report(Report {
        total_series: 1,
        ..Report::default()
    })
}

/// Attaches as `id` and then behaves per `manner` until the task is
/// aborted (the returned handle) or the coordinator ends the call.
pub fn spawn_fake(
    rt: &tokio::runtime::Runtime,
    address: &str,
    id: &str,
    max_series: u64,
    manner: Manner,
) -> tokio::task::JoinHandle<String> {
    let address = address.to_string();
    let hello = hello(id, max_series);
    rt.spawn(async move {
        let mut client = match CoordinatorClient::connect(address).await {
            Ok(c) => c,
            Err(e) => return format!("connect: {e}"),
        };
        let (tx, rx) = mpsc::channel::<ShardMessage>(64);
        let _ = tx
            .send(ShardMessage {
                msg: Some(shard_message::Msg::Hello(hello)),
            })
            .await;
        let resp = match client.attach(outbound(rx)).await {
            Ok(r) => r,
            Err(s) => return format!("attach refused: {s}"),
        };
        let mut inbound = resp.into_inner();
        match manner {
            Manner::Mute => {
                // Hold the call open, read nothing.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(inbound);
                drop(tx);
                "slept".into()
            }
            Manner::Liar(ids) => {
                let lie = Report {
                    targets: ids
                        .iter()
                        .map(|id| TargetReport {
                            target_id: *id,
                            series: 1_000_000,
                            samples_per_scrape: 1_000_000,
                            scrape_duration_seconds: 0.1,
                            interval_seconds: 1.0,
                            health: TargetHealth::Up as i32,
                            last_scrape_unix_ms: super::now_ms(),
                            ..TargetReport::default()
                        })
                        .collect(),
                    total_series: 1_000_000,
                    total_samples_per_second: f64::NAN,
                    unix_ms: super::now_ms(),
                    ..Report::default()
                };
                let extra = [
                    shard_message::Msg::Hello(super::fake_shard::hello("fake-liar", 1)),
                    shard_message::Msg::Ack(Ack {
                        assignment_version: 999,
                        ..Ack::default()
                    }),
                ];
                for m in extra {
                    let _ = tx.send(ShardMessage { msg: Some(m) }).await;
                }
                let mut tick = tokio::time::interval(Duration::from_millis(300));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let msg = shard_message::Msg::Report(lie.clone());
                            if tx.send(ShardMessage { msg: Some(msg) }).await.is_err() {
                                return "send failed".into();
                            }
                        }
                        m = inbound.message() => match m {
                            Ok(Some(CoordinatorMessage {
                                msg: Some(coordinator_message::Msg::Ping(p)),
                            })) => {
                                let pong = shard_message::Msg::Pong(Pong {
                                    ping_unix_ms: p.unix_ms,
                                    unix_ms: super::now_ms(),
                                });
                                let _ = tx.send(ShardMessage { msg: Some(pong) }).await;
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => return "stream ended".into(),
                            Err(s) => return format!("ended: {s}"),
                        }
                    }
                }
            }
            Manner::PongNoAck => loop {
                match inbound.message().await {
                    Ok(Some(CoordinatorMessage {
                        msg: Some(coordinator_message::Msg::Ping(p)),
                    })) => {
                        let _ = tx
                            .send(ShardMessage {
                                msg: Some(shard_message::Msg::Pong(Pong {
                                    ping_unix_ms: p.unix_ms,
                                    unix_ms: super::now_ms(),
                                })),
                            })
                            .await;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return "stream ended".into(),
                    Err(s) => return format!("ended: {s}"),
                }
            },
        }
    })
}
