//! Helpers of the hub tests: a real tonic server on 127.0.0.1 and real
//! tonic clients playing shards.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use promshard_coordinator::hub::{HubEvent, HubOptions, ShardHub};
use promshard_proto::v1::coordinator_client::CoordinatorClient;
use promshard_proto::v1::{
    Ack, Capacity, CoordinatorMessage, Hello, Label, Pong, ShardMessage, Target,
    coordinator_message, shard_message,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status, Streaming};

/// Every wait in these tests is bounded by this (or something smaller).
pub const BOUND: Duration = Duration::from_secs(10);

pub struct RunningHub {
    pub hub: ShardHub,
    pub events: mpsc::Receiver<HubEvent>,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), promshard_coordinator::hub::HubError>>,
}

impl RunningHub {
    /// Fires the shutdown signal and waits (bounded) for serve to return;
    /// returns how long that took.
    pub async fn stop(mut self) -> Duration {
        let t = std::time::Instant::now();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(BOUND, &mut self.task)
            .await
            .expect("hub stops within the bound")
            .expect("serve task did not panic")
            .expect("serve returns Ok");
        t.elapsed()
    }

    /// The next event, within `BOUND`.
    pub async fn event(&mut self) -> HubEvent {
        tokio::time::timeout(BOUND, self.events.recv())
            .await
            .expect("an event within the bound")
            .expect("event channel open")
    }

    /// The next event that is not a Report.
    pub async fn lifecycle_event(&mut self) -> HubEvent {
        loop {
            match self.event().await {
                HubEvent::Report { .. } => continue,
                e => return e,
            }
        }
    }
}

pub async fn start_hub(opts: HubOptions) -> RunningHub {
    start_hub_tls(opts, None).await
}

pub async fn start_hub_tls(
    opts: HubOptions,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> RunningHub {
    let (hub, events) = ShardHub::new(opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let h = hub.clone();
    let task = tokio::spawn(async move {
        h.serve(listener, tls, async {
            let _ = stopped.await;
        })
        .await
    });
    RunningHub {
        hub,
        events,
        addr,
        stop: Some(stop),
        task,
    }
}

/// Fast timers for tests.
pub fn fast_opts() -> HubOptions {
    HubOptions {
        ack_timeout: Duration::from_millis(500),
        ping_interval: Duration::from_millis(100),
        failure_timeout: Duration::from_secs(30),
        hello_timeout: Duration::from_secs(2),
        event_timeout: Duration::from_secs(2),
        shutdown_grace: Duration::from_millis(500),
        ..HubOptions::default()
    }
}

pub async fn client(addr: SocketAddr) -> CoordinatorClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect to the hub");
    CoordinatorClient::new(channel).max_decoding_message_size(256 << 20)
}

/// A shard's side of one Attach stream.
pub struct TestShard {
    pub tx: mpsc::Sender<ShardMessage>,
    pub inbound: Streaming<CoordinatorMessage>,
}

impl TestShard {
    pub async fn send(&self, msg: shard_message::Msg) {
        self.tx
            .send(ShardMessage { msg: Some(msg) })
            .await
            .expect("request stream open");
    }

    /// The next message that is not a Ping, within `BOUND`.
    pub async fn next_non_ping(&mut self) -> Result<Option<CoordinatorMessage>, Status> {
        loop {
            let m = tokio::time::timeout(BOUND, self.inbound.message())
                .await
                .expect("a message within the bound")?;
            match m {
                Some(CoordinatorMessage {
                    msg: Some(coordinator_message::Msg::Ping(_)),
                }) => continue,
                other => return Ok(other),
            }
        }
    }

    /// Answers Pings with Pongs and assignment deltas with `Ack{ok}`, in a
    /// task, until the stream ends.
    pub fn spawn_responder(mut self) -> JoinHandle<Status> {
        tokio::spawn(async move {
            loop {
                match self.inbound.message().await {
                    Ok(Some(CoordinatorMessage { msg: Some(m) })) => {
                        let reply = match m {
                            coordinator_message::Msg::Ping(p) => shard_message::Msg::Pong(Pong {
                                ping_unix_ms: p.unix_ms,
                                unix_ms: p.unix_ms,
                            }),
                            coordinator_message::Msg::Assignment(d) => {
                                shard_message::Msg::Ack(Ack {
                                    assignment_version: d.version,
                                    ok: true,
                                    ..Default::default()
                                })
                            }
                            _ => continue,
                        };
                        if self
                            .tx
                            .send(ShardMessage { msg: Some(reply) })
                            .await
                            .is_err()
                        {
                            return Status::cancelled("request stream closed");
                        }
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return Status::ok("stream ended"),
                    Err(status) => return status,
                }
            }
        })
    }
}

/// Opens an Attach stream whose first message is `first` (normally a
/// Hello). `token`: the bearer token to present.
pub async fn attach_with(
    addr: SocketAddr,
    first: Option<shard_message::Msg>,
    token: Option<&str>,
) -> Result<TestShard, Status> {
    attach_via(client(addr).await, first, token).await
}

/// Like [`attach_with`], over a given client (e.g. a TLS channel).
pub async fn attach_via(
    mut c: CoordinatorClient<Channel>,
    first: Option<shard_message::Msg>,
    token: Option<&str>,
) -> Result<TestShard, Status> {
    let (tx, rx) = mpsc::channel::<ShardMessage>(64);
    if let Some(first) = first {
        tx.send(ShardMessage { msg: Some(first) }).await.unwrap();
    }
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut req = Request::new(outbound);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let resp = tokio::time::timeout(BOUND, c.attach(req))
        .await
        .expect("Attach answers within the bound")?;
    Ok(TestShard {
        tx,
        inbound: resp.into_inner(),
    })
}

pub async fn attach(addr: SocketAddr, hello: Hello) -> TestShard {
    attach_with(addr, Some(shard_message::Msg::Hello(hello)), None)
        .await
        .expect("Attach accepted")
}

/// A Hello with a capacity and a couple of targets.
pub fn hello(id: &str) -> Hello {
    Hello {
        shard_id: id.to_string(),
        capacity: Some(Capacity {
            max_series: 1_000_000,
            max_samples_per_second: 50_000.0,
        }),
        backend: promshard_proto::v1::BackendKind::Native as i32,
        targets: vec![
            target(1, "node", "10.0.0.1:9100"),
            target(0xdead_beef_0000_0002, "node", "10.0.0.2:9100"),
        ],
        address: format!("127.0.0.1:9{}", id.len()),
        version: "0.1.0".into(),
        assignment_version: 7,
        job_config_hashes: [("node".to_string(), "abc123".to_string())].into(),
    }
}

pub fn target(id: u64, job: &str, addr: &str) -> Target {
    Target {
        id,
        job_name: job.into(),
        labels: vec![
            Label {
                name: "__address__".into(),
                value: addr.into(),
            },
            Label {
                name: "job".into(),
                value: job.into(),
            },
        ],
    }
}

/// Waits for the Attached event of `shard` (skipping others), returns it.
pub async fn expect_attached(hub: &mut RunningHub, shard: &str) -> HubEvent {
    loop {
        let e = hub.lifecycle_event().await;
        if let HubEvent::Attached { shard: s, .. } = &e
            && s.0 == shard
        {
            return e;
        }
    }
}
