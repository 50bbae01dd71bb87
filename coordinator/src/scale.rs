//! Following the desired shard count with a provider that can scale
//! (`promshard local --shards.min/--shards.max`).
//!
//! Up at once, at most once per `up_every`; down only after the desired
//! count stayed lower for `cooldown`, one shard at a time: the highest
//! ordinal is marked draining and its targets leave by handover; once it
//! scrapes none, the scaler waits for a report from it that shows its WAL
//! delivered (backlog 0), and only then stops it. If the load comes back
//! meanwhile, the drain is called off and the shard keeps working.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::control::Handle;
use crate::model::ShardId;
use crate::provider::{LocalProvider, ShardProvider};

/// How the scaler behaves (`promshard local` flags).
#[derive(Clone, Debug)]
pub struct ScaleOptions {
    pub min_shards: usize,
    pub max_shards: usize,
    /// At most one scale-up per this long.
    pub up_every: Duration,
    /// The desired count must stay lower this long before a scale-in.
    pub cooldown: Duration,
    /// A drain that has not finished by then is called off (the shard
    /// stays and gets targets again).
    pub drain_limit: Duration,
    /// How long a stopping shard gets to deliver the rest of its WAL.
    pub grace: Duration,
    /// How often the scaler looks.
    pub tick: Duration,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            min_shards: 1,
            max_shards: 1,
            up_every: Duration::from_secs(30),
            cooldown: Duration::from_secs(120),
            drain_limit: Duration::from_secs(300),
            grace: Duration::from_secs(30),
            tick: Duration::from_secs(2),
        }
    }
}

/// What the scaler does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Hold,
    /// Start shards up to this count.
    ScaleUp(usize),
    /// Mark the highest shard (ordinal `current - 1`) draining.
    Drain,
}

/// The rate limit and cooldown, apart from the provider (pure, testable).
#[derive(Debug)]
pub struct ScalePolicy {
    up_every: Duration,
    cooldown: Duration,
    min: usize,
    max: usize,
    last_up: Option<Instant>,
    lower_since: Option<Instant>,
}

impl ScalePolicy {
    pub fn new(opts: &ScaleOptions) -> Self {
        ScalePolicy {
            up_every: opts.up_every,
            cooldown: opts.cooldown,
            min: opts.min_shards.max(1),
            max: opts.max_shards.max(opts.min_shards).max(1),
            last_up: None,
            lower_since: None,
        }
    }

    /// `desired` (unclamped, from the planner) against `current` shards.
    pub fn decide(&mut self, now: Instant, desired: usize, current: usize) -> Decision {
        let desired = desired.clamp(self.min, self.max);
        if desired > current {
            self.lower_since = None;
            if self
                .last_up
                .is_some_and(|t| now.saturating_duration_since(t) < self.up_every)
            {
                return Decision::Hold;
            }
            self.last_up = Some(now);
            Decision::ScaleUp(desired)
        } else if desired < current {
            let since = *self.lower_since.get_or_insert(now);
            if now.saturating_duration_since(since) < self.cooldown {
                return Decision::Hold;
            }
            self.lower_since = None;
            Decision::Drain
        } else {
            self.lower_since = None;
            Decision::Hold
        }
    }

    /// The desired count `desired` clamped to [min, max].
    pub fn clamp(&self, desired: usize) -> usize {
        desired.clamp(self.min, self.max)
    }
}

/// A scale-in under way.
enum ScaleIn {
    /// Its targets leave by handover.
    Draining { shard: ShardId, since: Instant },
    /// It scrapes nothing; waiting for a report with its WAL delivered.
    Flushing {
        shard: ShardId,
        since: SystemTime,
        logged: Instant,
    },
}

/// Runs until aborted.
pub async fn follow_desired(control: Handle, provider: Arc<ShardProvider>, opts: ScaleOptions) {
    let mut policy = ScalePolicy::new(&opts);
    let mut scale_in: Option<ScaleIn> = None;
    loop {
        tokio::time::sleep(opts.tick).await;
        let Some(desired) = control.desired_shards() else {
            continue;
        };
        let current = provider.shards().len();
        scale_in = match scale_in.take() {
            Some(step) => {
                advance_scale_in(
                    &control,
                    &provider,
                    &opts,
                    step,
                    policy.clamp(desired),
                    current,
                )
                .await
            }
            None => match policy.decide(Instant::now(), desired, current) {
                Decision::Hold => None,
                Decision::ScaleUp(n) => {
                    tracing::info!(current, desired = n, "scaling out");
                    if let Err(e) = provider.scale_to(n, opts.grace).await {
                        tracing::error!(error = %e, "scaling out failed");
                    }
                    None
                }
                Decision::Drain => {
                    let shard = ShardId(LocalProvider::shard_id(current - 1));
                    tracing::info!(current, desired, shard = %shard, "scaling in: draining the highest shard");
                    control.set_draining(&shard, true);
                    Some(ScaleIn::Draining {
                        shard,
                        since: Instant::now(),
                    })
                }
            },
        };
    }
}

