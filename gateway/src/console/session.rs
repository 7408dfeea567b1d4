//! Console sign-in: server-side sessions behind an opaque cookie, and the
//! CSRF tokens every form carries.
//!
//! - Signing in takes the admin token from a password field. A session is
//!   a random id in a cookie that is `HttpOnly`, `SameSite=Strict`, limited
//!   to `/ui`, and `Secure` when the request came over TLS (hookgate
//!   terminates none itself, so that means `X-Forwarded-Proto: https` from
//!   the proxy in front).
//! - Sessions live in memory: a restart signs everyone out, and signing out
//!   really ends the session. A session also ends when the admin token
//!   changes (a reload that rotates it signs everyone out).
//! - Every POST carries the session's CSRF token in a `csrf` field; the
//!   sign-in form, which has no session yet, uses a double-submit cookie.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::plugin::constant_time_eq;

/// The session cookie.
pub const SESSION_COOKIE: &str = "hookgate_console";
/// The sign-in form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "hookgate_console_login";

/// How long a session lasts from sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most; the oldest goes first. Bounds memory whatever
/// signs in.
const MAX_SESSIONS: usize = 1024;

/// A signed-in session, as handlers see it.
#[derive(Clone, Debug)]
pub struct Session {
    /// The cookie value.
    pub id: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

#[derive(Debug)]
struct Entry {
    csrf: String,
    created: Instant,
    /// Hash of the admin token it was opened with.
    token: [u8; 32],
}

/// Every open session.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Entries are plain data; a panic elsewhere cannot leave one
        // half-written.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session if `presented` is the admin token.
    pub fn sign_in(&self, presented: &str, admin_token: &str) -> Option<Session> {
        if !constant_time_eq(presented.as_bytes(), admin_token.as_bytes()) {
            return None;
        }
        let session = Session {
            id: random_token(),
            csrf: random_token(),
        };
        let mut map = self.lock();
        map.retain(|_, e| e.created.elapsed() < SESSION_LIFETIME);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            session.id.clone(),
            Entry {
                csrf: session.csrf.clone(),
                created: Instant::now(),
                token: token_hash(admin_token),
            },
        );
        Some(session)
    }

    /// The live session a cookie names, if it was opened with the current
    /// admin token and has not expired.
    pub fn get(&self, id: &str, admin_token: &str) -> Option<Session> {
        let mut map = self.lock();
        let entry = map.get(id)?;
        if entry.created.elapsed() >= SESSION_LIFETIME
            || !constant_time_eq(&entry.token, &token_hash(admin_token))
        {
            map.remove(id);
            return None;
        }
        Some(Session {
            id: id.to_owned(),
            csrf: entry.csrf.clone(),
        })
    }

    /// Ends a session.
    pub fn sign_out(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached us over TLS (through a proxy).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("https")
        })
}

/// A `Set-Cookie` value for the console: `HttpOnly`, `SameSite=Strict`,
/// path `/ui`, `Secure` over TLS; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// Whether a form's `csrf` matches the expected token (constant time).
pub fn csrf_ok(expected: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| !p.is_empty() && constant_time_eq(p.as_bytes(), expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_needs_the_token_and_ends_with_sign_out_or_a_new_token() {
        let s = Sessions::default();
        assert!(s.sign_in("wrong", "right").is_none());
        let session = s.sign_in("right", "right").unwrap();
        assert!(s.get(&session.id, "right").is_some());
        assert!(s.get(&session.id, "rotated").is_none(), "token changed");
        assert!(s.get(&session.id, "right").is_none(), "and stays ended");
        let session = s.sign_in("right", "right").unwrap();
        s.sign_out(&session.id);
        assert!(s.get(&session.id, "right").is_none());
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_behind_tls() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        let c = set_cookie(SESSION_COOKIE, "v", SESSION_LIFETIME, over_tls(&h));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("; Secure"));
        assert!(
            !set_cookie(
                SESSION_COOKIE,
                "v",
                SESSION_LIFETIME,
                over_tls(&HeaderMap::new())
            )
            .contains("Secure")
        );
        h.insert(
            http::header::COOKIE,
            "a=1; hookgate_console=abc".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert!(!csrf_ok("t", None) && !csrf_ok("t", Some("")) && csrf_ok("t", Some("t")));
    }
}
