//! Protocol targets (`v1::Target`: id, job, final labels) <-> promlib
//! targets, with the id checked against the labels.

use std::collections::BTreeMap;

use promshard_promlib::labels::{self, Label, Labels, is_valid_label_name, target_id};
use promshard_promlib::targets::Target;
use promshard_proto::v1;

use crate::backend::Rejected;

/// Checks one add of a delta, as every backend does before taking it: it
/// carries a target, of a job in force (`jobs`; `job_errors` says why a
/// job is not), well formed ([`from_proto`]), and a handover start that
/// is still ahead.
pub fn check_add<'a, J>(
    add: &'a v1::TargetAdd,
    jobs: &BTreeMap<String, J>,
    job_errors: &BTreeMap<String, String>,
) -> Result<(&'a v1::Target, Target), Rejected> {
    let Some(t) = &add.target else {
        return Err(Rejected {
            target_id: 0,
            reason: "an add without a target".to_string(),
        });
    };
    let reject = |reason| Rejected {
        target_id: t.id,
        reason,
    };
    // A handover's start slot that already passed cannot be kept without
    // a gap or an overlap with the giving shard: refused, the coordinator
    // then leaves the target where it is.
    let now = crate::native::now_ms();
    if add.start_at_unix_ms > 0 && add.start_at_unix_ms <= now {
        return Err(reject(format!(
            "handover start {} ms already passed (now {now} ms)",
            add.start_at_unix_ms
        )));
    }
    if !jobs.contains_key(&t.job_name) {
        return Err(reject(match job_errors.get(&t.job_name) {
            Some(e) => format!("job {:?} is not in force: {e}", t.job_name),
            None => format!("job {:?} is not defined", t.job_name),
        }));
    }
    from_proto(t).map(|built| (t, built)).map_err(reject)
}

