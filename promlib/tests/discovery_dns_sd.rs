//! dns_sd_configs against a DNS responder written here, on 127.0.0.1 UDP
//! (and TCP for truncated answers): A, AAAA, SRV and MX targets with their
//! meta labels, the search list, TCP fallback, and what happens when a
//! name stops resolving (server failure or garbage: the last targets stay;
//! NXDOMAIN: the targets go, as in Prometheus).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promshard_promlib::config::{self, DnsRecordType};
use promshard_promlib::discovery::dns_sd::{
    DNS_NAME_LABEL, MX_RECORD_TARGET_LABEL, SRV_RECORD_PORT_LABEL, SRV_RECORD_TARGET_LABEL,
};
use promshard_promlib::discovery::{
    self, Discoverer, DnsSd, Resolver, ResolverConfig, TargetSets, Update,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
enum Rec {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv(u16, &'static str),
    Mx(&'static str),
    Cname(&'static str),
}

#[derive(Clone, Debug)]
enum Answer {
    Records(Vec<Rec>),
    NxDomain,
    ServFail,
    Garbage,
    /// UDP says truncated; TCP gives the records.
    Truncated(Vec<Rec>),
}

/// Answers by `(lowercase fqdn, qtype)`; unknown names get NXDOMAIN.
#[derive(Clone, Default)]
struct Zone(Arc<Mutex<HashMap<(String, u16), Answer>>>);

impl Zone {
    fn set(&self, name: &str, qtype: u16, a: Answer) {
        self.0.lock().unwrap().insert((name.to_string(), qtype), a);
    }
    fn get(&self, name: &str, qtype: u16) -> Answer {
        self.0
            .lock()
            .unwrap()
            .get(&(name.to_ascii_lowercase(), qtype))
            .cloned()
            .unwrap_or(Answer::NxDomain)
    }
}

fn put_name(name: &str, out: &mut Vec<u8>) {
    for l in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
}

/// Reads the question: `(name with trailing dot, qtype, end of question)`.
fn question(q: &[u8]) -> Option<(String, u16, usize)> {
    let mut pos = 12;
    let mut name = String::new();
    loop {
        let n = *q.get(pos)? as usize;
        pos += 1;
        if n == 0 {
            break;
        }
        name.push_str(std::str::from_utf8(q.get(pos..pos + n)?).ok()?);
        name.push('.');
        pos += n;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    Some((name, qtype, pos + 4))
}

/// The response to query `q`; `tcp` decides truncation.
fn respond(zone: &Zone, q: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let (name, qtype, qend) = question(q)?;
    let answer = zone.get(&name, qtype);
    let (rcode, tc, recs) = match answer {
        Answer::Records(r) => (0u16, false, r),
        Answer::NxDomain => (3, false, vec![]),
        Answer::ServFail => (2, false, vec![]),
        Answer::Garbage => return Some(vec![q[0], q[1], 0x81, 0x80, 0, 1, 0, 9, 0xff]),
        Answer::Truncated(r) if tcp => (0, false, r),
        Answer::Truncated(_) => (0, true, vec![]),
    };
    let mut out = vec![q[0], q[1]];
    let flags: u16 = 0x8180 | rcode | if tc { 0x0200 } else { 0 };
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(recs.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&q[12..qend]);
    for r in recs {
        out.extend_from_slice(&[0xC0, 12]); // the question's name
        let (t, rdata) = match r {
            Rec::A(ip) => (1u16, ip.octets().to_vec()),
            Rec::Aaaa(ip) => (28, ip.octets().to_vec()),
            Rec::Srv(port, target) => {
                let mut d = vec![0, 10, 0, 5];
                d.extend_from_slice(&port.to_be_bytes());
                put_name(target, &mut d);
                (33, d)
            }
            Rec::Mx(host) => {
                let mut d = vec![0, 10];
                put_name(host, &mut d);
                (15, d)
            }
            Rec::Cname(host) => {
                let mut d = Vec::new();
                put_name(host, &mut d);
                (5, d)
            }
        };
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

/// Starts the responder on 127.0.0.1 (UDP and TCP on the same port).
async fn start_dns(zone: Zone) -> SocketAddr {
    // Find a port free for both protocols.
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let Ok(tcp) = TcpListener::bind(addr).await else {
            continue;
        };
        let z = zone.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                if let Some(r) = respond(&z, &buf[..n], false) {
                    let _ = udp.send_to(&r, from).await;
                }
            }
        });
        tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                let z = zone.clone();
                tokio::spawn(async move {
                    let mut lb = [0u8; 2];
                    s.read_exact(&mut lb).await.ok()?;
                    let mut q = vec![0u8; u16::from_be_bytes(lb) as usize];
                    s.read_exact(&mut q).await.ok()?;
                    let r = respond(&z, &q, true)?;
                    s.write_all(&(r.len() as u16).to_be_bytes()).await.ok()?;
                    s.write_all(&r).await.ok()
                });
            }
        });
        return addr;
    }
    panic!("no port free for both UDP and TCP");
}

