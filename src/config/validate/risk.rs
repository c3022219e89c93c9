//! `[login.risk]`: WeChat's risk rank of each login, and what it refuses.

use super::super::error::ConfigError;
use super::super::model::{RiskConfig, RiskOnError};
use super::super::schema::RawRisk;
use super::Validator;

impl Validator<'_> {
    /// `scene` 0 or 1, `refuse_at` a rank from 1 to 4, `on_error` `allow`
    /// (the default) or `refuse`; the rank is WeChat's: it needs `[wechat]`.
    pub(super) fn risk(
        &self,
        raw: Option<RawRisk>,
        wechat: bool,
    ) -> Result<Option<RiskConfig>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        if !wechat {
            return Err(self.err(
                "login.risk",
                "the risk rank is asked at /wx/login, which needs [wechat]",
            ));
        }
        let scene = match raw.scene.unwrap_or(0) {
            s @ (0 | 1) => s as u8,
            _ => {
                return Err(self.err(
                    "login.risk.scene",
                    "0 (registration or login) or 1 (marketing)",
                ))
            }
        };
        let refuse_at = match raw.refuse_at {
            None => None,
            Some(r @ 1..=4) => Some(r as u8),
            Some(_) => {
                return Err(self.err(
                    "login.risk.refuse_at",
                    "a rank from 1 to 4 (WeChat ranks 0, least risky, to 4)",
                ))
            }
        };
        let on_error = match raw.on_error.as_deref() {
            None | Some("allow") => RiskOnError::Allow,
            Some("refuse") => RiskOnError::Refuse,
            Some(other) => {
                return Err(self.err(
                    "login.risk.on_error",
                    format!("{other:?}: \"allow\" (log in without a rank) or \"refuse\""),
                ))
            }
        };
        Ok(Some(RiskConfig {
            scene,
            refuse_at,
            on_error,
        }))
    }
}
