//! `dns_sd_configs`: targets from DNS records, as Prometheus 2.42's
//! `discovery/dns` resolves them.
//!
//! - Each name is looked up every refresh (all names concurrently) through
//!   the resolv.conf search list: the first name of the list a server
//!   answers with NOERROR wins; if every server says NXDOMAIN for every
//!   candidate the name has no targets (its group empties); if some server
//!   failed (timeout, SERVFAIL, garbage) the lookup is an error and the
//!   name keeps its previous targets.
//! - A/AAAA records give `IP:port` (IPv6 in brackets), SRV records
//!   `target:port` (trailing dot removed), MX records `exchange:port`;
//!   CNAMEs in the answer are skipped. Every target carries
//!   `__meta_dns_name` (the configured name), `__meta_dns_srv_record_target`,
//!   `__meta_dns_srv_record_port` and `__meta_dns_mx_record_target` (empty
//!   where the record type has no such field), as Prometheus sets them.
//! - Group source: the configured name.
//!
//! The resolver is injectable ([`Resolver::fixed`]); by default it reads
//! `/etc/resolv.conf` at every lookup, as Prometheus does. Queries go over
//! UDP with EDNS0 (4096 bytes), falling back to TCP when truncated, with
//! miekg/dns' 2s timeout per exchange.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::TargetGroup;
use super::dns_wire::{self, Message, RCODE_NAME_ERROR, RCODE_SUCCESS, RData};
use crate::config::{DnsRecordType, DnsSdConfig};
use crate::labels::{self, Labels};

pub const DNS_NAME_LABEL: &str = "__meta_dns_name";
pub const SRV_RECORD_TARGET_LABEL: &str = "__meta_dns_srv_record_target";
pub const SRV_RECORD_PORT_LABEL: &str = "__meta_dns_srv_record_port";
pub const MX_RECORD_TARGET_LABEL: &str = "__meta_dns_mx_record_target";

/// The system resolver configuration file.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// miekg/dns' dial/read/write timeout.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

/// A lookup that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsSdError {
    #[error("dns_sd: could not load {path}: {reason}")]
    ResolvConf { path: String, reason: String },
    #[error(
        "dns_sd: could not resolve {name:?}: all servers responded with errors to at least one search domain"
    )]
    Unresolved { name: String },
    #[error("dns_sd: {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
}

/// Where queries go: servers, search list and `ndots`, as resolv.conf says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    pub servers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    /// Per exchange (send + receive).
    pub timeout: Duration,
}

impl ResolverConfig {
    /// These servers only: no search list, `ndots` 1, 2s per exchange.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        ResolverConfig {
            servers,
            search: Vec::new(),
            ndots: 1,
            timeout: EXCHANGE_TIMEOUT,
        }
    }

    /// Reads resolv.conf text as miekg/dns does: `nameserver` (port 53),
    /// `domain` / `search` (the last one wins), `options ndots:N` (at most
    /// 15). Unknown lines are ignored.
    pub fn parse_resolv_conf(text: &str) -> Self {
        let mut cfg = ResolverConfig::new(Vec::new());
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with(['#', ';']) {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["nameserver", addr, ..] => {
                    // A zone (`fe80::1%eth0`) cannot be expressed here; skip it.
                    if let Ok(ip) = addr.parse::<IpAddr>() {
                        cfg.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                ["domain", d, ..] => cfg.search = vec![d.to_string()],
                ["search", rest @ ..] => cfg.search = rest.iter().map(|s| s.to_string()).collect(),
                ["options", opts @ ..] => {
                    for o in opts {
                        if let Some(n) = o.strip_prefix("ndots:")
                            && let Ok(n) = n.parse::<usize>()
                        {
                            cfg.ndots = n.min(15);
                        }
                    }
                }
                _ => {}
            }
        }
        cfg
    }

    /// Reads a resolv.conf file.
    pub fn from_file(path: &str) -> Result<Self, DnsSdError> {
        std::fs::read_to_string(path)
            .map(|t| Self::parse_resolv_conf(&t))
            .map_err(|e| DnsSdError::ResolvConf {
                path: path.to_string(),
                reason: e.to_string(),
            })
    }

    /// The fully qualified names to try for `name`, in order (miekg/dns
    /// `NameList`): a rooted name alone; else with more labels than
    /// `ndots` the name first, then each search suffix, else the name last.
    pub fn name_list(&self, name: &str) -> Vec<String> {
        if name.ends_with('.') {
            return vec![name.to_string()];
        }
        let labels = name.split('.').filter(|l| !l.is_empty()).count();
        let has_ndots = labels > self.ndots;
        let fqdn = format!("{name}.");
        let mut out = Vec::new();
        if has_ndots {
            out.push(fqdn.clone());
        }
        for s in &self.search {
            let mut n = format!("{fqdn}{s}");
            if !n.ends_with('.') {
                n.push('.');
            }
            out.push(n);
        }
        if !has_ndots {
            out.push(fqdn);
        }
        out
    }
}

