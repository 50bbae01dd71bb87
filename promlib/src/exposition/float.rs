//! Sample values and timestamps parsed like Prometheus 2.42: Go's
//! `strconv.ParseFloat` restricted to pre-Go-1.13 syntax (no `p`, `P`, `_`),
//! `strconv.ParseInt`, and Go's float to int64 conversion.

/// Prometheus' canonical NaN (`value.NormalNaN`, also Go's `math.NaN()`).
pub(crate) const NORMAL_NAN: u64 = 0x7ff8_0000_0000_0001;

/// Exact powers of ten for the fast path (all exactly representable).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Parses `s` as Prometheus 2.42 does (`textparse.parseFloat`): Go
/// `strconv.ParseFloat(s, 64)` but `p`, `P` and `_` are refused. Accepts
/// `[+-]inf`, `[+-]infinity`, `nan` (any case), and decimal numbers with an
/// optional exponent; results are correctly rounded like Go's. NaN comes back
/// as Prometheus' canonical NaN bits. Errors carry Go's message.
pub fn parse_go_float(s: &[u8]) -> Result<f64, String> {
    if let Some(v) = fast_path(s) {
        return Ok(v);
    }
    slow_path(s)
}

/// Clinger's fast path: at most 19 significant digits whose value fits in
/// 2^53 and a decimal exponent within ±22 give an exactly rounded result
/// with one multiplication or division.
#[inline]
fn fast_path(s: &[u8]) -> Option<f64> {
    let mut i = 0;
    let neg = match s.first()? {
        b'-' => {
            i = 1;
            true
        }
        b'+' => {
            i = 1;
            false
        }
        _ => false,
    };
    let mut mant: u64 = 0;
    let mut ndigits = 0u32;
    let int_start = i;
    while i < s.len() && s[i].is_ascii_digit() {
        mant = mant.wrapping_mul(10).wrapping_add(u64::from(s[i] - b'0'));
        ndigits += 1;
        i += 1;
    }
    let mut frac_digits = 0i32;
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_digit() {
            mant = mant.wrapping_mul(10).wrapping_add(u64::from(s[i] - b'0'));
            ndigits += 1;
            frac_digits += 1;
            i += 1;
        }
    }
    if ndigits == 0 || ndigits > 19 || i == int_start {
        return None;
    }
    let mut exp: i32 = 0;
    if i < s.len() {
        if s[i] != b'e' && s[i] != b'E' {
            return None;
        }
        i += 1;
        let eneg = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let estart = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if exp > 1000 {
                return None;
            }
            exp = exp * 10 + i32::from(s[i] - b'0');
            i += 1;
        }
        if i == estart || i != s.len() {
            return None;
        }
        if eneg {
            exp = -exp;
        }
    }
    let e = exp - frac_digits;
    if mant > (1u64 << 53) || !(-22..=22).contains(&e) {
        return None;
    }
    let m = mant as f64;
    let v = if e >= 0 {
        m * POW10[e as usize]
    } else {
        m / POW10[(-e) as usize]
    };
    Some(if neg { -v } else { v })
}

fn syntax_error(s: &[u8]) -> String {
    format!(
        "strconv.ParseFloat: parsing {:?}: invalid syntax",
        String::from_utf8_lossy(s)
    )
}

fn slow_path(s: &[u8]) -> Result<f64, String> {
    if s.iter().any(|c| matches!(c, b'p' | b'P' | b'_')) {
        return Err("unsupported character in float".to_string());
    }
    // Go's special values: an optional sign then inf/infinity; nan unsigned.
    let (sign, rest) = match s.first() {
        Some(b'-') => (-1.0, &s[1..]),
        Some(b'+') => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
        return Ok(sign * f64::INFINITY);
    }
    if s.eq_ignore_ascii_case(b"nan") {
        return Ok(f64::from_bits(NORMAL_NAN));
    }
    if !is_decimal(rest) {
        return Err(syntax_error(s));
    }
    // Validated ASCII; Rust's parser rounds correctly, as Go's does.
    let text = std::str::from_utf8(s).map_err(|_| syntax_error(s))?;
    let v: f64 = text.parse().map_err(|_| syntax_error(s))?;
    if v.is_infinite() {
        return Err(format!(
            "strconv.ParseFloat: parsing {:?}: value out of range",
            String::from_utf8_lossy(s)
        ));
    }
    Ok(v)
}

