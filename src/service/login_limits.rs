//! Bounds on password logins, so that logins cannot exhaust the daemon's memory or guess
//! passwords at speed.
//!
//! - Every argon2 computation (login check, dummy check for an unknown user, hashing a new
//!   password) holds a permit of one semaphore sized from `auth.password_check_memory_mib`:
//!   argon2id's default parameters take [`ARGON2_MIB`] of memory each, so at most
//!   `budget / ARGON2_MIB` run at once and the rest wait their turn (measured before: 300
//!   parallel wrong-password logins took 5.8 GiB).
//! - Failed logins are counted per user name and per source address over a window of
//!   `auth.failed_login_window_seconds`; once either count reaches its limit, further logins for
//!   that user or from that address answer 429 with `Retry-After` *before* any hash is computed,
//!   until the window has passed since the first failure. The answer does not depend on whether
//!   the password would have been right, nor on whether the user exists.
//!
//! The counters live in this process (a node behind a shared PostgreSQL counts its own). Their
//! memory is bounded: at most [`MAX_TRACKED`] keys, expired entries dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::AuthConfig;
use crate::error::{Error, ErrorKind, Result};

/// Memory one argon2id check takes with the crate's default parameters (m = 19 MiB).
pub const ARGON2_MIB: u64 = 19;

/// Most user names plus addresses tracked at once.
const MAX_TRACKED: usize = 100_000;

/// The process-wide limits (made from the config at first use; the config is process-wide).
pub fn limits(config: &AuthConfig) -> &'static LoginLimits {
    static LIMITS: OnceLock<LoginLimits> = OnceLock::new();
    LIMITS.get_or_init(|| LoginLimits::new(config))
}

/// Failures of one key since `since`.
#[derive(Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

/// See the module docs.
pub struct LoginLimits {
    hashes: Semaphore,
    failures: Mutex<HashMap<String, Failures>>,
    per_user: u32,
    per_address: u32,
    window: Duration,
}

impl LoginLimits {
    /// Limits from the `[auth]` config.
    pub fn new(c: &AuthConfig) -> LoginLimits {
        let permits = (c.password_check_memory_mib / ARGON2_MIB).max(1) as usize;
        LoginLimits {
            hashes: Semaphore::new(permits),
            failures: Mutex::new(HashMap::new()),
            per_user: c.failed_login_limit_per_user.max(1),
            per_address: c.failed_login_limit_per_address.max(1),
            window: Duration::from_secs(c.failed_login_window_seconds.max(1)),
        }
    }

    /// Wait for the right to run one argon2 computation.
    pub async fn hash_permit(&self) -> Result<SemaphorePermit<'_>> {
        self.hashes.acquire().await.map_err(|_| Error::internal("password check semaphore closed"))
    }

    fn keys(user: &str, addr: Option<IpAddr>) -> [Option<String>; 2] {
        [Some(format!("u:{user}")), addr.map(|a| format!("a:{a}"))]
    }

    fn limit_of(&self, key: &str) -> u32 {
        if key.starts_with("u:") {
            self.per_user
        } else {
            self.per_address
        }
    }

    /// Refuse (429) when `user` or `addr` has used up its failed logins in the window.
    pub fn check(&self, user: &str, addr: Option<IpAddr>) -> Result<()> {
        let now = Instant::now();
        let map = self.failures.lock().map_err(|_| Error::internal("login limits lock poisoned"))?;
        for key in Self::keys(user, addr).into_iter().flatten() {
            if let Some(f) = map.get(&key) {
                let age = now.duration_since(f.since);
                if age < self.window && f.count >= self.limit_of(&key) {
                    let retry = (self.window - age).as_secs().max(1);
                    let who = if key.starts_with("u:") { "this user" } else { "this address" };
                    return Err(too_many(format!("Too many failed logins for {who}: try again in {retry} s."), retry));
                }
            }
        }
        Ok(())
    }

    /// Count a failed login of `user` from `addr`.
    pub fn failed(&self, user: &str, addr: Option<IpAddr>) {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else { return };
        if map.len() >= MAX_TRACKED {
            let window = self.window;
            map.retain(|_, f| now.duration_since(f.since) < window);
            if map.len() >= MAX_TRACKED {
                // Still full of live entries: forget the oldest half rather than grow.
                let mut ages: Vec<Instant> = map.values().map(|f| f.since).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                map.retain(|_, f| f.since > cut);
            }
        }
        for key in Self::keys(user, addr).into_iter().flatten() {
            let e = map.entry(key).or_insert(Failures { since: now, count: 0 });
            if now.duration_since(e.since) >= self.window {
                *e = Failures { since: now, count: 0 };
            }
            e.count = e.count.saturating_add(1);
        }
    }

    /// A successful login clears its user's failures (not its address's).
    pub fn succeeded(&self, user: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&format!("u:{user}"));
        }
    }
}

/// A 429 asking to retry after `seconds`.
fn too_many(message: String, seconds: u64) -> Error {
    let mut e = Error::new(ErrorKind::TooManyRequests, message).with_code("EVS.5429");
    e.retry_after_seconds = Some(seconds);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(per_user: u32, per_address: u32) -> AuthConfig {
        AuthConfig {
            failed_login_limit_per_user: per_user,
            failed_login_limit_per_address: per_address,
            failed_login_window_seconds: 60,
            ..AuthConfig::default()
        }
    }

    #[test]
    fn a_user_is_throttled_after_its_limit_and_success_clears_it() {
        let l = LoginLimits::new(&cfg(3, 100));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..3 {
            l.check("alice", Some(a)).expect("under the limit");
            l.failed("alice", Some(a));
        }
        let e = l.check("alice", Some(a)).expect_err("throttled");
        assert_eq!(e.kind, ErrorKind::TooManyRequests);
        assert!(e.retry_after_seconds.is_some_and(|s| (1..=60).contains(&s)));
        l.check("bob", Some(a)).expect("other users are not");
        l.succeeded("alice");
        l.check("alice", Some(a)).expect("cleared");
    }

    #[test]
    fn an_address_is_throttled_across_user_names() {
        let l = LoginLimits::new(&cfg(100, 4));
        let a: IpAddr = "10.0.0.2".parse().expect("ip");
        let b: IpAddr = "10.0.0.3".parse().expect("ip");
        for i in 0..4 {
            l.failed(&format!("user{i}"), Some(a));
        }
        assert_eq!(l.check("someone", Some(a)).expect_err("address").kind, ErrorKind::TooManyRequests);
        l.check("someone", Some(b)).expect("another address is not");
    }

    #[test]
    fn permits_follow_the_memory_budget() {
        let c = AuthConfig { password_check_memory_mib: 3 * ARGON2_MIB, ..AuthConfig::default() };
        assert_eq!(LoginLimits::new(&c).hashes.available_permits(), 3);
        let c = AuthConfig { password_check_memory_mib: 1, ..AuthConfig::default() };
        assert_eq!(LoginLimits::new(&c).hashes.available_permits(), 1);
    }
}
