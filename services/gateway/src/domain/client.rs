//! Who a call comes from, as the gateway's limits count it: the peer's
//! address, or, when the peer is a proxy the operator trusts, the address
//! that proxy recorded in `x-forwarded-for`. Only trusted hops are
//! believed, so a client cannot pass itself off as someone else by sending
//! the header itself.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

/// A client as limits count it: an IPv4 address, or an IPv6 /64 (the
/// block one subscriber is usually given, so a client cannot take a fresh
/// bucket with each of its addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => Self(v4),
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// The address of the client behind a call from `peer` that carried the
/// `x-forwarded-for` values `forwarded` (in order): `peer` itself unless it
/// is a trusted proxy; else, reading the recorded hops from the nearest,
/// the first that is not a trusted proxy. A hop that is not an address
/// ends the walk at the last one that was.
pub fn client_address(peer: IpAddr, forwarded: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| {
        let address = address.to_canonical();
        trusted.iter().any(|net| net.contains(&address))
    };
    let mut client = peer;
    if !is_trusted(&peer) {
        return client;
    }
    let hops = forwarded.iter().flat_map(|value| value.split(','));
    for hop in hops.collect::<Vec<_>>().into_iter().rev() {
        let Ok(address) = hop.trim().parse::<IpAddr>() else {
            return client;
        };
        client = address;
        if !is_trusted(&address) {
            return client;
        }
    }
    client
}

/// Parses a trusted-proxy rule: a CIDR block, or one address.
pub fn parse_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a CIDR block"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies() -> Vec<IpNet> {
        vec![
            parse_proxy("10.0.0.0/8").unwrap(),
            parse_proxy("192.0.2.7").unwrap(),
        ]
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let client = client_address(ip("203.0.113.9"), &["198.51.100.1"], &proxies());
        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        // The client forged the first hop; the proxies recorded the rest.
        let forwarded = ["198.51.100.1, 203.0.113.9", "10.1.2.3"];
        let client = client_address(ip("192.0.2.7"), &forwarded, &proxies());
        assert_eq!(client, ip("203.0.113.9"));
        // Without the header, the proxy is all there is.
        assert_eq!(
            client_address(ip("10.0.0.1"), &[], &proxies()),
            ip("10.0.0.1")
        );
        // A hop that is not an address: the last address believed.
        let client = client_address(ip("10.0.0.1"), &["203.0.113.9, junk, 10.9.9.9"], &proxies());
        assert_eq!(client, ip("10.9.9.9"));
        // Every hop trusted: the farthest.
        assert_eq!(
            client_address(ip("10.0.0.1"), &["10.0.0.2, 10.0.0.3"], &proxies()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_v4_as_v4() {
        let a = Client::of(ip("2001:db8:1:2:aaaa::1"));
        let b = Client::of(ip("2001:db8:1:2:bbbb::2"));
        assert_eq!(a, b);
        assert_ne!(a, Client::of(ip("2001:db8:1:3::1")));
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            Client::of(ip("::ffff:203.0.113.9")),
            Client::of(ip("203.0.113.9"))
        );
    }

    #[test]
    fn proxy_rules_are_blocks_or_addresses() {
        assert!(parse_proxy("10.0.0.0/8").is_ok());
        assert!(parse_proxy("2001:db8::/32").is_ok());
        assert_eq!(parse_proxy("192.0.2.7").unwrap().prefix_len(), 32);
        assert!(parse_proxy("10.0.0.0/33").is_err());
        assert!(parse_proxy("proxy.example").is_err());
    }
}
