//! The operator's commands: `cinderblock status`, `volume list/show`, `job list/show` and
//! `pool list`, as tables for people or `--format json` for scripts.
//!
//! They read the database the daemon uses, through the same `--config` (as `cinderblock
//! admin` does), so they see every project and still work while the daemon is down, which is
//! when an operator needs them most. What only the running daemon knows (uptime, pool health
//! and capacity, live exports) comes from its unauthenticated `GET /readyz` at `listen` (or
//! `[metrics] listen`); when it does not answer, the output says so and shows the rest.
//! Nothing here changes anything. Allocated bytes of file-pool volumes are read from the
//! files (`st_blocks`), as `/metrics` does.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::config::{Config, DriverKind};
use crate::error::{Error, Result};
use crate::model::{Job, JobStatus, Volume};
use crate::store::{Db, ListVolumes, SortDir, VolumeFilter, VolumeSortKey};

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document for scripts.
    Json,
}

/// `cinderblock volume …`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Volumes of every project (or one), newest first, with their allocated bytes.
    List {
        /// Only this project (id).
        #[arg(long)]
        project: Option<String>,
        /// Only this status (`available`, `error`…).
        #[arg(long)]
        status: Option<String>,
        /// Only this pool.
        #[arg(long)]
        pool: Option<String>,
    },
    /// One volume of any project, with its attachments and allocation.
    Show {
        /// Volume id.
        id: String,
    },
}

/// `cinderblock job …`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Jobs of every project (or one), newest first; failed ones with their reason.
    List {
        /// Only this status: INIT, RUNNING, SUCCESS or FAIL.
        #[arg(long)]
        status: Option<String>,
        /// Only this project (id).
        #[arg(long)]
        project: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One job of any project, with its sub-jobs.
    Show {
        /// Job id.
        id: String,
        /// Wait until the job ends, with a progress bar on stderr (a line per change when
        /// stderr is not a terminal); exits non-zero when the job failed.
        #[arg(long)]
        wait: bool,
    },
}

/// `cinderblock pool …`.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// The configured pools: driver, zone, volumes, provisioned and allocated bytes, and (from
    /// the running daemon) health and capacity.
    List,
}

/// The operator commands.
#[derive(Debug)]
pub enum OpsCommand {
    /// `status`.
    Status,
    /// `volume …`.
    Volume(VolumeCommand),
    /// `job …`.
    Job(JobCommand),
    /// `pool …`.
    Pool(PoolCommand),
}

/// Run one operator command against the configured database (migrated first, as `admin`).
/// `daemon` overrides where the running daemon is asked (default: `[metrics] listen`, else
/// `listen`).
pub async fn run(config: &Config, cmd: OpsCommand, format: Format, daemon: Option<SocketAddr>) -> Result<()> {
    let db = crate::app::open_db(config).await?;
    let daemon = daemon.unwrap_or(config.metrics.listen.unwrap_or(config.listen));
    let r = run_with(&db, config, cmd, format, daemon).await;
    db.close().await;
    r
}

