//! Target labels: what Prometheus does between discovery and scraping
//! (`scrape.PopulateLabels`): defaults for the reserved labels, relabeling,
//! dropping targets with an empty `__address__`, `instance` from
//! `__address__`, and the scrape URL with `__param_*` parameters.

use std::collections::BTreeMap;

use crate::config::ScrapeConfig;
use crate::duration::{Duration, DurationError};
use crate::labels::Label;
use crate::labels::{self, Labels};
use crate::relabel::{self, Builder, go_quote};

/// A target ready to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Stable id: [`labels::target_id`] of the job name and `labels`.
    pub id: u64,
    pub job_name: String,
    /// Final labels after relabeling, including the reserved labels that
    /// define the scrape (`__address__`, `__scheme__`, `__metrics_path__`,
    /// `__scrape_interval__`, `__scrape_timeout__`, `__param_*`).
    pub labels: Labels,
    /// The labels as discovered (group labels, the reserved defaults and
    /// `__param_*` merged in, empty values removed), exactly as Prometheus
    /// 2.42 shows `discoveredLabels`: that release lets relabeling
    /// overwrite this slice in place when the result fits its capacity, and
    /// this field reproduces the overwritten content (see
    /// `DiscoveredView`). Not a reliable pre-relabel set for logic; use it
    /// for display and API parity.
    pub discovered_labels: Labels,
}

impl Target {
    /// The promshard.v1 form (id, job, final labels) the coordinator sends
    /// to shards.
    pub fn to_proto(&self) -> promshard_proto::v1::Target {
        promshard_proto::v1::Target {
            id: self.id,
            job_name: self.job_name.clone(),
            labels: self
                .labels
                .iter()
                .map(|l| promshard_proto::v1::Label {
                    name: l.name.clone(),
                    value: l.value.clone(),
                })
                .collect(),
        }
    }

    /// The labels attached to every sample: final labels without `__*`.
    pub fn public_labels(&self) -> Labels {
        self.labels.public()
    }

    /// The URL to scrape, as Prometheus' `Target.URL().String()`: the
    /// job's `params` overlaid by the `__param_*` labels (a label replaces
    /// the first value of its parameter), encoded like Go's
    /// `url.Values.Encode` (keys sorted), and `scheme://address/path?query`
    /// with Go's escaping of host and path.
    pub fn url(&self, cfg: &ScrapeConfig) -> String {
        let mut params: BTreeMap<String, Vec<String>> = cfg.params.clone();
        for l in self.labels.iter() {
            let Some(key) = l.name.strip_prefix(labels::PARAM_PREFIX) else {
                continue;
            };
            match params.get_mut(key) {
                Some(values) if !values.is_empty() => values[0] = l.value.clone(),
                _ => {
                    params.insert(key.to_string(), vec![l.value.clone()]);
                }
            }
        }
        let mut query = String::new();
        for (k, values) in &params {
            for v in values {
                if !query.is_empty() {
                    query.push('&');
                }
                query.push_str(&go_escape(k, Encode::QueryComponent));
                query.push('=');
                query.push_str(&go_escape(v, Encode::QueryComponent));
            }
        }
        let scheme = self.labels.get(labels::SCHEME).unwrap_or_default();
        let host = self.labels.get(labels::ADDRESS).unwrap_or_default();
        let path = self.labels.get(labels::METRICS_PATH).unwrap_or_default();
        let mut out = String::new();
        if !scheme.is_empty() {
            out.push_str(scheme);
            out.push(':');
        }
        if !scheme.is_empty() || !host.is_empty() {
            if !host.is_empty() || !path.is_empty() {
                out.push_str("//");
            }
            out.push_str(&go_escape(host, Encode::Host));
        }
        let path = go_escape(path, Encode::Path);
        if !path.is_empty() && !path.starts_with('/') && !host.is_empty() {
            out.push('/');
        }
        out.push_str(&path);
        if !query.is_empty() {
            out.push('?');
            out.push_str(&query);
        }
        out
    }

