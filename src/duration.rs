//! The one duration syntax of every flag and setting that takes a duration (`spawn
//! --timeout`, `stop --timeout`, `list --since`, `agent.syncTimeout`, `agent.buildTimeout`,
//! `agent.followInterval`): a bare number of seconds (`90`), or one or more number-unit parts
//! (`500ms`, `30s`, `5m`, `1h30m`, `2d`). Pure parsing; callers decide which values they take
//! (zero, a minimum).

use std::time::Duration;

use anyhow::Result;

use crate::error::hinted;

/// What an error says a duration looks like.
pub const EXAMPLES: &str = "90, 30s, 5m, 1h30m or 2d";

/// Parse a duration: `90` (seconds), or number-unit parts with units `ms`, `s`, `m`, `h`,
/// `d`, largest first (`1h30m`). Overflow, an empty text, signs and unknown units are errors.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration like {EXAMPLES}");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map(Duration::from_secs).map_err(|_| bad());
    }
    let mut total: u64 = 0; // milliseconds
    let mut last_unit = u64::MAX;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = match &rest[..letters] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        // Each unit once, largest first: `30m1h` and `5m5m` are typos, not durations.
        if unit >= last_unit {
            return Err(bad());
        }
        last_unit = unit;
        rest = &rest[letters..];
        total = n
            .checked_mul(unit)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
    }
    Ok(Duration::from_millis(total))
}

/// A positive duration in whole seconds (rounded up), for clap's `value_parser`.
pub fn parse_secs(text: &str) -> Result<u64, String> {
    let d = parse(text)?;
    if d.is_zero() {
        return Err(format!(
            "'{text}' is no time at all; give a duration like {EXAMPLES}"
        ));
    }
    Ok(d.as_millis().div_ceil(1000) as u64)
}

/// Seconds (zero allowed), for a flag where `0` means "at once" (`stop --timeout 0`).
pub fn parse_secs_or_zero(text: &str) -> Result<u64, String> {
    let d = parse(text)?;
    Ok(d.as_millis().div_ceil(1000) as u64)
}

/// A positive duration setting `key` in seconds, or `default` when unset; a bad value is an
/// error naming the key and a value that works.
pub fn config_secs(config: &crate::git::Config, key: &str, default: u64) -> Result<u64> {
    match config.get(key) {
        None => Ok(default),
        Some(v) => parse_secs(v).map_err(|_| {
            hinted(
                format!("bad value '{v}' for {key}"),
                format!("set a duration such as {EXAMPLES}: git config {key} 10m"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_syntax() {
        let s = |t: &str| parse(t).map(|d| d.as_millis());
        assert_eq!(s("90"), Ok(90_000));
        assert_eq!(s(" 90s "), Ok(90_000));
        assert_eq!(s("5m"), Ok(300_000));
        assert_eq!(s("1h30m"), Ok(5_400_000));
        assert_eq!(s("2d"), Ok(172_800_000));
        assert_eq!(s("500ms"), Ok(500));
        assert_eq!(s("1m30s500ms"), Ok(90_500));
        assert_eq!(s("0"), Ok(0));
        for bad in [
            "", "soon", "-5m", "+5m", "5 m", "m", "5x", "30m1h", "5m5m", "1.5h", "5M",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse("99999999999999999999d").is_err());
        assert!(parse("999999999999999999d").is_err(), "overflow");
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("90"), Ok(90));
        assert_eq!(parse_secs("2h"), Ok(7200));
        assert_eq!(parse_secs("1500ms"), Ok(2));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("0s").is_err());
        assert_eq!(parse_secs_or_zero("0"), Ok(0));
    }

    #[test]
    fn settings() {
        let cfg = |v: &str| crate::git::Config::from_pairs(&[("demo.timeout", v)]);
        assert_eq!(config_secs(&cfg("1h30m"), "demo.timeout", 5).unwrap(), 5400);
        assert_eq!(
            config_secs(&crate::git::Config::from_pairs(&[]), "demo.timeout", 5).unwrap(),
            5
        );
        let e = format!(
            "{:#}",
            config_secs(&cfg("later"), "demo.timeout", 5).unwrap_err()
        );
        assert!(e.contains("demo.timeout"), "{e}");
    }
}
