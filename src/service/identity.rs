//! The built-in identity service: accounts (projects, users, roles, AK/SK credentials), password
//! authentication and tokens, and the secrets behind AK/SK signatures.
//!
//! - Passwords are argon2id PHC strings; verification runs on the blocking pool, and an unknown
//!   user costs the same as a wrong password.
//! - Tokens are 32 random bytes (hex); only their SHA-256 is stored. Roles are read live at each
//!   use, so revoking a role or deleting a user ends its tokens at once.
//! - AK/SK secret keys must be readable to verify signatures, so they are stored encrypted
//!   (ChaCha20-Poly1305, the access key as associated data) with a 32-byte key kept in a 0600
//!   file (`auth.credential_key_file`), created at first use. No secret is ever logged.
//!
//! Everything here takes a [`Db`] and the [`Config`], so the `cinderblock admin` CLI uses it
//! before the daemon ever started.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use sha2::{Digest, Sha256};

use crate::config::{AuthMode, Config};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{now_timestamp, Credential, Project, Role, TokenRecord, User};
use crate::store::Db;

use super::login_limits;

/// Timestamp format of the store (same as [`now_timestamp`]).
const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `X-Auth-Token`.
    Token,
    /// `Authorization: SDK-HMAC-SHA256 …`.
    Signature,
}

/// An authenticated caller: a user acting in one project with its roles there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub user_id: String,
    /// User name.
    pub user_name: String,
    /// The project the credentials are scoped to.
    pub project_id: String,
    /// Its name.
    pub project_name: String,
    /// Roles in that project, highest first, implied roles included.
    pub roles: Vec<Role>,
    /// Token or signature.
    pub method: AuthMethod,
}

impl Identity {
    /// Admins act in every project.
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

/// A user or project named by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    /// By id.
    Id(String),
    /// By name.
    Name(String),
}

impl Ref {
    /// A CLI argument: an existing id wins over a name (ids are 32 hex digits).
    pub fn guess(s: &str) -> Ref {
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ref::Id(s.to_ascii_lowercase())
        } else {
            Ref::Name(s.to_string())
        }
    }
}

/// A token just issued: the secret (shown once, in `X-Subject-Token`) and what it stands for.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token the client sends back in `X-Auth-Token`.
    pub token: String,
    /// What it stands for.
    pub info: TokenInfo,
}

/// A valid token's owner, scope and roles.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The stored row.
    pub record: TokenRecord,
    /// The user.
    pub user: User,
    /// The scope (`None`: unscoped).
    pub project: Option<Project>,
    /// Roles in the scope, highest first, implied included (empty when unscoped).
    pub roles: Vec<Role>,
}

impl TokenInfo {
    /// The caller this token authenticates; `None` for an unscoped token.
    pub fn identity(&self) -> Option<Identity> {
        let p = self.project.as_ref()?;
        Some(Identity {
            user_id: self.user.id.clone(),
            user_name: self.user.name.clone(),
            project_id: p.id.clone(),
            project_name: p.name.clone(),
            roles: self.roles.clone(),
            method: AuthMethod::Token,
        })
    }
}

// ----- errors -------------------------------------------------------------------------------

/// 401 `EVS.5401`.
pub fn auth_required(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unauthorized, message).with_code("EVS.5401")
}

/// 401 `Common.0013`: the token is invalid or expired (or a signature's date is stale).
pub fn invalid_token(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unauthorized, message).with_code("Common.0013")
}

/// 403 `Common.0018`: the project asked for is not the credentials' project.
pub fn project_mismatch(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Forbidden, message).with_code("Common.0018")
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", message)
}

fn not_found(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::NotFound, message).with_code("EVS.5404")
}

// ----- randomness and hashing ---------------------------------------------------------------

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::internal(format!("random: {e}")))?;
    Ok(b)
}

/// `n` random characters from `alphabet` (rejection sampling, no modulo bias).
fn random_string(n: usize, alphabet: &[u8]) -> Result<String> {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in random_bytes::<64>()? {
            if usize::from(b) < limit && out.len() < n {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok())).collect()
}

/// A new id: 32 lower-case hex digits, as Keystone prints them.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Hex SHA-256 of a token (what the store keeps).
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// argon2id PHC string of `password`.
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("argon2: {e}")))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so that case costs the same time.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("cinderblock-no-such-user").unwrap_or_default())
}

