//! Console sessions: kept in the master's memory (a restart logs everyone
//! out), each holding the token it was opened with, so that every page
//! and action is the API's own call with that token: a revoked or expired
//! token ends the session at its next request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth;

/// How long a session lasts after login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The most sessions kept at once: every one was opened with a valid
/// token, but a script with one could still open them without end.
const MAX_SESSIONS: usize = 10_000;

/// The cookie that carries a session's id.
pub const COOKIE: &str = "berth_session";

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token it logged in with: every API call is made with it.
    pub token: String,
    /// Who, as the API names the caller (`admin`, or the user's name).
    pub who: String,
    /// The secret every form of this session carries.
    pub csrf: String,
    expires: Instant,
}

/// The open sessions, by the hash of their id.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

/// Why no session could be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The kernel gave no random bytes.
    #[error("could not make a session id: {0}")]
    Random(#[from] std::io::Error),
    /// [`MAX_SESSIONS`] are open.
    #[error("too many console sessions are open: try again later")]
    Full,
}

impl Sessions {
    /// Opens a session for `who` carrying `token`; its id, for the cookie.
    pub fn open(&self, token: &str, who: &str) -> Result<(String, Session), OpenError> {
        let id = auth::new_secret()?;
        let session = Session {
            token: token.to_owned(),
            who: who.to_owned(),
            csrf: auth::new_secret()?,
            expires: Instant::now() + SESSION_LIFETIME,
        };
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            return Err(OpenError::Full);
        }
        sessions.insert(auth::hash(&id), session.clone());
        Ok((id, session))
    }

    /// The session with id `id`, unless it expired or was closed.
    pub fn find(&self, id: &str) -> Option<Session> {
        let mut sessions = self.lock();
        let key = auth::hash(id);
        match sessions.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Closes the session with id `id`.
    pub fn close(&self, id: &str) {
        self.lock().remove(&auth::hash(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the map leaves it whole: go on with it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Session {
    /// Whether a form's `csrf` field is this session's.
    pub fn csrf_matches(&self, field: Option<&str>) -> bool {
        field.is_some_and(|f| auth::same_secret(f, &self.csrf))
    }
}

/// The session id a `Cookie` header carries.
pub fn id_from_cookies(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that hands the browser session `id`; `Secure`
/// when the master serves TLS (a browser drops a Secure cookie over
/// plain HTTP).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; Max-Age={}; HttpOnly; SameSite=Strict{}",
        SESSION_LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_are_found_and_close() {
        let sessions = Sessions::default();
        let (id, session) = sessions.open("u:alice:secret", "alice").unwrap();
        let found = sessions.find(&id).expect("open");
        assert_eq!(found.who, "alice");
        assert!(found.csrf_matches(Some(&session.csrf)));
        assert!(!found.csrf_matches(None));
        assert!(!found.csrf_matches(Some("forged")));
        assert!(sessions.find("another").is_none());
        sessions.close(&id);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn cookies_are_read_and_set() {
        assert_eq!(id_from_cookies("a=b; berth_session=xyz; c=d"), Some("xyz"));
        assert_eq!(id_from_cookies("berth_session="), None);
        let cookie = set_cookie("xyz", true);
        for part in ["berth_session=xyz", "HttpOnly", "SameSite=Strict", "Secure"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(!set_cookie("xyz", false).contains("Secure"));
    }
}
