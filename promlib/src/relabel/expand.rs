//! Go's `Regexp.Expand`: `$1`, `${1}`, `$name`, `${name}`, `$$`.

use super::Regex;

/// Expands `template` with the groups of `caps` (a match of `re` in
/// `src`), exactly as Go's `Regexp.ExpandString`:
///
/// - `$$` is a literal `$`;
/// - `$name` takes the longest run of letters, digits and `_`, so `$1x`
///   names the group `1x` (usually absent: empty);
/// - `${name}` delimits the name;
/// - a name of digits without a leading zero (below 1e8) is a group
///   number, anything else a group name; a group that is absent or did not
///   participate expands to nothing;
/// - a malformed reference (`$` followed by nothing usable, `${` without
///   `}`) keeps the `$` literally.
pub fn expand(template: &str, re: &Regex, caps: &regex::Captures<'_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some((name, after)) = extract(rest) else {
            out.push('$');
            continue;
        };
        rest = after;
        match group_number(name) {
            Some(n) => {
                if let Some(m) = caps.get(n) {
                    out.push_str(m.as_str());
                }
            }
            None => {
                // Go takes the first participating group with that name.
                let hit = re
                    .group_names()
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.as_deref() == Some(name))
                    .find_map(|(i, _)| caps.get(i));
                if let Some(m) = hit {
                    out.push_str(m.as_str());
                }
            }
        }
    }
    out.push_str(rest);
    out
}

/// The reference name after a `$` and the text after it (Go's `extract`).
fn extract(s: &str) -> Option<(&str, &str)> {
    let (body, brace) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let end = body
        .char_indices()
        .find(|(_, c)| !(c.is_alphabetic() || c.is_numeric() || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(body.len());
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    let mut rest = &body[end..];
    if brace {
        rest = rest.strip_prefix('}')?;
    }
    Some((name, rest))
}

/// Go: a name made only of ASCII digits, below 1e8, without a leading
/// zero, is a group number.
fn group_number(name: &str) -> Option<usize> {
    if !name.bytes().all(|b| b.is_ascii_digit()) || name.len() > 8 {
        return None;
    }
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    name.parse::<usize>().ok().filter(|n| *n < 100_000_000)
}
