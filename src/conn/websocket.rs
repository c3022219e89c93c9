//! Just enough WebSocket (RFC 6455) to end an upgraded socket cleanly when
//! the token that opened it expires or is revoked (`[[routes]]
//! close_on_token_expiry`).
//!
//! Once upgraded, a connection is a byte tunnel: the gateway never parses
//! what goes through it. To close one, it sends a close frame to each side,
//! and a frame may only start where the last one ended. [`FrameCursor`]
//! follows where frames end in one direction as the bytes go by (a few
//! header bytes per frame, payloads skipped whole); [`close_frame`] builds
//! the frames; [`super::token_watch`] decides when.

/// The close code sent when a socket's token ends (application range, RFC
/// 6455 §7.4.2); the reason says which end.
pub(crate) const CLOSE_CODE: u16 = 4001;

/// Why a socket is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The token's `exp` (plus the configured leeway) passed.
    Expired,
    /// The token, its family or its subject was revoked.
    Revoked,
    /// The config in force refuses the token (its key was removed).
    Invalid,
    /// Its session was ended (from another device, by a policy, an admin, a
    /// ban): what a request with the token is told (`session_ended`).
    Ended,
}

impl CloseReason {
    /// The close frame's reason text: the error code a request with that
    /// token gets.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::Expired => "token_expired",
            Self::Revoked => "token_revoked",
            Self::Invalid => "token_invalid",
            Self::Ended => "session_ended",
        }
    }
}

/// A close frame with `code` and `reason` (at most 123 bytes, cut beyond).
/// With `mask`, masked as a client's frame must be; unmasked as a server's.
pub(crate) fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut payload = Vec::with_capacity(reason.len().saturating_add(2));
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason);
    // FIN and opcode 0x8 (close); the payload fits the 7-bit length.
    let len = u8::try_from(payload.len()).unwrap_or(125);
    let mut frame = Vec::with_capacity(payload.len().saturating_add(6));
    frame.push(0x88);
    match mask {
        Some(key) => {
            frame.push(0x80 | len);
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        }
        None => {
            frame.push(len);
            frame.extend_from_slice(&payload);
        }
    }
    frame
}

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// Where frames end in one direction of a WebSocket, fed every byte that
/// goes that way.
#[derive(Debug, Clone)]
pub(crate) struct FrameCursor {
    /// How much of the `\r\n\r\n` ending the HTTP head has gone by, while
    /// the head (the 101 response) is still passing; `None` once frames start.
    head: Option<u8>,
    /// The current frame header, as far as it has arrived.
    header: [u8; MAX_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to go by.
    payload_left: u64,
}

const HEAD_END: &[u8; 4] = b"\r\n\r\n";

impl FrameCursor {
    /// A stream that starts with a frame.
    pub(crate) fn frames() -> Self {
        Self {
            head: None,
            header: [0; MAX_HEADER],
            have: 0,
            payload_left: 0,
        }
    }

    /// A stream that starts with an HTTP head (the 101 response), then frames.
    pub(crate) fn after_http_head() -> Self {
        Self {
            head: Some(0),
            ..Self::frames()
        }
    }

    /// Whether the bytes so far end exactly between two frames.
    pub(crate) fn at_boundary(&self) -> bool {
        self.head.is_none() && self.have == 0 && self.payload_left == 0
    }

    /// Follow `bytes`, the next ones of the stream.
    pub(crate) fn advance(&mut self, mut bytes: &[u8]) {
        while let Some((&first, rest)) = bytes.split_first() {
            if let Some(matched) = self.head {
                let m = usize::from(matched);
                self.head = if HEAD_END.get(m) == Some(&first) {
                    let m = m.saturating_add(1);
                    (m < HEAD_END.len()).then(|| u8::try_from(m).unwrap_or(0))
                } else {
                    Some(u8::from(first == b'\r'))
                };
                bytes = rest;
            } else if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.payload_left = self.payload_left.saturating_sub(n as u64);
                bytes = &bytes[n..];
            } else {
                if let Some(slot) = self.header.get_mut(self.have) {
                    *slot = first;
                }
                self.have = self.have.saturating_add(1).min(MAX_HEADER);
                bytes = rest;
                if let Some(payload) = parse_header(&self.header[..self.have]) {
                    self.payload_left = payload;
                    self.have = 0;
                }
            }
        }
    }
}

