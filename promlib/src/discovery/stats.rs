//! Per-provider refresh counters of a [`Discoverer`](super::Discoverer), for
//! metrics and status pages (Prometheus' `prometheus_sd_refresh_failures_total`,
//! `prometheus_sd_http_failures_total`, `prometheus_sd_dns_lookup_failures_total`).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What one provider has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderStats {
    /// `http` or `dns`.
    pub mechanism: &'static str,
    /// Refreshes attempted.
    pub refreshes: u64,
    /// Refreshes that failed (for DNS: names whose lookup failed).
    pub failures: u64,
    /// The last failure's message (URLs redacted), cleared by a success.
    pub last_error: Option<String>,
}

/// Counters of every refreshing provider, by `(job, provider)`.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    providers: Mutex<BTreeMap<(String, String), ProviderStats>>,
}

impl DiscoveryStats {
    /// A copy of every provider's counters.
    pub fn snapshot(&self) -> BTreeMap<(String, String), ProviderStats> {
        match self.providers.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Total failures of every provider of `mechanism`.
    pub fn failures(&self, mechanism: &str) -> u64 {
        self.snapshot()
            .values()
            .filter(|s| s.mechanism == mechanism)
            .map(|s| s.failures)
            .sum()
    }

    pub(crate) fn record(
        &self,
        job: &str,
        provider: &str,
        mechanism: &'static str,
        failures: u64,
        last_error: Option<String>,
    ) {
        let mut m = match self.providers.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let s = m
            .entry((job.to_string(), provider.to_string()))
            .or_default();
        s.mechanism = mechanism;
        s.refreshes += 1;
        s.failures += failures;
        s.last_error = last_error;
    }
}
