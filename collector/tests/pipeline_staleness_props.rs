//! Property: over random sequences of scrapes (random subsets of series,
//! some failed), every series absent after being present gets exactly one
//! stale marker, present series get none, and every ref is defined before
//! use with one label set. "Present" is Prometheus 2.42's tracking (checked
//! against the binary in pipeline_differential): a failed parse still
//! tracks the series it read before the error.

mod pipeline_common;

use std::collections::{BTreeSet, HashMap};

use pipeline_common::*;
use promshard_collector::series::{AppendBatch, SeriesRef, is_stale_marker};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Scrape(BTreeSet<u8>),
    Failure,
    ParseError(BTreeSet<u8>),
}

fn step() -> impl Strategy<Value = Step> {
    let set = prop::collection::btree_set(0u8..12, 0..12);
    prop_oneof![
        6 => set.clone().prop_map(Step::Scrape),
        1 => Just(Step::Failure),
        1 => set.prop_map(Step::ParseError),
    ]
}

fn body(set: &BTreeSet<u8>) -> String {
    set.iter()
        .map(|i| format!("m{{i=\"{i}\"}} {i}\n"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn one_stale_marker_per_disappearance(steps in prop::collection::vec(step(), 1..25), stop in any::<bool>()) {
        let mut p = pipeline(settings(), &[("job", "j")]);
        let mut labels_of: HashMap<SeriesRef, String> = HashMap::new();
        let mut batches = Vec::new();
        let mut prev: BTreeSet<u8> = BTreeSet::new();
        for (n, step) in steps.iter().enumerate() {
            let ts = 1000 * (n as i64 + 1);
            let mut out = AppendBatch::default();
            // (tracked for staleness, written)
            let (cur, written) = match step {
                Step::Scrape(set) => {
                    let r = p.on_scrape(body(set).as_bytes(), TEXT, ts, ms(1), &mut out);
                    prop_assert_eq!(r.error, None);
                    (set.clone(), set.clone())
                }
                Step::Failure => {
                    p.on_failure("down", ts, ms(1), &mut out);
                    (BTreeSet::new(), BTreeSet::new())
                }
                Step::ParseError(set) => {
                    let b = format!("{}bad{{\n", body(set));
                    let r = p.on_scrape(b.as_bytes(), TEXT, ts, ms(1), &mut out);
                    prop_assert!(r.error.is_some());
                    (set.clone(), BTreeSet::new())
                }
            };
            for d in &out.series {
                labels_of.insert(d.series, series_name(&d.labels));
            }
            let mut stale: HashMap<String, usize> = HashMap::new();
            let mut values: HashMap<String, usize> = HashMap::new();
            for s in &out.samples {
                let name = labels_of.get(&s.series).cloned().unwrap_or_default();
                prop_assert_eq!(s.timestamp_ms, ts);
                if is_stale_marker(s.value) {
                    *stale.entry(name).or_default() += 1;
                } else {
                    *values.entry(name).or_default() += 1;
                }
            }
            for i in 0..12u8 {
                let name = format!("m{{i=\"{i}\", job=\"j\"}}");
                let want_stale = usize::from(prev.contains(&i) && !cur.contains(&i));
                prop_assert_eq!(stale.get(&name).copied().unwrap_or(0), want_stale, "step {} series {}", n, i);
                prop_assert_eq!(values.get(&name).copied().unwrap_or(0), usize::from(written.contains(&i)));
            }
            batches.push(out);
            prev = cur;
        }
        if stop {
            let mut out = AppendBatch::default();
            p.on_stop(1000 * (steps.len() as i64 + 1), false, &mut out);
            let stale = out.samples.iter().filter(|s| is_stale_marker(s.value)).count();
            prop_assert_eq!(stale, prev.len() + 5);
            prop_assert_eq!(out.samples.len(), stale);
            batches.push(out);
        }
        assert_defined_before_use(&batches);
    }
}
