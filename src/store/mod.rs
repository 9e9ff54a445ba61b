//! The only place SQL lives. One `AnyPool` serves SQLite and PostgreSQL with the same `$N`
//! queries; each backend has its own migration folder.
//!
//! SQLite has one writer: every write transaction first takes an in-process lock, so concurrent
//! creates queue instead of failing with "database is locked" (real Cinder fails ~5% of
//! concurrent creates on SQLite). PostgreSQL transactions run concurrently and rely on row-level
//! compare-and-set updates.

mod attachments;
mod catalog;
mod client_tokens;
// groups: generic volume groups.
mod groups;
mod identity;
mod snapshot_groups;
mod snapshot_policies;
// images: the built-in image service.
mod images;
mod jobs;
// actions: user messages.
mod messages;
// misc: encryption types, default types.
mod misc;
// qos: QoS specs.
mod qos;
// ops: figures for the status line, health checks and metrics.
mod ops;
mod quotas;
// replays: the AK/SK replay cache.
mod replays;
// services: os-services rows and per-host usage.
mod services;
mod snapshots;
mod sql;
mod tags;
mod transfers;
// ui: dashboard sessions and overview figures.
mod ui;
mod volumes;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

pub use attachments::{AttachmentFilter, VolumeFlag};
// groups: generic volume groups.
pub use groups::{GroupTypeDelete, SnapshotSet};
pub use jobs::NewJob;
// misc: encryption types, default types.
pub use misc::EncryptionWrite;
// services: per-host usage rows.
pub use services::ProjectUsage;
// qos: QoS specs.
pub use ops::OpsCounts;
pub use qos::QosWrite;
pub use snapshots::{ListSnapshots, SnapshotFilter, SnapshotSortKey};
pub use sql::Arg;
pub use tags::{TagMatch, TagQuery, TagResource};
pub use transfers::TransferRow;
pub use ui::UiSessionRecord;
pub use volumes::{ListVolumes, SortDir, VolumeFilter, VolumePage, VolumeSortKey};

/// Which database engine the URL selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Handle to the metadata database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    writer: Option<Arc<Mutex<()>>>,
}

/// A write transaction; on SQLite it also holds the single-writer lock until commit or drop.
pub struct WriteTx<'a> {
    tx: Transaction<'static, Any>,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    /// Commit the transaction.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
    /// The connection to run statements on.
    pub fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// Compare-and-set the `status` of row `id` of `table` (a fixed table name, never input):
    /// succeeds only when the current status is one of `from`. True when the row changed.
    pub(crate) async fn cas_status(
        &mut self,
        table: &str,
        id: &str,
        from: &[&str],
        to: &str,
        now: &str,
    ) -> Result<bool> {
        let mut sql = sql::Sql::new(&format!("UPDATE {table} SET status = "));
        sql.bind(Arg::Text(to.into()))
            .push(", updated_at = ")
            .bind(Arg::Text(now.into()))
            .push(" WHERE id = ")
            .bind(Arg::Text(id.into()))
            .push(" AND status IN ('' ");
        for s in from {
            sql.push(", ").bind(Arg::Text(s.to_string()));
        }
        sql.push(")");
        Ok(sql.query().execute(self.conn()).await?.rows_affected() == 1)
    }

    /// Replace every `(key, value)` row of `owner` in a key/value side table (`table` and
    /// `owner_col` are fixed names, never input): metadata of volumes and snapshots, extra specs.
    pub(crate) async fn replace_key_values(
        &mut self,
        table: &str,
        owner_col: &str,
        owner: &str,
        pairs: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE {owner_col} = $1")))
            .bind(owner)
            .execute(self.conn())
            .await?;
        let insert = format!("INSERT INTO {table} ({owner_col}, key, value) VALUES ($1, $2, $3)");
        for (k, v) in pairs {
            sqlx::query(sqlx::AssertSqlSafe(insert.clone())).bind(owner).bind(k).bind(v).execute(self.conn()).await?;
        }
        Ok(())
    }

    /// Set `name` and `description` of row `id` of `table` (each `Some` replaces, `None` keeps)
    /// and touch `updated_at`.
    pub(crate) async fn update_text(
        &mut self,
        table: &str,
        id: &str,
        name: Option<Option<String>>,
        description: Option<Option<String>>,
        now: &str,
    ) -> Result<()> {
        let mut sql = sql::Sql::new(&format!("UPDATE {table} SET updated_at = "));
        sql.bind(Arg::Text(now.into()));
        if let Some(n) = name {
            sql.push(", name = ").bind(Arg::OptText(n));
        }
        if let Some(d) = description {
            sql.push(", description = ").bind(Arg::OptText(d));
        }
        sql.push(" WHERE id = ").bind(Arg::Text(id.into()));
        sql.query().execute(self.conn()).await?;
        Ok(())
    }

    /// Remove a row of `table` (`volumes` or `snapshots`) with its metadata (table
    /// `volume_metadata` / `snapshot_metadata`, keyed by `volume_id` / `snapshot_id`) and its
    /// tags (`resource_type` is the table name).
    pub(crate) async fn delete_row_with_metadata_and_tags(&mut self, table: &'static str, id: &str) -> Result<()> {
        let singular = table.strip_suffix('s').unwrap_or(table);
        let metadata = format!("DELETE FROM {singular}_metadata WHERE {singular}_id = $1");
        sqlx::query(sqlx::AssertSqlSafe(metadata)).bind(id).execute(self.conn()).await?;
        sqlx::query("DELETE FROM tags WHERE resource_type = $1 AND resource_id = $2")
            .bind(table)
            .bind(id)
            .execute(self.conn())
            .await?;
        let row = format!("DELETE FROM {table} WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(row)).bind(id).execute(self.conn()).await?;
        Ok(())
    }
}

