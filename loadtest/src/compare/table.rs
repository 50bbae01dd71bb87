//! The comparison as a plain-text table.

use std::fmt::Write;

use super::CompareReport;

/// The report as aligned columns, one row per strategy, and a legend.
pub fn render(r: &CompareReport) -> String {
    let n = r.config.shards;
    let t = &r.config.targets;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "promshard loadtest compare: {} targets, {} jobs, zipf {}, {} series (mean {} per target, largest {}), seed {}, N = {n}",
        t.targets, t.jobs, t.zipf, r.total_series, t.series, r.largest_target_series, t.seed
    );
    let _ = writeln!(
        out,
        "ideal moved: N->N+1 = 1/{} = {:.4}, N->N-1 = 1/{n} = {:.4}",
        n + 1,
        1.0 / (n + 1) as f64,
        1.0 / n.max(1) as f64
    );
    let floor = |k: usize| {
        let mean = r.total_series as f64 / k.max(1) as f64;
        (r.largest_target_series as f64 / mean).max(1.0)
    };
    let _ = writeln!(
        out,
        "lowest possible series max/mean (the largest target alone): N = {:.3}, N+1 = {:.3}, N-1 = {:.3}",
        floor(n),
        floor(n + 1),
        floor(n.saturating_sub(1))
    );
    let header = [
        "strategy",
        "series max/mean",
        "targets max/mean",
        "N+1 moved",
        "x ideal",
        "after: max/mean",
        "N-1 moved",
        "x ideal",
        "after: max/mean",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for s in &r.strategies {
        let b = &s.balance;
        let mut row = vec![
            s.name.clone(),
            format!(
                "{:.3} ({}/{:.0})",
                b.max_mean_series, b.max_series, b.mean_series
            ),
            format!(
                "{:.3} ({}/{:.0})",
                b.max_mean_targets, b.max_targets, b.mean_targets
            ),
        ];
        let mut change = |c: Option<&super::Change>| match c {
            Some(c) => {
                let conv = if c.converged { "" } else { " (not converged)" };
                row.push(format!(
                    "{:.4}{}",
                    c.moved_series_fraction,
                    if c.rounds > 1 {
                        format!(" ({} rounds{conv})", c.rounds)
                    } else {
                        conv.to_string()
                    }
                ));
                row.push(format!("{:.2}", c.moved_over_ideal));
                row.push(format!("{:.3}", c.after.max_mean_series));
            }
            None => row.extend(["-".to_string(), "-".to_string(), "-".to_string()]),
        };
        change(Some(&s.scale_out));
        change(s.scale_in.as_ref());
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    let _ = writeln!(
        out,
        "series max/mean at N shards (max/mean series per shard); moved = fraction of all series on targets that changed shard \
         (promshard: summed over planner rounds until converged; N-1 drains the highest shard, then removes it); \
         x ideal = moved / ideal; after = series max/mean at the new shard count."
    );
    for s in &r.strategies {
        let _ = writeln!(out, "  {:<34} {}", s.name, s.description);
    }
    out
}
