//! `global.external_labels`: added to a series that lacks the name (the
//! series' own label wins), as Prometheus' remote write does.

use promshard_promlib::labels::Labels;

pub(crate) fn apply_external(mut labels: Labels, external: &Labels) -> Labels {
    for l in external {
        if !l.value.is_empty() && !labels.contains(&l.name) {
            labels.insert(l.name.clone(), l.value.clone());
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_labels_win_over_external() {
        let s = Labels::from_pairs([("__name__", "x"), ("region", "mine")]);
        let ext = Labels::from_pairs([("region", "eu"), ("replica", "a")]);
        let out = apply_external(s, &ext);
        assert_eq!(out.get("region"), Some("mine"));
        assert_eq!(out.get("replica"), Some("a"));
    }
}
