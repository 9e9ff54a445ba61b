//! Wiring: open the database, run migrations, open pools, recover jobs, start workers, serve
//! HTTP until SIGTERM/SIGINT, then stop workers and close the database.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{AuthMode, Config, DriverKind};
use crate::driver::{Driver, FileDriver, LvmDriver, LvmSettings};
use crate::error::{Error, Result};
use crate::jobs::{self, runner_token::CancelToken};
use crate::service::{Catalog, ExportManager, PoolRuntime, Services};
use crate::store::Db;

/// Open the database and run migrations.
pub async fn open_db(config: &Config) -> Result<Db> {
    let db = Db::connect(&config.database.url, config.database.max_connections).await?;
    db.migrate().await?;
    Ok(db)
}

fn open_pools(config: &Config) -> Result<HashMap<String, PoolRuntime>> {
    let mut pools = HashMap::new();
    for p in &config.pools {
        let driver: Arc<dyn Driver> = match p.driver {
            DriverKind::File => {
                Arc::new(FileDriver::open(&p.path).map_err(|e| Error::internal(format!("pool {}: {e}", p.name)))?)
            }
            DriverKind::Lvm => {
                let l = p.lvm.clone().ok_or_else(|| Error::internal(format!("pool {}: no lvm settings", p.name)))?;
                let s = LvmSettings {
                    pool: p.name.clone(),
                    vg: l.vg,
                    thin_pool: l.thin_pool,
                    thin_pool_size_bytes: l.thin_pool_size_gb.map(|g| g << 30),
                    devices: l.devices,
                    system_dir: l.system_dir,
                    lvm_binary: l.lvm_binary,
                    max_over_subscription_ratio: p.max_over_subscription_ratio,
                    data_high_water_percent: l.data_high_water_percent,
                    metadata_high_water_percent: l.metadata_high_water_percent,
                };
                Arc::new(LvmDriver::open(s).map_err(|e| Error::internal(format!("pool {}: {e}", p.name)))?)
            }
            DriverKind::Rbd => open_rbd(p)?,
        };
        let caps = driver.capabilities();
        tracing::info!(
            pool = %p.name,
            path = %p.path.display(),
            reflink = caps.reflink,
            "pool ready{}",
            if caps.reflink { "" } else { " (no reflink: snapshots and clones will use sparse copies)" }
        );
        pools.insert(p.name.clone(), PoolRuntime { config: p.clone(), driver });
    }
    Ok(pools)
}

/// An RBD pool (cargo feature `rbd`).
#[cfg(feature = "rbd")]
fn open_rbd(p: &crate::config::PoolConfig) -> Result<Arc<dyn Driver>> {
    let r = p.rbd.clone().ok_or_else(|| Error::internal(format!("pool {}: no rbd settings", p.name)))?;
    let s = crate::driver::RbdSettings {
        pool: p.name.clone(),
        conf: r.ceph_conf,
        client_id: r.client_id,
        keyring: r.keyring,
        rbd_pool: r.pool,
        work_dir: p.path.clone(),
        object_size_bytes: r.object_size_mb << 20,
        max_clone_depth: r.max_clone_depth,
    };
    let d = crate::driver::RbdDriver::open(s).map_err(|e| Error::internal(format!("pool {}: {e}", p.name)))?;
    Ok(Arc::new(d))
}

/// Without the `rbd` feature an RBD pool cannot be opened: say how to get one.
#[cfg(not(feature = "rbd"))]
fn open_rbd(p: &crate::config::PoolConfig) -> Result<Arc<dyn Driver>> {
    Err(Error::internal(format!(
        "pool {}: driver \"rbd\" needs a cinderblock built with the cargo feature `rbd` \
         (cargo build --features rbd, with Debian's librbd-dev installed)",
        p.name
    )))
}

