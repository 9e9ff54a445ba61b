//! Identity rows: projects, users, role assignments, AK/SK credentials and tokens.
//!
//! Names are unique; a duplicate insert is a `Conflict`, detected by the unique constraint so
//! two concurrent creates cannot both succeed.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Db;
use crate::error::{Error, Result};
use crate::model::{Credential, Project, Role, RoleAssignment, TokenRecord, User};

const PROJECT_COLUMNS: &str = "id, name, description, enabled, created_at";
const USER_COLUMNS: &str = "id, name, password_hash, default_project_id, enabled, description, email, created_at";
const CREDENTIAL_COLUMNS: &str = "access_key, user_id, project_id, secret_enc, created_at";
const TOKEN_COLUMNS: &str = "token_hash, user_id, project_id, methods, audit_id, issued_at, expires_at";

fn project_from_row(r: &AnyRow) -> Result<Project> {
    let enabled: i64 = r.try_get("enabled")?;
    Ok(Project {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        enabled: enabled != 0,
        created_at: r.try_get("created_at")?,
    })
}

fn user_from_row(r: &AnyRow) -> Result<User> {
    let enabled: i64 = r.try_get("enabled")?;
    Ok(User {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        default_project_id: r.try_get("default_project_id")?,
        enabled: enabled != 0,
        description: r.try_get("description")?,
        email: r.try_get("email")?,
        created_at: r.try_get("created_at")?,
    })
}

fn credential_from_row(r: &AnyRow) -> Result<Credential> {
    Ok(Credential {
        access_key: r.try_get("access_key")?,
        user_id: r.try_get("user_id")?,
        project_id: r.try_get("project_id")?,
        secret_enc: r.try_get("secret_enc")?,
        created_at: r.try_get("created_at")?,
    })
}

fn token_from_row(r: &AnyRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        token_hash: r.try_get("token_hash")?,
        user_id: r.try_get("user_id")?,
        project_id: r.try_get("project_id")?,
        methods: r.try_get("methods")?,
        audit_id: r.try_get("audit_id")?,
        issued_at: r.try_get("issued_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

fn parse_role(s: &str) -> Result<Role> {
    s.parse().map_err(|_| Error::internal(format!("bad role {s:?} in role_assignments")))
}

/// A unique-constraint violation becomes a `Conflict` naming `what`.
fn unique_to_conflict(e: sqlx::Error, what: &str) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::conflict("EVS.5400", format!("{what} already exists"))
        }
        _ => Error::from(e),
    }
}

impl Db {
    // ----- projects -------------------------------------------------------------------------

