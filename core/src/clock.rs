//! RFC 3339 ⇄ Unix milliseconds.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses an RFC 3339 timestamp to Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, time::error::Parse> {
    let t = OffsetDateTime::parse(s, &Rfc3339)?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// This machine's clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// This machine's clock as RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    format_ms(now_ms())
}

/// Formats Unix milliseconds as RFC 3339 in UTC.
pub fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ms = parse_rfc3339_ms("2026-11-21T10:00:00.250Z").unwrap();
        assert_eq!(format_ms(ms), "2026-11-21T10:00:00.25Z");
        assert_eq!(
            parse_rfc3339_ms("2026-11-21T19:00:00+09:00").unwrap(),
            ms - 250
        );
        assert!(parse_rfc3339_ms("yesterday").is_err());
    }
}
