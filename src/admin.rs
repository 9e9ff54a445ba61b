//! `cinderblock admin …`: manage projects, users, roles and AK/SK credentials in the database
//! the daemon uses (same `--config`). Works before the daemon ever started: migrations run
//! first. Results go to stdout (ids, tables, the secret key once); errors to stderr.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::Role;
use crate::service::identity::{self as ids, Ref};

/// `cinderblock admin`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Projects (tenants).
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Users (one domain, `Default`).
    #[command(subcommand)]
    User(UserCommand),
    /// Role assignments (admin, member, reader) of users in projects.
    #[command(subcommand)]
    Role(RoleCommand),
    /// AK/SK credentials for signed requests (Huawei SDKs).
    #[command(subcommand)]
    Credential(CredentialCommand),
}

/// `cinderblock admin project …`.
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project and print its id.
    Create {
        /// Unique name.
        name: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// List projects.
    List,
    /// Disable a project: its users' tokens and AK/SK credentials for it stop working.
    Disable {
        /// Name or id.
        project: String,
    },
    /// Enable a disabled project again.
    Enable {
        /// Name or id.
        project: String,
    },
    /// Delete a project (refused while it owns volumes or snapshots).
    Delete {
        /// Name or id.
        project: String,
    },
}

/// `cinderblock admin user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with a role in a project; the password is read from stdin (one line).
    Create {
        /// Unique name.
        name: String,
        #[command(flatten)]
        grant: Grant,
    },
    /// List users with their roles.
    List,
    /// Change a user's password (read from stdin); ends the user's tokens.
    SetPassword {
        /// Name or id.
        user: String,
    },
    /// Disable a user: its tokens end, logins and AK/SK requests are refused (the last
    /// enabled admin cannot be disabled).
    Disable {
        /// Name or id.
        user: String,
    },
    /// Enable a disabled user again (old tokens stay ended).
    Enable {
        /// Name or id.
        user: String,
    },
    /// Delete a user with its roles, credentials and tokens.
    Delete {
        /// Name or id.
        user: String,
    },
}

/// A project and a role.
#[derive(Debug, Args)]
pub struct Grant {
    /// Project name or id.
    #[arg(long)]
    project: String,
    /// `admin`, `member` or `reader`.
    #[arg(long, default_value = "member", value_parser = parse_role)]
    role: Role,
}

fn parse_role(s: &str) -> std::result::Result<Role, String> {
    s.parse()
}

/// `cinderblock admin role …`.
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Give a user a role in a project.
    Add {
        /// User name or id.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        grant: Grant,
    },
    /// Take a role of a user in a project away.
    Remove {
        /// User name or id.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        grant: Grant,
    },
    /// List role assignments.
    List {
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
}

/// `cinderblock admin credential …`.
#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Create an AK/SK pair for a user in one of its projects; prints both keys, the secret
    /// key only this once.
    Create {
        /// User name or id.
        #[arg(long)]
        user: String,
        /// Project name or id (the user must have a role there).
        #[arg(long)]
        project: String,
    },
    /// List credentials (access keys only).
    List {
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
    },
    /// Delete a credential.
    Delete {
        /// Access key.
        access_key: String,
    },
}

/// Run one admin command against the configured database (migrating it first).
pub async fn run(config: &Config, cmd: AdminCommand) -> Result<()> {
    let db = crate::app::open_db(config).await?;
    let r = run_with(&db, config, cmd).await;
    db.close().await;
    r
}

fn out(line: impl AsRef<str>) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{}", line.as_ref());
}

fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out(parts.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

async fn run_with(db: &crate::store::Db, config: &Config, cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::Project(ProjectCommand::Create { name, description }) => {
            let p = ids::create_project(db, &name, description.as_deref()).await?;
            out(&p.id);
        }
        AdminCommand::Project(ProjectCommand::List) => {
            let rows = db
                .list_projects()
                .await?
                .into_iter()
                .map(|p| {
                    vec![
                        p.id,
                        p.name,
                        if p.enabled { "yes".into() } else { "no".into() },
                        p.description.unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["ID", "NAME", "ENABLED", "DESCRIPTION"], rows);
        }
        AdminCommand::Project(ProjectCommand::Disable { project }) => {
            let p = ids::set_project_enabled(db, &Ref::guess(&project), false).await?;
            eprintln!("disabled project {} ({})", p.name, p.id);
        }
        AdminCommand::Project(ProjectCommand::Enable { project }) => {
            let p = ids::set_project_enabled(db, &Ref::guess(&project), true).await?;
            eprintln!("enabled project {} ({})", p.name, p.id);
        }
        AdminCommand::Project(ProjectCommand::Delete { project }) => {
            let p = ids::delete_project(db, &Ref::guess(&project)).await?;
            eprintln!("deleted project {} ({})", p.name, p.id);
        }
        AdminCommand::User(UserCommand::Create { name, grant }) => {
            let password = read_password()?;
            let u = ids::create_user(db, &name, &password, &Ref::guess(&grant.project), grant.role).await?;
            out(&u.id);
        }
        AdminCommand::User(UserCommand::List) => {
            let assignments = db.list_role_assignments(None, None).await?;
            let rows = db
                .list_users()
                .await?
                .into_iter()
                .map(|u| {
                    let roles: Vec<String> = assignments
                        .iter()
                        .filter(|a| a.user_id == u.id)
                        .map(|a| format!("{}:{}", a.project_name, a.role))
                        .collect();
                    vec![u.id, u.name, if u.enabled { "yes".into() } else { "no".into() }, roles.join(",")]
                })
                .collect();
            table(&["ID", "NAME", "ENABLED", "ROLES"], rows);
        }
        AdminCommand::User(UserCommand::SetPassword { user }) => {
            let password = read_password()?;
            let u = ids::set_password(db, &Ref::guess(&user), &password).await?;
            eprintln!("password of {} changed", u.name);
        }
        AdminCommand::User(UserCommand::Disable { user }) => {
            let u = ids::find_user(db, &Ref::guess(&user)).await?;
            let u = ids::update_user(db, &u.id, ids::UserUpdate { enabled: Some(false), ..Default::default() }).await?;
            eprintln!("disabled user {} ({}); its tokens are ended", u.name, u.id);
        }
        AdminCommand::User(UserCommand::Enable { user }) => {
            let u = ids::find_user(db, &Ref::guess(&user)).await?;
            let u = ids::update_user(db, &u.id, ids::UserUpdate { enabled: Some(true), ..Default::default() }).await?;
            eprintln!("enabled user {} ({})", u.name, u.id);
        }
        AdminCommand::User(UserCommand::Delete { user }) => {
            let u = ids::delete_user(db, &Ref::guess(&user)).await?;
            eprintln!("deleted user {} ({})", u.name, u.id);
        }
        AdminCommand::Role(RoleCommand::Add { user, grant }) => {
            let added = ids::grant_role(db, &Ref::guess(&user), &Ref::guess(&grant.project), grant.role).await?;
            eprintln!("{}", if added { "role added" } else { "the user already has this role" });
        }
        AdminCommand::Role(RoleCommand::Remove { user, grant }) => {
            let removed = ids::revoke_role(db, &Ref::guess(&user), &Ref::guess(&grant.project), grant.role).await?;
            if !removed {
                return Err(Error::not_found("the user does not have this role in this project"));
            }
            eprintln!("role removed");
        }
        AdminCommand::Role(RoleCommand::List { user, project }) => {
            let user_id = match user {
                Some(u) => Some(ids::find_user(db, &Ref::guess(&u)).await?.id),
                None => None,
            };
            let project_id = match project {
                Some(p) => Some(ids::find_project(db, &Ref::guess(&p)).await?.id),
                None => None,
            };
            let rows = db
                .list_role_assignments(user_id.as_deref(), project_id.as_deref())
                .await?
                .into_iter()
                .map(|a| vec![a.user_name, a.project_name, a.role.to_string()])
                .collect();
            table(&["USER", "PROJECT", "ROLE"], rows);
        }
        AdminCommand::Credential(CredentialCommand::Create { user, project }) => {
            let (c, secret) = ids::create_credential(db, config, &Ref::guess(&user), &Ref::guess(&project)).await?;
            out(format!("access_key: {}", c.access_key));
            out(format!("secret_key: {secret}"));
            eprintln!("store the secret key now: it cannot be shown again");
        }
        AdminCommand::Credential(CredentialCommand::List { user }) => {
            let user_id = match user {
                Some(u) => Some(ids::find_user(db, &Ref::guess(&u)).await?.id),
                None => None,
            };
            let users = db.list_users().await?;
            let projects = db.list_projects().await?;
            let rows = db
                .list_credentials(user_id.as_deref())
                .await?
                .into_iter()
                .map(|c| {
                    let user = users.iter().find(|u| u.id == c.user_id).map(|u| u.name.clone()).unwrap_or(c.user_id);
                    let project =
                        projects.iter().find(|p| p.id == c.project_id).map(|p| p.name.clone()).unwrap_or(c.project_id);
                    vec![c.access_key, user, project, c.created_at]
                })
                .collect();
            table(&["ACCESS_KEY", "USER", "PROJECT", "CREATED"], rows);
        }
        AdminCommand::Credential(CredentialCommand::Delete { access_key }) => {
            ids::delete_credential(db, &access_key).await?;
            eprintln!("deleted credential {access_key}");
        }
    }
    Ok(())
}

/// Read a password: one line from stdin (the trailing newline dropped). On a terminal, prompt
/// twice without echo.
fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = prompt_hidden("Password: ")?;
        let again = prompt_hidden("Repeat password: ")?;
        if first != again {
            return Err(Error::invalid("EVS.5400", "the passwords do not match"));
        }
        return Ok(first);
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| Error::internal(format!("cannot read stdin: {e}")))?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err(Error::invalid("EVS.5400", "no password on stdin"));
    }
    Ok(pw)
}

fn prompt_hidden(prompt: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
    }
    eprintln!();
    r.map_err(|e| Error::internal(format!("cannot read the password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
