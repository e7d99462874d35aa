//! Which hosts an output module may connect to.
//!
//! On the public receiver a webhook's config must not turn wcon into a way into the private
//! network (SSRF): loopback, private, link-local (cloud metadata), CGNAT and unspecified
//! addresses are refused unless listed in the module's `allowed_hosts` or allowed for the
//! whole process. A tunnel runs inside the private network on purpose, so there every host
//! is allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where modules run, and so which destinations they may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkPolicy {
    /// In `wcon tunnel`: every destination is allowed.
    Tunnel,
    /// In `wcon serve`: internal destinations only when `allow_private` or listed per module.
    Receiver {
        /// `ALLOW_PRIVATE_IP_CONNECTIONS=true` (or the original's `ALLOW_LOCALHOST_FOR_TESTS`).
        allow_private: bool,
    },
}

impl NetworkPolicy {
    /// The receiver's policy, honouring the original's environment switches.
    pub fn receiver_from_env() -> Self {
        let on = |name: &str| {
            std::env::var(name)
                .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
                .unwrap_or(false)
        };
        Self::Receiver {
            allow_private: on("ALLOW_PRIVATE_IP_CONNECTIONS") || on("ALLOW_LOCALHOST_FOR_TESTS"),
        }
    }

    /// Checks a destination host (name or address literal) before connecting.
    ///
    /// Names are resolved and every address they resolve to is checked, so a public name
    /// pointing at 127.0.0.1 is refused too.
    pub async fn check_host(&self, host: &str, allowed_hosts: &[String]) -> Result<(), String> {
        let Self::Receiver { allow_private } = *self else {
            return Ok(());
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if allow_private || allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(bare)) {
            return Ok(());
        }
        let addresses: Vec<IpAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((bare, 0))
                .await
                .map_err(|e| format!("cannot resolve host `{bare}`: {e}"))?
                .map(|sa| sa.ip())
                .collect(),
        };
        match addresses.iter().find(|ip| is_internal(**ip)) {
            Some(ip) => Err(format!(
                "host `{bare}` is an internal address ({ip}); the public receiver refuses it unless it is listed in the module's `allowed_hosts` or ALLOW_PRIVATE_IP_CONNECTIONS=true"
            )),
            None => Ok(()),
        }
    }
}

/// Whether an address points into a private network or the host itself.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || a == 0
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || ip.is_unique_local() || ip.is_unicast_link_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: NetworkPolicy = NetworkPolicy::Receiver {
        allow_private: false,
    };

    #[tokio::test]
    async fn the_receiver_refuses_internal_addresses() {
        for host in [
            "127.0.0.1",
            "localhost",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "[::1]",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            let refused = STRICT.check_host(host, &[]).await;
            assert!(refused.is_err(), "{host} should be refused");
        }
        assert!(STRICT.check_host("93.184.216.34", &[]).await.is_ok());
        assert!(STRICT.check_host("2606:2800::1", &[]).await.is_ok());
    }

    #[tokio::test]
    async fn allowed_hosts_and_the_tunnel_allow_them() {
        assert!(
            STRICT
                .check_host("127.0.0.1", &["127.0.0.1".into()])
                .await
                .is_ok()
        );
        assert!(
            STRICT
                .check_host("LocalHost", &["localhost".into()])
                .await
                .is_ok()
        );
        assert!(
            NetworkPolicy::Tunnel
                .check_host("127.0.0.1", &[])
                .await
                .is_ok()
        );
        let relaxed = NetworkPolicy::Receiver {
            allow_private: true,
        };
        assert!(relaxed.check_host("10.0.0.1", &[]).await.is_ok());
    }
}