/// Rebuilds the target a coordinator sent. The reason of a refusal names
/// what is wrong.
pub fn from_proto(t: &v1::Target) -> Result<Target, String> {
    if t.job_name.is_empty() {
        return Err("the target has no job name".to_string());
    }
    for l in &t.labels {
        if !is_valid_label_name(&l.name) {
            return Err(format!("label name {:?} is not valid", l.name));
        }
    }
    let list: Vec<Label> = t
        .labels
        .iter()
        .map(|l| Label::new(l.name.clone(), l.value.clone()))
        .collect();
    let Some(labels) = Labels::from_sorted(list) else {
        return Err("labels are not sorted by name, or a name repeats".to_string());
    };
    if labels.get(labels::ADDRESS).is_none_or(str::is_empty) {
        return Err("the target has no __address__".to_string());
    }
    let expected = target_id(&t.job_name, &labels);
    if expected != t.id {
        return Err(format!(
            "id {:#018x} does not match its job and labels (they give {expected:#018x})",
            t.id
        ));
    }
    let target = Target {
        id: t.id,
        job_name: t.job_name.clone(),
        discovered_labels: labels.clone(),
        labels,
    };
    if target.labels.contains(labels::SCRAPE_INTERVAL) && target.interval().is_none() {
        return Err(format!(
            "{} {:?} is not a duration",
            labels::SCRAPE_INTERVAL,
            target
                .labels
                .get(labels::SCRAPE_INTERVAL)
                .unwrap_or_default()
        ));
    }
    if target.labels.contains(labels::SCRAPE_TIMEOUT) && target.timeout().is_none() {
        return Err(format!(
            "{} {:?} is not a duration",
            labels::SCRAPE_TIMEOUT,
            target
                .labels
                .get(labels::SCRAPE_TIMEOUT)
                .unwrap_or_default()
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(job: &str, pairs: &[(&str, &str)]) -> v1::Target {
        let labels = Labels::from_pairs(pairs.iter().copied());
        Target {
            id: target_id(job, &labels),
            job_name: job.to_string(),
            discovered_labels: labels.clone(),
            labels,
        }
        .to_proto()
    }

    #[test]
    fn round_trips_and_checks_the_id() {
        let p = proto(
            "j",
            &[("__address__", "h:1"), ("__scrape_interval__", "5s")],
        );
        let t = from_proto(&p).unwrap();
        assert_eq!(t.to_proto(), p);
        let mut bad = p.clone();
        bad.id += 1;
        assert!(from_proto(&bad).unwrap_err().contains("does not match"));
        let mut other_job = p.clone();
        other_job.job_name = "k".to_string();
        assert!(from_proto(&other_job).is_err());
    }

    #[test]
    fn refuses_malformed_targets_with_a_reason() {
        let no_addr = proto("j", &[("a", "1")]);
        assert!(from_proto(&no_addr).unwrap_err().contains("__address__"));
        let bad_iv = proto("j", &[("__address__", "h:1"), ("__scrape_interval__", "x")]);
        assert!(from_proto(&bad_iv).unwrap_err().contains("not a duration"));
        let bad_name = proto("j", &[("__address__", "h:1"), ("0bad", "v")]);
        assert!(from_proto(&bad_name).unwrap_err().contains("not valid"));
        let mut dup = proto("j", &[("__address__", "h:1"), ("a", "1")]);
        dup.labels.push(dup.labels[1].clone());
        assert!(from_proto(&dup).unwrap_err().contains("repeats"));
        let mut no_job = proto("j", &[("__address__", "h:1")]);
        no_job.job_name.clear();
        assert!(from_proto(&no_job).is_err());
    }

    #[test]
    fn check_add_names_the_missing_target_job_or_defect() {
        let p = proto("j", &[("__address__", "h:1")]);
        let add = |t: Option<v1::Target>| v1::TargetAdd {
            target: t,
            ..v1::TargetAdd::default()
        };
        let jobs: BTreeMap<String, ()> = [("j".to_string(), ())].into();
        let mut errors = BTreeMap::new();
        let ok = add(Some(p.clone()));
        let (t, built) = check_add(&ok, &jobs, &errors).unwrap();
        assert_eq!((t, built.to_proto()), (&p, p.clone()));
        let none = check_add(&add(None), &jobs, &errors).unwrap_err();
        assert_eq!(none.target_id, 0);
        let mut other = proto("k", &[("__address__", "h:1")]);
        let e = check_add(&add(Some(other.clone())), &jobs, &errors).unwrap_err();
        assert_eq!(e.target_id, other.id);
        assert!(
            e.reason.contains("job \"k\" is not defined"),
            "{}",
            e.reason
        );
        errors.insert("k".to_string(), "bad regex".to_string());
        let e = check_add(&add(Some(other.clone())), &jobs, &errors).unwrap_err();
        assert!(e.reason.contains("not in force: bad regex"), "{}", e.reason);
        other.job_name = "j".to_string();
        let e = check_add(&add(Some(other)), &jobs, &errors).unwrap_err();
        assert!(e.reason.contains("does not match"), "{}", e.reason);
    }

    #[test]
    fn check_add_refuses_a_handover_start_that_already_passed() {
        let p = proto("j", &[("__address__", "h:1")]);
        let jobs: BTreeMap<String, ()> = [("j".to_string(), ())].into();
        let errors = BTreeMap::new();
        let at = |start_at_unix_ms| v1::TargetAdd {
            target: Some(p.clone()),
            start_at_unix_ms,
        };
        let now = crate::native::now_ms();
        let e = check_add(&at(now - 1_000), &jobs, &errors).unwrap_err();
        assert_eq!(e.target_id, p.id);
        assert!(e.reason.contains("already passed"), "{}", e.reason);
        assert!(check_add(&at(now + 60_000), &jobs, &errors).is_ok());
        // 0: no handover, start at the next slot.
        assert!(check_add(&at(0), &jobs, &errors).is_ok());
    }
}