/// A frame header's payload length, once `header` holds all of the header.
fn parse_header(header: &[u8]) -> Option<u64> {
    let [_, second, ..] = header else {
        return None;
    };
    let masked = second & 0x80 != 0;
    let len7 = second & 0x7f;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let total = 2 + ext + if masked { 4 } else { 0 };
    if header.len() < total {
        return None;
    }
    Some(match ext {
        2 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[2..10]);
            u64::from_be_bytes(b)
        }
        _ => u64::from(len7),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a peer sends it: `len` payload bytes, masked or not.
    fn frame(len: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![0x82];
        let m = if masked { 0x80 } else { 0 };
        match len {
            0..=125 => f.push(m | len as u8),
            126..=65535 => {
                f.push(m | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(m | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(0xAB, len));
        f
    }

    #[test]
    fn boundaries_are_found_whatever_the_chunking() {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for (len, masked) in [
            (0, false),
            (5, true),
            (125, false),
            (126, true),
            (300, false),
            (70_000, true),
        ] {
            stream.extend(frame(len, masked));
            ends.push(stream.len());
        }
        for chunk in [1, 2, 3, 7, 13, 64, 1000, stream.len()] {
            let mut cursor = FrameCursor::frames();
            assert!(cursor.at_boundary());
            let mut pos = 0;
            for piece in stream.chunks(chunk) {
                cursor.advance(piece);
                pos += piece.len();
                let want = ends.contains(&pos);
                assert_eq!(cursor.at_boundary(), want, "chunk {chunk}, at {pos}");
            }
            assert!(cursor.at_boundary());
        }
    }

    #[test]
    fn the_http_head_is_not_a_frame() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        for split in 1..head.len() {
            let mut cursor = FrameCursor::after_http_head();
            cursor.advance(&head[..split]);
            assert!(!cursor.at_boundary(), "inside the head at {split}");
            cursor.advance(&head[split..]);
            assert!(cursor.at_boundary(), "after the head split at {split}");
        }
        // A lone "\r\n" inside the head does not end it; "\r\r\n\r\n" does.
        let mut cursor = FrameCursor::after_http_head();
        cursor.advance(b"X: 1\r\nY: 2\r\r\n\r\n");
        assert!(cursor.at_boundary());
        cursor.advance(&frame(3, false)[..2]);
        assert!(!cursor.at_boundary());
    }

    #[test]
    fn close_frames_read_back_as_rfc_6455_says() {
        let plain = close_frame(CLOSE_CODE, "token_expired", None);
        assert_eq!(plain[0], 0x88);
        assert_eq!(usize::from(plain[1]), 2 + "token_expired".len());
        assert_eq!(&plain[2..4], &4001u16.to_be_bytes());
        assert_eq!(&plain[4..], b"token_expired");

        let key = [0x37, 0xfa, 0x21, 0x3d];
        let masked = close_frame(CLOSE_CODE, "token_revoked", Some(key));
        assert_eq!(masked[1] & 0x80, 0x80);
        let payload: Vec<u8> = masked[6..]
            .iter()
            .zip(key.iter().cycle())
            .map(|(b, k)| b ^ k)
            .collect();
        assert_eq!(&payload[..2], &4001u16.to_be_bytes());
        assert_eq!(&payload[2..], b"token_revoked");

        for f in [plain, masked] {
            let mut cursor = FrameCursor::frames();
            cursor.advance(&f[..f.len() - 1]);
            assert!(!cursor.at_boundary());
            cursor.advance(&f[f.len() - 1..]);
            assert!(cursor.at_boundary());
        }
        let long = close_frame(1000, &"x".repeat(300), None);
        assert_eq!(
            long.len(),
            2 + 125,
            "a control frame's payload is at most 125 bytes"
        );
    }
}
