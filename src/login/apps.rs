//! The mini programs one gateway serves: one [`LoginService`] each.
//!
//! `/wx/login` names its app with `appid` (required when there are several);
//! `/wx/decrypt` and `/wx/phone` go to the app of the caller's token (its
//! `appid` claim). Sessions, code exchanges, rate limits and access tokens
//! are each app's own; tokens and refresh families are shared.

use std::sync::Arc;

use super::LoginService;
use crate::error::ApiError;

/// The configured apps, in config order.
pub struct Apps {
    apps: Vec<Arc<LoginService>>,
}

impl Apps {
    /// The apps; at least one.
    pub fn new(apps: Vec<Arc<LoginService>>) -> Self {
        Self { apps }
    }

    /// Every app, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<LoginService>> {
        self.apps.iter()
    }

    /// The app called `appid`, or the only one when `appid` is `None`.
    pub fn get(&self, appid: Option<&str>) -> Result<&Arc<LoginService>, ApiError> {
        match appid {
            Some(appid) => self
                .apps
                .iter()
                .find(|s| s.appid() == appid)
                .ok_or(ApiError::UnknownApp),
            None => match self.apps.as_slice() {
                [only] => Ok(only),
                _ => Err(ApiError::InvalidRequest(
                    "`appid` is required: this gateway serves several mini programs",
                )),
            },
        }
    }
}