/// Run the daemon until a shutdown signal.
pub async fn serve(config: Config) -> Result<()> {
    crate::ops::mark_started();
    if config.auth.mode == AuthMode::Noauth && !config.listen.ip().is_loopback() && !config.auth.allow_noauth_on_network
    {
        return Err(Error::internal(format!(
            "refusing to serve noauth mode on {}: anyone who can reach it could manage every project's \
             volumes. Set [auth] mode = \"keystone\", listen on a loopback address, or set \
             [auth] allow_noauth_on_network = true if the network is trusted.",
            config.listen
        )));
    }
    let db = open_db(&config).await?;
    // Password-check limits come from this config (the first use fixes them).
    crate::service::login_limits::limits(&config.auth);
    crate::service::identity::startup_check(&db, &config).await?;
    let pools = open_pools(&config)?;
    let catalog = Catalog::load(&db, &config).await?;
    let tls_err = |e: crate::tls::TlsError| Error::internal(format!("tls: {e}"));
    let api_tls = match config.tls.files(false) {
        Some(f) if config.tls.api => Some(crate::tls::server_config(&f, &[b"http/1.1"]).map_err(tls_err)?),
        _ => None,
    };
    let nbd_tls = match config.tls.files(true) {
        Some(f) if config.tls.nbd => Some(crate::tls::server_config(&f, &[]).map_err(tls_err)?),
        _ => None,
    };
    let n = &config.nbd;
    let nbd = crate::export::nbd::NbdServer::new(crate::export::nbd::NbdConfig {
        max_connections: n.max_connections,
        max_connections_per_address: n.max_connections_per_address,
        max_connections_per_export: n.max_connections_per_export,
        max_buffered_bytes: n.max_buffered_bytes,
        idle_timeout: std::time::Duration::from_secs(n.idle_timeout_seconds),
        request_timeout: std::time::Duration::from_secs(n.request_timeout_seconds),
        tls: nbd_tls,
        ..crate::export::nbd::NbdConfig::default()
    });
    // NBD traffic is counted per pool: an export under a pool's volume directory is that pool's.
    let pool_dirs = pools
        .values()
        .filter_map(|p| Some((p.driver.export_path(uuid::Uuid::nil()).parent()?.to_path_buf(), p.config.name.clone())))
        .collect();
    let exports = Arc::new(ExportManager::start(&config.exports, nbd).await?.with_pool_dirs(pool_dirs));
    let svc = Services {
        db: db.clone(),
        config: Arc::new(config.clone()),
        pools: Arc::new(pools),
        catalog: Arc::new(catalog),
        job_notify: Arc::new(Notify::new()),
        exports: Some(exports.clone()),
    };
    jobs::recover(&svc).await?;
    svc.restore_exports().await?;
    let stop = CancelToken::new();
    let (workers, runner) = jobs::spawn_workers(svc.clone(), stop.clone());
    // Auto-snapshot policies: runs due while the daemon was down are taken now, once.
    let policy_scheduler = crate::service::spawn_policy_scheduler(svc.clone(), stop.clone());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, auth = ?config.auth.mode, "listening");
    let metrics_stop = CancelToken::new();
    let metrics_task = match config.metrics.listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::internal(format!("cannot listen for metrics on {addr}: {e}")))?;
            tracing::info!(addr = %l.local_addr()?, "metrics listening");
            let stop = metrics_stop.clone();
            Some(tokio::spawn(crate::ops::serve_metrics(l, svc.clone(), async move { stop.cancelled().await })))
        }
        None => None,
    };
    {
        // Tests and scripts read this line to learn the port; it is the one stdout line we print.
        let mut out = std::io::stdout().lock();
        let scheme = if api_tls.is_some() { "https" } else { "http" };
        let _ = writeln!(out, "cinderblock listening on {scheme}://{addr}");
        let _ = out.flush();
    }
    let trimmer = tokio::spawn(trim_memory_when_idle());
    let http = config.http.clone();
    // Every listener is bound (NBD by ExportManager::start, HTTP and metrics above): tell
    // systemd.
    let health = crate::ops::systemd::Health { svc: svc.clone(), runner };
    crate::ops::systemd::ready(&health.status_line().await);
    let health_task = crate::ops::systemd::spawn_health_task(health);
    let app = crate::api::router(svc);
    let shutdown = async {
        shutdown_signal().await;
        crate::ops::set_draining();
        crate::ops::systemd::stopping();
    };
    crate::api::listener::serve(listener, app, &http, api_tls, shutdown).await;
    tracing::info!("shutting down");
    // systemd stops watching the watchdog once the service is stopping; the drain asks it for
    // time instead.
    health_task.abort();
    let extender = crate::ops::systemd::spawn_drain_extender();
    trimmer.abort();
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    let _ = policy_scheduler.await;
    exports.shutdown().await;
    metrics_stop.cancel();
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    db.close().await;
    extender.abort();
    Ok(())
}

/// Give freed heap memory back to the system once the daemon has been idle for a while.
///
/// glibc keeps the pages of a burst (per-connection buffers, request bodies) in its heap after
/// they are freed; measured: 66 MB idle after 200 connections, 26 MB after a trim. Trimming only
/// when no request arrived for a full period keeps it off the hot path.
async fn trim_memory_when_idle() {
    use std::sync::atomic::Ordering;
    const PERIOD: std::time::Duration = std::time::Duration::from_secs(5);
    let mut seen = crate::api::REQUESTS.load(Ordering::Relaxed);
    let mut trimmed = false;
    loop {
        tokio::time::sleep(PERIOD).await;
        let now = crate::api::REQUESTS.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            trimmed = false;
        } else if !trimmed {
            // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps; it
            // takes the allocator's own locks and touches no memory we own.
            unsafe {
                nix::libc::malloc_trim(0);
            }
            trimmed = true;
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
