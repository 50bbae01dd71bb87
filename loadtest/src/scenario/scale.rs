//! `scale-out` and `scale-in`: automatic scaling with `promshard local`
//! (the local provider starts and stops the shards), the load changed
//! through the file_sd target set.
//!
//! Sizing: shards of 2,000 series at a target utilization of 0.7 (1,400
//! series per shard), targets of 100 series (about 105 with the scraper's
//! own): 20 targets want 2 shards, 30 want 3.

use std::time::{Duration, Instant};

use super::report::Claim;
use super::scripts::{drain, max_series, pick};
use super::system::TargetView;
use super::world::{World, secs};
use super::{Scenario, ScenarioConfig, ScenarioError, ScenarioReport};

/// `promshard local` with the autoscaler between 1 and 4 shards,
/// starting with `shards`.
async fn local(
    config: &ScenarioConfig,
    targets: usize,
    active: usize,
    shards: usize,
) -> Result<World, ScenarioError> {
    let base = match config.scenario {
        Scenario::ScaleOut => std::net::Ipv4Addr::new(127, 0, 86, 1),
        _ => std::net::Ipv4Addr::new(127, 0, 87, 1),
    };
    let mut w = World::start(config, targets, active, base).await?;
    let mut extra = vec![
        format!("--shards={shards}"),
        "--shards.min=1".to_owned(),
        format!("--shards.max={}", shards + 2),
        format!("--storage.path={}", w.path().join("local").display()),
        format!("--shard.max-series={}", max_series(config)),
        "--plan.target-utilization=0.7".to_owned(),
        "--shutdown.grace=10s".to_owned(),
    ];
    let help = std::process::Command::new(&config.binary)
        .args(["local", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let cooldown = pick(config, 10, 60);
    let up_every = pick(config, 5, 20);
    let tunable = help.contains("--scale.cooldown");
    if tunable {
        extra.push(format!("--scale.cooldown={}s", cooldown.as_secs()));
    }
    if help.contains("--scale.up-interval") {
        extra.push(format!("--scale.up-interval={}s", up_every.as_secs()));
    }
    w.figures.insert(
        "scale_cooldown".into(),
        serde_json::json!(if tunable {
            format!("{}s", cooldown.as_secs())
        } else {
            "built-in (this binary has no --scale.cooldown)".to_owned()
        }),
    );
    w.start_coordinator_cmd("local", &extra).await?;
    let secs = w.converge(shards, Duration::from_secs(120)).await?;
    w.event(format!("converged after {secs:.1} s on {shards} shards"));
    w.open_window(true).await;
    Ok(w)
}

/// Waits (at most `limit`) until `shards` shards are up, the provider
/// runs that many, and every target is placed and settled; returns the
/// seconds it took.
async fn wait_shards(w: &World, shards: u64, limit: Duration) -> Option<f64> {
    let admin = w.admin();
    let started = Instant::now();
    let mut good = 0;
    while started.elapsed() < limit {
        let up = admin.shards_up().await.unwrap_or(0) as u64;
        let current = admin.scale().await.map(|s| s.0);
        let targets = admin.targets().await.unwrap_or_default();
        let settled = targets.len() == w.active.len() && targets.iter().all(TargetView::settled);
        let on_all = w.placement().await.len() as u64 == shards;
        if up == shards && current == Some(shards) && settled && on_all {
            good += 1;
            if good >= 2 {
                return Some(started.elapsed().as_secs_f64());
            }
        } else {
            good = 0;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}

fn scale_figures(w: &mut World) {
    let seen = w.monitor.as_ref().map(|m| m.seen()).unwrap_or_default();
    let mut changes: Vec<serde_json::Value> = Vec::new();
    let mut last = None;
    for (t, current, desired) in &seen.scale {
        if last != Some((*current, *desired)) {
            changes.push(serde_json::json!({
                "at_secs": (t - w.window_from_ms) as f64 / 1000.0,
                "current": current,
                "desired": desired,
            }));
            last = Some((*current, *desired));
        }
    }
    w.figures
        .insert("scale_changes".into(), serde_json::Value::Array(changes));
}

/// N -> N+1 shards: targets join until the desired count rises.
pub async fn scale_out(config: &ScenarioConfig) -> Result<ScenarioReport, ScenarioError> {
    let n = config.shards.unwrap_or(2).max(1);
    let per_shard = 10;
    let active = per_shard * n;
    let total = per_shard * (n + 1);
    let mut w = local(config, total, active, n).await?;
    tokio::time::sleep(pick(config, 5, 15)).await;
    w.set_active((0..total).collect())?;
    w.disturb(format!(
        "{} targets join ({active} -> {total})",
        total - active
    ));
    let took = wait_shards(&w, (n + 1) as u64, pick(config, 60, 150)).await;
    w.event(format!("{} shards up and settled: {}", n + 1, secs(took)));
    w.converge_secs = took;
    tokio::time::sleep(pick(config, 10, 30)).await;
    let placement = w.placement().await;
    let per: Vec<usize> = placement.values().map(Vec::len).collect();
    w.figures
        .insert("targets_per_shard".into(), serde_json::json!(per));
    scale_figures(&mut w);
    w.claims.push(Claim::new(
        format!("scaled out automatically from {n} to {} shards", n + 1),
        took.is_some(),
        match took {
            Some(s) => format!("{s:.1} s after the load rose"),
            None => "the new shard never held targets".to_owned(),
        },
    ));
    w.finish(drain(config)).await
}

/// N -> N-1 shards: targets leave until the desired count falls; the
/// highest shard is drained by handover, delivers its WAL, stops.
pub async fn scale_in(config: &ScenarioConfig) -> Result<ScenarioReport, ScenarioError> {
    let n = config.shards.unwrap_or(3).max(2);
    let per_shard = 10;
    let total = per_shard * n;
    let keep = per_shard * (n - 1);
    let mut w = local(config, total, total, n).await?;
    tokio::time::sleep(pick(config, 5, 15)).await;
    w.set_active((0..keep).collect())?;
    w.disturb(format!(
        "{} targets leave ({total} -> {keep})",
        total - keep
    ));
    let limit = pick(config, 10, 60) + pick(config, 60, 150);
    let took = wait_shards(&w, (n - 1) as u64, limit).await;
    w.event(format!("{} shards up and settled: {}", n - 1, secs(took)));
    w.converge_secs = took;
    tokio::time::sleep(pick(config, 10, 30)).await;
    scale_figures(&mut w);
    w.claims.push(Claim::new(
        format!("scaled in automatically from {n} to {} shards", n - 1),
        took.is_some(),
        match took {
            Some(s) => format!("{s:.1} s after the load fell (cooldown included)"),
            None => "the highest shard was never drained and stopped".to_owned(),
        },
    ));
    w.finish(drain(config)).await
}