static MIGRATOR_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MIGRATOR_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connect to `url` (`sqlite://path` or `postgres://…`). A SQLite file and its directory
    /// are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::internal(format!("database.url must start with sqlite:// or postgres://, got {url:?}")));
        };
        let url = match backend {
            Backend::Sqlite => sqlite_url_with_create(url)?,
            Backend::Postgres => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url).map_err(|e| Error::internal(format!("database.url: {e}")))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            // sqlx pings every connection it hands out by default: one extra round trip per
            // query (measured: a third of GET throughput). Ping only connections idle long
            // enough that the server may have closed them.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > Duration::from_secs(30) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            // A transaction dropped without commit queues its ROLLBACK; when that ROLLBACK
            // fails (SQLite rolls back by itself on SQLITE_FULL, then ROLLBACK finds no
            // transaction), sqlx keeps counting the connection as inside one and every later
            // BEGIN on it fails. Flush the rollback here and close any connection still in a
            // transaction instead of handing it out again. Committed connections skip this.
            .after_release(|conn, _meta| {
                Box::pin(async move {
                    if sqlx::Connection::is_in_transaction(conn) {
                        sqlx::Connection::ping(conn).await?;
                        if sqlx::Connection::is_in_transaction(conn) {
                            tracing::warn!("closing a database connection left inside a transaction");
                            return Ok(false);
                        }
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; NORMAL sync is durable
                        // against process crashes (kill -9), which is what jobs rely on.
                        conn.execute(
                            "PRAGMA busy_timeout=10000; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                             PRAGMA foreign_keys=ON; PRAGMA cache_size=-1024;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| Error::internal(format!("cannot open database: {e}")))?;
        let writer = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Db { pool, backend, writer })
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Run pending migrations for this backend.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => MIGRATOR_SQLITE.run(&self.pool).await?,
            Backend::Postgres => MIGRATOR_POSTGRES.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Begin a write transaction (taking the single-writer lock on SQLite).
    pub async fn begin_write(&self) -> Result<WriteTx<'_>> {
        let guard = match &self.writer {
            Some(m) => Some(m.lock().await),
            None => None,
        };
        // SQLite: take the write lock at BEGIN (waiting up to busy_timeout), not at the first
        // write. A deferred transaction that read first cannot wait for the lock when another
        // connection (another process: the admin CLI, a second daemon on the same file)
        // committed meanwhile: it fails at once with "database is locked". The in-process mutex
        // above orders our own writers; IMMEDIATE covers everyone else.
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _guard: guard })
    }

    /// The pool for reads.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Close every connection (at shutdown, so SQLite checkpoints its WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Create the database file 0600 when it is missing (it holds password hashes and encrypted
/// secrets; SQLite would create it 0644 under the usual umask). SQLite gives its `-wal` and
/// `-shm` files the database file's mode. An existing file that others can read is reported.
fn create_private_file(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(md) = std::fs::metadata(path) {
                if md.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the database file is readable by others; chmod 600 it");
                }
            }
            Ok(())
        }
        Err(e) => Err(Error::internal(format!("cannot create {}: {e}", path.display()))),
    }
}

/// Make sure a `sqlite://` URL creates its file (0600), and create the parent directory.
fn sqlite_url_with_create(url: &str) -> Result<String> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return Ok(url.to_string());
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    create_private_file(std::path::Path::new(path))?;
    if url.contains("mode=") {
        Ok(url.to_string())
    } else if url.contains('?') {
        Ok(format!("{url}&mode=rwc"))
    } else {
        Ok(format!("{url}?mode=rwc"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    /// Issue 17.12: a new SQLite database (password hashes, encrypted secrets) is 0600, and so
    /// are the WAL files SQLite makes beside it.
    #[tokio::test]
    async fn new_sqlite_database_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("cb.db");
        let db = super::Db::connect(&format!("sqlite://{}", path.display()), 2).await.expect("connect");
        db.migrate().await.expect("migrate");
        for p in [path.clone(), path.with_extension("db-wal"), path.with_extension("db-shm")] {
            let mode = std::fs::metadata(&p).expect("file exists").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
        }
        db.close().await;
    }
}
