//! Sizes (`"10MB"`) and durations (`"20s"`) as written in the TOML file.

use std::time::Duration;

use berth_model::route::parse_size;
use serde::Deserialize;

/// A size: bytes as an integer, or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    /// The size in bytes, or `None` when the text is not a size.
    pub(super) fn bytes(&self) -> Option<u64> {
        match self {
            Self::Bytes(n) => Some(*n),
            Self::Text(t) => parse_size(t),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Self::Bytes(n) => n.to_string(),
            Self::Text(t) => format!("{t:?}"),
        }
    }
}

/// `"500ms"`, `"20s"`, `"2m"`, `"1h"`.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MB"), Some(10 << 20));
        assert_eq!(parse_size("512 kB"), Some(512 << 10));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("42"), Some(42));
        for bad in ["", "MB", "10XB", "-1", "99999999999999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("20s"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "20", "s", "1d", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