/// Give the 19 MiB an argon2 computation just freed back to the system. glibc keeps freed
/// blocks in the arena of the thread that freed them, and the blocking pool's threads each get
/// an arena: without this, every arena keeps its own copy and 200 parallel logins left 1 GiB
/// resident even with 4 computations at a time (measured by the login test).
fn release_argon2_memory() {
    // SAFETY: malloc_trim only returns free memory of glibc's arenas to the kernel; it takes
    // the allocator's own locks and touches no memory we own.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Hash a new password on the blocking pool, holding a password-check permit.
async fn hash_password_blocking(password: String) -> Result<String> {
    // The daemon sets the limits from its config at start; a CLI process uses the defaults.
    let _permit = login_limits::limits(&crate::config::AuthConfig::default()).hash_permit().await?;
    tokio::task::spawn_blocking(move || {
        let h = hash_password(&password);
        release_argon2_memory();
        h
    })
    .await
    .map_err(|e| Error::internal(format!("argon2: {e}")))?
}

async fn verify_password_blocking(config: &Config, password: String, hash: Option<String>) -> Result<bool> {
    let _permit = login_limits::limits(&config.auth).hash_permit().await?;
    tokio::task::spawn_blocking(move || {
        let ok = match hash {
            Some(h) => verify_password(&password, &h),
            None => {
                let _ = verify_password(&password, dummy_hash());
                false
            }
        };
        release_argon2_memory();
        ok
    })
    .await
    .map_err(|e| Error::internal(format!("password check: {e}")))
}

// ----- the credential key file --------------------------------------------------------------

/// Where the credential key lives: `auth.credential_key_file`, else `credential.key` beside the
/// SQLite database, else in the working directory (`main` points it beside the config file).
pub fn credential_key_path(config: &Config) -> PathBuf {
    if let Some(p) = &config.auth.credential_key_file {
        return p.clone();
    }
    let url = &config.database.url;
    if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let path = rest.split('?').next().unwrap_or("");
        if !path.is_empty() && path != ":memory:" {
            if let Some(dir) = Path::new(path).parent() {
                return dir.join("credential.key");
            }
        }
    }
    PathBuf::from("credential.key")
}

/// Keys already read, by path (the file never changes once written).
static KEYS: Mutex<Vec<(PathBuf, [u8; 32])>> = Mutex::new(Vec::new());

fn read_key(path: &Path) -> Result<Option<[u8; 32]>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::internal(format!("cannot read credential key {}: {e}", path.display()))),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let bytes = unhex(&text).filter(|b| b.len() == 32).ok_or_else(|| {
        Error::internal(format!("credential key {} is malformed (64 hex digits expected)", path.display()))
    })?;
    if let Ok(md) = std::fs::metadata(path) {
        if md.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "credential key file is readable by others; chmod 600 it");
        }
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    Ok(Some(key))
}

fn create_key(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    let key = random_bytes::<32>()?;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            f.write_all(format!("{}\n", hex(&key)).as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| Error::internal(format!("cannot write credential key {}: {e}", path.display())))?;
            // Created by root for a daemon running as its own user: give it to the directory's
            // owner (best effort; fails harmlessly when we are not root).
            if let (Ok(file_md), Some(Ok(dir_md))) = (
                std::fs::metadata(path),
                path.parent().map(|d| std::fs::metadata(if d.as_os_str().is_empty() { Path::new(".") } else { d })),
            ) {
                if file_md.uid() != dir_md.uid() {
                    let _ = std::os::unix::fs::chown(path, Some(dir_md.uid()), Some(dir_md.gid()));
                }
            }
            tracing::info!(path = %path.display(), "created the credential key file");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::internal(format!("cannot create credential key {}: {e}", path.display()))),
    }
}

