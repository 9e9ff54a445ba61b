//! Prometheus metrics (`GET /metrics`, OpenMetrics text through the `prometheus-client` crate).
//!
//! Counted as they happen: API requests and their latency by method, route template and status
//! ([`observe_http`], called by the request middleware), and finished jobs' durations by kind
//! and outcome ([`observe_job`], called by the job runner). Read at scrape time ([`render`]):
//! queued and running jobs by kind (from the database, so every node's queue counts), each
//! pool's capacity, free, allocated and provisioned bytes and over-subscription, per-volume
//! allocated bytes (only with `[metrics] per_volume = true`: one series per volume), NBD
//! connections, bytes and requests per pool, and attached loop devices.
//!
//! Names follow the Prometheus conventions: `cinderblock_` prefix, `_total` counters, `_bytes`
//! and `_seconds` units.

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model::GIB;
use crate::service::Services;

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of [`to_prometheus_text`]'s text.
pub const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The same metrics in the classic Prometheus text format (0.0.4), for scrapers and tools
/// that do not ask for OpenMetrics (`promtool check metrics`, `curl`): a counter family is
/// named with its `_total` suffix, and there is no `# EOF` line.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) { "_total" } else { "" };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    pool: String,
    volume: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NbdDirLabels {
    pool: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NbdOpLabels {
    pool: String,
    op: String,
}

type FGauge = Gauge<f64, AtomicU64>;
type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 16.0])
}

fn job_histogram() -> Histogram {
    // 10 ms … ~1 h.
    Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0])
}

struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistFamily<HttpLabels>,
    job_duration: HistFamily<JobLabels>,
    jobs_queued: Family<KindLabels, Gauge>,
    jobs_running: Family<KindLabels, Gauge>,
    pool_capacity: Family<PoolLabels, Gauge>,
    pool_free: Family<PoolLabels, Gauge>,
    pool_allocated: Family<PoolLabels, Gauge>,
    pool_provisioned: Family<PoolLabels, Gauge>,
    pool_over_subscription: Family<PoolLabels, FGauge>,
    pool_max_over_subscription: Family<PoolLabels, FGauge>,
    pool_up: Family<PoolLabels, Gauge>,
    volume_allocated: Family<VolumeLabels, Gauge>,
    nbd_open: Family<PoolLabels, Gauge>,
    nbd_connections: Family<PoolLabels, Counter>,
    nbd_bytes: Family<NbdDirLabels, Counter>,
    nbd_ops: Family<NbdOpLabels, Counter>,
    loop_devices: Gauge,
    exports: Gauge,
    /// Scrapes are serialised: each rebuilds the scrape-time families.
    scrape: tokio::sync::Mutex<()>,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("cinderblock");
        let m = Metrics {
            registry: Registry::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            job_duration: Family::new_with_constructor(job_histogram),
            jobs_queued: Family::default(),
            jobs_running: Family::default(),
            pool_capacity: Family::default(),
            pool_free: Family::default(),
            pool_allocated: Family::default(),
            pool_provisioned: Family::default(),
            pool_over_subscription: Family::default(),
            pool_max_over_subscription: Family::default(),
            pool_up: Family::default(),
            volume_allocated: Family::default(),
            nbd_open: Family::default(),
            nbd_connections: Family::default(),
            nbd_bytes: Family::default(),
            nbd_ops: Family::default(),
            loop_devices: Gauge::default(),
            exports: Gauge::default(),
            scrape: tokio::sync::Mutex::new(()),
        };
        r.register(
            "http_requests",
            "API requests answered, by method, route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer an API request, by method, route template and status",
            m.http_duration.clone(),
        );
        r.register(
            "job_duration_seconds",
            "Time from a job's claim to its outcome, by kind and outcome (SUCCESS or FAIL)",
            m.job_duration.clone(),
        );
        r.register("jobs_queued", "Jobs waiting for a worker (every node), by kind", m.jobs_queued.clone());
        r.register("jobs_running", "Jobs claimed by a worker (every node), by kind", m.jobs_running.clone());
        r.register("pool_capacity_bytes", "Size of the pool's file system", m.pool_capacity.clone());
        r.register("pool_free_bytes", "Space available to the pool on its file system", m.pool_free.clone());
        r.register(
            "pool_allocated_bytes",
            "Bytes allocated on disk to the pool's volume files (shared reflink extents count in each file)",
            m.pool_allocated.clone(),
        );
        r.register(
            "pool_provisioned_bytes",
            "Sum of the nominal sizes of the pool's volumes",
            m.pool_provisioned.clone(),
        );
        r.register(
            "pool_over_subscription_ratio",
            "Provisioned bytes divided by capacity",
            m.pool_over_subscription.clone(),
        );
        r.register(
            "pool_max_over_subscription_ratio",
            "The configured limit of pool_over_subscription_ratio",
            m.pool_max_over_subscription.clone(),
        );
        r.register("pool_up", "1 when the pool's storage answers, else 0", m.pool_up.clone());
        r.register(
            "volume_allocated_bytes",
            "Bytes allocated on disk to one volume (only with [metrics] per_volume = true)",
            m.volume_allocated.clone(),
        );
        r.register("nbd_open_connections", "NBD connections in transmission, by pool", m.nbd_open.clone());
        r.register("nbd_connections", "NBD connections that entered transmission, by pool", m.nbd_connections.clone());
        r.register(
            "nbd_bytes",
            "Bytes of accepted NBD READ and WRITE requests, by pool and direction",
            m.nbd_bytes.clone(),
        );
        r.register("nbd_requests", "Accepted NBD requests, by pool and command", m.nbd_ops.clone());
        r.register("loop_devices", "Loop devices attached to volumes", m.loop_devices.clone());
        r.register("exports", "Live exports (NBD and loop)", m.exports.clone());
        Metrics { registry: r, ..m }
    }
}