/// The resolver DNS discovery uses: the system's (resolv.conf, re-read at
/// every lookup) or a fixed configuration (tests, embedding).
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    fixed: Option<Arc<ResolverConfig>>,
}

impl Resolver {
    /// `/etc/resolv.conf`, read at each lookup.
    pub fn system() -> Self {
        Resolver::default()
    }

    pub fn fixed(cfg: ResolverConfig) -> Self {
        Resolver {
            fixed: Some(Arc::new(cfg)),
        }
    }

    fn config(&self) -> Result<Arc<ResolverConfig>, DnsSdError> {
        match &self.fixed {
            Some(c) => Ok(c.clone()),
            None => ResolverConfig::from_file(RESOLV_CONF).map(Arc::new),
        }
    }

    /// Prometheus' `lookupWithSearchPath`: the first NOERROR answer along
    /// the search list; an empty answer if every candidate is NXDOMAIN
    /// everywhere; an error if any candidate got no viable answer.
    pub async fn lookup(&self, name: &str, qtype: DnsRecordType) -> Result<Message, DnsSdError> {
        let conf = self.config()?;
        let mut all_valid = true;
        for candidate in conf.name_list(name) {
            match lookup_from_any_server(&conf, &candidate, qtype.code()).await {
                Some(msg) if msg.rcode == RCODE_SUCCESS => return Ok(msg),
                Some(_) => {}
                None => all_valid = false,
            }
        }
        if all_valid {
            Ok(Message {
                id: 0,
                rcode: RCODE_NAME_ERROR,
                truncated: false,
                answers: Vec::new(),
            })
        } else {
            Err(DnsSdError::Unresolved {
                name: name.to_string(),
            })
        }
    }
}

/// The first server's answer that is NOERROR or NXDOMAIN; `None` if no
/// server gave one (each failure is logged).
async fn lookup_from_any_server(conf: &ResolverConfig, name: &str, qtype: u16) -> Option<Message> {
    for server in &conf.servers {
        match ask(*server, name, qtype, conf.timeout).await {
            Ok(msg) if msg.rcode == RCODE_SUCCESS || msg.rcode == RCODE_NAME_ERROR => {
                return Some(msg);
            }
            Ok(msg) => {
                tracing::warn!(%server, name, rcode = msg.rcode, "dns_sd: server answered with an error")
            }
            Err(e) => tracing::warn!(%server, name, error = %e, "dns_sd: DNS resolution failed"),
        }
    }
    None
}

fn next_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Start from a time-derived value so that restarts do not reuse ids.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u16)
        .unwrap_or(0);
    NEXT.fetch_add(1, Ordering::Relaxed).wrapping_add(seed)
}