    /// The scrape interval from `__scrape_interval__`.
    pub fn interval(&self) -> Option<Duration> {
        self.labels.get(labels::SCRAPE_INTERVAL)?.parse().ok()
    }

    /// The scrape timeout from `__scrape_timeout__`.
    pub fn timeout(&self) -> Option<Duration> {
        self.labels.get(labels::SCRAPE_TIMEOUT)?.parse().ok()
    }
}

/// The outcome of populating one discovered target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Populated {
    /// Scrape it.
    Active(Target),
    /// Relabeling dropped it (Prometheus' `droppedTargets`; the labels as
    /// 2.42 shows them, see [`Target::discovered_labels`]).
    Dropped { discovered_labels: Labels },
}

/// A discovered target that cannot become a target (Prometheus logs these
/// and lists them nowhere). Messages are Prometheus'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("no address")]
    NoAddress,
    #[error("invalid scheme: {}", go_quote(.0))]
    InvalidScheme(String),
    #[error("{} is not a valid hostname", go_quote(.0))]
    InvalidAddress(String),
    #[error("error parsing scrape interval: {0}")]
    BadInterval(DurationError),
    #[error("scrape interval cannot be 0")]
    ZeroInterval,
    #[error("error parsing scrape timeout: {0}")]
    BadTimeout(DurationError),
    #[error("scrape timeout cannot be 0")]
    ZeroTimeout,
    #[error(
        "scrape timeout cannot be greater than scrape interval ({} > {})",
        go_quote(timeout),
        go_quote(interval)
    )]
    TimeoutAboveInterval { timeout: String, interval: String },
    #[error("invalid label value for {}: {}", go_quote(name), go_quote(value))]
    InvalidLabelValue { name: String, value: String },
    #[error("{0}")]
    Other(String),
}

/// Turns one discovered label set (target labels merged with its group's
/// labels) into a target, as Prometheus 2.42's `PopulateLabels` does with
/// default flags (a missing port is filled in: `:80` for http, `:443` for
/// https).
pub fn populate(cfg: &ScrapeConfig, discovered: Labels) -> Result<Populated, TargetError> {
    populate_with(cfg, discovered, false)
}

