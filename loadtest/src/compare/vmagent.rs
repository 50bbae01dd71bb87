//! vmagent cluster mode (`-promscrape.cluster.membersCount=N`,
//! `-promscrape.cluster.replicationFactor=1`), as VictoriaMetrics v1.79.0
//! does it in `lib/promscrape/config.go`:
//!
//! - `getScrapeWork` applies `relabel_configs`, removes `__meta_*` labels
//!   (`promrelabel.RemoveMetaLabels`), and *before* adding the `instance`
//!   default builds the key with `appendScrapeWorkKey`: for every label in
//!   name order (relabeling sorts them, empty values removed)
//!   `name=value,` — so `__address__`, `__scheme__`, `__metrics_path__`,
//!   `__scrape_interval__` (Go's `Duration.String()`, `1m0s`),
//!   `__scrape_timeout__`, `job`, any target labels, and `instance` only
//!   when relabeling set it.
//! - `needSkipScrapeWork(key, membersCount, replicasCount, memberNum)`:
//!   `idx = xxhash.Sum64(key) % membersCount` (cespare/xxhash v2, XXH64
//!   with seed 0); member `idx` (and the next `replicasCount - 1`,
//!   wrapping) scrapes the target; every other member skips it.
//!
//! No global `external_labels` here (1.79 would put them in the key too).

use promshard_promlib::labels::META_PREFIX;
use xxhash_rust::xxh64::xxh64;

use super::targets::CompareTarget;
use super::{CompareError, Strategy};

/// `appendScrapeWorkKey` over the labels vmagent hashes.
pub fn scrape_work_key(target: &CompareTarget) -> String {
    let mut key = String::new();
    for l in target.relabeled.iter() {
        if l.name.starts_with(META_PREFIX) || l.value.is_empty() {
            continue;
        }
        key.push_str(&l.name);
        key.push('=');
        key.push_str(&l.value);
        key.push(',');
    }
    key
}

/// The member that scrapes `key` with replication factor 1.
pub fn member_for_key(key: &str, members: u64) -> u64 {
    if members <= 1 {
        return 0;
    }
    xxh64(key.as_bytes(), 0) % members
}

/// Stateless: a scale change recomputes every target.
pub struct Vmagent;

impl Strategy for Vmagent {
    fn name(&self) -> &'static str {
        "vmagent-cluster"
    }

    fn describe(&self) -> &'static str {
        "vmagent 1.79 -promscrape.cluster.*: xxhash64(sorted relabeled labels) mod N"
    }

    fn place(
        &mut self,
        targets: &[CompareTarget],
        shards: usize,
    ) -> Result<Vec<u32>, CompareError> {
        if shards == 0 {
            return Err(CompareError::Strategy {
                strategy: "vmagent-cluster",
                reason: "0 members".into(),
            });
        }
        Ok(targets
            .iter()
            .map(|t| member_for_key(&scrape_work_key(t), shards as u64) as u32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use promshard_promlib::labels::Labels;

    use super::*;

    #[test]
    fn member_matches_victoriametrics_own_test() {
        // lib/promscrape/config_test.go TestNeedSkipScrapeWork (v1.79.0):
        // "foo" with 2 members and no replication is kept by member 1 only;
        // with 3 members and replicationFactor 2 by members 2 and 0, so its
        // first member is 2.
        assert_eq!(member_for_key("foo", 2), 1);
        assert_eq!(member_for_key("foo", 3), 2);
        assert_eq!(member_for_key("foo", 1), 0);
        assert_eq!(member_for_key("foo", 0), 0);
    }

    #[test]
    fn the_key_is_sorted_name_value_pairs_without_meta_or_empty_labels() {
        let relabeled = Labels::from_pairs([
            ("job", "node"),
            ("__address__", "10.0.0.1:9100"),
            ("__meta_kubernetes_pod_name", "x"),
            ("__scrape_interval__", "1m0s"),
            ("zone", ""),
        ]);
        let t = CompareTarget {
            id: 1,
            job: "node".into(),
            address: "10.0.0.1:9100".into(),
            labels: relabeled.clone(),
            relabeled,
            series: 1,
            samples_per_second: 1.0,
        };
        let key = scrape_work_key(&t);
        assert_eq!(
            key,
            "__address__=10.0.0.1:9100,__scrape_interval__=1m0s,job=node,"
        );
        assert_eq!(
            Vmagent.place(&[t], 7).unwrap(),
            vec![(xxh64(key.as_bytes(), 0) % 7) as u32]
        );
    }
}
