//! Following the desired shard count with a provider that can scale
//! (`promshard local --shards.min/--shards.max`).
//!
//! Up at once (at most once per `UP_EVERY`); down only after the desired
//! count stayed lower for `DOWN_COOLDOWN`, one shard at a time: the highest
//! ordinal is marked draining, its targets leave by handover, and once it
//! holds none it is stopped with the grace period (it delivers its WAL
//! before it exits).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::Handle;
use crate::model::ShardId;
use crate::provider::{LocalProvider, ShardProvider};

const TICK: Duration = Duration::from_secs(5);
const UP_EVERY: Duration = Duration::from_secs(30);
const DOWN_COOLDOWN: Duration = Duration::from_secs(120);
/// A drain that has not finished by then is abandoned (the shard stays).
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// Runs until aborted.
pub async fn follow_desired(
    control: Handle,
    provider: Arc<ShardProvider>,
    min: usize,
    max: usize,
    grace: Duration,
) {
    let mut last_up: Option<Instant> = None;
    let mut lower_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(TICK).await;
        let Some(desired) = control.desired_shards() else {
            continue;
        };
        let desired = desired.clamp(min.max(1), max.max(1));
        let current = provider.shards().len();
        if desired > current {
            lower_since = None;
            if last_up.is_some_and(|t| t.elapsed() < UP_EVERY) {
                continue;
            }
            tracing::info!(current, desired, "scaling out");
            if let Err(e) = provider.scale_to(desired, grace).await {
                tracing::error!(error = %e, "scaling out failed");
            }
            last_up = Some(Instant::now());
        } else if desired < current {
            let since = *lower_since.get_or_insert_with(Instant::now);
            if since.elapsed() < DOWN_COOLDOWN {
                continue;
            }
            let last = ShardId(LocalProvider::shard_id(current - 1));
            tracing::info!(current, desired, shard = %last, "scaling in: draining the highest shard");
            control.set_draining(&last, true);
            let started = Instant::now();
            while control.targets_on(&last) > 0 && started.elapsed() < DRAIN_LIMIT {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if control.targets_on(&last) > 0 {
                tracing::warn!(shard = %last, "drain did not finish; the shard stays");
                control.set_draining(&last, false);
            } else if let Err(e) = provider.scale_to(current - 1, grace).await {
                tracing::error!(error = %e, "scaling in failed");
            } else {
                control.forget_shard(&last);
            }
            lower_since = None;
        } else {
            lower_since = None;
        }
    }
}