    /// Insert a project; `Conflict` when the name (or id) is taken.
    pub async fn insert_project(&self, p: &Project) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO projects (id, name, description, enabled, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&p.id)
            .bind(&p.name)
            .bind(p.description.as_deref())
            .bind(i64::from(p.enabled))
            .bind(&p.created_at)
            .execute(tx.conn())
            .await
            .map_err(|e| unique_to_conflict(e, &format!("project {:?}", p.name)))?;
        tx.commit().await
    }

    /// A project by id.
    pub async fn project_by_id(&self, id: &str) -> Result<Option<Project>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    /// A project by name.
    pub async fn project_by_name(&self, name: &str) -> Result<Option<Project>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1")))
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    /// Every project, by name.
    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name")))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(project_from_row).collect()
    }

    /// Enable or disable a project (tokens scoped to a disabled project stop working: token
    /// and signature checks read the flag); false when there is no such project.
    pub async fn set_project_enabled(&self, id: &str, enabled: bool) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE projects SET enabled = $1 WHERE id = $2")
            .bind(i64::from(enabled))
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// How many volumes and snapshots a project still owns.
    pub async fn project_resource_count(&self, project_id: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM volumes WHERE project_id = $1) \
             + (SELECT COUNT(*) FROM snapshots WHERE project_id = $1) AS n",
        )
        .bind(project_id)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Delete a project (its role assignments, credentials and tokens go with it); false when
    /// it did not exist.
    pub async fn delete_project(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM projects WHERE id = $1").bind(id).execute(tx.conn()).await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    // ----- users ----------------------------------------------------------------------------

    /// Insert a user and (optionally) its first role assignment in one transaction; `Conflict`
    /// when the name is taken.
    pub async fn insert_user(&self, u: &User, first_role: Option<(&str, Role)>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO users (id, name, password_hash, default_project_id, enabled, description, email, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&u.id)
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.default_project_id.as_deref())
        .bind(i64::from(u.enabled))
        .bind(u.description.as_deref())
        .bind(u.email.as_deref())
        .bind(&u.created_at)
        .execute(tx.conn())
        .await
        .map_err(|e| unique_to_conflict(e, &format!("user {:?}", u.name)))?;
        if let Some((project_id, role)) = first_role {
            sqlx::query("INSERT INTO role_assignments (user_id, project_id, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&u.id)
                .bind(project_id)
                .bind(role.as_str())
                .bind(&u.created_at)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// A user by name.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1")))
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users ORDER BY name")))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Replace a user's password hash; false when the user does not exist.
    pub async fn set_user_password(&self, id: &str, password_hash: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id)
            .execute(tx.conn())
            .await?;
        // A new password ends every session of the old one.
        sqlx::query("DELETE FROM tokens WHERE user_id = $1").bind(id).execute(tx.conn()).await?;
        // ui: and every dashboard session.
        sqlx::query("DELETE FROM ui_sessions WHERE user_id = $1").bind(id).execute(tx.conn()).await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Store a user's changed attributes, and its new password hash when given, in one
    /// transaction; a disabled user's tokens, or every token of the old password, end with it.
    /// False when the user does not exist; `Conflict` when the new name is taken.
    pub async fn update_user(&self, u: &User, new_password_hash: Option<&str>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE users SET name = $1, default_project_id = $2, enabled = $3, description = $4, email = $5 \
             WHERE id = $6",
        )
        .bind(&u.name)
        .bind(u.default_project_id.as_deref())
        .bind(i64::from(u.enabled))
        .bind(u.description.as_deref())
        .bind(u.email.as_deref())
        .bind(&u.id)
        .execute(tx.conn())
        .await
        .map_err(|e| unique_to_conflict(e, &format!("user {:?}", u.name)))?;
        if let Some(hash) = new_password_hash {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash)
                .bind(&u.id)
                .execute(tx.conn())
                .await?;
        }
        if !u.enabled || new_password_hash.is_some() {
            sqlx::query("DELETE FROM tokens WHERE user_id = $1").bind(&u.id).execute(tx.conn()).await?;
            // ui: dashboard sessions end with the tokens.
            sqlx::query("DELETE FROM ui_sessions WHERE user_id = $1").bind(&u.id).execute(tx.conn()).await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Delete a user (assignments, credentials and tokens go with it). `Conflict` (nothing
    /// changed) when it holds the deployment's last admin role assignment.
    pub async fn delete_user(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let held = sqlx::query("SELECT COUNT(*) AS n FROM role_assignments WHERE user_id = $1 AND role = 'admin'")
            .bind(id)
            .fetch_one(tx.conn())
            .await?;
        let held: i64 = held.try_get("n")?;
        let r = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(tx.conn()).await?;
        // ui: the user's dashboard sessions (no foreign key: noauth sessions have no user).
        sqlx::query("DELETE FROM ui_sessions WHERE user_id = $1").bind(id).execute(tx.conn()).await?;
        if held > 0 {
            refuse_if_admins_gone(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    // ----- role assignments -----------------------------------------------------------------

    /// Grant `role`; false when the user already had it there.
    pub async fn grant_role(&self, user_id: &str, project_id: &str, role: Role, now: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "INSERT INTO role_assignments (user_id, project_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, project_id, role) DO NOTHING",
        )
        .bind(user_id)
        .bind(project_id)
        .bind(role.as_str())
        .bind(now)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Revoke `role`; false when the user did not have it there. Tokens scoped to a project
    /// where the user keeps no role stop working at their next use (roles are read live).
    pub async fn revoke_role(&self, user_id: &str, project_id: &str, role: Role) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM role_assignments WHERE user_id = $1 AND project_id = $2 AND role = $3")
            .bind(user_id)
            .bind(project_id)
            .bind(role.as_str())
            .execute(tx.conn())
            .await?;
        if r.rows_affected() > 0 && role == Role::Admin {
            refuse_if_admins_gone(&mut tx, user_id).await?;
        }
        if r.rows_affected() > 0 {
            sqlx::query("DELETE FROM tokens WHERE user_id = $1 AND project_id = $2")
                .bind(user_id)
                .bind(project_id)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// The roles a user holds in a project (empty when none or the project is disabled).
    pub async fn user_roles(&self, user_id: &str, project_id: &str) -> Result<Vec<Role>> {
        let rows = sqlx::query(
            "SELECT ra.role FROM role_assignments ra JOIN projects p ON p.id = ra.project_id \
             WHERE ra.user_id = $1 AND ra.project_id = $2 AND p.enabled = 1 ORDER BY ra.role",
        )
        .bind(user_id)
        .bind(project_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get("role")?;
                parse_role(&s)
            })
            .collect()
    }

    /// Role assignments, optionally only one user's or one project's, by user then project.
    pub async fn list_role_assignments(
        &self,
        user_id: Option<&str>,
        project_id: Option<&str>,
    ) -> Result<Vec<RoleAssignment>> {
        let rows = sqlx::query(
            "SELECT ra.user_id, u.name AS user_name, ra.project_id, p.name AS project_name, ra.role \
             FROM role_assignments ra JOIN users u ON u.id = ra.user_id JOIN projects p ON p.id = ra.project_id \
             WHERE ($1 = '' OR ra.user_id = $1) AND ($2 = '' OR ra.project_id = $2) \
             ORDER BY u.name, p.name, ra.role",
        )
        .bind(user_id.unwrap_or(""))
        .bind(project_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                Ok(RoleAssignment {
                    user_id: r.try_get("user_id")?,
                    user_name: r.try_get("user_name")?,
                    project_id: r.try_get("project_id")?,
                    project_name: r.try_get("project_name")?,
                    role: parse_role(&role)?,
                })
            })
            .collect()
    }

    /// The enabled projects where a user holds at least one role, by name.
    pub async fn user_projects(&self, user_id: &str) -> Result<Vec<Project>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE enabled = 1 AND id IN \
             (SELECT project_id FROM role_assignments WHERE user_id = $1) ORDER BY name"
        )))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(project_from_row).collect()
    }

    /// How many users hold the admin role somewhere.
    pub async fn count_admins(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(DISTINCT user_id) AS n FROM role_assignments WHERE role = 'admin'")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    // ----- credentials ----------------------------------------------------------------------

    /// Insert an AK/SK credential; `Conflict` when the access key exists.
    pub async fn insert_credential(&self, c: &Credential) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO credentials (access_key, user_id, project_id, secret_enc, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&c.access_key)
        .bind(&c.user_id)
        .bind(&c.project_id)
        .bind(&c.secret_enc)
        .bind(&c.created_at)
        .execute(tx.conn())
        .await
        .map_err(|e| unique_to_conflict(e, "access key"))?;
        tx.commit().await
    }

    /// A credential by access key.
    pub async fn credential(&self, access_key: &str) -> Result<Option<Credential>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE access_key = $1"
        )))
        .bind(access_key)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(credential_from_row).transpose()
    }

    /// Credentials, optionally only one user's, by creation.
    pub async fn list_credentials(&self, user_id: Option<&str>) -> Result<Vec<Credential>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE ($1 = '' OR user_id = $1) \
             ORDER BY created_at, access_key"
        )))
        .bind(user_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(credential_from_row).collect()
    }

    /// Delete a credential; false when it did not exist.
    pub async fn delete_credential(&self, access_key: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r =
            sqlx::query("DELETE FROM credentials WHERE access_key = $1").bind(access_key).execute(tx.conn()).await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    // ----- tokens ---------------------------------------------------------------------------

    /// Store a token (by hash) and drop expired ones.
    pub async fn insert_token(&self, t: &TokenRecord, now: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM tokens WHERE expires_at < $1").bind(now).execute(tx.conn()).await?;
        sqlx::query(
            "INSERT INTO tokens (token_hash, user_id, project_id, methods, audit_id, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.token_hash)
        .bind(&t.user_id)
        .bind(t.project_id.as_deref())
        .bind(&t.methods)
        .bind(&t.audit_id)
        .bind(&t.issued_at)
        .bind(&t.expires_at)
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// A token by hash (expired ones included; the caller checks `expires_at`).
    pub async fn token(&self, token_hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = $1")))
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Revoke a token; false when it did not exist.
    pub async fn delete_token(&self, token_hash: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM tokens WHERE token_hash = $1").bind(token_hash).execute(tx.conn()).await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }
}

/// Inside a write transaction that just removed admin assignments of `user_id`: fail with
/// `Conflict` (the caller drops the transaction, so nothing changes) when no admin role
/// assignment is left in the deployment, so nobody can lock every admin out. Checked in the
/// same transaction as the delete, so two concurrent removals cannot both pass.
async fn refuse_if_admins_gone(tx: &mut super::WriteTx<'_>, user_id: &str) -> Result<()> {
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM role_assignments WHERE role = 'admin'").fetch_one(tx.conn()).await?;
    let n: i64 = row.try_get("n")?;
    if n == 0 {
        return Err(Error::conflict(
            "EVS.5409",
            format!("user {user_id} holds the last admin role assignment; grant admin to someone else first"),
        ));
    }
    Ok(())
}
