//! Who sent a request: the TCP peer, or what trusted proxies say of the
//! client in `X-Forwarded-For`.

use std::net::IpAddr;

/// Who sent a request: worked out once per request, from the TCP peer and
/// what trusted proxies say in `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Client {
    /// The client address (see [`client_ip`]).
    pub ip: Option<IpAddr>,
    /// Whether the TCP peer is one of `[server] trusted_proxies`.
    pub peer_trusted: bool,
}

impl Client {
    /// The client behind `peer`, given the request's `X-Forwarded-For` values.
    pub(crate) fn of<'a>(
        peer: Option<IpAddr>,
        xff: impl Iterator<Item = &'a [u8]>,
        trusted: &[ipnet::IpNet],
    ) -> Self {
        Self {
            ip: client_ip(peer, xff, trusted),
            peer_trusted: peer.is_some_and(|ip| trusted.iter().any(|n| n.contains(&ip))),
        }
    }
}

/// The client address: the peer, unless the peer is a trusted proxy, in which
/// case the right-most `X-Forwarded-For` address that is not itself trusted.
fn client_ip<'a>(
    peer: Option<IpAddr>,
    xff: impl Iterator<Item = &'a [u8]>,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<&[u8]> = xff.flat_map(|v| v.split(|&b| b == b',')).collect();
    for hop in hops.iter().rev() {
        let Some(ip) = std::str::from_utf8(hop)
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
        else {
            // Garbage in the chain: stop believing it here.
            return Some(peer);
        };
        if !is_trusted(&ip) {
            return Some(ip);
        }
    }
    Some(peer)
}