/// One step of a scale-in; `None` when it ended (done or called off).
async fn advance_scale_in(
    control: &Handle,
    provider: &ShardProvider,
    opts: &ScaleOptions,
    step: ScaleIn,
    desired: usize,
    current: usize,
) -> Option<ScaleIn> {
    let shard = match &step {
        ScaleIn::Draining { shard, .. } | ScaleIn::Flushing { shard, .. } => shard.clone(),
    };
    if desired >= current {
        tracing::info!(shard = %shard, current, desired, "the load came back: calling off the scale-in");
        control.set_draining(&shard, false);
        return None;
    }
    match step {
        ScaleIn::Draining { shard, since } => {
            if control.targets_on(&shard) == 0 {
                tracing::info!(shard = %shard, "drained; waiting until its WAL is delivered");
                return Some(ScaleIn::Flushing {
                    shard,
                    since: SystemTime::now(),
                    logged: Instant::now(),
                });
            }
            if since.elapsed() > opts.drain_limit {
                tracing::warn!(shard = %shard, "drain did not finish in time; the shard stays");
                control.set_draining(&shard, false);
                return None;
            }
            Some(ScaleIn::Draining { shard, since })
        }
        ScaleIn::Flushing {
            shard,
            since,
            logged,
        } => {
            // Only a report sent after the drain finished counts: an older
            // one may predate the last samples it appended.
            let delivered = control
                .shard_report(&shard)
                .is_some_and(|r| r.received_at > since && r.wal_backlog_bytes == 0);
            if !delivered {
                let logged = if logged.elapsed() > Duration::from_secs(60) {
                    tracing::info!(shard = %shard, "still waiting for the drained shard's WAL to be delivered");
                    Instant::now()
                } else {
                    logged
                };
                return Some(ScaleIn::Flushing {
                    shard,
                    since,
                    logged,
                });
            }
            tracing::info!(shard = %shard, current, "WAL delivered; stopping the shard");
            match provider.scale_to(current - 1, opts.grace).await {
                Ok(()) => control.forget_shard(&shard),
                Err(e) => {
                    tracing::error!(shard = %shard, error = %e, "scaling in failed; the shard stays");
                    control.set_draining(&shard, false);
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: usize, max: usize) -> ScalePolicy {
        ScalePolicy::new(&ScaleOptions {
            min_shards: min,
            max_shards: max,
            up_every: Duration::from_secs(30),
            cooldown: Duration::from_secs(120),
            ..ScaleOptions::default()
        })
    }

    #[test]
    fn scale_up_is_immediate_then_rate_limited() {
        let mut p = policy(1, 10);
        let t0 = Instant::now();
        assert_eq!(p.decide(t0, 3, 2), Decision::ScaleUp(3));
        assert_eq!(p.decide(t0 + Duration::from_secs(10), 4, 3), Decision::Hold);
        assert_eq!(
            p.decide(t0 + Duration::from_secs(31), 4, 3),
            Decision::ScaleUp(4)
        );
    }

    #[test]
    fn scale_up_is_clamped_to_max() {
        let mut p = policy(1, 4);
        assert_eq!(p.decide(Instant::now(), 9, 2), Decision::ScaleUp(4));
        assert_eq!(p.decide(Instant::now(), 9, 4), Decision::Hold);
    }

    #[test]
    fn scale_in_waits_for_the_cooldown_and_resets_when_the_load_returns() {
        let mut p = policy(1, 10);
        let t0 = Instant::now();
        assert_eq!(p.decide(t0, 2, 3), Decision::Hold);
        assert_eq!(p.decide(t0 + Duration::from_secs(60), 2, 3), Decision::Hold);
        // Back to 3: the cooldown starts again from the next drop.
        assert_eq!(
            p.decide(t0 + Duration::from_secs(100), 3, 3),
            Decision::Hold
        );
        assert_eq!(
            p.decide(t0 + Duration::from_secs(130), 2, 3),
            Decision::Hold
        );
        assert_eq!(
            p.decide(t0 + Duration::from_secs(200), 2, 3),
            Decision::Hold
        );
        assert_eq!(
            p.decide(t0 + Duration::from_secs(251), 2, 3),
            Decision::Drain
        );
    }

    #[test]
    fn never_below_min() {
        let mut p = policy(2, 10);
        let t0 = Instant::now();
        assert_eq!(p.decide(t0, 0, 2), Decision::Hold);
        assert_eq!(
            p.decide(t0 + Duration::from_secs(500), 1, 2),
            Decision::Hold
        );
    }
}
