//! Sealing a login outcome with a key only its code's holder can derive.
//!
//! The outcome of a code exchange (token, refresh token, `session_key`) is
//! shared through the store so that a second request with the same code, on
//! any instance, gets the same answer. The store must not hold those secrets in
//! clear, so the outcome is encrypted (AES-128-CBC) and authenticated
//! (HMAC-SHA256, encrypt-then-MAC) under keys derived from the code itself. The
//! store keeps only a hash of the code: whoever reads the store cannot open the
//! outcome; whoever presents the code can.

use aes::Aes128;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The store key for a code: a hash that cannot be turned back into the code.
pub(crate) fn code_id(code: &str) -> String {
    let digest = Sha256::digest([b"wxgate code id\0".as_slice(), code.as_bytes()].concat());
    hex::encode(digest)
}

fn keys(code: &str) -> ([u8; 16], [u8; 32]) {
    let enc = Sha256::digest([b"wxgate code seal enc\0".as_slice(), code.as_bytes()].concat());
    let mac = Sha256::digest([b"wxgate code seal mac\0".as_slice(), code.as_bytes()].concat());
    let mut k = [0u8; 16];
    k.copy_from_slice(&enc[..16]);
    (k, mac.into())
}

/// Encrypt and authenticate `plaintext` under `code`'s keys: base64(iv | ct | tag).
pub(crate) fn seal(code: &str, plaintext: &[u8]) -> String {
    let (enc, mac_key) = keys(code);
    let iv: [u8; 16] = rand::random();
    // Key and IV have the lengths the cipher needs, so this cannot fail.
    let Ok(cipher) = cbc::Encryptor::<Aes128>::new_from_slices(&enc, &iv) else {
        return String::new();
    };
    let ct = cipher.encrypt_padded_vec::<Pkcs7>(plaintext);
    let mut out = Vec::with_capacity(16 + ct.len() + 32);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    let Ok(mut mac) = HmacSha256::new_from_slice(&mac_key) else {
        return String::new();
    };
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    STANDARD.encode(out)
}

/// Open what [`seal`] made with the same code; `None` if anything is off.
pub(crate) fn open(code: &str, sealed: &str) -> Option<Vec<u8>> {
    let (enc, mac_key) = keys(code);
    let raw = STANDARD.decode(sealed).ok()?;
    if raw.len() < 16 + 16 + 32 {
        return None;
    }
    let (body, tag) = raw.split_at(raw.len() - 32);
    let mut mac = HmacSha256::new_from_slice(&mac_key).ok()?;
    mac.update(body);
    mac.verify_slice(tag).ok()?;
    let (iv, ct) = body.split_at(16);
    let cipher = cbc::Decryptor::<Aes128>::new_from_slices(&enc, iv).ok()?;
    cipher.decrypt_padded_vec::<Pkcs7>(ct).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_the_same_code() {
        let sealed = seal("code-1", b"{\"token\":\"t\"}");
        assert_eq!(
            open("code-1", &sealed).as_deref(),
            Some(&b"{\"token\":\"t\"}"[..])
        );
    }

    #[test]
    fn another_code_cannot_open_it() {
        let sealed = seal("code-1", b"secret");
        assert_eq!(open("code-2", &sealed), None);
    }

    #[test]
    fn tampering_is_detected() {
        let sealed = seal("code-1", b"secret outcome");
        let mut raw = STANDARD.decode(&sealed).unwrap();
        raw[20] ^= 1;
        assert_eq!(open("code-1", &STANDARD.encode(&raw)), None);
        assert_eq!(open("code-1", "not base64!"), None);
        assert_eq!(open("code-1", &STANDARD.encode([0u8; 10])), None);
    }

    #[test]
    fn sealed_text_does_not_contain_the_plaintext_and_differs_each_time() {
        let a = seal("c", b"plain-token-value");
        let b = seal("c", b"plain-token-value");
        assert_ne!(a, b);
        assert!(!a.contains("plain"));
    }

    #[test]
    fn code_id_is_stable_and_not_the_code() {
        assert_eq!(code_id("abc"), code_id("abc"));
        assert_ne!(code_id("abc"), code_id("abd"));
        assert!(!code_id("abc").contains("abc"));
        assert_eq!(code_id("abc").len(), 64);
    }
}
