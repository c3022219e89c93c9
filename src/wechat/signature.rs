//! WeChat's user-state signature: `hex(hmac_sha256(key = the session_key
//! as its base64 text, message))`, sent as `signature` with
//! `sig_method=hmac_sha256` beside the user's `openid`. What virtual
//! payments (`wx.requestVirtualPayment`) and the signed server APIs
//! (`checksession`, `resetusersessionkey`, ...) ask for; a GET signs the
//! empty message. Only wxgate holds the `session_key`, so only it can sign.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `sig_method` value of [`user_signature`].
pub const SIG_METHOD: &str = "hmac_sha256";

/// `hex(hmac_sha256(session_key, message))`: the key is the base64 text
/// WeChat gave, not its decoded bytes.
pub fn user_signature(session_key: &[u8], message: &[u8]) -> String {
    // HMAC takes a key of any length: this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(session_key) else {
        return String::new();
    };
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_vector() {
        assert_eq!(
            user_signature(b"o0q0otL8aEzpcZL/FT9WsQ==", br#"{"foo":"bar"}"#),
            "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
        );
    }

    #[test]
    fn the_key_is_its_text_not_its_bytes() {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode("o0q0otL8aEzpcZL/FT9WsQ==")
            .unwrap_or_default();
        assert_ne!(
            user_signature(&decoded, br#"{"foo":"bar"}"#),
            "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
        );
    }

    #[test]
    fn a_get_signs_the_empty_message() {
        let s = user_signature(b"o0q0otL8aEzpcZL/FT9WsQ==", b"");
        assert_eq!(s.len(), 64);
        assert_ne!(s, user_signature(b"o0q0otL8aEzpcZL/FT9WsQ==", b"{}"));
    }
}
