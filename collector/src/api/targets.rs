//! `GET /api/v1/targets`: Prometheus' JSON shape ([`promshard_promlib::api`])
//! with the collector's additions per active target.

use promshard_promlib::api::{ActiveTarget, DroppedTarget, NEVER_SCRAPED, rfc3339_ms};
use promshard_promlib::labels::Labels;
use promshard_promlib::scrape::redact_url;
use serde::{Deserialize, Serialize};

use crate::scrape::{Health, TargetStatus};

/// One entry of `activeTargets`: Prometheus' fields plus `series` and
/// `samplesPerScrape` (of the last scrape, after relabeling).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectorTarget {
    #[serde(flatten)]
    pub target: ActiveTarget,
    #[serde(default)]
    pub series: u64,
    #[serde(default)]
    pub samples_per_scrape: u64,
}

/// The `data` of the collector's `GET /api/v1/targets`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectorTargets {
    #[serde(default)]
    pub active_targets: Vec<CollectorTarget>,
    #[serde(default)]
    pub dropped_targets: Vec<DroppedTarget>,
}

/// Which lists `?state=` asks for, as Prometheus 2.42: empty or `any`
/// both, `active` or `dropped` one, anything else neither (both lists are
/// always present, maybe empty).
pub fn wanted(state: Option<&str>) -> (bool, bool) {
    let s = state.unwrap_or("").to_ascii_lowercase();
    let active = s.is_empty() || s == "any" || s == "active";
    let dropped = s.is_empty() || s == "any" || s == "dropped";
    (active, dropped)
}

/// The API view of one running target.
pub fn view(s: &TargetStatus) -> CollectorTarget {
    let url = redact_url(&s.scrape_url);
    CollectorTarget {
        target: ActiveTarget {
            discovered_labels: s.target.discovered_labels.clone(),
            labels: s.target.public_labels(),
            scrape_pool: s.scrape_pool.clone(),
            global_url: url.clone(),
            scrape_url: url,
            last_error: s.last_error.clone(),
            last_scrape: if s.last_scrape_ms == 0 {
                NEVER_SCRAPED.to_string()
            } else {
                rfc3339_ms(s.last_scrape_ms)
            },
            last_scrape_duration: s.last_scrape_duration.as_secs_f64(),
            health: match s.health {
                Health::Up => "up",
                Health::Down => "down",
                Health::Unknown => "unknown",
            }
            .to_string(),
            scrape_interval: prom_duration(s.interval),
            scrape_timeout: prom_duration(s.timeout),
        },
        series: s.series,
        samples_per_scrape: s.samples_per_scrape,
    }
}

/// Builds the answer's data.
pub fn targets_data(
    state: Option<&str>,
    active: impl FnOnce() -> Vec<TargetStatus>,
    dropped: impl FnOnce() -> Vec<Labels>,
) -> CollectorTargets {
    let (want_active, want_dropped) = wanted(state);
    CollectorTargets {
        active_targets: if want_active {
            active().iter().map(view).collect()
        } else {
            Vec::new()
        },
        dropped_targets: if want_dropped {
            dropped()
                .into_iter()
                .map(|discovered_labels| DroppedTarget { discovered_labels })
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// A duration as Prometheus prints one (`15s`, `1m30s`).
fn prom_duration(d: std::time::Duration) -> String {
    promshard_promlib::duration::Duration::from_millis(d.as_millis() as u64).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_like_go() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_700_000_000_250), "2023-11-14T22:13:20.25Z");
        assert_eq!(rfc3339_ms(951_782_400_001), "2000-02-29T00:00:00.001Z");
        assert_eq!(rfc3339_ms(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn state_parameter_as_prometheus() {
        assert_eq!(wanted(None), (true, true));
        assert_eq!(wanted(Some("any")), (true, true));
        assert_eq!(wanted(Some("Active")), (true, false));
        assert_eq!(wanted(Some("dropped")), (false, true));
        assert_eq!(wanted(Some("bogus")), (false, false));
    }
}
