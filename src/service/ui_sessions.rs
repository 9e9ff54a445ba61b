//! ui: dashboard sessions. Signing in checks the password exactly as the identity API does
//! (same throttling, same 401) and stores a session row; the browser gets a random secret whose
//! SHA-256 keys the row. Every request re-checks the row's absolute and idle ends and, in
//! keystone mode, that the user is enabled and still holds a role in its enabled project (so
//! disabling a user or revoking a role ends their sessions at once; a new password or deleting
//! the user deletes the rows, in the store's same transaction as its tokens). The CSRF token of a
//! session is an HMAC of its secret: it is never stored, and only whoever holds the cookie can
//! compute it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::identity::{self, AuthMethod, Identity, Ref};
use super::{Caller, Services};
use crate::config::AuthMode;
use crate::error::{Error, ErrorKind, Result};
use crate::model::Role;
use crate::store::UiSessionRecord;

const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// Activity is written back at most this often (reads would otherwise all write).
const TOUCH_EVERY_SECONDS: i64 = 60;

/// A live session and who it acts for.
#[derive(Debug, Clone)]
pub struct UiSession {
    /// The stored row.
    pub record: UiSessionRecord,
    /// The signed-in user (`None` in noauth mode).
    pub identity: Option<Identity>,
    /// The caller every service call of this session runs as.
    pub caller: Caller,
    /// The token every form of this session must carry.
    pub csrf: String,
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format(TS_FORMAT).to_string()
}

fn parse_ts(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::NaiveDateTime::parse_from_str(s, TS_FORMAT).ok().map(|t| t.and_utc())
}

fn secs(n: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000).min(10 * 365 * 86400))
}

/// SHA-256 (hex) of a session secret: the row's key.
pub fn session_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The CSRF token bound to a secret (a session's, or a sign-in form's pre-session cookie).
pub fn csrf_token(secret: &str) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key"));
    m.update(b"cinderblock-ui-csrf");
    hex(&m.finalize().into_bytes())
}

/// True when `given` is the CSRF token of `secret` (constant-time comparison).
pub fn csrf_matches(secret: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let want = csrf_token(secret);
    want.len() == given.len() && bool::from(want.as_bytes().ct_eq(given.as_bytes()))
}

/// A new random secret (32 bytes, hex).
pub fn new_secret() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Error::internal(format!("random: {e}")))?;
    Ok(hex(&b))
}

fn signed_out() -> Error {
    Error::new(ErrorKind::Unauthorized, "Your session has ended; sign in again.")
}

impl Services {
    /// keystone mode: check `user`'s password for `project` (by name or id) and start a
    /// session; returns its secret (for the cookie). Failures are the identity API's: 401 for
    /// any wrong part, 429 when throttled.
    pub async fn sign_in_ui(
        &self,
        user: &str,
        project: &str,
        password: &str,
        from: Option<std::net::IpAddr>,
    ) -> Result<String> {
        if self.config.auth.mode != AuthMode::Keystone {
            return Err(Error::new(ErrorKind::Invalid, "This server runs without authentication (noauth mode)."));
        }
        if user.is_empty() || user.len() > 255 || project.len() > 255 || password.len() > 4096 {
            return Err(identity::auth_required("The request you have made requires authentication."));
        }
        let scope = (!project.is_empty()).then(|| Ref::guess(project));
        let (u, scoped) = identity::check_password_login(
            &self.db,
            &self.config,
            &Ref::Name(user.to_string()),
            password,
            scope.as_ref(),
            from,
        )
        .await?;
        let (p, _) = scoped.ok_or_else(|| {
            identity::auth_required("Name a project you hold a role in (the user has no default project).")
        })?;
        self.start_ui_session(Some(u.id), p.id).await
    }

    /// noauth mode: a session acting as admin in `ui.noauth_project` (no password: the mode
    /// has none; the session only carries the CSRF token).
    pub async fn start_noauth_ui_session(&self) -> Result<String> {
        if self.config.auth.mode != AuthMode::Noauth {
            return Err(identity::auth_required("Sign in with your user name and password."));
        }
        self.start_ui_session(None, self.config.ui.noauth_project.clone()).await
    }

