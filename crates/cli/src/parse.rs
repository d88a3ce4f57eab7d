//! Parsers for flag values and input lines, kept apart from I/O so they are easy to test.

use std::str::FromStr;
use std::time::UNIX_EPOCH;

/// `KEY=VALUE`, split at the first `=` (so values may contain `=`).
pub(crate) fn key_value(input: &str) -> Result<(String, String), String> {
    match input.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {input:?}")),
    }
}

/// Where `shale consume` starts in each partition without a committed group offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartFrom {
    Earliest,
    Latest,
    Offset(i64),
    /// The first record at or after this time, in ms since the Unix epoch.
    Timestamp(i64),
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let expected = || {
            format!(
                "expected earliest, latest, an offset, @TIMESTAMP_MS or @RFC3339_TIME, got {input:?}"
            )
        };
        match input {
            "earliest" => return Ok(Self::Earliest),
            "latest" => return Ok(Self::Latest),
            _ => {}
        }
        if let Some(time) = input.strip_prefix('@') {
            if let Ok(ms) = time.parse::<i64>() {
                return Ok(Self::Timestamp(ms));
            }
            let time = humantime::parse_rfc3339_weak(time).map_err(|_| expected())?;
            let ms = time
                .duration_since(UNIX_EPOCH)
                .map_err(|_| format!("{input:?} is before 1970"))?
                .as_millis();
            return i64::try_from(ms)
                .map(Self::Timestamp)
                .map_err(|_| expected());
        }
        match input.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(Self::Offset(offset)),
            _ => Err(expected()),
        }
    }
}

/// Splits `line` at the first `separator` into key and value.
pub(crate) fn split_key<'a>(line: &'a [u8], separator: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    if separator.is_empty() || line.len() < separator.len() {
        return None;
    }
    line.windows(separator.len())
        .position(|window| window == separator)
        .map(|at| (&line[..at], &line[at + separator.len()..]))
}

/// Lines `first..=last` as a person reads them: "line 5" or "lines 5-9".
pub(crate) fn line_range(first: u64, last: u64) -> String {
    if first == last {
        format!("line {first}")
    } else {
        format!("lines {first}-{last}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), String::new())));
        assert!(
            key_value("novalue")
                .unwrap_err()
                .contains("expected KEY=VALUE")
        );
        assert!(key_value("=v").is_err());
    }

    #[test]
    fn start_positions_parse() {
        assert_eq!("earliest".parse(), Ok(StartFrom::Earliest));
        assert_eq!("latest".parse(), Ok(StartFrom::Latest));
        assert_eq!("42".parse(), Ok(StartFrom::Offset(42)));
        assert_eq!(
            "@1700000000000".parse(),
            Ok(StartFrom::Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            "@2023-11-14T22:13:20Z".parse(),
            Ok(StartFrom::Timestamp(1_700_000_000_000))
        );
        for bad in ["-1", "first", "@", "@yesterday", ""] {
            let error = bad.parse::<StartFrom>().unwrap_err();
            assert!(
                error.starts_with("expected earliest, latest"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn keys_split_at_the_first_separator() {
        assert_eq!(split_key(b"k:v:w", b":"), Some((&b"k"[..], &b"v:w"[..])));
        assert_eq!(split_key(b":v", b":"), Some((&b""[..], &b"v"[..])));
        assert_eq!(split_key(b"k::v", b"::"), Some((&b"k"[..], &b"v"[..])));
        assert_eq!(split_key(b"kv", b":"), None);
        assert_eq!(split_key(b"", b":"), None);
        assert_eq!(split_key(b"a\tb", b"\t"), Some((&b"a"[..], &b"b"[..])));
    }

    #[test]
    fn line_ranges_read_naturally() {
        assert_eq!(line_range(5, 5), "line 5");
        assert_eq!(line_range(5, 9), "lines 5-9");
    }
}
