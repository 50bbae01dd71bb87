//! The http_sd answer for one job: each assigned target as a target group
//! whose labels, with no `relabel_configs` in the backend, give the backend
//! exactly the target the native collector would scrape, except that the
//! scrape goes through the sidecar's proxy.
//!
//! From the final labels: every public label (`job`, `instance`, ...) and
//! `__scrape_interval__` / `__scrape_timeout__` are kept as they are;
//! `__address__` becomes the proxy's address, `__scheme__` `http`,
//! `__metrics_path__` `/proxy/<target id as 16 hex digits>`; `__param_*`
//! are dropped (the proxy adds them to the real URL). `instance` is set to
//! the real address when the final labels lack it, so that the backend
//! does not name the series after the proxy.

use promshard_promlib::labels::{self, Labels};
use serde_json::{Map, Value};

/// The path of the proxy for target `id`.
pub fn proxy_path(id: u64) -> String {
    format!("/proxy/{id:016x}")
}

/// Parses the id of a proxy path's last segment.
pub fn parse_proxy_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// The labels the backend gets for a target with `final_labels` and `id`
/// (`__address__` excluded: it goes into the group's `targets`).
pub fn served_labels(id: u64, final_labels: &Labels) -> Labels {
    let mut out = Labels::new();
    for l in final_labels.iter() {
        let name = l.name.as_str();
        if name == labels::ADDRESS
            || name == labels::SCHEME
            || name == labels::METRICS_PATH
            || name.starts_with(labels::PARAM_PREFIX)
        {
            continue;
        }
        out.insert(l.name.clone(), l.value.clone());
    }
    if !out.contains(labels::INSTANCE)
        && let Some(addr) = final_labels.get(labels::ADDRESS)
    {
        out.insert(labels::INSTANCE, addr);
    }
    out.insert(labels::SCHEME, "http");
    out.insert(labels::METRICS_PATH, proxy_path(id));
    out
}

/// One http_sd target group.
pub fn group(proxy_address: &str, id: u64, final_labels: &Labels) -> Value {
    let mut labels_map = Map::new();
    for l in served_labels(id, final_labels).iter() {
        labels_map.insert(l.name.clone(), Value::String(l.value.clone()));
    }
    let mut g = Map::new();
    g.insert(
        "targets".to_string(),
        Value::Array(vec![Value::String(proxy_address.to_string())]),
    );
    g.insert("labels".to_string(), Value::Object(labels_map));
    Value::Object(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_public_and_interval_labels_and_points_at_the_proxy() {
        let l = Labels::from_pairs([
            ("__address__", "h:9100"),
            ("__metrics_path__", "/probe"),
            ("__param_module", "http_2xx"),
            ("__scheme__", "https"),
            ("__scrape_interval__", "5s"),
            ("__scrape_timeout__", "4s"),
            ("instance", "web-1"),
            ("job", "bb"),
            ("team", "a"),
        ]);
        let s = served_labels(0xab, &l);
        let pairs: Vec<(&str, &str)> = s
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("__metrics_path__", "/proxy/00000000000000ab"),
                ("__scheme__", "http"),
                ("__scrape_interval__", "5s"),
                ("__scrape_timeout__", "4s"),
                ("instance", "web-1"),
                ("job", "bb"),
                ("team", "a"),
            ]
        );
        assert_eq!(s.public(), l.public(), "stored series keep their labels");
        let g = group("127.0.0.1:7", 0xab, &l);
        assert_eq!(g["targets"][0], "127.0.0.1:7");
        assert_eq!(g["labels"]["team"], "a");
    }

    #[test]
    fn instance_defaults_to_the_real_address() {
        let l = Labels::from_pairs([("__address__", "h:1"), ("job", "j")]);
        assert_eq!(served_labels(1, &l).get("instance"), Some("h:1"));
    }

    #[test]
    fn proxy_ids_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_proxy_id(&proxy_path(u64::MAX)[7..]), Some(u64::MAX));
        assert_eq!(parse_proxy_id(&proxy_path(5)[7..]), Some(5));
        assert_eq!(parse_proxy_id("zz"), None);
        assert_eq!(parse_proxy_id(""), None);
        assert_eq!(parse_proxy_id("11111111111111111"), None);
    }
}
