//! The optional bearer token of the Attach call.

use std::fmt;

use tonic::metadata::MetadataMap;

use super::HubError;

/// A bearer token shards must present as `authorization: Bearer <token>`.
/// Its `Debug` and `Display` print `<secret>`: it never reaches a log.
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    /// A token must be non-empty visible ASCII (it travels in an HTTP/2 header).
    pub fn new(token: impl Into<String>) -> Result<Self, HubError> {
        let token = token.into();
        if token.is_empty() {
            return Err(HubError::InvalidOption {
                option: "auth_token",
                problem: "the bearer token is empty".into(),
            });
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HubError::InvalidOption {
                option: "auth_token",
                problem: "the bearer token must be visible ASCII without spaces".into(),
            });
        }
        Ok(BearerToken(token))
    }

    /// The token itself (to put in a client's header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Why a request was not authenticated (never contains the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    Missing,
    NotBearer,
    Mismatch,
}

impl AuthFailure {
    pub(crate) fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing authorization metadata (expected `Bearer <token>`)",
            AuthFailure::NotBearer => "authorization metadata is not `Bearer <token>`",
            AuthFailure::Mismatch => "invalid bearer token",
        }
    }
}

/// Checks `authorization: Bearer <token>` against `expected` in constant
/// time (with respect to the token's content).
pub(crate) fn check(metadata: &MetadataMap, expected: &BearerToken) -> Result<(), AuthFailure> {
    let value = metadata
        .get("authorization")
        .ok_or(AuthFailure::Missing)?
        .to_str()
        .map_err(|_| AuthFailure::NotBearer)?;
    let (scheme, presented) = value.split_once(' ').ok_or(AuthFailure::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::NotBearer);
    }
    if constant_time_eq(presented.trim().as_bytes(), expected.0.as_bytes()) {
        Ok(())
    } else {
        Err(AuthFailure::Mismatch)
    }
}

/// Equality whose running time depends only on the lengths, not on where
/// the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(v: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(v) = v {
            m.insert("authorization", v.parse().unwrap());
        }
        m
    }

    #[test]
    fn bearer_check() {
        let t = BearerToken::new("s3cret").unwrap();
        assert_eq!(check(&md(Some("Bearer s3cret")), &t), Ok(()));
        assert_eq!(check(&md(Some("bearer s3cret")), &t), Ok(()));
        assert_eq!(check(&md(None), &t), Err(AuthFailure::Missing));
        assert_eq!(
            check(&md(Some("Basic s3cret")), &t),
            Err(AuthFailure::NotBearer)
        );
        assert_eq!(
            check(&md(Some("Bearer s3cre")), &t),
            Err(AuthFailure::Mismatch)
        );
        assert_eq!(
            check(&md(Some("Bearer s3creT")), &t),
            Err(AuthFailure::Mismatch)
        );
        assert_eq!(format!("{t:?} {t}"), "<secret> <secret>");
        assert!(BearerToken::new("").is_err());
        assert!(BearerToken::new("a b").is_err());
    }
}