    async fn start_ui_session(&self, user_id: Option<String>, project_id: String) -> Result<String> {
        let secret = new_secret()?;
        let t = now();
        let rec = UiSessionRecord {
            id_hash: session_hash(&secret),
            user_id,
            project_id,
            created_at: ts(t),
            last_seen_at: ts(t),
            expires_at: ts(t + secs(self.config.ui.session_ttl_seconds)),
        };
        self.db.insert_ui_session(&rec, &ts(t), &ts(t - secs(self.config.ui.session_idle_seconds))).await?;
        Ok(secret)
    }

    /// The live session of `secret`, or 401 when it is unknown, expired, idle too long, or its
    /// user or role is gone.
    pub async fn ui_session(&self, secret: &str) -> Result<UiSession> {
        if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(signed_out());
        }
        let rec = self.db.ui_session(&session_hash(secret)).await?.ok_or_else(signed_out)?;
        let t = now();
        let expires = parse_ts(&rec.expires_at).ok_or_else(signed_out)?;
        let seen = parse_ts(&rec.last_seen_at).ok_or_else(signed_out)?;
        if expires <= t || seen + secs(self.config.ui.session_idle_seconds) <= t {
            self.db.delete_ui_session(&rec.id_hash).await?;
            return Err(signed_out());
        }
        let (identity, caller) = match (&rec.user_id, self.config.auth.mode) {
            (None, AuthMode::Noauth) => (
                None,
                Caller { project_id: rec.project_id.clone(), user_id: None, is_admin: true, roles: vec![Role::Admin] },
            ),
            (Some(uid), AuthMode::Keystone) => {
                let user = self.db.user_by_id(uid).await?.filter(|u| u.enabled).ok_or_else(signed_out)?;
                let p = self.db.project_by_id(&rec.project_id).await?.filter(|p| p.enabled).ok_or_else(signed_out)?;
                let roles = identity::effective_roles(&self.db, &user.id, &p.id).await?;
                if roles.is_empty() {
                    return Err(signed_out());
                }
                let id = Identity {
                    user_id: user.id.clone(),
                    user_name: user.name.clone(),
                    project_id: p.id.clone(),
                    project_name: p.name.clone(),
                    roles: roles.clone(),
                    method: AuthMethod::Token,
                };
                let caller =
                    Caller { project_id: p.id, user_id: Some(user.id), is_admin: roles.contains(&Role::Admin), roles };
                (Some(id), caller)
            }
            // A session made in the other mode (the config changed since) is void.
            _ => return Err(signed_out()),
        };
        if seen + chrono::Duration::seconds(TOUCH_EVERY_SECONDS) <= t {
            self.db.touch_ui_session(&rec.id_hash, &ts(t)).await?;
        }
        Ok(UiSession { csrf: csrf_token(secret), record: rec, identity, caller })
    }

    /// Sign out: the session's row is deleted (the cookie is then worthless).
    pub async fn sign_out_ui(&self, secret: &str) -> Result<()> {
        self.db.delete_ui_session(&session_hash(secret)).await?;
        Ok(())
    }

    /// The live sessions of the session's user (noauth: none listed).
    pub async fn list_ui_sessions(&self, s: &UiSession) -> Result<Vec<UiSessionRecord>> {
        match &s.record.user_id {
            Some(u) => self.db.ui_sessions_of_user(u).await,
            None => Ok(vec![s.record.clone()]),
        }
    }

    /// Revoke one of the user's own sessions, by the first 16 hex digits of its hash (what the
    /// sessions page shows); 404 for anything else.
    pub async fn revoke_ui_session(&self, s: &UiSession, hash_prefix: &str) -> Result<()> {
        let not_found = || Error::not_found("No such session.");
        if hash_prefix.len() != 16 {
            return Err(not_found());
        }
        let mine = self.list_ui_sessions(s).await?;
        let target = mine.iter().find(|r| r.id_hash.starts_with(hash_prefix)).ok_or_else(not_found)?;
        self.db.delete_ui_session(&target.id_hash).await?;
        Ok(())
    }
}
