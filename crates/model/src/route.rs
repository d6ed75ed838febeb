//! How routers treat one app's requests (`berth routing`): body size and
//! request rate limits, the HTTPS redirect, the balancing policy. They
//! travel to routers inside [`crate::AppRoute`], together with the app's
//! health check, which routers also run themselves.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{Balance, HealthCheck};

/// What routers apply to one app: what the user set with `berth routing`
/// and the app's health check, which routers also run themselves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RouteSettings {
    #[serde(flatten)]
    pub routing: RoutingSettings,
    /// The router's own check of each backend: out of rotation after
    /// `fall` failures in a row, back after `rise` passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

impl RouteSettings {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// How routers treat one app's requests, as the user sets it with `berth
/// routing` (the health check is set apart, with `berth healthcheck`).
/// `None`/`false`/least-conn is the router's default: its own `max_body`,
/// no rate limit, plain HTTP served as is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RoutingSettings {
    /// Largest request body in bytes (`413` beyond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<u64>,
    /// Requests per client address (`429` with `Retry-After` beyond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Answer plain-HTTP requests with a redirect to `https://` (ACME
    /// challenges excepted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redirect_https: bool,
    /// How requests are spread over the app's instances.
    #[serde(default, skip_serializing_if = "Balance::is_default")]
    pub balance: Balance,
}

impl RoutingSettings {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Applies one `NAME=VALUE`: `max_body=10MB`, `rate_limit=100/s`,
    /// `redirect_https=on`, `balance=round_robin`; `none`/`off` resets.
    pub fn apply(&mut self, setting: &str) -> Result<(), String> {
        let (name, value) = setting.split_once('=').ok_or_else(|| {
            format!(
                "{setting:?} is not NAME=VALUE; use e.g. max_body=10MB, rate_limit=100/s, \
                 redirect_https=on or balance=round_robin"
            )
        })?;
        let value = value.trim();
        let reset = matches!(value, "none" | "off" | "default");
        match name.trim().replace('-', "_").as_str() {
            "max_body" => {
                self.max_body = if reset {
                    None
                } else {
                    Some(parse_size(value).filter(|n| *n > 0).ok_or_else(|| {
                        format!("max_body={value} is not a size; use e.g. max_body=10MB or max_body=512KB")
                    })?)
                }
            }
            "rate_limit" => {
                self.rate_limit = if reset {
                    None
                } else {
                    Some(value.parse().map_err(|e: RateError| e.to_string())?)
                }
            }
            "redirect_https" => {
                self.redirect_https = match value {
                    "on" | "true" | "yes" | "1" => true,
                    "off" | "false" | "no" | "0" | "none" | "default" => false,
                    _ => return Err(format!("redirect_https={value} is not on or off")),
                }
            }
            "balance" => {
                self.balance = match value {
                    "least_conn" | "default" => Balance::LeastConn,
                    "round_robin" => Balance::RoundRobin,
                    _ => {
                        return Err(format!(
                            "balance={value} is not a policy: least_conn (default) or round_robin"
                        ))
                    }
                }
            }
            other => {
                return Err(format!(
                    "unknown routing setting {other:?}: the settings are max_body, rate_limit, \
                     redirect_https and balance"
                ))
            }
        }
        Ok(())
    }

    /// One `name=value` per setting that differs from the default.
    pub fn text(&self) -> Vec<String> {
        let mut parts = Vec::new();
        if let Some(m) = self.max_body {
            parts.push(format!("max_body={}", exact_size(m)));
        }
        if let Some(r) = self.rate_limit {
            parts.push(format!("rate_limit={r}"));
        }
        if self.redirect_https {
            parts.push("redirect_https=on".into());
        }
        if self.balance != Balance::default() {
            parts.push("balance=round_robin".into());
        }
        parts
    }
}

/// `m` bytes in the largest unit that divides it, so what `berth routing`
/// shows can be typed back: `10MB`, `1536KB`, `1000`.
fn exact_size(m: u64) -> String {
    for (shift, unit) in [(30, "GB"), (20, "MB"), (10, "KB")] {
        if m >= 1 << shift && m.is_multiple_of(1 << shift) {
            return format!("{}{unit}", m >> shift);
        }
    }
    m.to_string()
}

/// `"10MB"`, `"512kB"`, `"1GiB"`, `"2048"`: binary multiples, as an
/// operator reading "10MB" in a limit expects of a request body.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// `requests` per `period`, per client address; written `"100/s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub period: Duration,
}

/// Why a rate cannot be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("rate {0:?} is not like \"100/s\" (a count of 1 or more per s, m or h)")]
pub struct RateError(String);

impl FromStr for RateLimit {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RateError(s.to_string());
        let (n, unit) = s.split_once('/').ok_or_else(bad)?;
        let requests: u32 = n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Self { requests, period })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            60 => "m",
            3600 => "h",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.requests)
    }
}

// On the wire as the text users write, so a stored setting reads as typed.
impl Serialize for RateLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(
            "100/s".parse(),
            Ok(RateLimit {
                requests: 100,
                period: Duration::from_secs(1)
            })
        );
        assert_eq!(
            "6/m".parse::<RateLimit>().map(|r| r.to_string()),
            Ok("6/m".into())
        );
        for bad in ["0/s", "100", "x/s", "10/d", "-1/s", ""] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_travel_as_text() {
        let s = RouteSettings {
            routing: RoutingSettings {
                rate_limit: Some("6/m".parse().expect("rate")),
                ..Default::default()
            },
            health_check: None,
        };
        let json = serde_json::to_string(&s).expect("json");
        assert_eq!(json, r#"{"rate_limit":"6/m"}"#);
        assert_eq!(serde_json::from_str::<RouteSettings>(&json).ok(), Some(s));
        assert_eq!(
            serde_json::to_string(&RouteSettings::default()).ok(),
            Some("{}".into())
        );
    }

    #[test]
    fn settings_apply_and_reset() {
        let mut s = RoutingSettings::default();
        for setting in [
            "max_body=10MB",
            "rate-limit=100/s",
            "redirect_https=on",
            "balance=round_robin",
        ] {
            s.apply(setting).expect(setting);
        }
        assert_eq!(s.max_body, Some(10 << 20));
        assert_eq!(
            s.text().join(" "),
            "max_body=10MB rate_limit=100/s redirect_https=on balance=round_robin"
        );
        for shown in s.text() {
            let mut again = RoutingSettings::default();
            again
                .apply(&shown)
                .expect("what is shown can be typed back");
        }
        let mut odd = RoutingSettings::default();
        odd.apply("max_body=1536KB").expect("size");
        assert_eq!(odd.text(), ["max_body=1536KB"]);
        for setting in [
            "max_body=none",
            "rate_limit=off",
            "redirect_https=off",
            "balance=default",
        ] {
            s.apply(setting).expect(setting);
        }
        assert!(s.is_default());
        for bad in [
            "max_body=ten",
            "max_body=0",
            "rate_limit=5",
            "redirect_https=maybe",
            "balance=random",
            "color=red",
            "max_body",
        ] {
            let err = s.apply(bad).expect_err(bad);
            assert!(!err.is_empty());
        }
    }
}
