//! Header hygiene on a request as parsed, without a header map: the same
//! rules as [`HeaderPolicy::sanitize`] and [`HeaderPolicy::inject`], for
//! wxgate's own HTTP/1 path ([`crate::relay`]), which writes the upstream
//! request straight from the parsed header slices.
//!
//! [`HeaderPolicy::keeps`] decides, header by header, what the map version
//! removes; [`HeaderPolicy::write_set`] and [`HeaderPolicy::write_identity`]
//! write what it sets. `tests` holds the two versions to the same result on
//! random requests.

use super::{
    in_owned_namespace, ClientInfo, HeaderPolicy, IdentityValues, FRAMING, HOP_BY_HOP,
    X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP,
};

impl HeaderPolicy {
    /// Whether the upstream may see this client header. `connection` gives
    /// the values of the request's `Connection` headers (the names they list
    /// are removed, framing headers aside).
    pub(crate) fn keeps<'a>(
        &self,
        name: &[u8],
        connection: impl Iterator<Item = &'a [u8]>,
    ) -> bool {
        if HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
        {
            return false;
        }
        if !self.forward_authorization && name.eq_ignore_ascii_case(b"authorization") {
            return false;
        }
        if self.is_look_alike_raw(name) {
            return false;
        }
        !named_by_connection(name, connection)
    }

    /// [`HeaderPolicy::is_look_alike`] on a name in any case.
    fn is_look_alike_raw(&self, name: &[u8]) -> bool {
        // Look-alikes are short: a longer name is compared in pieces.
        let mut lower = [0u8; 64];
        match lower.get_mut(..name.len()) {
            Some(l) => {
                for (d, s) in l.iter_mut().zip(name) {
                    *d = s.to_ascii_lowercase();
                }
                let n = &*l;
                in_owned_namespace(n)
                    || self
                        .spoofable
                        .iter()
                        .any(|h| super::same_name(n, h.as_str().as_bytes()))
            }
            None => {
                let n = name.to_ascii_lowercase();
                in_owned_namespace(&n)
                    || self
                        .spoofable
                        .iter()
                        .any(|h| super::same_name(&n, h.as_str().as_bytes()))
            }
        }
    }

    /// Write the headers wxgate sets (`X-Real-IP`, `X-Forwarded-For`,
    /// `-Proto`, `-Host`), as `name: value\r\n` lines. `host` is the
    /// request's first `Host` value.
    pub(crate) fn write_set(&self, client: ClientInfo, host: Option<&[u8]>, out: &mut Vec<u8>) {
        if let Some(ip) = client.ip {
            let mut text = IpText::default();
            let ip = text.of(ip);
            line(out, X_REAL_IP.as_str().as_bytes(), ip);
            line(out, X_FORWARDED_FOR.as_str().as_bytes(), ip);
        }
        let proto: &[u8] = if client.https { b"https" } else { b"http" };
        line(out, X_FORWARDED_PROTO.as_str().as_bytes(), proto);
        if let Some(h) = host {
            line(out, X_FORWARDED_HOST.as_str().as_bytes(), h);
        }
    }

    /// Write the identity headers of a verified token, in their configured spelling.
    pub(crate) fn write_identity(&self, id: &IdentityValues, out: &mut Vec<u8>) {
        for (wire, v) in self.identity_fields(id) {
            line(out, wire, v.as_bytes());
        }
    }
}

/// Whether a `Connection` value lists `name` (framing headers and the
/// `close`, `keep-alive` and `upgrade` options never count).
fn named_by_connection<'a>(name: &[u8], connection: impl Iterator<Item = &'a [u8]>) -> bool {
    // The framing headers, and the request id (the assertion names it).
    if FRAMING
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
        || name.eq_ignore_ascii_case(b"x-request-id")
    {
        return false;
    }
    connection
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .any(|t| !t.is_empty() && t.eq_ignore_ascii_case(name))
}

/// One header line.
pub(crate) fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// An IP address as text, without allocating.
struct IpText {
    buf: [u8; 45],
}

impl Default for IpText {
    fn default() -> Self {
        Self { buf: [0; 45] }
    }
}

impl IpText {
    fn of(&mut self, ip: std::net::IpAddr) -> &[u8] {
        use std::io::Write as _;
        let mut cur = std::io::Cursor::new(&mut self.buf[..]);
        // 45 bytes hold the longest IPv6 text (an IPv4-mapped address).
        if write!(cur, "{ip}").is_err() {
            return b"";
        }
        let n = usize::try_from(cur.position()).unwrap_or(0);
        self.buf.get(..n).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests;