/// The credential key; with `create`, make the file when it is missing.
pub fn credential_key(config: &Config, create: bool) -> Result<[u8; 32]> {
    let path = credential_key_path(config);
    if let Some((_, k)) =
        KEYS.lock().map_err(|_| Error::internal("key cache poisoned"))?.iter().find(|(p, _)| *p == path)
    {
        return Ok(*k);
    }
    let mut key = read_key(&path)?;
    if key.is_none() && create {
        create_key(&path)?;
        // Another process may have won the race and still be writing: read until complete.
        for _ in 0..50 {
            key = read_key(&path)?;
            if key.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let key = key.ok_or_else(|| {
        Error::internal(format!(
            "credential key {} does not exist (create a credential with `cinderblock admin credential create`)",
            path.display()
        ))
    })?;
    KEYS.lock().map_err(|_| Error::internal("key cache poisoned"))?.push((path, key));
    Ok(key)
}

/// Encrypt a secret key for storage: `v1:<hex nonce ‖ ciphertext>`, bound to its access key.
pub fn encrypt_secret(key: &[u8; 32], access_key: &str, secret: &str) -> Result<String> {
    let cipher = ChaCha20Poly1305::new_from_slice(key).map_err(|_| Error::internal("bad credential key"))?;
    let nonce_bytes = random_bytes::<12>()?;
    let nonce = Nonce::from(nonce_bytes);
    let ct = cipher
        .encrypt(&nonce, Payload { msg: secret.as_bytes(), aad: access_key.as_bytes() })
        .map_err(|_| Error::internal("cannot encrypt the secret key"))?;
    let mut blob = nonce_bytes.to_vec();
    blob.extend_from_slice(&ct);
    Ok(format!("v1:{}", hex(&blob)))
}

/// Decrypt a stored secret key (an error when the key file is not the one that encrypted it).
pub fn decrypt_secret(key: &[u8; 32], access_key: &str, stored: &str) -> Result<Vec<u8>> {
    let blob = stored
        .strip_prefix("v1:")
        .and_then(unhex)
        .filter(|b| b.len() > 12)
        .ok_or_else(|| Error::internal(format!("credential {access_key}: malformed stored secret")))?;
    let cipher = ChaCha20Poly1305::new_from_slice(key).map_err(|_| Error::internal("bad credential key"))?;
    let mut nonce_bytes = [0u8; 12];
    nonce_bytes.copy_from_slice(&blob[..12]);
    cipher.decrypt(&Nonce::from(nonce_bytes), Payload { msg: &blob[12..], aad: access_key.as_bytes() }).map_err(|_| {
        Error::internal(format!("credential {access_key}: cannot decrypt its secret key (wrong credential key file?)"))
    })
}

// ----- accounts -----------------------------------------------------------------------------

fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(invalid(format!("invalid {kind} name {name:?}")));
    }
    Ok(())
}

/// A project by id or name.
pub async fn find_project(db: &Db, r: &Ref) -> Result<Project> {
    let p = match r {
        Ref::Id(id) => match db.project_by_id(id).await? {
            Some(p) => Some(p),
            // A name that happens to look like an id.
            None => db.project_by_name(id).await?,
        },
        Ref::Name(n) => db.project_by_name(n).await?,
    };
    p.ok_or_else(|| not_found(format!("no project {}", ref_text(r))))
}

/// A user by id or name.
pub async fn find_user(db: &Db, r: &Ref) -> Result<User> {
    let u = match r {
        Ref::Id(id) => match db.user_by_id(id).await? {
            Some(u) => Some(u),
            None => db.user_by_name(id).await?,
        },
        Ref::Name(n) => db.user_by_name(n).await?,
    };
    u.ok_or_else(|| not_found(format!("no user {}", ref_text(r))))
}

fn ref_text(r: &Ref) -> String {
    match r {
        Ref::Id(s) | Ref::Name(s) => format!("{s:?}"),
    }
}

/// Create a project.
pub async fn create_project(db: &Db, name: &str, description: Option<&str>) -> Result<Project> {
    check_name("project", name)?;
    let p = Project {
        id: new_id(),
        name: name.to_string(),
        description: description.map(str::to_string),
        enabled: true,
        created_at: now_timestamp(),
    };
    db.insert_project(&p).await?;
    Ok(p)
}

/// Enable or disable a project: while disabled, its tokens and AK/SK credentials are refused
/// and no new token can be scoped to it.
pub async fn set_project_enabled(db: &Db, r: &Ref, enabled: bool) -> Result<Project> {
    let mut p = find_project(db, r).await?;
    if !db.set_project_enabled(&p.id, enabled).await? {
        return Err(not_found(format!("no project {}", ref_text(r))));
    }
    p.enabled = enabled;
    Ok(p)
}