async fn run_with(db: &Db, config: &Config, cmd: OpsCommand, format: Format, daemon: SocketAddr) -> Result<()> {
    // An error to return once the document is printed (`job show --wait` of a failed job).
    let mut then_fail = None;
    let doc = match cmd {
        OpsCommand::Status => status(db, config, daemon).await?,
        OpsCommand::Volume(VolumeCommand::List { project, status, pool }) => {
            let filter = VolumeFilter { project_id: project, status, ..Default::default() };
            let vols = all_volumes(db, filter).await?;
            let rows: Vec<Value> = vols
                .iter()
                .filter(|v| pool.as_ref().is_none_or(|p| *p == v.pool))
                .map(|v| volume_json(config, v))
                .collect();
            json!({ "volumes": rows })
        }
        OpsCommand::Volume(VolumeCommand::Show { id }) => {
            let v = db.get_volume(None, &id).await?.ok_or_else(|| Error::not_found(format!("no volume {id:?}")))?;
            let mut doc = volume_json(config, &v);
            doc["attachments"] = v
                .attachments
                .iter()
                .map(|a| {
                    json!({
                        "id": a.id, "status": format!("{:?}", a.status).to_lowercase(),
                        "instance_uuid": a.instance_uuid, "attached_host": a.attached_host,
                    })
                })
                .collect();
            doc["metadata"] = json!(v.metadata);
            json!({ "volume": doc })
        }
        OpsCommand::Job(JobCommand::List { status, project, limit }) => {
            if limit < 1 {
                return Err(Error::invalid("EVS.5400", "--limit must be at least 1"));
            }
            let status = status.map(|s| s.to_ascii_uppercase());
            let jobs = db.list_jobs(status.as_deref(), project.as_deref(), limit).await?;
            json!({ "jobs": jobs.iter().map(job_json).collect::<Vec<_>>() })
        }
        OpsCommand::Job(JobCommand::Show { id, wait }) => {
            let j = db.get_job(None, &id).await?.ok_or_else(|| Error::not_found(format!("no job {id:?}")))?;
            let j = if wait { wait_for_job(db, j).await? } else { j };
            if wait && j.status == JobStatus::Fail {
                let why = j.fail_reason.clone().unwrap_or_else(|| "no reason recorded".into());
                then_fail = Some(Error::internal(format!("job {} ({}) failed: {why}", j.id, j.kind.as_str())));
            }
            let mut doc = job_json(&j);
            doc["entities"] = serde_json::from_str(&j.entities).unwrap_or(Value::Null);
            doc["sub_jobs"] = db.sub_jobs(&j.id).await?.iter().map(job_json).collect();
            json!({ "job": doc })
        }
        OpsCommand::Pool(PoolCommand::List) => {
            let daemon = probe_daemon(daemon).await;
            json!({ "pools": pools_json(db, config, daemon.as_ref().ok()).await? })
        }
    };
    match format {
        Format::Json => out(&serde_json::to_string_pretty(&doc).unwrap_or_default()),
        Format::Table => print_table(&doc),
    }
    then_fail.map_or(Ok(()), Err)
}

/// Every matching volume, newest first.
async fn all_volumes(db: &Db, filter: VolumeFilter) -> Result<Vec<Volume>> {
    let page = db
        .list_volumes(&ListVolumes {
            filter,
            sort_key: VolumeSortKey::CreatedAt,
            sort_dir: SortDir::Desc,
            limit: None,
            offset: 0,
            marker: None,
            with_count: false,
        })
        .await?;
    Ok(page.volumes)
}

/// The file of a file-pool volume (`<path>/volumes/<id>.raw`); none for LVM and RBD pools.
fn volume_file(config: &Config, v: &Volume) -> Option<PathBuf> {
    let p = config.pools.iter().find(|p| p.name == v.pool)?;
    (p.driver == DriverKind::File).then(|| p.path.join("volumes").join(format!("{}.raw", v.id)))
}

/// Bytes a volume's file holds on disk; `None` for LVM volumes or a missing file.
fn allocated(config: &Config, v: &Volume) -> Option<u64> {
    let f = volume_file(config, v)?;
    std::fs::metadata(f).ok().map(|m| m.blocks() * 512)
}

fn volume_json(config: &Config, v: &Volume) -> Value {
    json!({
        "id": v.id, "project_id": v.project_id, "name": v.name, "status": v.status.as_str(),
        "size_gb": v.size_gb, "allocated_bytes": allocated(config, v), "pool": v.pool,
        "volume_type": v.volume_type_name, "availability_zone": v.availability_zone,
        "attached": !v.attachments.is_empty(), "created_at": v.created_at,
    })
}

