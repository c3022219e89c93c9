//! WXBizDataCrypt (`encryptedData` decryption) and the `rawData` signature.
//!
//! A mini program can hand its backend data that WeChat encrypted with the
//! user's `session_key` (AES-128-CBC, PKCS#7, base64 everywhere) and a
//! `rawData` string signed as `hex(sha1(rawData + session_key))`. wxgate keeps
//! `session_key` server-side, so it is the one that must decrypt and verify.
//!
//! Two rules shape this module:
//! - CBC has no integrity protection and a padding check is a classic oracle,
//!   so **every** failure of [`decrypt_user_data`] is the same opaque
//!   [`DecryptError`]; the cause only reaches a `debug` log as a category.
//! - The signature digest is compared in constant time.
//!
//! Everything here is a pure function of its inputs: no I/O, no state.

use aes::Aes128;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The one error every decryption or encryption failure yields.
///
/// It carries no cause on purpose: wrong key, bad padding, unreadable JSON
/// and a foreign watermark must be indistinguishable to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the encrypted data could not be decrypted")]
pub struct DecryptError;

impl From<DecryptError> for ApiError {
    fn from(_: DecryptError) -> Self {
        ApiError::InvalidEncryptedData
    }
}

/// Length of an AES-128 key and of a CBC IV, in bytes.
const KEY_LEN: usize = 16;
/// AES block size, in bytes.
const BLOCK_LEN: usize = 16;
/// Length of a SHA-1 digest, in bytes.
const SHA1_LEN: usize = 20;

/// Log the failure category (never the inputs) and return the opaque error.
fn fail(cause: &'static str) -> DecryptError {
    tracing::debug!(cause, "WeChat user data rejected");
    DecryptError
}

/// Decode standard padded base64, accepting spaces where a `+` was
/// form-decoded into a space by a client that did not escape it.
fn decode_b64(input: &str) -> Option<Vec<u8>> {
    if input.contains(' ') {
        STANDARD.decode(input.replace(' ', "+")).ok()
    } else {
        STANDARD.decode(input).ok()
    }
}

/// Decode the base64 key and IV and check both are 16 bytes.
fn key_and_iv(session_key_b64: &str, iv_b64: &str) -> Result<(Vec<u8>, Vec<u8>), DecryptError> {
    let key = decode_b64(session_key_b64).ok_or_else(|| fail("session_key is not base64"))?;
    if key.len() != KEY_LEN {
        return Err(fail("session_key is not 16 bytes"));
    }
    let iv = decode_b64(iv_b64).ok_or_else(|| fail("iv is not base64"))?;
    if iv.len() != BLOCK_LEN {
        return Err(fail("iv is not 16 bytes"));
    }
    Ok((key, iv))
}

/// Decrypt WeChat `encryptedData` and check its watermark.
///
/// `session_key_b64`, `encrypted_data_b64` and `iv_b64` are standard base64
/// (a space is read as `+`). The plaintext must be a JSON object whose
/// `watermark.appid` equals `expected_appid`; the whole object is returned.
///
/// The decrypted fields are not authenticated (CBC without a MAC): never
/// prefer an `openId`/`unionId` found here over the one from `code2Session`.
pub fn decrypt_user_data(
    session_key_b64: &str,
    encrypted_data_b64: &str,
    iv_b64: &str,
    expected_appid: &str,
) -> Result<serde_json::Value, DecryptError> {
    let (key, iv) = key_and_iv(session_key_b64, iv_b64)?;
    let ciphertext =
        decode_b64(encrypted_data_b64).ok_or_else(|| fail("encryptedData is not base64"))?;
    if ciphertext.is_empty() || ciphertext.len() % BLOCK_LEN != 0 {
        return Err(fail("encryptedData is not a whole number of blocks"));
    }
    let decryptor = cbc::Decryptor::<Aes128>::new_from_slices(&key, &iv)
        .map_err(|_| fail("key or iv rejected by the cipher"))?;
    let plaintext = decryptor
        .decrypt_padded_vec::<Pkcs7>(&ciphertext)
        .map_err(|_| fail("padding"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&plaintext).map_err(|_| fail("plaintext is not JSON"))?;
    if !value.is_object() {
        return Err(fail("plaintext is not a JSON object"));
    }
    let appid = value
        .get("watermark")
        .and_then(|w| w.get("appid"))
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| fail("watermark.appid missing"))?;
    if appid != expected_appid {
        return Err(fail("watermark.appid is not ours"));
    }
    Ok(value)
}