/// `digits [. digits*] | . digits`, then an optional `[eE][+-]?digits`.
fn is_decimal(s: &[u8]) -> bool {
    let mut i = 0;
    let mut digits = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        i += 1;
        if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == s.len()
}

/// Go's `strconv.ParseInt(s, 10, 64)` for a run of ASCII digits.
pub(crate) fn parse_go_int(s: &[u8]) -> Result<i64, String> {
    let mut v: i64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return Err(format!(
                "strconv.ParseInt: parsing {:?}: invalid syntax",
                String::from_utf8_lossy(s)
            ));
        }
        v = match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(c - b'0')))
        {
            Some(v) => v,
            None => {
                return Err(format!(
                    "strconv.ParseInt: parsing {:?}: value out of range",
                    String::from_utf8_lossy(s)
                ));
            }
        };
    }
    Ok(v)
}

/// Go's `int64(f)` on amd64: truncation toward zero; NaN and values out of
/// range give the "integer indefinite" value, `math.MinInt64`.
pub(crate) fn go_f64_to_i64(f: f64) -> i64 {
    let min = i64::MIN as f64; // -2^63, exact
    if (min..-min).contains(&f) {
        f as i64
    } else {
        i64::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<f64, String> {
        parse_go_float(s.as_bytes())
    }

    #[test]
    fn accepts_go_syntax() {
        assert_eq!(p("1").unwrap(), 1.0);
        assert_eq!(p("-1.5e3").unwrap(), -1500.0);
        assert_eq!(p("+.5").unwrap(), 0.5);
        assert_eq!(p("1.").unwrap(), 1.0);
        assert_eq!(p("1E+2").unwrap(), 100.0);
        assert_eq!(p("0.1").unwrap(), 0.1);
        assert_eq!(p("1e-400").unwrap(), 0.0);
        assert_eq!(p("00012").unwrap(), 12.0);
        assert_eq!(p("+Inf").unwrap(), f64::INFINITY);
        assert_eq!(p("-inf").unwrap(), f64::NEG_INFINITY);
        assert_eq!(p("INFINITY").unwrap(), f64::INFINITY);
        assert_eq!(p("NaN").unwrap().to_bits(), NORMAL_NAN);
        assert_eq!(p("nan").unwrap().to_bits(), NORMAL_NAN);
        assert_eq!(p("1.7976931348623157e308").unwrap(), f64::MAX);
        assert_eq!(
            p("123456789012345678901234567890").unwrap(),
            1.2345678901234568e29
        );
        assert_eq!(p("9007199254740993").unwrap(), 9007199254740992.0);
    }

    #[test]
    fn rejects_what_go_or_prometheus_rejects() {
        for bad in [
            "", "+", ".", "e5", "1e", "1e+", "--1", "+nan", "-NaN", "infin", "0x1p3", "1_000",
            "0x10", "1.5.5", " 1", "1 ", "abc", "Inf1",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(p("0x1p3").unwrap_err(), "unsupported character in float");
        assert_eq!(
            p("1e400").unwrap_err(),
            "strconv.ParseFloat: parsing \"1e400\": value out of range"
        );
        assert_eq!(
            p("x").unwrap_err(),
            "strconv.ParseFloat: parsing \"x\": invalid syntax"
        );
    }

    #[test]
    fn ints_and_conversions() {
        assert_eq!(parse_go_int(b"9223372036854775807").unwrap(), i64::MAX);
        assert!(parse_go_int(b"9223372036854775808").is_err());
        assert_eq!(go_f64_to_i64(1.9999), 1);
        assert_eq!(go_f64_to_i64(-1.9999), -1);
        assert_eq!(go_f64_to_i64(1e300), i64::MIN);
        assert_eq!(go_f64_to_i64(f64::NAN), i64::MIN);
    }
}