/// [`populate`] with Prometheus' `--enable-feature=no-default-scrape-port`
/// switch: with `no_default_port`, no port is added and a default port
/// matching the scheme is removed.
pub fn populate_with(
    cfg: &ScrapeConfig,
    discovered: Labels,
    no_default_port: bool,
) -> Result<Populated, TargetError> {
    let defaults = [
        (labels::JOB, cfg.job_name.clone()),
        (labels::SCRAPE_INTERVAL, cfg.interval().to_string()),
        (labels::SCRAPE_TIMEOUT, cfg.timeout().to_string()),
        (labels::METRICS_PATH, cfg.metrics_path.clone()),
        (labels::SCHEME, cfg.scheme.clone()),
    ];
    let discovered_len = discovered.len();
    let mut lb = Builder::new(discovered);
    for (name, value) in defaults {
        if lb_base_value(&lb, name).is_empty() {
            lb.set(name, &value);
        }
    }
    for (k, v) in &cfg.params {
        if let Some(first) = v.first() {
            lb.set(&format!("{}{k}", labels::PARAM_PREFIX), first);
        }
    }
    let pre = lb.labels();
    let mut view = DiscoveredView::new(&pre, pre_capacity(&lb, discovered_len));

    let relabeled = relabel::process_observed(&pre, &cfg.relabel_configs, |b| view.apply(b));
    let Some(lset) = relabeled else {
        return Ok(Populated::Dropped {
            discovered_labels: view.labels(),
        });
    };
    let mut addr = lset.get(labels::ADDRESS).unwrap_or_default().to_string();
    if addr.is_empty() {
        return Err(TargetError::NoAddress);
    }
    let mut out = lset.clone();
    let scheme = lset.get(labels::SCHEME).unwrap_or_default();
    // A port is added only when the address has none and adding one
    // makes it valid.
    let add =
        split_host_port(&addr).is_none() && split_host_port(&format!("{addr}:1234")).is_some();
    if !no_default_port && add {
        match scheme {
            "http" | "" => addr.push_str(":80"),
            "https" => addr.push_str(":443"),
            _ => return Err(TargetError::InvalidScheme(cfg.scheme.clone())),
        }
        out.insert(labels::ADDRESS, addr.clone());
    }
    if no_default_port
        && let Some((host, port)) = split_host_port(&addr)
        && ((port == "80" && scheme == "http") || (port == "443" && scheme == "https"))
    {
        out.insert(labels::ADDRESS, host);
    }
    if addr.contains('/') {
        return Err(TargetError::InvalidAddress(addr));
    }

    let interval = lset.get(labels::SCRAPE_INTERVAL).unwrap_or_default();
    let interval_d: Duration = interval.parse().map_err(TargetError::BadInterval)?;
    if interval_d.as_millis() == 0 {
        return Err(TargetError::ZeroInterval);
    }
    let timeout = lset.get(labels::SCRAPE_TIMEOUT).unwrap_or_default();
    let timeout_d: Duration = timeout.parse().map_err(TargetError::BadTimeout)?;
    if timeout_d.as_millis() == 0 {
        return Err(TargetError::ZeroTimeout);
    }
    if timeout_d > interval_d {
        return Err(TargetError::TimeoutAboveInterval {
            timeout: timeout.to_string(),
            interval: interval.to_string(),
        });
    }

    out.retain(|l| !l.name.starts_with(labels::META_PREFIX));
    if lset.get(labels::INSTANCE).unwrap_or_default().is_empty() {
        out.insert(labels::INSTANCE, addr);
    }
    // Rust strings are valid UTF-8, so every label value is valid (the
    // check Prometheus does here cannot fail).
    let id = labels::target_id(&cfg.job_name, &out);
    Ok(Populated::Active(Target {
        id,
        job_name: cfg.job_name.clone(),
        labels: out,
        discovered_labels: view.labels(),
    }))
}

fn lb_base_value<'a>(lb: &'a Builder, name: &str) -> &'a str {
    lb.base().get(name).unwrap_or_default()
}

/// Prometheus 2.42 shows as `discoveredLabels` a slice that relabeling may
/// overwrite in place: `labels.Builder.Labels(res)` reuses `res`'s array
/// when the result fits its capacity (a bug fixed in later releases). This
/// reproduces what that slice holds at the end, so that
/// `discovered_labels` equals Prometheus' `/api/v1/targets` output.
struct DiscoveredView {
    /// The first `len(preRelabelLabels)` slots of the shared array.
    slots: Vec<Label>,
    /// Capacity of the shared array; `None` once relabeling moved to a
    /// new array (no further writes reach the slice).
    cap: Option<usize>,
}

impl DiscoveredView {
    fn new(pre: &Labels, cap: usize) -> Self {
        DiscoveredView {
            slots: pre.as_slice().to_vec(),
            cap: Some(cap),
        }
    }

    /// One rule's `lb.Labels(lset)`: kept labels compacted to the front,
    /// then (if they fit) the added ones appended and the whole sorted.
    fn apply(&mut self, b: &Builder) {
        let Some(cap) = self.cap else { return };
        if !b.modified() {
            return;
        }
        let kept = b.kept();
        self.write(&kept);
        if b.added() > 0 {
            if kept.len() + b.added() <= cap {
                self.write(b.labels().as_slice());
            } else {
                self.cap = None;
            }
        }
    }

    fn write(&mut self, from: &[Label]) {
        for (slot, l) in self.slots.iter_mut().zip(from) {
            *slot = l.clone();
        }
    }

