//! Identity records: projects, users, role assignments, AK/SK credentials and tokens.
//!
//! Secrets never live in these structs in clear: users carry an argon2 PHC string, credentials
//! the encrypted secret key, tokens only their SHA-256 hash.

use std::fmt;
use std::str::FromStr;

/// A role a user holds in a project. Ordered: each role includes the ones below it
/// (`Admin` > `Member` > `Reader`), as Keystone's implied roles do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads the project's resources.
    Reader,
    /// Reads and changes the project's resources.
    Member,
    /// Everything, in every project (Cinder's `is_admin`).
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Reader, Role::Member, Role::Admin];

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }

    /// A fixed id for the role in Keystone documents.
    pub fn id(self) -> &'static str {
        match self {
            Role::Reader => "6a1a3b3a2f9c4b0e9d7f0c1b2a3d4e01",
            Role::Member => "6a1a3b3a2f9c4b0e9d7f0c1b2a3d4e02",
            Role::Admin => "6a1a3b3a2f9c4b0e9d7f0c1b2a3d4e03",
        }
    }

    /// This role and every role it implies, highest first.
    pub fn with_implied(self) -> Vec<Role> {
        Role::ALL.iter().rev().copied().filter(|r| *r <= self).collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "reader" => Ok(Role::Reader),
            "member" | "_member_" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?} (expected admin, member or reader)")),
        }
    }
}

/// A project (tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// 32 hex digits, as Keystone prints them.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Disabled projects cannot be scoped to.
    pub enabled: bool,
    /// Creation time.
    pub created_at: String,
}

/// A user (password hash included; never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// 32 hex digits.
    pub id: String,
    /// Unique name (domain `Default`).
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Project a token without scope is scoped to.
    pub default_project_id: Option<String>,
    /// Disabled users cannot authenticate.
    pub enabled: bool,
    /// Free text (Keystone's `description`).
    pub description: Option<String>,
    /// Contact address (Keystone's `email` extra attribute).
    pub email: Option<String>,
    /// Creation time.
    pub created_at: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("default_project_id", &self.default_project_id)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// One role of one user in one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    /// User id.
    pub user_id: String,
    /// User name.
    pub user_name: String,
    /// Project id.
    pub project_id: String,
    /// Project name.
    pub project_name: String,
    /// The role.
    pub role: Role,
}

/// An AK/SK credential; the secret key is stored encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// Access key (public identifier).
    pub access_key: String,
    /// Owner.
    pub user_id: String,
    /// Project the credential was created for.
    pub project_id: String,
    /// `v1:<hex nonce+ciphertext>`.
    pub secret_enc: String,
    /// Creation time.
    pub created_at: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("access_key", &self.access_key)
            .field("user_id", &self.user_id)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

/// A stored token (looked up by the hash of the token the client holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// Owner.
    pub user_id: String,
    /// Scope; `None` for an unscoped token.
    pub project_id: Option<String>,
    /// Authentication methods (`password`, `token`), comma separated.
    pub methods: String,
    /// Keystone audit id.
    pub audit_id: String,
    /// Issue time (`now_timestamp` form).
    pub issued_at: String,
    /// Expiry time (`now_timestamp` form).
    pub expires_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Admin > Role::Member && Role::Member > Role::Reader);
        assert_eq!("Admin".parse::<Role>(), Ok(Role::Admin));
        assert_eq!("_member_".parse::<Role>(), Ok(Role::Member));
        assert!("root".parse::<Role>().is_err());
        assert_eq!(Role::Member.with_implied(), vec![Role::Member, Role::Reader]);
    }
}