/// Encrypt `plaintext` the way WeChat does and return standard base64.
///
/// The counterpart of [`decrypt_user_data`], for the mock WeChat and tests.
pub fn encrypt_user_data(
    session_key_b64: &str,
    iv_b64: &str,
    plaintext: &[u8],
) -> Result<String, DecryptError> {
    let (key, iv) = key_and_iv(session_key_b64, iv_b64)?;
    let encryptor = cbc::Encryptor::<Aes128>::new_from_slices(&key, &iv)
        .map_err(|_| fail("key or iv rejected by the cipher"))?;
    Ok(STANDARD.encode(encryptor.encrypt_padded_vec::<Pkcs7>(plaintext)))
}

/// `sha1(rawData + session_key)`, where `session_key` is the base64 text itself.
fn raw_data_digest(raw_data: &str, session_key_b64: &str) -> [u8; SHA1_LEN] {
    let mut hasher = Sha1::new();
    hasher.update(raw_data.as_bytes());
    hasher.update(session_key_b64.as_bytes());
    hasher.finalize().into()
}

/// The value of one hex digit (either case).
fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decode exactly 40 hex digits into a SHA-1 digest.
fn decode_sha1_hex(hex: &str) -> Option<[u8; SHA1_LEN]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 2 * SHA1_LEN {
        return None;
    }
    let mut out = [0u8; SHA1_LEN];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(out)
}

/// Whether `signature_hex` equals `hex(sha1(raw_data + session_key))`.
///
/// The signature must be exactly 40 hex digits (either case); the digests
/// are compared in constant time.
pub fn verify_signature(raw_data: &str, session_key_b64: &str, signature_hex: &str) -> bool {
    let Some(given) = decode_sha1_hex(signature_hex) else {
        return false;
    };
    let expected = raw_data_digest(raw_data, session_key_b64);
    expected.ct_eq(&given).into()
}

