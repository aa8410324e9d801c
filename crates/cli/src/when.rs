//! Times given on the command line.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::exit::UsageError;

/// Reads a time argument (`flag` names it in the error): RFC 3339 with an offset, or a local
/// date and time (or just a date: its midnight).
pub fn parse_time(flag: &str, text: &str) -> Result<Timestamp, UsageError> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    text.parse::<jiff::civil::DateTime>()
        .ok()
        .or_else(|| {
            text.parse::<jiff::civil::Date>()
                .ok()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })
        .and_then(|dt| dt.to_zoned(TimeZone::system()).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            UsageError(format!(
                "cannot read {flag} {text:?}: use RFC 3339 (2026-11-23T09:00:00Z) or a local time \
                 (2026-11-23 09:00)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_local() {
        let utc = parse_time("--at", "2026-11-23T09:00:00Z").expect("rfc3339");
        assert_eq!(utc.to_string(), "2026-11-23T09:00:00Z");
        let offset = parse_time("--at", "2026-11-23T10:00:00+01:00").expect("offset");
        assert_eq!(offset, utc);
        assert!(parse_time("--at", "2026-11-23 09:00").is_ok());
        assert!(parse_time("--at", "2026-11-23T09:00:00").is_ok());
        let day = parse_time("--since", "2026-11-23").expect("date");
        assert!(day <= parse_time("--at", "2026-11-23 00:00:01").expect("time"));
        let err = parse_time("--since", "yesterday").expect_err("garbage");
        assert!(err.to_string().contains("yesterday") && err.to_string().contains("--since"));
    }
}
