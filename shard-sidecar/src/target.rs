//! Protocol targets (`v1::Target`: id, job, final labels) <-> promlib
//! targets, with the id checked against the labels.

use promshard_promlib::labels::{self, Label, Labels, is_valid_label_name, target_id};
use promshard_promlib::targets::Target;
use promshard_proto::v1;

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

/// The protocol form of a promlib target.
pub fn to_proto(t: &Target) -> v1::Target {
    v1::Target {
        id: t.id,
        job_name: t.job_name.clone(),
        labels: t
            .labels
            .iter()
            .map(|l| v1::Label {
                name: l.name.clone(),
                value: l.value.clone(),
            })
            .collect(),
    }
}
