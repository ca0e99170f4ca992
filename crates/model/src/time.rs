//! Millisecond timestamps: the precision at which pins are created, stored and paged.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, UTC.
///
/// Pins carry `created` at this precision so that a client that truncates to
/// milliseconds (JavaScript) and one that sends nanoseconds (Go) page alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let ms = Utc::now().timestamp_millis();
        Timestamp(u64::try_from(ms).unwrap_or(0))
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// RFC 3339 with exactly three fraction digits and `Z`, e.g. `2020-07-27T17:32:28.276Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        let ms = i64::try_from(self.0).unwrap_or(i64::MAX);
        DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    /// Parses RFC 3339 with any number of fraction digits and any offset and
    /// returns the instant in nanoseconds since the epoch, so callers can make
    /// strict comparisons without losing precision.
    pub fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
        let parsed = DateTime::parse_from_rfc3339(text).ok()?;
        let secs = i128::from(parsed.timestamp());
        Some(secs * 1_000_000_000 + i128::from(parsed.timestamp_subsec_nanos()))
    }

    /// The smallest millisecond timestamp `t` with `t * 1e6 > nanos`: "strictly after".
    pub fn first_after_nanos(nanos: i128) -> Timestamp {
        let ms = nanos.div_euclid(1_000_000) + 1;
        Timestamp(u64::try_from(ms.max(0)).unwrap_or(u64::MAX))
    }

    /// The smallest millisecond timestamp `t` with `t * 1e6 >= nanos`, so that
    /// `created < t` is exactly "created strictly before `nanos`".
    pub fn ceil_nanos(nanos: i128) -> Timestamp {
        let ms = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0);
        Timestamp(u64::try_from(ms.max(0)).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(Timestamp(1_595_871_148_276).to_rfc3339(), "2020-07-27T17:32:28.276Z");
    }

    #[test]
    fn bounds_round_the_right_way() {
        let ns = Timestamp::parse_rfc3339_nanos("2020-07-27T17:32:28.276000001Z").unwrap_or(0);
        assert_eq!(Timestamp::ceil_nanos(ns), Timestamp(1_595_871_148_277));
        assert_eq!(Timestamp::first_after_nanos(ns), Timestamp(1_595_871_148_277));
        let exact = Timestamp::parse_rfc3339_nanos("2020-07-27T19:32:28.276+02:00").unwrap_or(0);
        assert_eq!(Timestamp::ceil_nanos(exact), Timestamp(1_595_871_148_276));
        assert_eq!(Timestamp::first_after_nanos(exact), Timestamp(1_595_871_148_277));
    }
}