/// Delete a project; refused while it still owns volumes or snapshots.
pub async fn delete_project(db: &Db, r: &Ref) -> Result<Project> {
    let p = find_project(db, r).await?;
    let n = db.project_resource_count(&p.id).await?;
    if n > 0 {
        return Err(Error::invalid_status(
            "EVS.5400",
            format!("project {:?} still owns {n} volume(s)/snapshot(s); delete them first", p.name),
        ));
    }
    db.delete_project(&p.id).await?;
    Ok(p)
}

/// Create a user with a first role in a project.
pub async fn create_user(db: &Db, name: &str, password: &str, project: &Ref, role: Role) -> Result<User> {
    let new = NewUser { name, password, default_project: Some(project), enabled: true, description: None, email: None };
    create_user_with(db, &new, Some(role)).await
}

/// What `POST /v3/users` (or `cinderblock admin user create`) gives for a new user.
pub struct NewUser<'a> {
    /// Unique name.
    pub name: &'a str,
    /// Plain-text password (hashed here, never stored or logged as is).
    pub password: &'a str,
    /// Project a token without scope goes to.
    pub default_project: Option<&'a Ref>,
    /// False: the user exists but cannot log in until enabled.
    pub enabled: bool,
    /// Free text.
    pub description: Option<&'a str>,
    /// Contact address.
    pub email: Option<&'a str>,
}

/// Changes to a user (`PATCH /v3/users/{id}`); `None` keeps the attribute.
#[derive(Default)]
pub struct UserUpdate {
    /// New name.
    pub name: Option<String>,
    /// New password.
    pub password: Option<String>,
    /// Enable or disable (a disabled user's tokens end).
    pub enabled: Option<bool>,
    /// New default project (`Some(None)` clears it).
    pub default_project: Option<Option<Ref>>,
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// New email (`Some(None)` clears it).
    pub email: Option<Option<String>>,
}

/// Longest description or email kept.
const MAX_TEXT: usize = 255;

fn check_text(kind: &str, text: Option<&str>) -> Result<()> {
    if let Some(t) = text {
        if t.chars().count() > MAX_TEXT || t.chars().any(char::is_control) {
            return Err(invalid(format!("invalid {kind}: at most {MAX_TEXT} characters, no control characters")));
        }
    }
    Ok(())
}

/// Change a user; everything is checked (and the password hashed) before anything is stored,
/// and all of it is stored in one transaction. Disabling the user or setting its password
/// ends its tokens. Disabling the last enabled admin is refused (`Conflict`).
pub async fn update_user(db: &Db, id: &str, change: UserUpdate) -> Result<User> {
    let mut u = db.user_by_id(id).await?.ok_or_else(|| not_found(format!("no user {id:?}")))?;
    if let Some(name) = &change.name {
        check_name("user", name)?;
        u.name = name.clone();
    }
    if let Some(p) = &change.default_project {
        u.default_project_id = match p {
            Some(r) => Some(find_project(db, r).await?.id),
            None => None,
        };
    }
    if let Some(d) = change.description {
        check_text("description", d.as_deref())?;
        u.description = d;
    }
    if let Some(e) = change.email {
        check_text("email", e.as_deref())?;
        u.email = e;
    }
    if let Some(enabled) = change.enabled {
        if !enabled && u.enabled {
            let admins = db.list_role_assignments(None, None).await?;
            let mut others = Vec::new();
            for a in admins.iter().filter(|a| a.role == Role::Admin && a.user_id != u.id) {
                if !others.contains(&a.user_id) {
                    others.push(a.user_id.clone());
                }
            }
            let mut other_enabled = false;
            for o in &others {
                if db.user_by_id(o).await?.is_some_and(|x| x.enabled) {
                    other_enabled = true;
                    break;
                }
            }
            let is_admin = admins.iter().any(|a| a.role == Role::Admin && a.user_id == u.id);
            if is_admin && !other_enabled {
                return Err(Error::conflict("EVS.5409", "refusing to disable the last enabled admin user"));
            }
        }
        u.enabled = enabled;
    }
    let hash = match change.password {
        Some(pw) => {
            check_password(&pw)?;
            Some(hash_password_blocking(pw).await?)
        }
        None => None,
    };
    if !db.update_user(&u, hash.as_deref()).await? {
        return Err(not_found(format!("no user {id:?}")));
    }
    Ok(u)
}

