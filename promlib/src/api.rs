//! Prometheus HTTP API JSON shapes, and building `GET /api/v1/targets`
//! answers from a config the way Prometheus 2.42 does.
//!
//! Field names are those of Prometheus 2.42's `web/api/v1` (checked against
//! the real binary). Unknown fields are ignored on input, so later versions
//! of these structs (with promshard's own additions) stay readable.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::config::{Config, ScrapeConfig};
use crate::discovery::{self, DiscoveryError, TargetGroup};
use crate::labels::{self, Labels};
use crate::targets::{self, Populated, Target, TargetError};

/// Prometheus' API envelope: `{"status":"success","data":...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiResponse<T> {
    pub status: String,
    pub data: T,
}

impl<T> ApiResponse<T> {
    /// A `"success"` answer.
    pub fn success(data: T) -> Self {
        ApiResponse {
            status: "success".to_string(),
            data,
        }
    }
}

/// The `data` of `GET /api/v1/targets`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetDiscovery {
    #[serde(default)]
    pub active_targets: Vec<ActiveTarget>,
    #[serde(default)]
    pub dropped_targets: Vec<DroppedTarget>,
}

/// One entry of `activeTargets`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveTarget {
    #[serde(deserialize_with = "lenient_labels")]
    pub discovered_labels: Labels,
    /// The public labels (no `__` labels).
    #[serde(deserialize_with = "lenient_labels")]
    pub labels: Labels,
    pub scrape_pool: String,
    pub scrape_url: String,
    #[serde(default)]
    pub global_url: String,
    #[serde(default)]
    pub last_error: String,
    /// RFC 3339; `0001-01-01T00:00:00Z` before the first scrape.
    #[serde(default = "never")]
    pub last_scrape: String,
    /// Seconds.
    #[serde(default)]
    pub last_scrape_duration: f64,
    /// `up`, `down` or `unknown`.
    #[serde(default = "unknown")]
    pub health: String,
    #[serde(default)]
    pub scrape_interval: String,
    #[serde(default)]
    pub scrape_timeout: String,
}

/// One entry of `droppedTargets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DroppedTarget {
    #[serde(deserialize_with = "lenient_labels")]
    pub discovered_labels: Labels,
}

/// Go's zero `time.Time`, as Prometheus prints a never-scraped target.
pub const NEVER_SCRAPED: &str = "0001-01-01T00:00:00Z";

/// Reads a label map without name validation: Prometheus can show names
/// that relabeling made invalid (e.g. `labelmap` results).
fn lenient_labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
    let m: BTreeMap<String, Option<String>> = BTreeMap::deserialize(d)?;
    Ok(Labels::from_pairs(
        m.into_iter().map(|(k, v)| (k, v.unwrap_or_default())),
    ))
}

fn never() -> String {
    NEVER_SCRAPED.to_string()
}
fn unknown() -> String {
    "unknown".to_string()
}