    /// The slice as Prometheus' API renders it (a map: for a name that
    /// occurs twice, the later slot wins).
    fn labels(&self) -> Labels {
        Labels::from_pairs(self.slots.iter().map(|l| (l.name.clone(), l.value.clone())))
    }
}

/// The capacity Go gives `preRelabelLabels`: the discovered slice itself
/// when the builder changed nothing (capacity = its length); otherwise
/// kept labels appended one by one to an empty slice (capacity doubles
/// from 1), then the added labels appended at once (Go's growslice: double,
/// or the needed length if more, rounded up to a malloc size class).
fn pre_capacity(lb: &Builder, discovered_len: usize) -> usize {
    if !lb.modified() {
        return discovered_len;
    }
    let kept = lb.kept().len();
    let mut cap = if kept == 0 {
        0
    } else {
        kept.next_power_of_two()
    };
    let needed = kept + lb.added();
    if lb.added() > 0 && needed > cap {
        let grown = if needed > 2 * cap { needed } else { 2 * cap };
        cap = go_round_up_size(grown * LABEL_SIZE) / LABEL_SIZE;
    }
    cap
}

/// Size of a Go `labels.Label` (two strings) in bytes.
const LABEL_SIZE: usize = 32;

/// Go's `roundupsize`: the malloc size class holding `size` bytes (pages
/// of 8 KiB beyond 32 KiB).
fn go_round_up_size(size: usize) -> usize {
    const CLASSES: [usize; 67] = [
        8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320,
        352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792,
        2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472,
        9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264,
        28672, 32768,
    ];
    match CLASSES.iter().find(|c| **c >= size) {
        Some(c) => *c,
        None => size.div_ceil(8192) * 8192,
    }
}

