//! `promshard loadtest compare`: each strategy's invariants, hashmod
//! against promlib's relabeling, and the issue's claims on the default
//! Zipf target set.

use promshard_loadtest::compare::hashmod::{operator_rules, shard_of};
use promshard_loadtest::compare::targets::{TargetSetConfig, build};
use promshard_loadtest::compare::{CompareConfig, CompareReport, run, strategies};
use promshard_promlib::relabel::{hashmod, process};

fn small() -> CompareConfig {
    CompareConfig {
        targets: TargetSetConfig {
            targets: 3000,
            jobs: 7,
            zipf: 1.0,
            series: 200,
            seed: 11,
        },
        shards: 7,
    }
}

#[test]
fn every_strategy_puts_every_target_on_one_shard_in_range_deterministically() {
    let cfg = small();
    let targets = build(&cfg.targets);
    let n = cfg.shards;
    let first: Vec<_> = strategies(&targets, &cfg)
        .into_iter()
        .map(|mut s| {
            let name = s.name();
            let at_n = s.place(&targets, n).unwrap();
            assert_eq!(at_n.len(), targets.len(), "{name}");
            assert!(
                at_n.iter().all(|&x| (x as usize) < n),
                "{name}: shard out of [0,{n})"
            );
            let mut outs = vec![at_n.clone()];
            for to in [n + 1, n - 1] {
                let r = s.rescale(&targets, &at_n, n, to).unwrap();
                assert_eq!(r.assignment.len(), targets.len(), "{name} -> {to}");
                assert!(
                    r.assignment.iter().all(|&x| (x as usize) < to),
                    "{name} -> {to}: shard out of [0,{to})"
                );
                assert!(r.converged, "{name} -> {to}");
                // moved_series at least the net difference (promshard may
                // move a target more than once).
                let (net, _) =
                    promshard_loadtest::compare::diff_moves(&targets, &at_n, &r.assignment);
                assert!(r.moved_series >= net, "{name} -> {to}");
                outs.push(r.assignment);
            }
            (name, outs)
        })
        .collect();
    let again: Vec<_> = strategies(&targets, &cfg)
        .into_iter()
        .map(|mut s| {
            let at_n = s.place(&targets, n).unwrap();
            let mut outs = vec![at_n.clone()];
            for to in [n + 1, n - 1] {
                outs.push(s.rescale(&targets, &at_n, n, to).unwrap().assignment);
            }
            (s.name(), outs)
        })
        .collect();
    assert_eq!(first, again, "a second run places differently");
    assert_eq!(first.len(), 6);
}

#[test]
fn the_whole_report_is_deterministic_and_a_seed_changes_it() {
    let a = run(&small()).unwrap();
    assert_eq!(a, run(&small()).unwrap());
    let mut other = small();
    other.targets.seed = 12;
    assert_ne!(a.strategies, run(&other).unwrap().strategies);
}

#[test]
fn hashmod_agrees_with_promlibs_relabel_hashmod_and_the_operators_keep_rule() {
    let cfg = small();
    let targets = build(&cfg.targets);
    for n in [1u64, 2, 7, 10] {
        for t in targets.iter().take(500) {
            let s = shard_of(t, n).unwrap();
            assert_eq!(u64::from(s), hashmod(&t.address, n), "{}", t.address);
            // The two rules each shard runs: exactly shard s keeps it.
            let keepers: Vec<u64> = (0..n)
                .filter(|&k| process(&t.relabeled, &operator_rules(n, k).unwrap()).is_some())
                .collect();
            assert_eq!(keepers, vec![u64::from(s)], "{}", t.address);
        }
    }
}

#[test]
fn bad_configs_are_errors_that_name_the_field() {
    let mut cfg = small();
    cfg.shards = 0;
    assert!(run(&cfg).unwrap_err().to_string().contains("shards"));
    let mut cfg = small();
    cfg.targets.zipf = f64::NAN;
    assert!(run(&cfg).unwrap_err().to_string().contains("zipf"));
    let mut cfg = small();
    cfg.targets.targets = 0;
    assert!(run(&cfg).unwrap_err().to_string().contains("targets"));
}

fn show(r: &CompareReport) {
    for s in &r.strategies {
        eprintln!(
            "{:<34} series max/mean {:.3}  N+1 moved {:.4} ({:.2}x ideal)  N-1 moved {:.4}",
            s.name,
            s.balance.max_mean_series,
            s.scale_out.moved_series_fraction,
            s.scale_out.moved_over_ideal,
            s.scale_in.as_ref().map_or(0.0, |c| c.moved_series_fraction),
        );
    }
}

/// The issue's claims on the default set (10000 targets, 5 jobs, Zipf 1.0,
/// 1000 series per target on average, N = 10).
#[test]
fn issue_claims_hold_on_the_default_zipf_set() {
    let r = run(&CompareConfig::default()).unwrap();
    show(&r);
    let p = r.strategy("promshard").unwrap();
    assert!(
        p.balance.max_mean_series <= 1.10,
        "promshard max/mean series {:.3} > 1.10",
        p.balance.max_mean_series
    );
    for peer in [
        "hashmod",
        "vmagent-cluster",
        "otel-consistent-hashing",
        "otel-consistent-hashing(ring v1)",
        "otel-least-weighted",
    ] {
        let s = r.strategy(peer).unwrap();
        assert!(
            s.balance.max_mean_series > p.balance.max_mean_series,
            "{peer}: max/mean series {:.3} is not worse than promshard's {:.3}",
            s.balance.max_mean_series,
            p.balance.max_mean_series
        );
    }
    let out = &p.scale_out;
    assert!(out.converged);
    assert!(
        out.moved_series_fraction <= 1.2 * out.ideal_fraction,
        "promshard N->N+1 moved {:.4} of series > 1.2 x ideal {:.4}",
        out.moved_series_fraction,
        out.ideal_fraction
    );
    // Scale-in drains exactly one shard's worth, give or take rebalancing.
    let inn = p.scale_in.as_ref().unwrap();
    assert!(inn.converged);
    assert!(
        inn.moved_over_ideal <= 1.2,
        "N->N-1 {:.2} x ideal",
        inn.moved_over_ideal
    );
}