/// Create a user, optionally with a default project and (there) a first role. Keystone's
/// `POST /v3/users` sets only the default project; `cinderblock admin user create` grants too.
pub async fn create_user_with(db: &Db, new: &NewUser<'_>, role: Option<Role>) -> Result<User> {
    let NewUser { name, password, default_project, enabled, description, email } = *new;
    check_name("user", name)?;
    check_password(password)?;
    check_text("description", description)?;
    check_text("email", email)?;
    let p = match default_project {
        Some(r) => Some(find_project(db, r).await?),
        None => None,
    };
    let pw = password.to_string();
    let password_hash = hash_password_blocking(pw).await?;
    let u = User {
        id: new_id(),
        name: name.to_string(),
        password_hash,
        default_project_id: p.as_ref().map(|p| p.id.clone()),
        enabled,
        description: description.map(str::to_string),
        email: email.map(str::to_string),
        created_at: now_timestamp(),
    };
    let first = match (&p, role) {
        (Some(p), Some(role)) => Some((p.id.as_str(), role)),
        _ => None,
    };
    db.insert_user(&u, first).await?;
    Ok(u)
}

/// Longest password accepted (argon2 takes any length; this bounds the work per request).
const MAX_PASSWORD: usize = 1024;

fn check_password(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(invalid("the password is empty"));
    }
    if password.len() > MAX_PASSWORD {
        return Err(invalid(format!("the password is longer than {MAX_PASSWORD} bytes")));
    }
    Ok(())
}

/// Set a user's password (ends its tokens).
pub async fn set_password(db: &Db, user: &Ref, password: &str) -> Result<User> {
    check_password(password)?;
    let u = find_user(db, user).await?;
    let pw = password.to_string();
    let hash = hash_password_blocking(pw).await?;
    db.set_user_password(&u.id, &hash).await?;
    Ok(u)
}

/// Keystone's self-service password change (`POST /v3/users/{id}/password`): the original
/// password must check out (a wrong one counts as a failed login for the throttle, and answers
/// the same 401 as a failed login), then the new one is hashed and stored and every token of
/// the user ends. The caller's right to change this user's password is the API's to check.
pub async fn change_password(
    db: &Db,
    config: &Config,
    user_id: &str,
    original: &str,
    password: &str,
    from: Option<std::net::IpAddr>,
) -> Result<User> {
    check_password(password)?;
    let limits = login_limits::limits(&config.auth);
    limits.check(user_id, from)?;
    let found = db.user_by_id(user_id).await?;
    let ok =
        verify_password_blocking(config, original.to_string(), found.as_ref().map(|u| u.password_hash.clone())).await?;
    let user = match found {
        Some(u) if ok && u.enabled => u,
        _ => {
            limits.failed(user_id, from);
            return Err(auth_required("Error when changing user password: the original password is wrong."));
        }
    };
    limits.succeeded(user_id);
    let hash = hash_password_blocking(password.to_string()).await?;
    if !db.set_user_password(&user.id, &hash).await? {
        return Err(not_found(format!("no user {user_id:?}")));
    }
    Ok(user)
}

/// Delete a user with its role assignments, credentials and tokens.
pub async fn delete_user(db: &Db, r: &Ref) -> Result<User> {
    let u = find_user(db, r).await?;
    db.delete_user(&u.id).await?;
    Ok(u)
}

/// Grant a role; false when the user already had it.
pub async fn grant_role(db: &Db, user: &Ref, project: &Ref, role: Role) -> Result<bool> {
    let u = find_user(db, user).await?;
    let p = find_project(db, project).await?;
    db.grant_role(&u.id, &p.id, role, &now_timestamp()).await
}

/// Revoke a role; false when the user did not have it. The user's tokens scoped to that
/// project go with it (Keystone's revocation event), so granting the role again later does not
/// bring tokens issued before the revoke back to life.
pub async fn revoke_role(db: &Db, user: &Ref, project: &Ref, role: Role) -> Result<bool> {
    let u = find_user(db, user).await?;
    let p = find_project(db, project).await?;
    db.revoke_role(&u.id, &p.id, role).await
}

/// Roles of a user in a project, highest first with implied roles.
pub async fn effective_roles(db: &Db, user_id: &str, project_id: &str) -> Result<Vec<Role>> {
    let assigned = db.user_roles(user_id, project_id).await?;
    Ok(assigned.iter().max().map(|r| r.with_implied()).unwrap_or_default())
}