fn resolver(addr: SocketAddr) -> Resolver {
    let mut c = ResolverConfig::new(vec![addr]);
    c.timeout = Duration::from_millis(500);
    Resolver::fixed(c)
}

fn dns_config(entries: &str) -> config::Config {
    let text = format!("scrape_configs:\n  - job_name: d\n    dns_sd_configs:\n{entries}");
    config::load_str(&text, "d.yml").unwrap()
}

/// `(address, name, srv target, srv port, mx target)` of each target.
fn rows(sd_groups: &[discovery::TargetGroup]) -> Vec<[String; 5]> {
    sd_groups
        .iter()
        .flat_map(|g| g.targets.iter())
        .map(|t| {
            let get = |k: &str| t.get(k).unwrap_or("<absent>").to_string();
            [
                get("__address__"),
                get(DNS_NAME_LABEL),
                get(SRV_RECORD_TARGET_LABEL),
                get(SRV_RECORD_PORT_LABEL),
                get(MX_RECORD_TARGET_LABEL),
            ]
        })
        .collect()
}

fn row(a: &str, n: &str, st: &str, sp: &str, mx: &str) -> [String; 5] {
    [a, n, st, sp, mx].map(str::to_string)
}

#[tokio::test]
async fn a_aaaa_srv_and_mx_targets_with_meta_labels() {
    let zone = Zone::default();
    zone.set(
        "a.test.",
        1,
        Answer::Records(vec![
            Rec::Cname("alias.test"),
            Rec::A(Ipv4Addr::new(10, 0, 0, 1)),
            Rec::A(Ipv4Addr::new(10, 0, 0, 2)),
        ]),
    );
    zone.set(
        "six.test.",
        28,
        Answer::Records(vec![Rec::Aaaa("2001:db8::7".parse().unwrap())]),
    );
    zone.set(
        "_m._tcp.test.",
        33,
        Answer::Records(vec![
            Rec::Srv(8080, "node1.test"),
            Rec::Srv(9090, "node2.test"),
        ]),
    );
    zone.set("mail.test.", 15, Answer::Records(vec![Rec::Mx("mx1.test")]));
    let addr = start_dns(zone).await;
    let cfg = dns_config(
        "      - names: [a.test]\n        type: A\n        port: 9100\n      - names: [six.test]\n        type: AAAA\n        port: 80\n      - names: [_m._tcp.test]\n      - names: [mail.test]\n        type: MX\n        port: 25\n",
    );
    let all = discovery::discover_once_with(&cfg, &resolver(addr))
        .await
        .unwrap();
    let got = rows(&all["d"]);
    assert_eq!(
        got,
        vec![
            row("10.0.0.1:9100", "a.test", "", "", ""),
            row("10.0.0.2:9100", "a.test", "", "", ""),
            row("[2001:db8::7]:80", "six.test", "", "", ""),
            row("node1.test:8080", "_m._tcp.test", "node1.test.", "8080", ""),
            row("node2.test:9090", "_m._tcp.test", "node2.test.", "9090", ""),
            row("mx1.test:25", "mail.test", "", "", "mx1.test."),
        ]
    );
    // One group per name, the name as source, no group labels.
    let sources: Vec<&str> = all["d"].iter().map(|g| g.source.as_str()).collect();
    assert_eq!(sources, ["a.test", "six.test", "_m._tcp.test", "mail.test"]);
    assert!(all["d"].iter().all(|g| g.labels.is_empty()));
}

#[tokio::test]
async fn search_list_and_tcp_fallback() {
    let zone = Zone::default();
    zone.set(
        "short.corp.test.",
        1,
        Answer::Records(vec![Rec::A(Ipv4Addr::new(1, 2, 3, 4))]),
    );
    let many: Vec<Rec> = (0..50)
        .map(|i| Rec::A(Ipv4Addr::new(10, 1, 0, i)))
        .collect();
    zone.set("big.test.", 1, Answer::Truncated(many));
    let addr = start_dns(zone).await;
    let mut rc = ResolverConfig::new(vec![addr]);
    rc.search = vec!["corp.test".to_string()];
    let res = Resolver::fixed(rc);

    let msg = res.lookup("short", DnsRecordType::A).await.unwrap();
    assert_eq!(msg.answers.len(), 1);
    let cfg = dns_config("      - names: [big.test]\n        type: A\n        port: 1\n");
    let sd = DnsSd::new(&cfg.scrape_configs[0].dns_sd_configs[0], res).unwrap();
    let (groups, errors) = sd.refresh().await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(groups[0].targets.len(), 50);
    assert_eq!(
        groups[0].targets[49].get("__address__"),
        Some("10.1.0.49:1")
    );
}

