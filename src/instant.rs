//! Instants as clients and operators write them: RFC 3339 or milliseconds since
//! the Unix epoch.

/// Parses `text` as an RFC 3339 timestamp (`2026-11-23T18:00:00Z`, any offset)
/// or an integer number of milliseconds since the epoch; returns milliseconds.
///
/// Instants before 1970 or after 9999 are refused: no device measured then, and
/// arithmetic on them cannot overflow.
pub fn parse_instant(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let ms = match text.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                format!("{text:?} is neither RFC 3339 nor milliseconds since the epoch ({e})")
            })?,
    };
    if (0..=LATEST_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!("{text:?} is outside 1970-01-01 to 9999-12-31"))
    }
}

/// 9999-12-31T23:59:59.999Z in ms.
pub const LATEST_MS: i64 = 253_402_300_799_999;

/// `ms` since the epoch as RFC 3339 (UTC, milliseconds), for messages and CLI output.
pub fn format_instant(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_to_the_same_instant() {
        assert_eq!(parse_instant("1763920800000"), Ok(1_763_920_800_000));
        assert_eq!(parse_instant("2025-11-23T18:00:00Z"), Ok(1_763_920_800_000));
        assert_eq!(
            parse_instant("2025-11-23T19:00:00.000+01:00"),
            Ok(1_763_920_800_000)
        );
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_instant("-1").is_err());
        assert!(parse_instant(&i64::MAX.to_string()).is_err());
        assert_eq!(
            format_instant(1_763_920_800_000),
            "2025-11-23T18:00:00.000Z"
        );
    }
}