/// Alphabets of generated keys (Huawei AKs are 20 upper-case characters, SKs 40 mixed).
const AK_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SK_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Create an AK/SK credential for a user in one of its projects. Returns the record and the
/// secret key, which is shown once and never again.
pub async fn create_credential(db: &Db, config: &Config, user: &Ref, project: &Ref) -> Result<(Credential, String)> {
    let u = find_user(db, user).await?;
    let p = find_project(db, project).await?;
    if db.user_roles(&u.id, &p.id).await?.is_empty() {
        return Err(invalid(format!("user {:?} has no role in project {:?}", u.name, p.name)));
    }
    let key = credential_key(config, true)?;
    let access_key = random_string(20, AK_ALPHABET)?;
    let secret = random_string(40, SK_ALPHABET)?;
    let c = Credential {
        secret_enc: encrypt_secret(&key, &access_key, &secret)?,
        access_key,
        user_id: u.id,
        project_id: p.id,
        created_at: now_timestamp(),
    };
    db.insert_credential(&c).await?;
    Ok((c, secret))
}

/// Delete a credential by access key.
pub async fn delete_credential(db: &Db, access_key: &str) -> Result<Credential> {
    let c = db.credential(access_key).await?.ok_or_else(|| not_found(format!("no credential {access_key:?}")))?;
    db.delete_credential(access_key).await?;
    Ok(c)
}

/// At daemon start in keystone mode: create the credential key if missing, and when nobody
/// holds the admin role, say how to create an admin (on stderr and in the log).
pub async fn startup_check(db: &Db, config: &Config) -> Result<()> {
    if config.auth.mode != AuthMode::Keystone {
        return Ok(());
    }
    if let Err(e) = credential_key(config, true) {
        tracing::warn!(error = %e, "AK/SK signatures cannot be verified until the credential key is readable");
    }
    if db.count_admins().await? == 0 {
        let hint = "auth.mode is keystone and no user holds the admin role yet. Create one with:\n  \
                    cinderblock admin project create admin --config CONFIG\n  \
                    cinderblock admin user create admin --project admin --role admin --config CONFIG   \
                    (reads the password from stdin)\n\
                    then log in with OS_AUTH_URL=http://HOST:PORT/identity/v3 OS_USERNAME=admin \
                    OS_PROJECT_NAME=admin OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default";
        if config.log_format == crate::config::LogFormat::Json {
            // Every line of a JSON log must be JSON: the hint rides in the warning.
            tracing::warn!(hint, "no admin user exists");
        } else {
            tracing::warn!("no admin user exists");
            eprintln!("cinderblock: {hint}");
        }
    }
    Ok(())
}

// ----- tokens -------------------------------------------------------------------------------

/// Format a store timestamp the way Keystone prints times (`2024-01-01T00:00:00.000000Z`).
pub fn keystone_time(ts: &str) -> String {
    format!("{ts}Z")
}

fn parse_ts(ts: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::NaiveDateTime::parse_from_str(ts, TS_FORMAT).ok().map(|t| t.and_utc())
}

async fn scoped_project(db: &Db, user: &User, scope: Option<&Ref>) -> Result<Option<(Project, Vec<Role>)>> {
    let denied = || auth_required("The request you have made requires authentication.");
    let project = match scope {
        Some(r) => {
            let p = match r {
                Ref::Id(id) => db.project_by_id(id).await?,
                Ref::Name(n) => db.project_by_name(n).await?,
            };
            Some(p.ok_or_else(denied)?)
        }
        None => match &user.default_project_id {
            Some(id) => db.project_by_id(id).await?,
            None => None,
        },
    };
    let Some(p) = project else { return Ok(None) };
    let roles = effective_roles(db, &user.id, &p.id).await?;
    if roles.is_empty() || !p.enabled {
        // An explicit scope without a role is refused; a default project without one falls
        // back to an unscoped token.
        return if scope.is_some() { Err(denied()) } else { Ok(None) };
    }
    Ok(Some((p, roles)))
}