async fn until(
    rx: &mut mpsc::Receiver<Update>,
    sets: &mut TargetSets,
    what: &str,
    done: impl Fn(&TargetSets) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(sets) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(u)) => {
                sets.apply(u);
            }
            Ok(None) => panic!("discoverer stopped while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}: {:?}", sets.groups("d")),
        }
    }
}

fn addrs(sets: &TargetSets) -> BTreeMap<String, Vec<String>> {
    sets.groups("d")
        .iter()
        .map(|g| {
            (
                g.source.clone(),
                g.targets
                    .iter()
                    .map(|t| t.get("__address__").unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_name_that_stops_resolving_keeps_its_last_targets_until_nxdomain() {
    let zone = Zone::default();
    zone.set(
        "x.test.",
        1,
        Answer::Records(vec![Rec::A(Ipv4Addr::new(10, 9, 0, 1))]),
    );
    zone.set(
        "y.test.",
        1,
        Answer::Records(vec![Rec::A(Ipv4Addr::new(10, 9, 0, 2))]),
    );
    let addr = start_dns(zone.clone()).await;
    let cfg = dns_config(
        "      - names: [x.test, y.test]\n        type: A\n        port: 7\n        refresh_interval: 150ms\n",
    );
    let d = Discoverer::with_resolver(&cfg, resolver(addr)).unwrap();
    let stats = d.stats();
    let (tx, mut rx) = mpsc::channel(16);
    let task = tokio::spawn(d.run(tx));
    let mut sets = TargetSets::new();
    until(&mut rx, &mut sets, "both names", |s| {
        s.groups("d").len() == 2
    })
    .await;
    let good = addrs(&sets);
    assert_eq!(good["x.test"], ["10.9.0.1:7"]);

    for broken in [Answer::ServFail, Answer::Garbage] {
        let before = stats.failures("dns");
        zone.set("x.test.", 1, broken.clone());
        // y changes meanwhile: other names keep being refreshed.
        zone.set(
            "y.test.",
            1,
            Answer::Records(vec![Rec::A(Ipv4Addr::new(10, 9, 0, 3))]),
        );
        until(&mut rx, &mut sets, "y changed", |s| {
            addrs(s).get("y.test").is_some_and(|a| a == &["10.9.0.3:7"])
        })
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while stats.failures("dns") < before + 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no failed refreshes counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while let Ok(u) = rx.try_recv() {
            sets.apply(u);
        }
        assert_eq!(addrs(&sets)["x.test"], ["10.9.0.1:7"], "after {broken:?}");
        let snap = stats.snapshot();
        let s = &snap[&("d".to_string(), "dns/0".to_string())];
        assert!(
            s.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("x.test"),
            "{s:?}"
        );
        zone.set(
            "y.test.",
            1,
            Answer::Records(vec![Rec::A(Ipv4Addr::new(10, 9, 0, 2))]),
        );
    }

    // NXDOMAIN everywhere: the name is gone, and so are its targets.
    zone.set("x.test.", 1, Answer::NxDomain);
    until(&mut rx, &mut sets, "x removed", |s| {
        !addrs(s).contains_key("x.test")
    })
    .await;
    assert!(addrs(&sets).contains_key("y.test"));

    // And it comes back.
    zone.set(
        "x.test.",
        1,
        Answer::Records(vec![Rec::A(Ipv4Addr::new(10, 9, 0, 5))]),
    );
    until(&mut rx, &mut sets, "x back", |s| {
        addrs(s).get("x.test").is_some_and(|a| a == &["10.9.0.5:7"])
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn unreachable_servers_are_errors_not_empty_answers() {
    // Nothing listens on this UDP port (bound then dropped).
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    drop(sock);
    let mut rc = ResolverConfig::new(vec![addr]);
    rc.timeout = Duration::from_millis(300);
    let e = Resolver::fixed(rc)
        .lookup("x.test", DnsRecordType::Srv)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("x.test"), "{e}");
    // No servers at all.
    let e = Resolver::fixed(ResolverConfig::new(vec![]))
        .lookup("x.test", DnsRecordType::A)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("could not resolve"), "{e}");
}

#[tokio::test]
async fn a_silent_server_times_out_and_the_next_server_answers() {
    let zone = Zone::default();
    zone.set(
        "z.test.",
        1,
        Answer::Records(vec![Rec::A(Ipv4Addr::new(10, 0, 0, 9))]),
    );
    let good = start_dns(zone).await;
    // Bound, never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();

    let mut rc = ResolverConfig::new(vec![silent_addr]);
    rc.timeout = Duration::from_millis(300);
    let t0 = std::time::Instant::now();
    let e = Resolver::fixed(rc.clone())
        .lookup("z.test", DnsRecordType::A)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("z.test"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    rc.servers.push(good);
    let msg = Resolver::fixed(rc)
        .lookup("z.test", DnsRecordType::A)
        .await
        .unwrap();
    assert_eq!(msg.answers.len(), 1);
    drop(silent);
}
