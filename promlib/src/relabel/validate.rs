//! Prometheus 2.42's checks of one relabel rule (`relabel.Config.UnmarshalYAML`).

use std::sync::LazyLock;

use super::{Action, RelabelConfig, go_quote};
use crate::labels::is_valid_label_name;

/// Prometheus' `relabelTarget`: a label name that may contain `$1`,
/// `${1}`, `$name` references.
static RELABEL_TARGET: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$")
        .expect("a constant regex compiles")
});

impl RelabelConfig {
    /// Checks the rule as Prometheus 2.42 does when loading a config
    /// (required fields per action, valid target labels). The message is
    /// Prometheus'; the config loader adds where it is.
    pub fn validate(&self) -> Result<(), String> {
        use Action::*;
        let a = self.action;
        let defaults = RelabelConfig::default();
        if self.modulus == 0 && a == HashMod {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        let needs_target = matches!(
            a,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            return Err(format!(
                "relabel configuration for {a} action requires 'target_label' value"
            ));
        }
        let templated = matches!(a, Replace | Lowercase | Uppercase | KeepEqual | DropEqual);
        if templated && !RELABEL_TARGET.is_match(&self.target_label) {
            return Err(format!(
                "{} is invalid 'target_label' for {a} action",
                go_quote(&self.target_label)
            ));
        }
        let no_replacement = matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual);
        if no_replacement && self.replacement != defaults.replacement {
            return Err(format!("'replacement' can not be set for {a} action"));
        }
        if a == LabelMap && !RELABEL_TARGET.is_match(&self.replacement) {
            return Err(format!(
                "{} is invalid 'replacement' for {a} action",
                go_quote(&self.replacement)
            ));
        }
        if a == HashMod && !is_valid_label_name(&self.target_label) {
            return Err(format!(
                "{} is invalid 'target_label' for {a} action",
                go_quote(&self.target_label)
            ));
        }
        if matches!(a, KeepEqual | DropEqual)
            && (!self.regex.is_implicit_default()
                || self.modulus != defaults.modulus
                || self.separator != defaults.separator
                || self.replacement != defaults.replacement)
        {
            return Err(format!(
                "{a} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(a, LabelDrop | LabelKeep)
            && (!self.source_labels.is_empty()
                || self.target_label != defaults.target_label
                || self.modulus != defaults.modulus
                || self.separator != defaults.separator
                || self.replacement != defaults.replacement)
        {
            return Err(format!(
                "{a} action requires only 'regex', and no other fields"
            ));
        }
        Ok(())
    }
}