async fn issue(
    db: &Db,
    config: &Config,
    user: User,
    scope: Option<(Project, Vec<Role>)>,
    methods: &str,
    not_after: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<IssuedToken> {
    let token = hex(&random_bytes::<32>()?);
    let now = chrono::Utc::now();
    let ttl = chrono::Duration::seconds(
        i64::try_from(config.auth.token_ttl_seconds).unwrap_or(i64::MAX / 1000).min(10 * 365 * 86400),
    );
    let issued_at = now.format(TS_FORMAT).to_string();
    let (project, roles) = match scope {
        Some((p, r)) => (Some(p), r),
        None => (None, Vec::new()),
    };
    let record = TokenRecord {
        token_hash: token_hash(&token),
        user_id: user.id.clone(),
        project_id: project.as_ref().map(|p| p.id.clone()),
        methods: methods.to_string(),
        audit_id: random_string(22, SK_ALPHABET)?,
        issued_at: issued_at.clone(),
        // A token bought with a token never outlives it (Keystone's rule): rescoping in a loop
        // must not renew access forever.
        expires_at: not_after.map_or(now + ttl, |cap| (now + ttl).min(cap)).format(TS_FORMAT).to_string(),
    };
    db.insert_token(&record, &issued_at).await?;
    Ok(IssuedToken { token, info: TokenInfo { record, user, project, roles } })
}

/// The password method: check the user's password and issue a token for `scope` (the user's
/// default project when `None`). Any failure is the same 401; a user name or a source address
/// `from` that failed too often lately is 429 before any check (see [`login_limits`]).
pub async fn authenticate_password(
    db: &Db,
    config: &Config,
    user: &Ref,
    password: &str,
    scope: Option<&Ref>,
    from: Option<std::net::IpAddr>,
) -> Result<IssuedToken> {
    let (user, scope) = check_password_login(db, config, user, password, scope, from).await?;
    issue(db, config, user, scope, "password", None).await
}

/// The checks of the password method without issuing a token (the dashboard's sign-in makes
/// a session instead): the same throttling, the same 401 for any failure, the same scoping.
/// Returns the user and, when it holds a role there, the scoped project with its roles.
pub async fn check_password_login(
    db: &Db,
    config: &Config,
    user: &Ref,
    password: &str,
    scope: Option<&Ref>,
    from: Option<std::net::IpAddr>,
) -> Result<(User, Option<(Project, Vec<Role>)>)> {
    let limits = login_limits::limits(&config.auth);
    let key = match user {
        Ref::Id(id) => id.as_str(),
        Ref::Name(n) => n.as_str(),
    };
    limits.check(key, from)?;
    let found = match user {
        Ref::Id(id) => db.user_by_id(id).await?,
        Ref::Name(n) => db.user_by_name(n).await?,
    };
    let ok =
        verify_password_blocking(config, password.to_string(), found.as_ref().map(|u| u.password_hash.clone())).await?;
    let user = match found {
        Some(u) if ok && u.enabled => u,
        _ => {
            limits.failed(key, from);
            return Err(auth_required("The request you have made requires authentication."));
        }
    };
    limits.succeeded(key);
    let scope = scoped_project(db, &user, scope).await?;
    Ok((user, scope))
}

/// The token method: a valid token buys a new one, possibly for another project of the user.
pub async fn rescope_token(db: &Db, config: &Config, token: &str, scope: Option<&Ref>) -> Result<IssuedToken> {
    let info = validate_token(db, token).await?;
    let scope = scoped_project(db, &info.user, scope).await?;
    let not_after = parse_ts(&info.record.expires_at);
    issue(db, config, info.user, scope, "token", not_after).await
}

/// Check a token: it must exist, not be expired, belong to an enabled user, and (when scoped)
/// its user must still hold a role in its enabled project.
pub async fn validate_token(db: &Db, token: &str) -> Result<TokenInfo> {
    let bad = || invalid_token("The token is invalid or has expired.");
    if token.is_empty() || token.len() > 256 {
        return Err(bad());
    }
    let record = db.token(&token_hash(token)).await?.ok_or_else(bad)?;
    match parse_ts(&record.expires_at) {
        Some(exp) if exp > chrono::Utc::now() => {}
        _ => return Err(bad()),
    }
    let user = db.user_by_id(&record.user_id).await?.filter(|u| u.enabled).ok_or_else(bad)?;
    let (project, roles) = match &record.project_id {
        Some(pid) => {
            let p = db.project_by_id(pid).await?.filter(|p| p.enabled).ok_or_else(bad)?;
            let roles = effective_roles(db, &user.id, &p.id).await?;
            if roles.is_empty() {
                return Err(bad());
            }
            (Some(p), roles)
        }
        None => (None, Vec::new()),
    };
    Ok(TokenInfo { record, user, project, roles })
}

/// Revoke a token.
pub async fn revoke_token(db: &Db, token: &str) -> Result<bool> {
    db.delete_token(&token_hash(token)).await
}

// ----- signatures ---------------------------------------------------------------------------

/// Check an AK/SK signature. `check` gets the decrypted secret key and answers whether the
/// signature verifies (constant time). The caller's project is `X-Project-Id` when given, else
/// the credential's project; the owner must hold a role there (403 `Common.0018` otherwise).
pub async fn authenticate_signature(
    db: &Db,
    config: &Config,
    access_key: &str,
    project_header: Option<&str>,
    check: impl FnOnce(&[u8]) -> bool,
) -> Result<Identity> {
    let denied = || auth_required("Authentication required: the signature does not match.");
    let Some(cred) = db.credential(access_key).await? else {
        // Same answer (and about the same work) as a wrong signature.
        let _ = check(b"cinderblock-unknown-access-key");
        return Err(denied());
    };
    let key = credential_key(config, false)?;
    let secret = decrypt_secret(&key, &cred.access_key, &cred.secret_enc)?;
    if !check(&secret) {
        return Err(denied());
    }
    let user = db.user_by_id(&cred.user_id).await?.filter(|u| u.enabled).ok_or_else(denied)?;
    let project_id = project_header.unwrap_or(&cred.project_id);
    let mismatch = || project_mismatch("X-Project-Id is not a project of the credential's owner.");
    let project = db.project_by_id(project_id).await?.filter(|p| p.enabled).ok_or_else(mismatch)?;
    let roles = effective_roles(db, &user.id, &project.id).await?;
    if roles.is_empty() {
        return Err(mismatch());
    }
    Ok(Identity {
        user_id: user.id,
        user_name: user.name,
        project_id: project.id,
        project_name: project.name,
        roles,
        method: AuthMethod::Signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("s3cret").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("S3cret", &h));
        assert!(!verify_password("s3cret", "not a phc string"));
    }

    #[test]
    fn secrets_round_trip_and_bind_to_their_access_key() {
        let key = [7u8; 32];
        let enc = encrypt_secret(&key, "AK1", "my-secret").expect("enc");
        assert!(!enc.contains("my-secret"));
        assert_eq!(decrypt_secret(&key, "AK1", &enc).expect("dec"), b"my-secret");
        assert!(decrypt_secret(&key, "AK2", &enc).is_err(), "moved to another AK");
        assert!(decrypt_secret(&[8u8; 32], "AK1", &enc).is_err(), "another key file");
        assert!(decrypt_secret(&key, "AK1", "v1:zz").is_err());
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = Config::default();
        config.auth.credential_key_file = Some(dir.path().join("sub/credential.key"));
        assert!(credential_key(&config, false).is_err(), "missing and not created");
        let k1 = credential_key(&config, true).expect("create");
        let md = std::fs::metadata(dir.path().join("sub/credential.key")).expect("file");
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        assert_eq!(read_key(&dir.path().join("sub/credential.key")).expect("read"), Some(k1));
        assert_eq!(credential_key(&config, false).expect("cached"), k1);
    }

    #[test]
    fn generated_keys() {
        let ak = random_string(20, AK_ALPHABET).expect("ak");
        assert_eq!(ak.len(), 20);
        assert!(ak.bytes().all(|b| AK_ALPHABET.contains(&b)));
        assert_ne!(ak, random_string(20, AK_ALPHABET).expect("ak2"));
        assert_eq!(Ref::guess("0123456789abcdef0123456789ABCDEF"), Ref::Id("0123456789abcdef0123456789abcdef".into()));
        assert_eq!(Ref::guess("admin"), Ref::Name("admin".into()));
    }

    #[test]
    fn key_path_defaults_beside_sqlite() {
        let mut c = Config::default();
        c.database.url = "sqlite:///var/lib/cb/cinderblock.db?mode=rwc".into();
        assert_eq!(credential_key_path(&c), PathBuf::from("/var/lib/cb/credential.key"));
        c.database.url = "postgres://u@h/db".into();
        assert_eq!(credential_key_path(&c), PathBuf::from("credential.key"));
    }
}