/// How often `job show --wait` looks at the job.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Poll `job` until it ends (SUCCESS or FAIL), drawing its progress on stderr.
async fn wait_for_job(db: &Db, mut job: Job) -> Result<Job> {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    let mut shown: Option<(JobStatus, Option<u8>)> = None;
    loop {
        let state = (job.status, job.progress_percent());
        if shown != Some(state) {
            let line = progress_line(&job);
            let mut err = std::io::stderr().lock();
            let _ = if tty { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") };
            let _ = err.flush();
            shown = Some(state);
        }
        if matches!(job.status, JobStatus::Success | JobStatus::Fail) {
            break;
        }
        tokio::time::sleep(WAIT_POLL).await;
        job = db.get_job(None, &job.id).await?.ok_or_else(|| Error::not_found(format!("job {} vanished", job.id)))?;
    }
    if tty {
        eprintln!();
    }
    Ok(job)
}

/// `createVolume 3f2a… [##########----------]  50% RUNNING`.
fn progress_line(job: &Job) -> String {
    const WIDTH: usize = 30;
    let head = format!("{} {}", job.kind.as_str(), job.id);
    match job.progress_percent() {
        Some(p) => {
            let full = WIDTH * p as usize / 100;
            format!("{head} [{}{}] {p:>3}% {}", "#".repeat(full), "-".repeat(WIDTH - full), job.status.as_str())
        }
        None => format!("{head} {}", job.status.as_str()),
    }
}

fn job_json(j: &Job) -> Value {
    json!({
        "id": j.id, "project_id": j.project_id, "kind": j.kind.as_str(), "status": j.status.as_str(),
        "volume_id": j.volume_id, "begin_time": j.begin_time, "end_time": j.end_time,
        "error_code": j.error_code, "fail_reason": j.fail_reason,
        "progress": j.progress_percent().map(|p| format!("{p}%")),
    })
}

/// The configured pools with their figures; `daemon` is the running daemon's `/readyz` body.
async fn pools_json(db: &Db, config: &Config, daemon: Option<&Value>) -> Result<Vec<Value>> {
    let vols = all_volumes(db, VolumeFilter::default()).await?;
    Ok(config
        .pools
        .iter()
        .map(|p| {
            let mine: Vec<&Volume> = vols.iter().filter(|v| v.pool == p.name).collect();
            let provisioned: i64 = mine.iter().map(|v| v.size_gb.max(0)).sum::<i64>() << 30;
            let allocated: Option<u64> = match p.driver {
                DriverKind::File => Some(mine.iter().filter_map(|v| allocated(config, v)).sum()),
                DriverKind::Lvm | DriverKind::Rbd => None,
            };
            let health = daemon
                .and_then(|d| d["checks"]["pools"][&p.name].as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown (daemon not reachable)".into());
            let cap = daemon.map(|d| d["pool_capacity"][&p.name].clone()).unwrap_or(Value::Null);
            json!({
                "name": p.name, "driver": format!("{:?}", p.driver).to_lowercase(),
                "availability_zone": p.availability_zone, "volumes": mine.len(),
                "provisioned_bytes": provisioned, "allocated_bytes": allocated,
                "total_bytes": cap["total_bytes"], "free_bytes": cap["free_bytes"], "health": health,
            })
        })
        .collect())
}

async fn status(db: &Db, config: &Config, daemon: SocketAddr) -> Result<Value> {
    let daemon = probe_daemon(daemon).await;
    let counts: serde_json::Map<String, Value> =
        db.volume_status_counts().await?.into_iter().map(|(s, n)| (s, json!(n))).collect();
    let jobs: Vec<Value> = db
        .jobs_in_flight_by_kind()
        .await?
        .into_iter()
        .map(|(kind, status, n)| json!({"kind": kind, "status": status, "count": n}))
        .collect();
    let failed = db.list_jobs(Some("FAIL"), None, 5).await?;
    let (state, d) = match &daemon {
        Ok(d) => (d["status"].as_str().unwrap_or("unknown").to_string(), Some(d)),
        Err(e) => (format!("not reachable ({e})"), None),
    };
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "daemon": {
            "state": state,
            "version": d.map(|d| d["version"].clone()),
            "uptime_seconds": d.map(|d| d["uptime_seconds"].clone()),
            "exports": d.map(|d| d["exports"].clone()),
            "database": d.map(|d| d["checks"]["database"].clone()),
        },
        "pools": pools_json(db, config, d).await?,
        "volumes_by_status": counts,
        "jobs_in_flight": jobs,
        "recent_failed_jobs": failed.iter().map(job_json).collect::<Vec<_>>(),
    }))
}

/// `GET /readyz` of the running daemon at `addr` (503 is an answer too); an unspecified
/// address is reached through loopback.
async fn probe_daemon(mut addr: SocketAddr) -> std::result::Result<Value, String> {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    let get = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
        let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(1 << 20).read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str::<Value>(body).map_err(|_| format!("{addr}: not a cinderblock /readyz answer"))
    };
    match tokio::time::timeout(Duration::from_secs(3), get).await {
        Ok(r) => r,
        Err(_) => Err(format!("{addr}: no answer within 3 s")),
    }
}

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
}

