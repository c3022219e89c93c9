//! `GET /wx/sessions`: the caller's live sessions of its app, the current
//! one marked; `DELETE /wx/sessions/{id}`: end one of them (Bearer token
//! required for both).

use serde::Serialize;

use crate::error::ApiError;
use crate::sessions::index::SessionView;
use crate::sessions::Sessions;
use crate::token::Identity;

/// The body of `GET /wx/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// The body of `DELETE /wx/sessions/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Ended {
    pub ended: String,
}

pub(crate) async fn list(sessions: &Sessions, caller: &Identity) -> Result<SessionList, ApiError> {
    Ok(SessionList {
        sessions: sessions.list(caller).await?,
    })
}

/// End session `id` of the caller's (404 `session_not_found` for any other).
pub(crate) async fn end(
    sessions: &Sessions,
    caller: &Identity,
    id: &str,
) -> Result<Ended, ApiError> {
    sessions.end(caller, id).await?;
    Ok(Ended {
        ended: id.to_string(),
    })
}