/// Count one answered API request (`route` is the matched template, or `unmatched`).
pub fn observe_http(method: &str, route: &str, status: u16, seconds: f64) {
    let m = metrics();
    let labels = HttpLabels { method: method.to_string(), route: route.to_string(), status };
    m.http_requests.get_or_create(&labels).inc();
    m.http_duration.get_or_create(&labels).observe(seconds);
}

/// Count one finished job (`outcome`: `SUCCESS` or `FAIL`).
pub fn observe_job(kind: &str, outcome: &str, seconds: f64) {
    let labels = JobLabels { kind: kind.to_string(), outcome: outcome.to_string() };
    metrics().job_duration.get_or_create(&labels).observe(seconds);
}

fn set_counter(c: &Counter, v: u64) {
    c.inner().store(v, Ordering::Relaxed);
}

/// Bytes allocated on disk to a file or device (0 when it cannot be read).
fn allocated(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

/// Refresh the scrape-time figures and encode every metric.
pub async fn render(svc: &Services) -> crate::error::Result<String> {
    let m = metrics();
    let _one = m.scrape.lock().await;

    // Jobs in flight, from the database.
    m.jobs_queued.clear();
    m.jobs_running.clear();
    for (kind, status, n) in svc.db.jobs_in_flight_by_kind().await? {
        let family = if status == "INIT" { &m.jobs_queued } else { &m.jobs_running };
        family.get_or_create(&KindLabels { kind }).set(n);
    }

    // Pools and volumes: provisioned from the rows, allocation and capacity from the files.
    let sizes = svc.db.volume_sizes().await?;
    let per_volume = svc.config.metrics.per_volume;
    let pools: Vec<_> = svc.pools.values().cloned().collect();
    let stats = tokio::task::spawn_blocking(move || {
        pools
            .iter()
            .map(|p| {
                let name = p.config.name.clone();
                let cap = p.driver.capacity().ok();
                let mut pool_alloc = 0u64;
                let mut provisioned = 0u64;
                let mut vols = Vec::new();
                for (pool, id, gb) in sizes.iter().filter(|(pool, _, _)| *pool == name) {
                    provisioned += (*gb).max(0) as u64 * GIB;
                    let Ok(uuid) = uuid::Uuid::try_parse(id) else { continue };
                    let a = allocated(&p.driver.export_path(uuid));
                    pool_alloc += a;
                    if per_volume {
                        vols.push((pool.clone(), id.clone(), a));
                    }
                }
                (name, p.config.max_over_subscription_ratio, cap, pool_alloc, provisioned, vols)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| crate::error::Error::internal(format!("metrics task: {e}")))?;
    m.volume_allocated.clear();
    for (name, max_ratio, cap, alloc, provisioned, vols) in stats {
        let l = PoolLabels { pool: name };
        m.pool_up.get_or_create(&l).set(i64::from(cap.is_some()));
        let (total, free) = cap.map(|c| (c.total_bytes, c.free_bytes)).unwrap_or((0, 0));
        m.pool_capacity.get_or_create(&l).set(total as i64);
        m.pool_free.get_or_create(&l).set(free as i64);
        m.pool_allocated.get_or_create(&l).set(alloc as i64);
        m.pool_provisioned.get_or_create(&l).set(provisioned as i64);
        let ratio = if total > 0 { provisioned as f64 / total as f64 } else { 0.0 };
        m.pool_over_subscription.get_or_create(&l).set(ratio);
        m.pool_max_over_subscription.get_or_create(&l).set(max_ratio);
        for (pool, volume, a) in vols {
            m.volume_allocated.get_or_create(&VolumeLabels { pool, volume }).set(a as i64);
        }
    }

    // Exports.
    if let Some(ex) = &svc.exports {
        m.loop_devices.set(ex.loop_count() as i64);
        m.exports.set(ex.count() as i64);
        for g in ex.nbd_stats() {
            let pool = if g.group.is_empty() { "-".to_string() } else { g.group.clone() };
            let l = PoolLabels { pool: pool.clone() };
            m.nbd_open.get_or_create(&l).set(g.open_connections as i64);
            set_counter(&m.nbd_connections.get_or_create(&l), g.stats.connections_total.load(Ordering::Relaxed));
            for (direction, v) in [("read", &g.stats.read_bytes), ("write", &g.stats.write_bytes)] {
                let l = NbdDirLabels { pool: pool.clone(), direction: direction.into() };
                set_counter(&m.nbd_bytes.get_or_create(&l), v.load(Ordering::Relaxed));
            }
            for (op, v) in crate::export::nbd::OP_NAMES.iter().zip(g.stats.ops.iter()) {
                let n = v.load(Ordering::Relaxed);
                if n > 0 {
                    let l = NbdOpLabels { pool: pool.clone(), op: op.to_string() };
                    set_counter(&m.nbd_ops.get_or_create(&l), n);
                }
            }
        }
    }

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &m.registry)
        .map_err(|e| crate::error::Error::internal(format!("encoding metrics: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_encode_with_conventional_names() {
        observe_http("GET", "/v3/{project_id}/volumes", 200, 0.003);
        observe_job("createVolume", "SUCCESS", 0.2);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &metrics().registry).expect("encode");
        assert!(out.contains(
            "cinderblock_http_requests_total{method=\"GET\",route=\"/v3/{project_id}/volumes\",status=\"200\"} 1"
        ));
        assert!(out.contains("cinderblock_http_request_duration_seconds_bucket{"));
        assert!(out.contains("cinderblock_job_duration_seconds_count{kind=\"createVolume\",outcome=\"SUCCESS\"} 1"));
        assert!(out.ends_with("# EOF\n"));
        let classic = to_prometheus_text(&out);
        assert!(classic.contains("# TYPE cinderblock_http_requests_total counter\n"), "{classic}");
        assert!(classic.contains("# HELP cinderblock_http_requests_total API requests"), "{classic}");
        assert!(classic.contains("# TYPE cinderblock_job_duration_seconds histogram\n"), "{classic}");
        assert!(!classic.contains("# EOF"));
    }
}
