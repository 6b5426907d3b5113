//! Console sessions: a token typed once into the sign-in form becomes a
//! random session id in a cookie, so the token itself never sits in the
//! browser.
//!
//! - The id is 32 random bytes; the server keeps only its SHA-256, so a
//!   memory dump or a debug print does not hand out live sessions.
//! - A session keeps the token's digest, not its roles: every request asks
//!   [`Auth::identity`] again, so a token removed or changed on SIGHUP
//!   takes its sessions with it at once.
//! - Idle and absolute expiry; a bounded table (least recently used goes).
//! - Each session has its own CSRF token, which every form carries back.
//!
//! Sessions live in memory: a restart signs everyone out, which is the
//! safe way round for a console of a few operators.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::infra::auth::{Auth, Identity};

/// The session cookie's name.
pub const COOKIE: &str = "idsync_session";

/// One signed-in browser.
struct Session {
    token_digest: [u8; 32],
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// A session found for a request: who it acts as, and the CSRF token its
/// forms carry.
#[derive(Debug, Clone)]
pub struct Live {
    pub identity: Identity,
    pub csrf: String,
}

impl Live {
    /// Whether `sent` (a form's `csrf` field) is this session's token.
    pub fn csrf_matches(&self, sent: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(sent.as_bytes()))
    }
}

/// The sessions of the console.
pub struct Sessions {
    by_id_digest: Mutex<HashMap<[u8; 32], Session>>,
    idle: Duration,
    max_age: Duration,
    max_sessions: usize,
}

impl Sessions {
    pub fn new(idle: Duration, max_age: Duration, max_sessions: usize) -> Self {
        Self {
            by_id_digest: Mutex::default(),
            idle,
            max_age,
            max_sessions,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_id_digest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `identity`: the id for the cookie.
    pub fn open(&self, identity: &Identity) -> Result<String, getrandom::Error> {
        self.open_at(identity, Instant::now())
    }

    fn open_at(&self, identity: &Identity, now: Instant) -> Result<String, getrandom::Error> {
        let id = random_token()?;
        let session = Session {
            token_digest: *identity.digest(),
            csrf: random_token()?,
            created: now,
            last_seen: now,
        };
        let mut table = self.table();
        if table.len() >= self.max_sessions {
            table.retain(|_, s| !self.expired(s, now));
        }
        if table.len() >= self.max_sessions {
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                table.remove(&k);
            }
        }
        table.insert(digest(&id), session);
        Ok(id)
    }

    /// The live session of cookie value `id`, its idle time restarted;
    /// `None` when unknown, expired (then forgotten) or its token is no
    /// longer accepted.
    pub fn find(&self, id: &str, auth: &Auth) -> Option<Live> {
        self.find_at(id, auth, Instant::now())
    }

    fn find_at(&self, id: &str, auth: &Auth, now: Instant) -> Option<Live> {
        let key = digest(id);
        let mut table = self.table();
        let session = table.get_mut(&key)?;
        if self.expired(session, now) {
            table.remove(&key);
            return None;
        }
        let Some(identity) = auth.identity(&session.token_digest) else {
            table.remove(&key);
            return None;
        };
        session.last_seen = now;
        Some(Live {
            identity,
            csrf: session.csrf.clone(),
        })
    }

    /// Sign out: the session of cookie value `id` is gone.
    pub fn close(&self, id: &str) {
        self.table().remove(&digest(id));
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_seen) >= self.idle
            || now.saturating_duration_since(s.created) >= self.max_age
    }
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes, base64url: a session id, a CSRF token, an upload id.
pub(super) fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::auth::TokenConfig;

    const TOKEN: &str = "idsync_console-session-test";

    fn auth(dir: &std::path::Path, token: &str) -> Auth {
        let t = TokenConfig {
            name: "op".into(),
            sha256: hex::encode(Sha256::digest(token.as_bytes())),
            roles: vec!["operator".into()],
            mail: None,
        };
        Auth::load(&[t], dir).unwrap()
    }

    #[test]
    fn a_session_expires_when_idle_and_at_its_maximum_age() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), TOKEN);
        let who = auth.sign_in(TOKEN).unwrap();
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(300), 10);
        let t0 = Instant::now();
        let id = s.open_at(&who, t0).unwrap();
        // Busy: every request restarts the idle time, up to the maximum.
        for minute in 1..5 {
            let at = t0 + Duration::from_secs(50 * minute);
            assert!(s.find_at(&id, &auth, at).is_some(), "minute {minute}");
        }
        assert!(s
            .find_at(&id, &auth, t0 + Duration::from_secs(300))
            .is_none());
        // Idle: gone after a minute without a request.
        let id = s.open_at(&who, t0).unwrap();
        assert!(s
            .find_at(&id, &auth, t0 + Duration::from_secs(59))
            .is_some());
        assert!(s
            .find_at(&id, &auth, t0 + Duration::from_secs(119))
            .is_none());
        assert!(s.find_at("forged", &auth, t0).is_none());
    }

    #[test]
    fn a_token_removed_on_reload_ends_its_sessions_and_sign_out_ends_one() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), TOKEN);
        let who = auth.sign_in(TOKEN).unwrap();
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(300), 10);
        let (a, b) = (s.open(&who).unwrap(), s.open(&who).unwrap());
        let live = s.find(&a, &auth).unwrap();
        assert!(live.csrf_matches(&live.csrf.clone()));
        assert!(!live.csrf_matches("x"));
        assert_ne!(live.csrf, s.find(&b, &auth).unwrap().csrf);
        s.close(&a);
        assert!(s.find(&a, &auth).is_none());
        let other = "idsync_another-token";
        let t = TokenConfig {
            name: "op".into(),
            sha256: hex::encode(Sha256::digest(other.as_bytes())),
            roles: vec!["operator".into()],
            mail: None,
        };
        auth.reload(&[t], dir.path()).unwrap();
        assert!(s.find(&b, &auth).is_none());
    }

    #[test]
    fn the_table_is_bounded_and_the_least_recently_used_goes() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), TOKEN);
        let who = auth.sign_in(TOKEN).unwrap();
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(300), 2);
        let t0 = Instant::now();
        let a = s.open_at(&who, t0).unwrap();
        let b = s.open_at(&who, t0 + Duration::from_secs(1)).unwrap();
        assert!(s.find_at(&a, &auth, t0 + Duration::from_secs(2)).is_some());
        let c = s.open_at(&who, t0 + Duration::from_secs(3)).unwrap();
        assert!(s.find_at(&b, &auth, t0 + Duration::from_secs(4)).is_none());
        assert!(s.find_at(&a, &auth, t0 + Duration::from_secs(4)).is_some());
        assert!(s.find_at(&c, &auth, t0 + Duration::from_secs(4)).is_some());
    }
}
