//! Size skew: how many series each target exposes.

/// Splits `targets * series_per_target` series over `targets` targets so that
/// target `i` (rank `i + 1`) gets a share proportional to `1 / (i+1)^exponent`.
///
/// An exponent of 0 gives every target `series_per_target`. Every target gets
/// at least one series, and the sizes always sum to exactly
/// `targets * series_per_target` (largest-remainder rounding), so the expected
/// total does not depend on the skew.
pub fn zipf_sizes(targets: usize, series_per_target: usize, exponent: f64) -> Vec<usize> {
    if targets == 0 {
        return Vec::new();
    }
    let total = targets * series_per_target;
    if exponent == 0.0 || total < targets {
        return vec![series_per_target; targets];
    }
    let weights: Vec<f64> = (0..targets)
        .map(|i| 1.0 / ((i + 1) as f64).powf(exponent))
        .collect();
    let weight_sum: f64 = weights.iter().sum();
    // Every target gets one series first; the rest is split by weight.
    let spread = (total - targets) as f64;
    let mut sizes = Vec::with_capacity(targets);
    let mut remainders = Vec::with_capacity(targets);
    let mut assigned = 0usize;
    for (i, w) in weights.iter().enumerate() {
        let exact = spread * w / weight_sum;
        let floor = exact.floor() as usize;
        sizes.push(1 + floor);
        assigned += 1 + floor;
        remainders.push((exact - floor as f64, i));
    }
    remainders.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders.into_iter().take(total.saturating_sub(assigned)) {
        sizes[i] += 1;
    }
    // Rounding may lift a lower rank above a higher one by one; keep the
    // order by rank.
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_sizes_sum_to_the_expected_total_and_skew() {
        for (n, m, s) in [(1000, 1000, 1.0), (37, 50, 1.3), (5, 1, 2.0), (100, 3, 0.7)] {
            let sizes = zipf_sizes(n, m, s);
            assert_eq!(sizes.len(), n);
            assert_eq!(sizes.iter().sum::<usize>(), n * m);
            assert!(sizes.iter().all(|&x| x >= 1));
            assert!(
                sizes.windows(2).all(|w| w[0] >= w[1]),
                "non-increasing by rank"
            );
        }
        let sizes = zipf_sizes(1000, 1000, 1.0);
        assert!(
            sizes[0] > 50 * sizes[999],
            "the first target is huge: {} vs {}",
            sizes[0],
            sizes[999]
        );
    }

    #[test]
    fn zero_exponent_is_uniform() {
        assert_eq!(zipf_sizes(4, 10, 0.0), vec![10; 4]);
    }
}
