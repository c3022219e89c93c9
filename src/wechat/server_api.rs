//! WeChat's server APIs beyond login: `stable_token` (the app's access token)
//! and `getuserphonenumber`. Plain parsing functions; the calls themselves
//! are [`super::client::WechatClient::stable_token`] and
//! [`super::client::WechatClient::phone_number`].

use serde::{Deserialize, Serialize};

use super::client::{errcode_of, WechatError};
use crate::secret::Secret;

/// Errcodes that say the access token itself is bad: expired (42001),
/// invalid or replaced (40001), not an access token (40014).
pub const TOKEN_ERRCODES: [i64; 3] = [40001, 42001, 40014];

/// Longest access token accepted (WeChat's are about 150 characters).
const MAX_TOKEN_BYTES: usize = 1024;
/// Longest phone number field accepted.
const MAX_PHONE_BYTES: usize = 32;

/// An access token and how long WeChat says it lives.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    /// Seconds, from WeChat's answer.
    pub expires_in: u64,
}

/// A user's phone number, as `/wx/phone` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumber {
    /// With the country code for numbers outside mainland China.
    #[serde(rename = "phoneNumber")]
    pub phone_number: String,
    /// Without the country code.
    #[serde(rename = "purePhoneNumber")]
    pub pure_phone_number: String,
    /// As a string (WeChat sends a string or a number).
    #[serde(rename = "countryCode")]
    pub country_code: String,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Parse a `stable_token` reply.
pub fn parse_stable_token(body: &[u8]) -> Result<AccessToken, WechatError> {
    errcode_of(body)?;
    let reply: TokenReply =
        serde_json::from_slice(body).map_err(|_| WechatError::BadReply("not a token reply"))?;
    let token = reply
        .access_token
        .filter(|t| {
            !t.is_empty() && t.len() <= MAX_TOKEN_BYTES && t.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or(WechatError::BadReply("access_token missing or malformed"))?;
    let expires_in = reply
        .expires_in
        .filter(|&s| s > 0)
        .ok_or(WechatError::BadReply("expires_in missing"))?;
    Ok(AccessToken {
        token: Secret::from(token),
        expires_in,
    })
}

#[derive(Deserialize)]
struct PhoneReply {
    phone_info: Option<PhoneInfo>,
}

#[derive(Deserialize)]
struct PhoneInfo {
    #[serde(rename = "phoneNumber")]
    phone_number: Option<String>,
    #[serde(rename = "purePhoneNumber")]
    pure_phone_number: Option<String>,
    #[serde(rename = "countryCode")]
    country_code: Option<serde_json::Value>,
    watermark: Option<Watermark>,
}

#[derive(Deserialize)]
struct Watermark {
    appid: Option<String>,
}

/// Parse a `getuserphonenumber` reply for the mini program `appid` (the
/// watermark must name it).
pub fn parse_phone(body: &[u8], appid: &str) -> Result<PhoneNumber, WechatError> {
    errcode_of(body)?;
    let reply: PhoneReply =
        serde_json::from_slice(body).map_err(|_| WechatError::BadReply("not a phone reply"))?;
    let info = reply
        .phone_info
        .ok_or(WechatError::BadReply("phone_info missing"))?;
    if info.watermark.and_then(|w| w.appid).as_deref() != Some(appid) {
        return Err(WechatError::BadReply("the watermark names another appid"));
    }
    let field = |v: Option<String>| {
        v.filter(|s| plausible_phone_field(s))
            .ok_or(WechatError::BadReply("a phone number field is malformed"))
    };
    let country_code = match info.country_code {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    Ok(PhoneNumber {
        phone_number: field(info.phone_number)?,
        pure_phone_number: field(info.pure_phone_number)?,
        country_code: field(Some(country_code))?,
    })
}

/// 1-32 characters of digits, `+`, `-` and spaces: what a phone number is
/// made of, and never anything that could break a header or a log line.
fn plausible_phone_field(s: &str) -> bool {
    (1..=MAX_PHONE_BYTES).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stable_token_reply() {
        let t = parse_stable_token(br#"{"access_token":"AT-1","expires_in":7200}"#).unwrap();
        assert_eq!(t.token.expose_str(), Some("AT-1"));
        assert_eq!(t.expires_in, 7200);
        let e = parse_stable_token(br#"{"errcode":40013,"errmsg":"invalid appid"}"#).unwrap_err();
        assert_eq!(e.errcode(), Some(40013));
        for bad in [
            &br#"{"expires_in":7200}"#[..],
            br#"{"access_token":"","expires_in":7200}"#,
            br#"{"access_token":"a b","expires_in":7200}"#,
            br#"{"access_token":"AT","expires_in":0}"#,
            br#"{"access_token":"AT"}"#,
            b"<html>",
        ] {
            assert!(
                parse_stable_token(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_phone_reply_with_a_string_or_numeric_country_code() {
        for cc in [r#""86""#, "86"] {
            let body = format!(
                r#"{{"errcode":0,"errmsg":"ok","phone_info":{{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":{cc},"watermark":{{"timestamp":1700000000,"appid":"wxapp"}}}}}}"#
            );
            let p = parse_phone(body.as_bytes(), "wxapp").unwrap();
            assert_eq!(
                p,
                PhoneNumber {
                    phone_number: "13800138000".into(),
                    pure_phone_number: "13800138000".into(),
                    country_code: "86".into(),
                }
            );
        }
    }

    #[test]
    fn a_phone_reply_for_another_app_or_malformed_is_refused() {
        let ok = |appid: &str, number: &str| {
            format!(
                r#"{{"phone_info":{{"phoneNumber":"{number}","purePhoneNumber":"138","countryCode":"86","watermark":{{"appid":"{appid}"}}}}}}"#
            )
        };
        assert!(parse_phone(ok("wxother", "138").as_bytes(), "wxapp").is_err());
        assert!(parse_phone(ok("wxapp", "138\\r\\nX: y").as_bytes(), "wxapp").is_err());
        assert!(parse_phone(ok("wxapp", "").as_bytes(), "wxapp").is_err());
        assert!(parse_phone(br#"{"errcode":0}"#, "wxapp").is_err());
        let used = parse_phone(br#"{"errcode":40029,"errmsg":"invalid code"}"#, "wxapp");
        assert_eq!(used.unwrap_err().errcode(), Some(40029));
    }
}