/// One exchange: UDP with EDNS0, then TCP without it if truncated.
async fn ask(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Message, String> {
    let id = next_id();
    let query = dns_wire::encode_query(id, name, qtype, true).map_err(|e| e.to_string())?;
    let msg = tokio::time::timeout(timeout, exchange_udp(server, &query, id))
        .await
        .map_err(|_| format!("read udp {server}: i/o timeout"))??;
    if !msg.truncated {
        return Ok(msg);
    }
    let id = next_id();
    let query = dns_wire::encode_query(id, name, qtype, false).map_err(|e| e.to_string())?;
    let msg = tokio::time::timeout(timeout, exchange_tcp(server, &query, id))
        .await
        .map_err(|_| format!("read tcp {server}: i/o timeout"))??;
    if msg.truncated {
        return Err("got truncated message on TCP (64kiB limit exceeded?)".to_string());
    }
    Ok(msg)
}

async fn exchange_udp(server: SocketAddr, query: &[u8], id: u16) -> Result<Message, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("udp: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("dial udp {server}: {e}"))?;
    sock.send(query)
        .await
        .map_err(|e| format!("write udp {server}: {e}"))?;
    let mut buf = vec![0u8; 65535];
    // Answers with another id (late replies to an earlier query) are
    // skipped; the caller's timeout bounds the loop.
    loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| format!("read udp {server}: {e}"))?;
        let msg = dns_wire::parse_message(&buf[..n]).map_err(|e| format!("udp {server}: {e}"))?;
        if msg.id == id {
            return Ok(msg);
        }
    }
}

async fn exchange_tcp(server: SocketAddr, query: &[u8], id: u16) -> Result<Message, String> {
    let mut s = TcpStream::connect(server)
        .await
        .map_err(|e| format!("dial tcp {server}: {e}"))?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed)
        .await
        .map_err(|e| format!("write tcp {server}: {e}"))?;
    let mut lb = [0u8; 2];
    s.read_exact(&mut lb)
        .await
        .map_err(|e| format!("read tcp {server}: {e}"))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(lb))];
    s.read_exact(&mut buf)
        .await
        .map_err(|e| format!("read tcp {server}: {e}"))?;
    let msg = dns_wire::parse_message(&buf).map_err(|e| format!("tcp {server}: {e}"))?;
    if msg.id != id {
        return Err(format!("tcp {server}: id mismatch"));
    }
    Ok(msg)
}

/// `host:port` as Go's `net.JoinHostPort`.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The group of `name` from a response, as Prometheus builds it.
pub fn group_from_message(name: &str, port: u16, msg: &Message) -> TargetGroup {
    let mut targets = Vec::new();
    for rec in &msg.answers {
        let (address, srv_target, srv_port, mx_target) = match &rec.data {
            RData::Srv { port, target, .. } => (
                join_host_port(target.trim_end_matches('.'), *port),
                target.clone(),
                port.to_string(),
                String::new(),
            ),
            RData::Mx { exchange, .. } => (
                join_host_port(exchange.trim_end_matches('.'), port),
                String::new(),
                String::new(),
                exchange.clone(),
            ),
            RData::A(ip) => (
                join_host_port(&ip.to_string(), port),
                String::new(),
                String::new(),
                String::new(),
            ),
            // Go prints an IPv4-mapped address in dotted decimal.
            RData::Aaaa(ip) => {
                let shown = match ip.to_ipv4_mapped() {
                    Some(v4) => v4.to_string(),
                    None => ip.to_string(),
                };
                (
                    join_host_port(&shown, port),
                    String::new(),
                    String::new(),
                    String::new(),
                )
            }
            RData::Cname(_) => continue,
            RData::Other(t) => {
                tracing::warn!(name, rtype = t, "dns_sd: invalid record in answer, skipped");
                continue;
            }
        };
        targets.push(Labels::from_pairs([
            (labels::ADDRESS, address),
            (DNS_NAME_LABEL, name.to_string()),
            (SRV_RECORD_TARGET_LABEL, srv_target),
            (SRV_RECORD_PORT_LABEL, srv_port),
            (MX_RECORD_TARGET_LABEL, mx_target),
        ]));
    }
    TargetGroup {
        source: name.to_string(),
        targets,
        labels: Labels::new(),
    }
}