/// Go's `net.SplitHostPort`: `Some((host, port))` when `s` is `host:port`
/// or `[host]:port` (the port may be empty).
pub fn split_host_port(s: &str) -> Option<(String, String)> {
    let i = s.rfind(':')?;
    let (host, j, k) = if s.starts_with('[') {
        let end = s.find(']')?;
        if end + 1 != i {
            return None;
        }
        (&s[1..end], 1, end + 1)
    } else {
        let host = &s[..i];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if s[j..].contains('[') || s[k..].contains(']') {
        return None;
    }
    Some((host.to_string(), s[i + 1..].to_string()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encode {
    Host,
    Path,
    QueryComponent,
}

/// Go's `net/url` escape for one part of a URL.
fn go_escape(s: &str, mode: Encode) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if mode == Encode::QueryComponent && b == b' ' {
            out.push('+');
        } else if go_should_escape(b, mode) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

fn go_should_escape(c: u8, mode: Encode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if mode == Encode::Host
        && matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match mode {
            Encode::Path => c == b'?',
            Encode::QueryComponent => true,
            // Host: only the characters not listed above (`/`, `?`, `@`).
            Encode::Host => true,
        },
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(extra: &str) -> ScrapeConfig {
        let yaml = format!("scrape_configs:\n  - job_name: j\n{extra}");
        crate::config::load_str(&yaml, "t.yml")
            .unwrap()
            .scrape_configs
            .remove(0)
    }

    fn active(cfg: &ScrapeConfig, pairs: &[(&str, &str)]) -> Target {
        match populate(cfg, Labels::from_pairs(pairs.iter().copied())) {
            Ok(Populated::Active(t)) => t,
            other => panic!("not active: {other:?}"),
        }
    }

    #[test]
    fn split_host_port_like_go() {
        let ok = |s: &str, h: &str, p: &str| {
            assert_eq!(
                split_host_port(s),
                Some((h.to_string(), p.to_string())),
                "{s}"
            )
        };
        ok("h:1", "h", "1");
        ok("h:", "h", "");
        ok("[::1]:80", "::1", "80");
        ok(":80", "", "80");
        for bad in ["h", "::1", "a:b:c", "[::1]", "[::1]x:1", "h]:1", "[h:1"] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn default_port_follows_scheme() {
        let cfg = job("");
        let t = active(&cfg, &[("__address__", "h")]);
        assert_eq!(t.labels.get("__address__"), Some("h:80"));
        assert_eq!(t.labels.get("instance"), Some("h:80"));
        let t = active(&cfg, &[("__address__", "h"), ("__scheme__", "https")]);
        assert_eq!(t.labels.get("__address__"), Some("h:443"));
        let t = active(&cfg, &[("__address__", "[::1]")]);
        assert_eq!(t.labels.get("__address__"), Some("[::1]:80"));
        // Not fixable by a port: left alone.
        let t = active(&cfg, &[("__address__", "::1")]);
        assert_eq!(t.labels.get("__address__"), Some("::1"));
    }

    #[test]
    fn no_default_port_strips_the_default() {
        let cfg = job("");
        let run = |addr: &str, scheme: &str| match populate_with(
            &cfg,
            Labels::from_pairs([("__address__", addr), ("__scheme__", scheme)]),
            true,
        ) {
            Ok(Populated::Active(t)) => t.labels.get("__address__").unwrap().to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(run("h", "http"), "h");
        assert_eq!(run("h:80", "http"), "h");
        assert_eq!(run("h:443", "http"), "h:443");
        assert_eq!(run("h:443", "https"), "h");
    }

    #[test]
    fn instance_kept_when_set() {
        let t = active(&job(""), &[("__address__", "h:1"), ("instance", "mine")]);
        assert_eq!(t.labels.get("instance"), Some("mine"));
    }

    #[test]
    fn reserved_defaults_and_params() {
        let cfg = job(
            "    scrape_interval: 30s\n    scrape_timeout: 5s\n    metrics_path: /m\n    params:\n      x: [1, 2]\n",
        );
        let t = active(&cfg, &[("__address__", "h:1"), ("__meta_a", "b")]);
        assert_eq!(t.labels.get("job"), Some("j"));
        assert_eq!(t.labels.get("__scrape_interval__"), Some("30s"));
        assert_eq!(t.labels.get("__scrape_timeout__"), Some("5s"));
        assert_eq!(t.labels.get("__param_x"), Some("1"));
        assert!(!t.labels.contains("__meta_a"));
        assert_eq!(t.discovered_labels.get("__meta_a"), Some("b"));
        assert_eq!(t.url(&cfg), "http://h:1/m?x=1&x=2");
        assert_eq!(t.id, labels::target_id("j", &t.labels));
    }

    #[test]
    fn errors_carry_prometheus_messages() {
        let cfg = job("");
        let err = |pairs: &[(&str, &str)]| {
            populate(&cfg, Labels::from_pairs(pairs.iter().copied()))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err(&[("a", "1")]), "no address");
        assert_eq!(
            err(&[("__address__", "h/x")]),
            "\"h/x:80\" is not a valid hostname"
        );
        assert_eq!(
            err(&[("__address__", "h"), ("__scheme__", "ftp")]),
            "invalid scheme: \"http\""
        );
        assert_eq!(
            err(&[("__address__", "h:1"), ("__scrape_interval__", "0s")]),
            "scrape interval cannot be 0"
        );
        assert_eq!(
            err(&[("__address__", "h:1"), ("__scrape_timeout__", "2m")]),
            "scrape timeout cannot be greater than scrape interval (\"2m\" > \"1m\")"
        );
        assert_eq!(
            err(&[("__address__", "h:1"), ("__scrape_timeout__", "x")]),
            "error parsing scrape timeout: not a valid duration string: \"x\""
        );
    }

    #[test]
    fn go_size_classes() {
        assert_eq!(go_round_up_size(6 * LABEL_SIZE), 192);
        assert_eq!(go_round_up_size(9 * LABEL_SIZE), 288);
        assert_eq!(go_round_up_size(11 * LABEL_SIZE), 352);
        assert_eq!(go_round_up_size(12 * LABEL_SIZE), 384);
        assert_eq!(go_round_up_size(40000), 40960);
    }
}
