//! Finance rules (seed 001) per tool argument, from config: decimal precision and ranges on the
//! number's own text (never through `f64`), exact or configured case-insensitive enums, symbol
//! format and allow list (MCP-015), date-time windows, string lengths.
//!
//! Why not JSON Schema alone: `multipleOf` and `maximum` go through floating point in every
//! validator we know, so `0.1 + 0.2`-style inputs and 20-digit quantities are judged on a
//! rounded value; and no schema keyword bounds a date relative to now.

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::ValidateError;
use crate::config::ArgRule;
use crate::proto::json;

/// Every configured tool's argument rules (name, rule), per upstream.
#[derive(Debug, Default)]
pub struct Rules {
    by_upstream: Vec<HashMap<String, Vec<(String, ArgRule)>>>,
}

impl Rules {
    /// The rules of every `[[upstream.tools]]` that has some (patterns compiled at load).
    pub fn new(config: &crate::config::Config) -> Rules {
        let by_upstream = config
            .upstreams
            .iter()
            .map(|u| {
                u.tools
                    .iter()
                    .filter(|t| !t.args.is_empty())
                    .map(|t| (t.name.clone(), t.args.clone()))
                    .collect()
            })
            .collect();
        Rules { by_upstream }
    }

    /// Checks a call's raw `arguments` object against the rules of upstream `u`'s tool `name`.
    /// `now` is Unix seconds (date windows).
    pub fn check(
        &self,
        u: usize,
        name: &str,
        arguments: Option<&[u8]>,
        now: i64,
    ) -> Result<(), ValidateError> {
        let Some(rules) = self.by_upstream.get(u).and_then(|m| m.get(name)) else {
            return Ok(());
        };
        let args = arguments.unwrap_or(b"{}");
        for (arg, rule) in rules {
            match crate::proto::envelope::member(args, arg) {
                Some(r) => check_value(arg, rule, &args[r], now)?,
                None if rule.required => return Err(fail(arg, "arg_missing")),
                None => {}
            }
        }
        Ok(())
    }
}

fn fail(arg: &str, reason: &'static str) -> ValidateError {
    ValidateError::Rule {
        path: format!("/{arg}"),
        reason,
    }
}

fn symbol(arg: &str, reason: &'static str) -> ValidateError {
    ValidateError::Symbol {
        path: format!("/{arg}"),
        reason,
    }
}

fn check_value(arg: &str, r: &ArgRule, raw: &[u8], now: i64) -> Result<(), ValidateError> {
    let text = if raw.first() == Some(&b'"') {
        Some(json::unescape(raw))
    } else {
        None
    };
    if r.is_decimal() {
        // A JSON number, or a string holding one (seed 001 accepts both as `Decimal`).
        let num = match &text {
            Some(t) => t.as_ref(),
            None => std::str::from_utf8(raw).unwrap_or(""),
        };
        let (value, scale) = decimal(num).ok_or_else(|| fail(arg, "arg_not_decimal"))?;
        if r.max_scale.is_some_and(|m| scale > m) {
            return Err(fail(arg, "arg_precision"));
        }
        let out = r.gt.is_some_and(|b| value <= b)
            || r.ge.is_some_and(|b| value < b)
            || r.lt.is_some_and(|b| value >= b)
            || r.le.is_some_and(|b| value > b);
        if out {
            return Err(fail(arg, "arg_range"));
        }
    }
    let needs_text = !r.one_of.is_empty()
        || r.pattern.is_some()
        || !r.allow.is_empty()
        || r.deny_patterns.is_some()
        || r.max_days_past.is_some()
        || r.max_days_future.is_some()
        || r.min_length.is_some()
        || r.max_length.is_some();
    if !needs_text {
        return Ok(());
    }
    let Some(t) = text else {
        return Err(fail(arg, "arg_not_string"));
    };
    let chars = t.chars().count();
    if r.min_length.is_some_and(|m| chars < m) || r.max_length.is_some_and(|m| chars > m) {
        return Err(fail(arg, "arg_length"));
    }
    if !r.one_of.is_empty() {
        let hit = r.one_of.iter().any(|v| {
            if r.case_insensitive {
                v.to_lowercase() == t.trim().to_lowercase()
            } else {
                v == t.as_ref()
            }
        });
        if !hit {
            return Err(fail(arg, "arg_enum"));
        }
    }
    if r.deny_patterns.as_ref().is_some_and(|d| d.is_match(&t)) {
        return Err(fail(arg, "arg_content_pattern"));
    }
    if r.pattern.as_ref().is_some_and(|p| !p.is_match(&t)) {
        return Err(symbol(arg, "symbol_format"));
    }
    if !r.allow.is_empty() && !r.allow.iter().any(|a| a == t.as_ref()) {
        return Err(symbol(arg, "symbol_not_allowed"));
    }
    if r.max_days_past.is_some() || r.max_days_future.is_some() {
        let at = rfc3339(&t).ok_or_else(|| fail(arg, "arg_not_datetime"))?;
        let day = 86_400;
        if r.max_days_past.is_some_and(|d| at < now - d * day)
            || r.max_days_future.is_some_and(|d| at > now + d * day)
        {
            return Err(fail(arg, "arg_date_window"));
        }
    }
    Ok(())
}

/// A JSON number's text as an exact decimal and its scale (fractional digits, counting trailing
/// zeros, as seed 001's `Decimal.as_tuple().exponent`): `1.50` → 2, `1e-9` → 9, `15e-1` → 1.
/// `None` for anything that is not a number in JSON's grammar or out of `Decimal`'s range.
pub fn decimal(text: &str) -> Option<(Decimal, u32)> {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let digits = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let grammar = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'))
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (!frac.is_empty() || !digits.contains('.'));
    if !grammar {
        return None;
    }
    let scale = (frac.len() as i64 - exp).max(0);
    let scale = u32::try_from(scale).ok()?;
    let value = if exp == 0 {
        mantissa.parse::<Decimal>().ok()?
    } else {
        Decimal::from_scientific(text).ok()?
    };
    Some((value, scale))
}

/// An RFC 3339 / ISO-8601 date-time with a zone (`Z` or `±HH:MM`) as Unix seconds.
pub fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in(y, mo) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

fn days_in(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_read_from_their_text() {
        let d = |s| decimal(s).map(|(v, sc)| (v.to_string(), sc));
        assert_eq!(d("1.50"), Some(("1.50".into(), 2)));
        assert_eq!(d("1e-9"), Some(("0.000000001".into(), 9)));
        assert_eq!(d("15e-1"), Some(("1.5".into(), 1)));
        assert_eq!(d("1.5E3"), Some(("1500".into(), 0)));
        assert_eq!(d("-0.12345678"), Some(("-0.12345678".into(), 8)));
        // 0.1 + 0.2 as f64 would be 0.30000000000000004; the text is what counts.
        assert_eq!(d("0.3"), Some(("0.3".into(), 1)));
        assert_eq!(
            d("12345678901234567890.5"),
            Some(("12345678901234567890.5".into(), 1))
        );
        for bad in [
            "", "01", "1.", ".5", "1e", "--1", "0x10", "1e400", "NaN", "1 ",
        ] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn datetimes_need_a_zone() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            rfc3339("2024-02-29T12:00:00.123-05:30"),
            rfc3339("2024-02-29T17:30:00Z")
        );
        assert_eq!(rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        for bad in [
            "2024-02-30T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00+1:00",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }
}