/// One `dns_sd_configs` entry.
#[derive(Clone, Debug)]
pub struct DnsSd {
    names: Vec<String>,
    qtype: DnsRecordType,
    port: u16,
    refresh_interval: Duration,
    resolver: Resolver,
}

impl DnsSd {
    /// `None` when the config's type is not one Prometheus knows (a loaded
    /// config never has one).
    pub fn new(cfg: &DnsSdConfig, resolver: Resolver) -> Option<Self> {
        Some(DnsSd {
            names: cfg.names.clone(),
            qtype: cfg.record_type()?,
            port: cfg.port,
            refresh_interval: cfg.refresh_interval.to_std().max(Duration::from_millis(1)),
            resolver,
        })
    }

    pub fn refresh_interval(&self) -> Duration {
        self.refresh_interval
    }

    /// Resolves every name once, concurrently. Returns the groups of the
    /// names that resolved (empty for a name that no longer exists) and
    /// the errors of those that did not (they keep their previous groups).
    pub async fn refresh(&self) -> (Vec<TargetGroup>, Vec<DnsSdError>) {
        let lookups = self.names.iter().map(|name| async move {
            self.resolver
                .lookup(name, self.qtype)
                .await
                .map(|msg| group_from_message(name, self.port, &msg))
        });
        let mut groups = Vec::new();
        let mut errors = Vec::new();
        for r in futures_util::future::join_all(lookups).await {
            match r {
                Ok(g) => groups.push(g),
                Err(e) => {
                    tracing::error!(error = %e, "dns_sd: error refreshing DNS targets, keeping the previous ones");
                    errors.push(e);
                }
            }
        }
        (groups, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_and_name_list_like_miekg() {
        let c = ResolverConfig::parse_resolv_conf(
            "# c\nnameserver 10.0.0.1\nnameserver ::1\nsearch a.example b.example\noptions ndots:2 timeout:1\n",
        );
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[1].to_string(), "[::1]:53");
        assert_eq!(c.ndots, 2);
        assert_eq!(
            c.name_list("x.y"),
            ["x.y.a.example.", "x.y.b.example.", "x.y."]
        );
        assert_eq!(
            c.name_list("x.y.z"),
            ["x.y.z.", "x.y.z.a.example.", "x.y.z.b.example."]
        );
        assert_eq!(c.name_list("r.oot."), ["r.oot."]);
    }

    #[test]
    fn targets_and_meta_labels() {
        let msg = Message {
            id: 1,
            rcode: 0,
            truncated: false,
            answers: vec![
                dns_wire::Record {
                    name: "n.".into(),
                    ttl: 1,
                    data: RData::Cname("c.".into()),
                },
                dns_wire::Record {
                    name: "n.".into(),
                    ttl: 1,
                    data: RData::Aaaa("::ffff:1.2.3.4".parse().unwrap()),
                },
                dns_wire::Record {
                    name: "n.".into(),
                    ttl: 1,
                    data: RData::Aaaa("2001:db8::1".parse().unwrap()),
                },
            ],
        };
        let g = group_from_message("n", 9, &msg);
        assert_eq!(g.source, "n");
        assert_eq!(g.targets.len(), 2);
        assert_eq!(g.targets[0].get("__address__"), Some("1.2.3.4:9"));
        assert_eq!(g.targets[1].get("__address__"), Some("[2001:db8::1]:9"));
        assert_eq!(g.targets[1].get(SRV_RECORD_PORT_LABEL), Some(""));
        assert_eq!(g.targets[1].get(DNS_NAME_LABEL), Some("n"));
    }
}