impl ActiveTarget {
    /// The API view of a target that has not been scraped yet.
    pub fn unscraped(target: &Target, cfg: &ScrapeConfig) -> Self {
        let url = target.url(cfg);
        ActiveTarget {
            discovered_labels: target.discovered_labels.clone(),
            labels: target.public_labels(),
            scrape_pool: target.job_name.clone(),
            // Prometheus rewrites localhost hosts in globalUrl to its own
            // hostname; promshard prints the scrape URL as is.
            global_url: url.clone(),
            scrape_url: url,
            last_error: String::new(),
            last_scrape: never(),
            last_scrape_duration: 0.0,
            health: unknown(),
            scrape_interval: target
                .labels
                .get(labels::SCRAPE_INTERVAL)
                .unwrap_or_default()
                .to_string(),
            scrape_timeout: target
                .labels
                .get(labels::SCRAPE_TIMEOUT)
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// A discovered target that could not become a target; Prometheus logs
/// these (`Creating target failed`) and lists them nowhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instance {index} in group {source_name}: {error}")]
pub struct TargetFailure {
    pub job: String,
    /// The group's source (`0`, `path/file.yml:2`).
    pub source_name: String,
    /// The target's index in its group.
    pub index: usize,
    #[source]
    pub error: TargetError,
}

/// The targets of one job after relabeling, as a Prometheus scrape pool
/// holds them.
#[derive(Clone, Debug, Default)]
pub struct JobTargets {
    /// Unique by final labels and URL, in discovery order; a duplicate keeps
    /// the first position and takes the later discovered labels, as
    /// Prometheus' scrape pool does.
    pub active: Vec<Target>,
    /// Every dropped target, duplicates included (as Prometheus lists them).
    pub dropped: Vec<Labels>,
    pub failures: Vec<TargetFailure>,
}

/// Runs every target of `groups` through [`targets::populate`] (target
/// labels merged over group labels), as Prometheus' `TargetsFromGroup` and
/// scrape pool sync do.
pub fn job_targets(cfg: &ScrapeConfig, groups: &[TargetGroup]) -> JobTargets {
    let mut out = JobTargets::default();
    let mut seen: BTreeMap<(Labels, String), usize> = BTreeMap::new();
    for group in groups {
        for (index, discovered) in group.merged_targets().enumerate() {
            match targets::populate(cfg, discovered) {
                Ok(Populated::Active(t)) => {
                    let key = (t.labels.clone(), t.url(cfg));
                    match seen.get(&key) {
                        Some(&i) => out.active[i].discovered_labels = t.discovered_labels,
                        None => {
                            seen.insert(key, out.active.len());
                            out.active.push(t);
                        }
                    }
                }
                Ok(Populated::Dropped { discovered_labels }) => {
                    if !discovered_labels.is_empty() {
                        out.dropped.push(discovered_labels);
                    }
                }
                Err(error) => out.failures.push(TargetFailure {
                    job: cfg.job_name.clone(),
                    source_name: group.source.clone(),
                    index,
                    error,
                }),
            }
        }
    }
    out
}

/// The `/api/v1/targets?state=any` data for `discovered` groups (job name →
/// groups), in the config's job order, plus the targets that failed.
/// Jobs in `discovered` that the config lacks are ignored.
pub fn target_discovery(
    cfg: &Config,
    discovered: &BTreeMap<String, Vec<TargetGroup>>,
) -> (TargetDiscovery, Vec<TargetFailure>) {
    let mut data = TargetDiscovery::default();
    let mut failures = Vec::new();
    for sc in &cfg.scrape_configs {
        let Some(groups) = discovered.get(&sc.job_name) else {
            continue;
        };
        let jt = job_targets(sc, groups);
        data.active_targets
            .extend(jt.active.iter().map(|t| ActiveTarget::unscraped(t, sc)));
        data.dropped_targets.extend(
            jt.dropped
                .into_iter()
                .map(|discovered_labels| DroppedTarget { discovered_labels }),
        );
        failures.extend(jt.failures);
    }
    (data, failures)
}

/// What `promshard targets` prints: one-shot discovery of `cfg` (only `job`
/// when given), then [`target_discovery`].
pub fn targets_once(
    cfg: &Config,
    job: Option<&str>,
) -> Result<(TargetDiscovery, Vec<TargetFailure>), DiscoveryError> {
    let mut discovered = discovery::discover_once(cfg)?;
    if let Some(job) = job {
        if !cfg.scrape_configs.iter().any(|sc| sc.job_name == job) {
            return Err(DiscoveryError::UnknownJob(job.to_string()));
        }
        discovered.retain(|name, _| name == job);
    }
    Ok(target_discovery(cfg, &discovered))
}

/// Sorts both lists so that two answers compare equal regardless of order
/// (Prometheus' order is a map's).
pub fn normalize(data: &mut TargetDiscovery) {
    data.active_targets.sort_by(|a, b| {
        (
            &a.scrape_pool,
            &a.labels,
            &a.scrape_url,
            &a.discovered_labels,
        )
            .cmp(&(
                &b.scrape_pool,
                &b.labels,
                &b.scrape_url,
                &b.discovered_labels,
            ))
    });
    data.dropped_targets
        .sort_by(|a, b| a.discovered_labels.cmp(&b.discovered_labels));
}

/// Names of the scrape pools present in `data` (active targets' pools and
/// dropped targets' `job` labels).
pub fn pools(data: &TargetDiscovery) -> HashSet<String> {
    let mut out: HashSet<String> = data
        .active_targets
        .iter()
        .map(|t| t.scrape_pool.clone())
        .collect();
    out.extend(
        data.dropped_targets
            .iter()
            .filter_map(|t| t.discovered_labels.get(labels::JOB).map(str::to_string)),
    );
    out
}

/// Unix milliseconds as Go's `time.Time` JSON in UTC (RFC 3339 with the
/// fraction's trailing zeros cut): `2024-05-01T12:00:00.25Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    );
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_match_prometheus() {
        let t = ActiveTarget {
            discovered_labels: Labels::from_pairs([("__address__", "a:1")]),
            labels: Labels::from_pairs([("instance", "a:1")]),
            scrape_pool: "j".into(),
            scrape_url: "http://a:1/metrics".into(),
            global_url: "http://a:1/metrics".into(),
            last_error: String::new(),
            last_scrape: never(),
            last_scrape_duration: 0.0,
            health: unknown(),
            scrape_interval: "1m".into(),
            scrape_timeout: "10s".into(),
        };
        let v = serde_json::to_value(ApiResponse::success(TargetDiscovery {
            active_targets: vec![t],
            dropped_targets: vec![],
        }))
        .unwrap();
        let a = &v["data"]["activeTargets"][0];
        for k in [
            "discoveredLabels",
            "labels",
            "scrapePool",
            "scrapeUrl",
            "globalUrl",
            "lastError",
            "lastScrape",
            "lastScrapeDuration",
            "health",
            "scrapeInterval",
            "scrapeTimeout",
        ] {
            assert!(a.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["status"], "success");
        assert!(v["data"]["droppedTargets"].is_array());
    }

    #[test]
    fn job_targets_dedups_active_keeps_dropped_duplicates_and_reports_failures() {
        let cfg = crate::config::load_str(
            "scrape_configs:\n- job_name: j\n  relabel_configs: [{action: drop, source_labels: [__address__], regex: 'gone.*'}]\n",
            "t.yml",
        )
        .unwrap();
        let sc = &cfg.scrape_configs[0];
        let group = |source: &str, addrs: &[&str], extra: &str| TargetGroup {
            source: source.to_string(),
            targets: addrs
                .iter()
                .map(|a| Labels::from_pairs([(labels::ADDRESS, *a)]))
                .collect(),
            labels: Labels::from_pairs([("__meta_x", extra)]),
        };
        let groups = vec![
            group("0", &["a:1", "a:1", "gone:1", "gone:1", ""], "first"),
            group("1", &["a:1"], "second"),
        ];
        let jt = job_targets(sc, &groups);
        assert_eq!(jt.active.len(), 1);
        // The later duplicate's discovered labels win, as in Prometheus.
        assert_eq!(
            jt.active[0].discovered_labels.get("__meta_x"),
            Some("second")
        );
        assert_eq!(jt.dropped.len(), 2);
        assert_eq!(jt.failures.len(), 1);
        assert_eq!(jt.failures[0].index, 4);
        assert_eq!(
            jt.failures[0].to_string(),
            "instance 4 in group 0: no address"
        );
    }

    #[test]
    fn parses_real_prometheus_answer() {
        // Captured from Prometheus 2.42 (`/api/v1/targets?state=any`).
        let text = r#"{"status":"success","data":{"activeTargets":[{"discoveredLabels":{"__address__":"b","__meta_filepath":"/t.json","__metrics_path__":"/metrics","__scheme__":"http","__scrape_interval__":"1m","__scrape_timeout__":"10s","g":"1","job":"j1"},"labels":{"g":"1","instance":"b:80","job":"j1"},"scrapePool":"j1","scrapeUrl":"http://b:80/metrics","globalUrl":"http://b:80/metrics","lastError":"","lastScrape":"0001-01-01T00:00:00Z","lastScrapeDuration":0,"health":"unknown","scrapeInterval":"1m","scrapeTimeout":"10s"}],"droppedTargets":[{"discoveredLabels":{"__address__":"x:9","job":"j2"}}]}}"#;
        let r: ApiResponse<TargetDiscovery> = serde_json::from_str(text).unwrap();
        assert_eq!(r.data.active_targets[0].scrape_url, "http://b:80/metrics");
        assert_eq!(
            r.data.active_targets[0].labels.get("instance"),
            Some("b:80")
        );
        assert_eq!(r.data.dropped_targets.len(), 1);
        let odd: DroppedTarget =
            serde_json::from_str(r#"{"discoveredLabels":{"1x":"v"}}"#).unwrap();
        assert_eq!(odd.discovered_labels.get("1x"), Some("v"));
        let p = pools(&r.data);
        assert!(p.contains("j1") && p.contains("j2"));
    }
}
