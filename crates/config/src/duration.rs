//! Human durations in config files ("5s", "2m", "1h30m"), as IPFS Cluster writes them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from and written as a human string; `"0s"` means "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// `None` for a zero duration, which the config uses for "no limit".
    pub fn non_zero(self) -> Option<std::time::Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::default());
    }
    humantime::parse_duration(trimmed)
        .map(Duration)
        .map_err(|e| format!("invalid duration {text:?} ({e}); write it like \"5s\", \"2m\" or \"1h30m\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_style_durations() {
        assert_eq!(parse("2m0s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("0s"), Ok(Duration::default()));
        assert!(parse("five").is_err());
        assert_eq!(Duration::from_secs(120).to_string(), "2m");
    }
}
