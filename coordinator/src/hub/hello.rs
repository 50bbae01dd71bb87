//! Validation of a shard's Hello (the first message of every session).

use promshard_proto::v1::Hello;

/// The longest shard id accepted (a DNS label-ish bound: pod names are at
/// most 253 characters).
pub const MAX_SHARD_ID_LEN: usize = 253;
/// The longest `address` / `version` string accepted.
const MAX_FIELD_LEN: usize = 1024;

/// Checks a Hello; the error names the field and the problem.
pub(crate) fn validate(hello: &Hello) -> Result<(), String> {
    let id = &hello.shard_id;
    if id.is_empty() {
        return Err("Hello.shard_id is empty".into());
    }
    if id.len() > MAX_SHARD_ID_LEN {
        return Err(format!(
            "Hello.shard_id is {} bytes long, the limit is {MAX_SHARD_ID_LEN}",
            id.len()
        ));
    }
    if let Some((pos, c)) = id.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        return Err(format!(
            "Hello.shard_id contains {c:?} at byte {pos}; only printable ASCII without spaces is allowed"
        ));
    }
    for (name, value) in [("address", &hello.address), ("version", &hello.version)] {
        if value.len() > MAX_FIELD_LEN {
            return Err(format!(
                "Hello.{name} is {} bytes long, the limit is {MAX_FIELD_LEN}",
                value.len()
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(format!("Hello.{name} contains control characters"));
        }
    }
    if let Some(c) = &hello.capacity
        && !(c.max_samples_per_second.is_finite() && c.max_samples_per_second >= 0.0)
    {
        return Err(format!(
            "Hello.capacity.max_samples_per_second is {}; it must be a finite number >= 0",
            c.max_samples_per_second
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use promshard_proto::v1::Capacity;

    fn hello(id: &str) -> Hello {
        Hello {
            shard_id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn shard_id_rules() {
        assert!(validate(&hello("shard-3")).is_ok());
        assert!(validate(&hello("")).unwrap_err().contains("empty"));
        assert!(validate(&hello("a b")).unwrap_err().contains("' '"));
        assert!(validate(&hello("a\u{7}")).is_err());
        assert!(
            validate(&hello(&"x".repeat(254)))
                .unwrap_err()
                .contains("254")
        );
        let mut h = hello("s");
        h.capacity = Some(Capacity {
            max_series: 1,
            max_samples_per_second: f64::NAN,
        });
        assert!(validate(&h).unwrap_err().contains("max_samples_per_second"));
    }
}
