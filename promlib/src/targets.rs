//! Target labels: what Prometheus does between discovery and scraping
//! (`scrape.PopulateLabels`): defaults for the reserved labels, relabeling,
//! dropping targets with an empty `__address__`, `instance` from
//! `__address__`, and the scrape URL with `__param_*` parameters.

use std::collections::BTreeMap;

use crate::config::ScrapeConfig;
use crate::duration::{Duration, DurationError};
use crate::labels::{self, Labels};
use crate::relabel;

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
    /// The labels as discovered, before relabeling (with group labels and
    /// the defaults merged in, as Prometheus shows `discoveredLabels`).
    pub discovered_labels: Labels,
}

impl Target {
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
    /// Relabeling dropped it (Prometheus' `droppedTargets`).
    Dropped { discovered_labels: Labels },
}

/// A discovered target that cannot become a target (Prometheus logs these
/// and lists them nowhere). Messages are Prometheus'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("no address")]
    NoAddress,
    #[error("invalid scheme: {0:?}")]
    InvalidScheme(String),
    #[error("{0:?} is not a valid hostname")]
    InvalidAddress(String),
    #[error("error parsing scrape interval: {0}")]
    BadInterval(DurationError),
    #[error("scrape interval cannot be 0")]
    ZeroInterval,
    #[error("error parsing scrape timeout: {0}")]
    BadTimeout(DurationError),
    #[error("scrape timeout cannot be 0")]
    ZeroTimeout,
    #[error("scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})")]
    TimeoutAboveInterval { timeout: String, interval: String },
    #[error("invalid label value for {name:?}: {value:?}")]
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
    // Empty values count as absent.
    let mut pre = discovered.without_empty();
    let defaults = [
        (labels::JOB, cfg.job_name.clone()),
        (labels::SCRAPE_INTERVAL, cfg.interval().to_string()),
        (labels::SCRAPE_TIMEOUT, cfg.timeout().to_string()),
        (labels::METRICS_PATH, cfg.metrics_path.clone()),
        (labels::SCHEME, cfg.scheme.clone()),
    ];
    for (name, value) in defaults {
        if pre.get(name).unwrap_or_default().is_empty() && !value.is_empty() {
            pre.insert(name, value);
        }
    }
    for (k, v) in &cfg.params {
        if let Some(first) = v.first() {
            let name = format!("{}{k}", labels::PARAM_PREFIX);
            if first.is_empty() {
                pre.remove(&name);
            } else {
                pre.insert(name, first.clone());
            }
        }
    }

    let Some(lset) = relabel::process(&pre, &cfg.relabel_configs) else {
        return Ok(Populated::Dropped {
            discovered_labels: pre,
        });
    };
    let mut addr = lset.get(labels::ADDRESS).unwrap_or_default().to_string();
    if addr.is_empty() {
        return Err(TargetError::NoAddress);
    }
    let mut out = lset.clone();
    let scheme = lset.get(labels::SCHEME).unwrap_or_default();
    let (port, add) = match split_host_port(&addr) {
        Some((_, port)) => (Some(port), false),
        None => (None, split_host_port(&format!("{addr}:1234")).is_some()),
    };
    if !no_default_port && add {
        match scheme {
            "http" | "" => addr.push_str(":80"),
            "https" => addr.push_str(":443"),
            _ => return Err(TargetError::InvalidScheme(cfg.scheme.clone())),
        }
        out.insert(labels::ADDRESS, addr.clone());
    }
    if no_default_port {
        if let Some((host, port)) = split_host_port(&addr).filter(|_| port.is_some()) {
            if (port == "80" && scheme == "http") || (port == "443" && scheme == "https") {
                out.insert(labels::ADDRESS, host);
            }
        }
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
        discovered_labels: pre,
    }))
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