/// A cell: strings bare, null as `-`, numbers and booleans as JSON prints them.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Bytes for people (`1.5 GiB`).
fn bytes(v: &Value) -> String {
    let Some(n) = v.as_u64() else { return cell(v) };
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
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

/// Rows of `items` with `cols` (`key`, or `key:bytes` for a byte count).
fn rows(items: &Value, cols: &[&str]) -> Vec<Vec<String>> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|it| {
                    cols.iter()
                        .map(|c| match c.split_once(':') {
                            Some((k, "bytes")) => bytes(&it[k]),
                            _ => cell(&it[*c]),
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

const POOL_COLS: &[&str] = &[
    "name",
    "driver",
    "availability_zone",
    "health",
    "volumes",
    "provisioned_bytes:bytes",
    "allocated_bytes:bytes",
    "total_bytes:bytes",
    "free_bytes:bytes",
];
const POOL_HEAD: &[&str] =
    &["POOL", "DRIVER", "ZONE", "HEALTH", "VOLUMES", "PROVISIONED", "ALLOCATED", "TOTAL", "FREE"];
const JOB_COLS: &[&str] = &["id", "kind", "status", "project_id", "volume_id", "begin_time", "end_time", "fail_reason"];
const JOB_HEAD: &[&str] = &["ID", "KIND", "STATUS", "PROJECT", "VOLUME", "BEGIN", "END", "REASON"];

/// Print a command's JSON document for people.
fn print_table(doc: &Value) {
    if let Some(v) = doc.get("volumes") {
        let cols = ["id", "project_id", "name", "status", "size_gb", "allocated_bytes:bytes", "pool", "volume_type"];
        table(&["ID", "PROJECT", "NAME", "STATUS", "SIZE_GB", "ALLOCATED", "POOL", "TYPE"], rows(v, &cols));
    } else if let Some(j) = doc.get("jobs") {
        table(JOB_HEAD, rows(j, JOB_COLS));
    } else if let Some(p) = doc.get("pools").filter(|_| doc.get("daemon").is_none()) {
        table(POOL_HEAD, rows(p, POOL_COLS));
    } else if let Some(one) = doc.get("volume").or_else(|| doc.get("job")) {
        let Some(map) = one.as_object() else { return };
        let width = map.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in map {
            let text = match (k.as_str(), v) {
                ("allocated_bytes", v) => bytes(v),
                (_, Value::Array(a)) if a.is_empty() => "-".into(),
                (_, Value::Array(_) | Value::Object(_)) => v.to_string(),
                _ => cell(v),
            };
            out(&format!("{k:<width$}  {text}"));
        }
    } else if let Some(d) = doc.get("daemon") {
        out(&format!("cinderblock {}", cell(&doc["version"])));
        let uptime = d["uptime_seconds"].as_u64().map(|s| format!(", up {}", uptime(s))).unwrap_or_default();
        out(&format!("daemon: {}{uptime}", cell(&d["state"])));
        if !d["database"].is_null() {
            out(&format!("database: {}", cell(&d["database"])));
            out(&format!("exports: {}", cell(&d["exports"])));
        }
        out("");
        table(POOL_HEAD, rows(&doc["pools"], POOL_COLS));
        out("");
        let counts: Vec<String> = doc["volumes_by_status"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect())
            .unwrap_or_default();
        out(&format!("volumes: {}", if counts.is_empty() { "none".into() } else { counts.join(", ") }));
        let jobs: Vec<String> = doc["jobs_in_flight"]
            .as_array()
            .map(|a| a.iter().map(|j| format!("{} {} {}", cell(&j["kind"]), cell(&j["status"]), j["count"])).collect())
            .unwrap_or_default();
        out(&format!("jobs in flight: {}", if jobs.is_empty() { "none".into() } else { jobs.join(", ") }));
        if doc["recent_failed_jobs"].as_array().is_some_and(|a| !a.is_empty()) {
            out("");
            out("recent failed jobs:");
            table(JOB_HEAD, rows(&doc["recent_failed_jobs"], JOB_COLS));
        }
    }
}

fn uptime(s: u64) -> String {
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_cells_read_well() {
        assert_eq!(bytes(&json!(512)), "512 B");
        assert_eq!(bytes(&json!(1536u64 << 20)), "1.5 GiB");
        assert_eq!(bytes(&Value::Null), "-");
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(uptime(3700), "1h 1m");
    }
}
