//! Bearer token and TLS on the hub's Attach call (real tonic server and
//! clients on 127.0.0.1).

mod hub_support;

use std::time::Duration;

use hub_support::*;
use promshard_coordinator::hub::{BearerToken, HubEvent, HubOptions};
use promshard_proto::v1::coordinator_client::CoordinatorClient;
use promshard_proto::v1::shard_message;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

const TOKEN: &str = "t0ps3cret-token";

fn token_opts() -> HubOptions {
    HubOptions {
        auth_token: Some(BearerToken::new(TOKEN).unwrap()),
        ..fast_opts()
    }
}

#[tokio::test]
async fn missing_or_wrong_token_is_unauthenticated() {
    let mut hub = start_hub(token_opts()).await;
    let hello_msg = || Some(shard_message::Msg::Hello(hello("shard-a")));

    for (token, what) in [
        (None, "missing"),
        (Some("wrong-token-xxxx"), "wrong"),
        (Some("t0ps3cret-toke"), "prefix"),
        (Some(""), "empty"),
    ] {
        let err = attach_with(hub.addr, hello_msg(), token)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what} token accepted"));
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{what}: {err:?}");
        assert!(
            !err.message().contains(TOKEN),
            "the token leaks into the status"
        );
    }
    assert!(hub.hub.shards().is_empty());
    assert_eq!(hub.hub.stats().rejections.unauthenticated, 4);

    // The right token attaches.
    let _shard = attach_with(hub.addr, hello_msg(), Some(TOKEN))
        .await
        .expect("accepted");
    expect_attached(&mut hub, "shard-a").await;
    assert_eq!(hub.hub.shards().len(), 1);
    // The token never appears in Debug output of the options.
    assert!(!format!("{:?}", token_opts()).contains(TOKEN));
    hub.stop().await;
}

#[tokio::test]
async fn attach_over_tls_with_token() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = ck.cert.pem();
    let key_pem = ck.signing_key.serialize_pem();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(&cert_pem, &key_pem));
    let mut hub = start_hub_tls(token_opts(), Some(tls)).await;

    let channel = Endpoint::from_shared(format!("https://{}", hub.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&cert_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("TLS connect");
    let shard = attach_via(
        CoordinatorClient::new(channel),
        Some(shard_message::Msg::Hello(hello("tls-shard"))),
        Some(TOKEN),
    )
    .await
    .expect("attach over TLS");
    let HubEvent::Attached { hello: got, .. } = expect_attached(&mut hub, "tls-shard").await else {
        unreachable!()
    };
    assert_eq!(got, hello("tls-shard"));
    let _responder = shard.spawn_responder();
    let out = hub
        .hub
        .send_delta(
            &"tls-shard".into(),
            promshard_proto::v1::AssignmentDelta {
                version: 8,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(out.fully_applied());

    // Plaintext against the TLS port does not attach.
    let plain = tokio::time::timeout(
        BOUND,
        attach_with(
            hub.addr,
            Some(shard_message::Msg::Hello(hello("plain"))),
            Some(TOKEN),
        ),
    )
    .await;
    if let Ok(r) = plain {
        assert!(r.is_err(), "plaintext attach to a TLS hub succeeded");
    }
    assert!(hub.hub.shard(&"plain".into()).is_none());
    hub.stop().await;
}
