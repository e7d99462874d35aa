//! `ip_whitelist`: only senders whose address is listed may post (IPv4 and IPv6 addresses and
//! CIDR ranges, unlike the original, which silently dropped CIDR entries).
//!
//! The sender's address is the TCP peer, or what `trusted_proxies` lets X-Forwarded-For /
//! X-Real-IP say (see [`super::client_ip`]); IPv4-mapped IPv6 addresses count as IPv4. A refusal
//! is 403 `forbidden`. It also owns [`IpRange`]/[`IpRanges`], the parsed address lists that
//! `trusted_proxies` uses too.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use async_trait::async_trait;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::{
    AuthError, AuthRequest, BuildContext, MethodConfig, TrustedProxies, Validator, client_ip,
};
use crate::config::ConfigError;

/// One address (`203.0.113.7`, `2001:db8::1`) or CIDR range (`203.0.113.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange(IpNet);

impl IpRange {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self(IpNet::from(ip.to_canonical())));
        }
        let net: IpNet = s.parse().map_err(|_| {
            format!("`{s}` is not an IP address or CIDR range (like `203.0.113.0/24`)")
        })?;
        // A range with host bits set is most likely a typo for a single address or another range.
        if net.trunc() != net {
            return Err(format!(
                "`{s}` has host bits set; did you mean `{}`?",
                net.trunc()
            ));
        }
        Ok(Self(net))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A list of [`IpRange`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct IpRanges(pub Vec<IpRange>);

impl IpRanges {
    /// Whether any range contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }
}

/// `"ip_whitelist": ["203.0.113.7", "198.51.100.0/24", "2001:db8::/32"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct IpWhitelistConfig(pub IpRanges);

/// The configured `ip_whitelist` check.
#[derive(Debug)]
pub struct IpWhitelist {
    allowed: IpRanges,
    trusted_proxies: TrustedProxies,
}

impl MethodConfig for IpWhitelistConfig {
    fn into_validator(
        self,
        ctx: &BuildContext<'_>,
        key: &str,
    ) -> Result<Box<dyn Validator>, Vec<ConfigError>> {
        if self.0.0.is_empty() {
            return Err(vec![ctx.error(
                key,
                "",
                "an empty list would refuse every sender; list addresses or remove the key",
            )]);
        }
        Ok(Box::new(IpWhitelist {
            allowed: self.0,
            trusted_proxies: ctx.trusted_proxies().clone(),
        }))
    }
}

#[async_trait]
impl Validator for IpWhitelist {
    fn name(&self) -> &'static str {
        "ip_whitelist"
    }

    async fn validate(&self, req: &AuthRequest<'_>) -> Result<(), AuthError> {
        let ip = client_ip(req.peer, req.headers, &self.trusted_proxies);
        if self.allowed.contains(ip) {
            Ok(())
        } else {
            Err(AuthError::forbidden("sender address not allowed")
                .with_reason(format!("{ip} is not in ip_whitelist")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use serde_json::json;

    fn whitelist(list: serde_json::Value, trusted: serde_json::Value) -> IpWhitelist {
        let IpWhitelistConfig(allowed) = serde_json::from_value(list).unwrap();
        IpWhitelist {
            allowed,
            trusted_proxies: serde_json::from_value(trusted).unwrap(),
        }
    }

    async fn from(w: &IpWhitelist, r: Req) -> Result<(), AuthError> {
        w.validate(&r.as_auth()).await
    }

    fn assert_forbidden(result: Result<(), AuthError>) {
        let e = result.expect_err("should be refused");
        assert_eq!((e.status().as_u16(), e.code()), (403, "forbidden"));
    }

    #[tokio::test]
    async fn cidr_edges() {
        let w = whitelist(
            json!(["198.51.100.0/24", "203.0.113.7", "2001:db8::/32"]),
            json!([]),
        );
        for ok in [
            "198.51.100.0",
            "198.51.100.255",
            "203.0.113.7",
            "2001:db8::1",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:198.51.100.9",
        ] {
            assert!(from(&w, Req::post("/").peer(ok)).await.is_ok(), "{ok}");
        }
        for bad in [
            "198.51.99.255",
            "198.51.101.0",
            "203.0.113.6",
            "203.0.113.8",
            "2001:db9::",
            "2001:db7:ffff::1",
            "::1",
            "::ffff:203.0.113.8",
        ] {
            assert_forbidden(from(&w, Req::post("/").peer(bad)).await);
        }
    }

    #[tokio::test]
    async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
        let w = whitelist(json!(["198.51.100.7"]), json!(["10.0.0.0/8"]));
        let spoofed = Req::post("/")
            .peer("203.0.113.66")
            .header("x-forwarded-for", "198.51.100.7");
        assert_forbidden(from(&w, spoofed).await);
        let spoofed = Req::post("/")
            .peer("203.0.113.66")
            .header("x-real-ip", "198.51.100.7");
        assert_forbidden(from(&w, spoofed).await);
        let proxied = Req::post("/")
            .peer("10.1.1.1")
            .header("x-forwarded-for", "198.51.100.7");
        assert!(from(&w, proxied).await.is_ok());
        // Through a trusted proxy, a sender can still not pose as another by prepending to the list.
        let prepended = Req::post("/")
            .peer("10.1.1.1")
            .header("x-forwarded-for", "198.51.100.7, 203.0.113.66");
        assert_forbidden(from(&w, prepended).await);
        let real_ip = Req::post("/")
            .peer("10.1.1.1")
            .header("x-real-ip", "198.51.100.7");
        assert!(from(&w, real_ip).await.is_ok());
    }

    #[test]
    fn entries_are_checked_at_load() {
        for (bad, needle) in [
            ("10.0.0.1/24", "did you mean `10.0.0.0/24`"),
            ("10.0.0.0/33", "not an IP"),
            ("example.com", "not an IP"),
        ] {
            let e = config_errors::<IpWhitelistConfig>("ip_whitelist", json!(["10.0.0.1", bad]));
            assert!(e[0].message.contains(needle), "{bad}: {e:?}");
            assert!(e[0].path.starts_with("hook.ip_whitelist"), "{}", e[0].path);
        }
        assert!(
            config_errors::<IpWhitelistConfig>("ip_whitelist", json!([]))[0]
                .message
                .contains("empty")
        );
        let r: IpRange = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(r.to_string(), "10.0.0.1");
    }
}