/// `hex(sha1(raw_data + session_key))` in lowercase, as WeChat computes it.
pub fn sign_raw_data(raw_data: &str, session_key_b64: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = raw_data_digest(raw_data, session_key_b64);
    let mut out = String::with_capacity(2 * SHA1_LEN);
    for b in digest {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const APPID: &str = "wx0123456789abcdef";
    /// base64 of the bytes 0x00..=0x0f.
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODw==";
    /// base64 of the bytes 0x10..=0x1f.
    const IV: &str = "EBESExQVFhcYGRobHB0eHw==";

    fn payload(appid: &str) -> String {
        format!(
            r#"{{"openId":"oABC","nickName":"微信用户","watermark":{{"timestamp":1700000000,"appid":"{appid}"}}}}"#
        )
    }

    fn enc(plain: &[u8]) -> String {
        encrypt_user_data(KEY, IV, plain).unwrap()
    }

    /// Encrypt without padding (the caller supplies whole blocks), to forge
    /// plaintexts with broken padding.
    fn enc_raw(blocks: &[u8]) -> String {
        use cbc::cipher::block_padding::NoPadding;
        let key = STANDARD.decode(KEY).unwrap();
        let iv = STANDARD.decode(IV).unwrap();
        let e = cbc::Encryptor::<Aes128>::new_from_slices(&key, &iv).unwrap();
        STANDARD.encode(e.encrypt_padded_vec::<NoPadding>(blocks))
    }

    #[test]
    fn official_wechat_demo_vector() {
        let encrypted = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
        let v = decrypt_user_data(
            "tiihtNczf5v6AKRyjwEUhQ==",
            encrypted,
            "r7BXXKkLb8qrSNn05n0qiA==",
            "wx4f4bc4dec97d474b",
        )
        .unwrap();
        assert_eq!(v["openId"], "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
        assert_eq!(v["unionId"], "ocMvos6NjeKLIBqg5Mr9QjxrP1FA");
        assert_eq!(v["nickName"], "Band");
        assert_eq!(v["watermark"]["timestamp"], 1477314187);
    }

    #[test]
    fn known_answer_with_fixed_key_and_iv() {
        // Computed with `openssl enc -aes-128-cbc`: pins cipher, padding and
        // base64 alphabet.
        let plain = br#"{"watermark":{"appid":"wx0123456789abcdef"}}"#;
        let ct = enc(plain);
        assert_eq!(
            ct,
            "vp4xByE0oaejzLdwLhr4MNd/m9BSHepMRUIi3nxQmfMex/gXVe/fczXHwA4bQ8V4"
        );
        let v = decrypt_user_data(KEY, &ct, IV, APPID).unwrap();
        assert_eq!(v["watermark"]["appid"], APPID);
    }

    #[test]
    fn known_answer_with_plus_and_slash_and_space_for_plus() {
        // Also from `openssl enc -aes-128-cbc`; the base64 has `+` and `/`.
        let plain = r#"{"openId":"oABC1","watermark":{"appid":"wx0123456789abcdef"}}"#;
        let ct = "M1aQJuf9S0aSvgfM8H7F+HwSwtMwquUdvrD2FJAtB386jK6SawKtNvb/8Y4PxHxfpwJxky5crQuKUohFbJRYVQ==";
        assert_eq!(enc(plain.as_bytes()), ct);
        let v = decrypt_user_data(KEY, ct, IV, APPID).unwrap();
        assert_eq!(v, serde_json::from_str::<serde_json::Value>(plain).unwrap());
        assert_eq!(v["openId"], "oABC1");
        // A form-decoded `+` became a space: still accepted.
        let spaced = ct.replace('+', " ");
        assert_ne!(spaced, ct);
        assert_eq!(decrypt_user_data(KEY, &spaced, IV, APPID).unwrap(), v);
    }

    #[test]
    fn round_trip_of_non_ascii_payload() {
        let plain = payload(APPID);
        let ct = enc(plain.as_bytes());
        let v = decrypt_user_data(KEY, &ct, IV, APPID).unwrap();
        assert_eq!(v["nickName"], "微信用户");
    }

    #[test]
    fn every_failure_is_the_same_error() {
        let good = enc(payload(APPID).as_bytes());
        let mut bad_padding = payload(APPID).into_bytes();
        bad_padding.resize(bad_padding.len().div_ceil(16) * 16, b' ');
        let last = bad_padding.len() - 1;
        bad_padding[last] = 0; // pad byte 0 is never valid PKCS#7
        let mut inconsistent_padding = vec![b' '; 32];
        inconsistent_padding[29..].copy_from_slice(&[3, 9, 3]);
        let cases: Vec<(&str, String, String, String)> = vec![
            (
                "short key",
                "AAECAwQFBgcICQoLDA0O".into(),
                good.clone(),
                IV.into(),
            ),
            (
                "long key",
                STANDARD.encode([7u8; 32]),
                good.clone(),
                IV.into(),
            ),
            (
                "short iv",
                KEY.into(),
                good.clone(),
                "EBESExQVFhcYGRobHB0e".into(),
            ),
            (
                "truncated",
                KEY.into(),
                STANDARD.encode(&STANDARD.decode(&good).unwrap()[..20]),
                IV.into(),
            ),
            ("empty", KEY.into(), String::new(), IV.into()),
            ("bad padding", KEY.into(), enc_raw(&bad_padding), IV.into()),
            (
                "inconsistent padding",
                KEY.into(),
                enc_raw(&inconsistent_padding),
                IV.into(),
            ),
            ("not json", KEY.into(), enc(b"hello, not json"), IV.into()),
            (
                "json array",
                KEY.into(),
                enc(br#"[{"watermark":{"appid":"wx0123456789abcdef"}}]"#),
                IV.into(),
            ),
            (
                "no watermark",
                KEY.into(),
                enc(br#"{"openId":"o"}"#),
                IV.into(),
            ),
            (
                "appid not a string",
                KEY.into(),
                enc(br#"{"watermark":{"appid":1}}"#),
                IV.into(),
            ),
            (
                "foreign appid",
                KEY.into(),
                enc(payload("wxffffffffffffffff").as_bytes()),
                IV.into(),
            ),
            ("invalid base64 data", KEY.into(), "!!!!".into(), IV.into()),
            (
                "invalid base64 key",
                "not base64!".into(),
                good.clone(),
                IV.into(),
            ),
            ("invalid base64 iv", KEY.into(), good.clone(), "%%%".into()),
            (
                "unpadded base64",
                KEY.trim_end_matches('=').into(),
                good.clone(),
                IV.into(),
            ),
            (
                "wrong key",
                STANDARD.encode([9u8; 16]),
                good.clone(),
                IV.into(),
            ),
        ];
        let reference = decrypt_user_data(KEY, "", IV, APPID).unwrap_err();
        for (name, key, data, iv) in cases {
            let err = decrypt_user_data(&key, &data, &iv, APPID);
            match err {
                Err(e) => {
                    assert_eq!(e, reference, "{name}");
                    assert_eq!(e.to_string(), reference.to_string(), "{name}");
                    assert_eq!(format!("{e:?}"), "DecryptError", "{name}");
                }
                // A wrong key may, rarely, still yield valid padding; it must
                // then fail on JSON or watermark. Anything else is a bug.
                Ok(v) => panic!("{name}: unexpectedly decrypted {v}"),
            }
        }
        assert_eq!(ApiError::from(reference), ApiError::InvalidEncryptedData);
    }

    #[test]
    fn encrypt_rejects_bad_key_and_iv() {
        assert_eq!(encrypt_user_data("AAAA", IV, b"x"), Err(DecryptError));
        assert_eq!(encrypt_user_data(KEY, "AAAA", b"x"), Err(DecryptError));
    }

    #[test]
    fn signature_known_answers() {
        // Published SDK example (gopay README), re-checked with `sha1sum`.
        let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
        let key = "HyVFkGl5F5OQWJZZaNzBBg==";
        let sig = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";
        assert_eq!(sign_raw_data(raw, key), sig);
        assert!(verify_signature(raw, key, sig));
        // `printf '%s' '{"nickName":"Band"}HyVFkGl5F5OQWJZZaNzBBg==' | sha1sum`
        assert_eq!(
            sign_raw_data(r#"{"nickName":"Band"}"#, key),
            "19036804514e3177482cf7382c6a337cf79b246d"
        );
    }

    #[test]
    fn signature_checks() {
        let raw = r#"{"nickName":"Band","gender":1}"#;
        let sig = sign_raw_data(raw, KEY);
        assert!(verify_signature(raw, KEY, &sig));
        assert!(verify_signature(raw, KEY, &sig.to_uppercase()));
        // Wrong data, wrong key, wrong digest.
        assert!(!verify_signature("{}", KEY, &sig));
        assert!(!verify_signature(raw, IV, &sig));
        let mut flipped = sig.clone().into_bytes();
        flipped[39] = if flipped[39] == b'0' { b'1' } else { b'0' };
        assert!(!verify_signature(
            raw,
            KEY,
            &String::from_utf8(flipped).unwrap()
        ));
        // Wrong length, non-hex, empty.
        assert!(!verify_signature(raw, KEY, &sig[..38]));
        assert!(!verify_signature(raw, KEY, &format!("{sig}00")));
        assert!(!verify_signature(raw, KEY, &format!("{}zz", &sig[..38])));
        assert!(!verify_signature(raw, KEY, ""));
        // Multi-byte characters of the right byte length are not hex either.
        assert!(!verify_signature(raw, KEY, &"é".repeat(20)));
    }
}

#[cfg(test)]
mod proptests;
