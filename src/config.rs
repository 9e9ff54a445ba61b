//! The daemon's configuration: one struct, read from built-in defaults, then a TOML file, then
//! `CINDERBLOCK_*` environment variables (`CINDERBLOCK_DATABASE__URL` sets `database.url`).
//!
//! Unknown keys are an error that names the key, so a typo never silently falls back to a
//! default. With no file at all the defaults give a working quick start under `./data`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Environment variables with our prefix that are not configuration keys (the test harness's
/// switches: scripts/test.sh exports them, and a daemon or test started under it must not take
/// them for unknown keys).
const NON_CONFIG_ENV: &[&str] = &[
    "require_",
    "client_venv",
    "legacy_hwsdk_venv",
    "ui_screenshots",
    "test_",
    "bin",
    "tempest",
    "fuzz",
    "vm_cache",
    "in_vm",
    "deb_",
];

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address for both APIs; port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// Name of this node; jobs it leaves running are recovered by it at the next start.
    pub node: String,
    /// Public base URL used in `links`; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Metadata database.
    pub database: DatabaseConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// Availability zones served by this node's pools are taken from the pools; this names the
    /// zone used when a request does not give one.
    pub default_availability_zone: String,
    /// Volume type used when a request does not give one (Cinder's `__DEFAULT__`).
    pub default_volume_type: String,
    /// Storage pools.
    pub pools: Vec<PoolConfig>,
    /// Job runner.
    pub jobs: JobsConfig,
    /// How attached volumes are handed out (NBD server, loop devices).
    pub exports: ExportsConfig,
    /// HTTP connection limits and timeouts.
    pub http: HttpConfig,
    /// NBD server connection limits and timeouts.
    pub nbd: NbdSettings,
    /// Default quota limits (`volumes`, `gigabytes`, `snapshots`, `per_volume_gigabytes`,
    /// `volumes_<type>`…; -1 = unlimited, the default). Quota classes and per-project limits,
    /// set through the API, override them.
    pub quotas: std::collections::BTreeMap<String, i64>,
    /// Logging filter in `tracing` syntax (`info`, `cinderblock=debug`…).
    pub log: String,
    /// Log line format: `text` for people, `json` (one object a line) for journald or a log
    /// shipper.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// images: the built-in image service and the image cache.
    #[serde(default)]
    pub images: ImagesConfig,
    /// TLS for the HTTP API and the NBD TCP listener (off unless `cert` and `key` are set).
    #[serde(default)]
    pub tls: TlsConfig,
    /// ui: the web dashboard under `/ui/`.
    #[serde(default)]
    pub ui: UiConfig,
    /// EVS auto-snapshot policies: time zone and the scheduler's clock.
    #[serde(default)]
    pub snapshot_policies: SnapshotPoliciesConfig,
}

/// `[snapshot_policies]`: the time zone policy hours are in, and the scheduler's clock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotPoliciesConfig {
    /// Offset of the policies' time zone from UTC, in minutes (`480` is UTC+8, the zone the
    /// EVS SDK documents; the default is UTC).
    pub utc_offset_minutes: i32,
    /// How often the scheduler looks for due runs, milliseconds.
    pub tick_ms: u64,
    /// Test clock: policy time runs this many times faster than real time from
    /// `clock_base` on (1 in production), so a test sees days pass in seconds. A pure function
    /// of real time, so restarts keep the same policy time.
    pub clock_scale: u32,
    /// Test clock: the real unix time (seconds) the scaled clock starts from.
    pub clock_base: i64,
}

impl Default for SnapshotPoliciesConfig {
    fn default() -> Self {
        SnapshotPoliciesConfig { utc_offset_minutes: 0, tick_ms: 1000, clock_scale: 1, clock_base: 0 }
    }
}

/// `[tls]`: certificate and key (PEM) and where they are used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Server certificate chain (PEM, the leaf first).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// Serve the HTTP API over TLS (https) on `listen` once `cert` and `key` are set.
    pub api: bool,
    /// Require STARTTLS on the NBD TCP listener (forced TLS) once `cert` and `key` are set.
    /// The NBD unix socket stays plaintext (local, guarded by its file permissions).
    pub nbd: bool,
    /// NBD: CA certificates (PEM) client certificates must chain to. A client certificate then
    /// opens only the exports attached for a host (the connector's `host`) it is valid for.
    pub client_ca: Option<PathBuf>,
    /// NBD: refuse clients without a certificate (needs `client_ca`).
    pub require_client_cert: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { cert: None, key: None, api: true, nbd: true, client_ca: None, require_client_cert: false }
    }
}

impl TlsConfig {
    /// Whether a certificate and key are configured.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }

    /// Whether the HTTP API is served over TLS.
    pub fn api_enabled(&self) -> bool {
        self.enabled() && self.api
    }

    /// Whether the NBD TCP listener requires TLS.
    pub fn nbd_enabled(&self) -> bool {
        self.enabled() && self.nbd
    }

    /// The files, for [`crate::tls::server_config`] (`None` when TLS is off).
    pub fn files(&self, with_clients: bool) -> Option<crate::tls::ServerFiles<'_>> {
        Some(crate::tls::ServerFiles {
            cert: self.cert.as_deref()?,
            key: self.key.as_deref()?,
            client_ca: if with_clients { self.client_ca.as_deref() } else { None },
            require_client_cert: with_clients && self.require_client_cert,
        })
    }
}

/// How log lines are written (to stderr, which systemd sends to the journal).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `tracing`'s human-readable lines.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `fields` (with `message`) and
    /// the enclosing `span`s (the request id).
    Json,
}

/// Prometheus metrics (`GET /metrics`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Also serve `/metrics`, `/healthz` and `/readyz` on this address, without
    /// authentication (for a scraper on a private network). On the API port `/metrics` is
    /// always there, for admins (policy action `cinderblock:metrics:get`).
    pub listen: Option<SocketAddr>,
    /// One `cinderblock_volume_allocated_bytes` series per volume (off by default: a series
    /// per volume can be many).
    pub per_volume: bool,
}

/// images: the built-in image service (`/image`, Glance v2) and the per-pool raw image cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Pool whose directory holds image files (`images/`); empty: the first pool.
    pub pool: String,
    /// Largest image upload, bytes (413 beyond).
    pub max_upload_bytes: u64,
    /// Seconds an upload may go without receiving a byte before it is abandoned.
    pub upload_idle_timeout_seconds: u64,
    /// Raw cache limit per pool, GiB of allocated space (0 = unlimited).
    pub cache_max_size_gb: u64,
    /// Raw cache limit per pool, entries (0 = unlimited).
    pub cache_max_count: u64,
    /// CPU seconds `qemu-img info` may use (RLIMIT_CPU).
    pub info_cpu_seconds: u64,
    /// Address space `qemu-img info` may use, MiB (RLIMIT_AS).
    pub info_address_space_mib: u64,
    /// CPU seconds one `qemu-img convert` may use.
    pub convert_cpu_seconds: u64,
    /// Address space `qemu-img convert` may use, MiB.
    pub convert_address_space_mib: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            pool: String::new(),
            max_upload_bytes: 1 << 40,
            upload_idle_timeout_seconds: 300,
            cache_max_size_gb: 0,
            cache_max_count: 0,
            info_cpu_seconds: 30,
            info_address_space_mib: 1024,
            convert_cpu_seconds: 3600,
            convert_address_space_mib: 4096,
        }
    }
}

/// ui: the web dashboard (`/ui/`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve the dashboard.
    pub enabled: bool,
    /// Longest life of a dashboard session, seconds (it ends then whatever its use).
    pub session_ttl_seconds: u64,
    /// A session unused this long ends, seconds.
    pub session_idle_seconds: u64,
    /// noauth mode: the project volumes created from the dashboard belong to.
    pub noauth_project: String,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            session_ttl_seconds: 12 * 3600,
            session_idle_seconds: 3600,
            noauth_project: "default".into(),
        }
    }
}

/// Metadata database settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path` (created when missing) or `postgres://user@host/db`.
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
}

/// Authentication mode.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication: the project comes from the URL. Unsafe beyond localhost.
    Noauth,
    /// Built-in identity: tokens and AK/SK signatures.
    Keystone,
}

/// Authentication settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `noauth` or `keystone`.
    pub mode: AuthMode,
    /// Base URL of the service catalog in issued tokens (`http://host:8776`); default: the
    /// top-level `public_url`, else the `Host` the client used.
    pub public_endpoint: Option<String>,
    /// Region name in the service catalog.
    pub region: String,
    /// Lifetime of an issued token, in seconds.
    pub token_ttl_seconds: u64,
    /// Largest difference, in seconds, between an AK/SK request's `X-Sdk-Date` and our clock.
    pub signature_max_skew_seconds: u64,
    /// File holding the key that encrypts AK/SK secret keys (0600, created at first use).
    /// Default: `credential.key` beside the SQLite database, else beside the config file.
    /// Nodes sharing one PostgreSQL database need the same file.
    pub credential_key_file: Option<PathBuf>,
    /// Memory, in MiB, that concurrent password checks may use together (argon2id takes about
    /// 19 MiB each; more checks wait their turn).
    pub password_check_memory_mib: u64,
    /// Failed logins per user name within the window before further logins answer 429.
    pub failed_login_limit_per_user: u32,
    /// Failed logins per source address within the window before further logins answer 429.
    pub failed_login_limit_per_address: u32,
    /// The failed-login window, in seconds.
    pub failed_login_window_seconds: u64,
    /// Serve `noauth` on a non-loopback `listen` address. Off by default: in noauth mode anyone
    /// who reaches the port manages every project's volumes, so the daemon refuses to start
    /// that way unless this says it is meant.
    pub allow_noauth_on_network: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Noauth,
            public_endpoint: None,
            region: "RegionOne".into(),
            token_ttl_seconds: 24 * 3600,
            signature_max_skew_seconds: 15 * 60,
            credential_key_file: None,
            password_check_memory_mib: 128,
            failed_login_limit_per_user: 5,
            failed_login_limit_per_address: 20,
            failed_login_window_seconds: 60,
            allow_noauth_on_network: false,
        }
    }
}

/// Storage driver of a pool.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// Sparse files in a directory (reflink where the filesystem has it).
    File,
    /// Thin LVs in an LVM thin pool (settings in the pool's `lvm` table).
    Lvm,
    /// Ceph RBD images (settings in the pool's `rbd` table; needs a build with the cargo
    /// feature `rbd`).
    Rbd,
}

/// One storage pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Pool name, shown as `os-vol-host-attr:host` `node@name`.
    pub name: String,
    /// Driver.
    #[serde(default = "default_driver")]
    pub driver: DriverKind,
    /// Directory holding `volumes/` and `snapshots/` (file driver).
    #[serde(default)]
    pub path: PathBuf,
    /// Availability zone this pool serves.
    #[serde(default = "default_az")]
    pub availability_zone: String,
    /// Volume types this pool serves.
    #[serde(default = "default_types")]
    pub volume_types: Vec<String>,
    /// Provisioned GiB may reach this multiple of the pool's capacity (thin provisioning).
    #[serde(default = "default_ratio")]
    pub max_over_subscription_ratio: f64,
    /// LVM driver settings (`driver = "lvm"`).
    #[serde(default)]
    pub lvm: Option<LvmPoolConfig>,
    /// RBD driver settings (`driver = "rbd"`; `path` is then a local work directory).
    #[serde(default)]
    pub rbd: Option<RbdPoolConfig>,
}

/// Settings of an RBD pool:
/// `rbd = { ceph_conf = "/etc/ceph/ceph.conf", client_id = "cinderblock", pool = "volumes" }`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RbdPoolConfig {
    /// The Ceph configuration file naming the monitors.
    #[serde(default = "default_ceph_conf")]
    pub ceph_conf: PathBuf,
    /// The Ceph client id (`cinderblock` authenticates as `client.cinderblock`).
    #[serde(default = "default_ceph_client")]
    pub client_id: String,
    /// The client's keyring (default: the one `ceph_conf` names, e.g.
    /// `/etc/ceph/ceph.client.cinderblock.keyring`).
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    /// The RADOS pool holding the images (`rbd pool init` done).
    pub pool: String,
    /// RBD object size in MiB (power of two, 1 to 32; Cinder's `rbd_store_chunk_size`).
    #[serde(default = "default_rbd_object_size")]
    pub object_size_mb: u64,
    /// Linked clones deeper than this are flattened (Cinder's `rbd_max_clone_depth`).
    #[serde(default = "default_rbd_clone_depth")]
    pub max_clone_depth: u32,
}

fn default_ceph_conf() -> PathBuf {
    PathBuf::from("/etc/ceph/ceph.conf")
}
fn default_ceph_client() -> String {
    "cinderblock".into()
}
fn default_rbd_object_size() -> u64 {
    4
}
fn default_rbd_clone_depth() -> u32 {
    5
}

/// Settings of an LVM pool: `lvm = { vg = "vg0", thin_pool = "cinderblock", devices = ["/dev/sdb"] }`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LvmPoolConfig {
    /// The volume group (must exist).
    pub vg: String,
    /// The thin pool's LV name in `vg`; created when missing.
    pub thin_pool: String,
    /// Size of the thin pool when it is created, GiB (default: 90% of the VG's free space).
    #[serde(default)]
    pub thin_pool_size_gb: Option<u64>,
    /// The PVs of `vg`: every LVM command gets a filter accepting only these devices.
    pub devices: Vec<PathBuf>,
    /// Refuse new volumes, snapshots, clones and extensions at or above this thin-pool data use
    /// (percent).
    #[serde(default = "default_data_hwm")]
    pub data_high_water_percent: f64,
    /// The same for thin-pool metadata use (percent).
    #[serde(default = "default_meta_hwm")]
    pub metadata_high_water_percent: f64,
    /// `LVM_SYSTEM_DIR` for a private `lvm.conf` (default: LVM's own, `/etc/lvm`).
    #[serde(default)]
    pub system_dir: Option<PathBuf>,
    /// The `lvm` program.
    #[serde(default = "default_lvm_binary")]
    pub lvm_binary: PathBuf,
}

fn default_data_hwm() -> f64 {
    90.0
}
fn default_meta_hwm() -> f64 {
    80.0
}
fn default_lvm_binary() -> PathBuf {
    PathBuf::from("lvm")
}

/// How an attachment is exported when its connector does not say.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Our NBD server (`driver_volume_type: nbd`).
    Nbd,
    /// A loop block device on this host (`driver_volume_type: local`); needs root.
    Loop,
}

/// Export settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExportsConfig {
    /// Transport used when the connector does not ask for one (`cinderblock_transport`).
    pub default_transport: Transport,
    /// NBD TCP listener. Loopback by default: NBD has no authentication, so expose it only on
    /// a trusted network (or through an SSH tunnel / WireGuard).
    pub nbd_listen: SocketAddr,
    /// Also serve NBD on this unix socket (faster for local consumers).
    pub nbd_unix_socket: Option<PathBuf>,
    /// Host name or address put in connection info (default: the listener's address).
    pub nbd_host: Option<String>,
}

/// HTTP connection limits and timeouts (slow or idle clients must not hold the daemon).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Connections served at once; one more gets a 503 and is closed.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, and that a kept-alive connection may
    /// sit idle before the next request.
    pub header_read_timeout_seconds: u64,
    /// Seconds a client has to send a request's whole body (408 after).
    pub body_read_timeout_seconds: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { max_connections: 1024, header_read_timeout_seconds: 30, body_read_timeout_seconds: 30 }
    }
}

/// NBD server limits and timeouts (idle or hostile clients must not exhaust the server).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NbdSettings {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one source address (unix socket: all one address).
    pub max_connections_per_address: usize,
    /// Connections in transmission on one export (one more gets `NBD_REP_ERR_POLICY`).
    pub max_connections_per_export: usize,
    /// READ and WRITE data bytes held across all connections before sockets stop being read.
    pub max_buffered_bytes: usize,
    /// Seconds a connection with nothing in flight may send nothing before it is closed (0: off).
    pub idle_timeout_seconds: u64,
    /// Seconds a client has to send a started request's header and WRITE payload, and to take
    /// each reply (0: off).
    pub request_timeout_seconds: u64,
}

impl Default for NbdSettings {
    fn default() -> Self {
        NbdSettings {
            max_connections: 1024,
            max_connections_per_address: 64,
            max_connections_per_export: 64,
            max_buffered_bytes: 1 << 30,
            idle_timeout_seconds: 300,
            request_timeout_seconds: 120,
        }
    }
}

/// Job runner settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Worker tasks.
    pub workers: usize,
    /// Seconds a claimed job stays leased before another worker may take it over.
    pub lease_seconds: u64,
    /// Test hook: milliseconds a worker waits after claiming a job and before its storage step,
    /// so a test can kill the daemon mid-job. Zero in production.
    pub step_delay_ms: u64,
    /// Test hook: `<job_type>:<step>` (e.g. `createVolume:after_storage`) makes the daemon
    /// SIGKILL itself when a job of that type reaches that step (see `jobs::execute::STEPS`),
    /// so a test can crash it at every step of every job kind. Empty in production.
    #[serde(default)]
    pub crash_at: String,
    /// Bytes per second one job's data copy may read (full clones, migrations, uploads to
    /// images), so background copies leave disk bandwidth to attached volumes; 0 = unlimited.
    /// Cinder's `volume_copy_bps_limit`.
    #[serde(default)]
    pub copy_bps_limit: u64,
}

fn default_driver() -> DriverKind {
    DriverKind::File
}
fn default_az() -> String {
    "nova".into()
}
fn default_types() -> Vec<String> {
    ["__DEFAULT__", "SSD", "SAS", "SATA"].iter().map(|s| s.to_string()).collect()
}
fn default_ratio() -> f64 {
    20.0
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8776)),
            node: default_node_name(),
            public_url: None,
            database: DatabaseConfig { url: "sqlite://./data/cinderblock.db".into(), max_connections: 8 },
            auth: AuthConfig::default(),
            default_availability_zone: default_az(),
            default_volume_type: "__DEFAULT__".into(),
            pools: vec![PoolConfig {
                name: "default".into(),
                driver: DriverKind::File,
                path: PathBuf::from("./data/pools/default"),
                availability_zone: default_az(),
                volume_types: default_types(),
                max_over_subscription_ratio: default_ratio(),
                lvm: None,
                rbd: None,
            }],
            jobs: JobsConfig {
                workers: 4,
                lease_seconds: 60,
                step_delay_ms: 0,
                crash_at: String::new(),
                copy_bps_limit: 0,
            },
            http: HttpConfig::default(),
            nbd: NbdSettings::default(),
            quotas: std::collections::BTreeMap::new(),
            exports: ExportsConfig {
                default_transport: Transport::Nbd,
                nbd_listen: SocketAddr::from(([127, 0, 0, 1], 10809)),
                nbd_unix_socket: None,
                nbd_host: None,
            },
            log: "info".into(),
            log_format: LogFormat::Text,
            metrics: MetricsConfig::default(),
            images: ImagesConfig::default(),
            ui: UiConfig::default(),
            snapshot_policies: SnapshotPoliciesConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

fn default_node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Parsing or merging failed (unknown key, wrong type…); the message names the key.
    #[error("invalid configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
    /// The values parsed but do not make sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Load defaults, then `file` (or `./cinderblock.toml` when it exists), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => fig = fig.merge(Toml::file_exact(path)),
            None if Path::new("cinderblock.toml").exists() => fig = fig.merge(Toml::file_exact("cinderblock.toml")),
            None => {}
        }
        let env = Env::prefixed("CINDERBLOCK_")
            .filter(|k| {
                let k = k.as_str().to_ascii_lowercase();
                !NON_CONFIG_ENV.iter().any(|p| k.starts_with(p))
            })
            .split("__");
        let cfg: Config = fig.merge(env).extract().map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.http.max_connections == 0
            || self.http.header_read_timeout_seconds == 0
            || self.http.body_read_timeout_seconds == 0
        {
            return Err(ConfigError::Invalid(
                "http.max_connections, http.header_read_timeout_seconds and http.body_read_timeout_seconds must be at least 1".into(),
            ));
        }
        if self.pools.is_empty() {
            return Err(ConfigError::Invalid("at least one pool is required".into()));
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.pools {
            if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(ConfigError::Invalid(format!("pools: bad pool name {:?}", p.name)));
            }
            if !names.insert(p.name.as_str()) {
                return Err(ConfigError::Invalid(format!("pools: duplicate pool {:?}", p.name)));
            }
            if p.volume_types.is_empty() {
                return Err(ConfigError::Invalid(format!("pools.{}: volume_types is empty", p.name)));
            }
            if p.driver == DriverKind::Rbd {
                let Some(r) = &p.rbd else {
                    return Err(ConfigError::Invalid(format!(
                        "pools.{}: the rbd driver needs rbd = {{ ceph_conf, client_id, pool }}",
                        p.name
                    )));
                };
                if p.lvm.is_some() {
                    return Err(ConfigError::Invalid(format!("pools.{}: lvm settings on an rbd pool", p.name)));
                }
                if p.path.as_os_str().is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "pools.{}: the rbd driver needs a path (a local work directory for snapshot exports)",
                        p.name
                    )));
                }
                let ok = |n: &str| {
                    !n.is_empty() && n.len() <= 128 && n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                };
                if !ok(&r.pool) || !ok(&r.client_id) {
                    return Err(ConfigError::Invalid(format!(
                        "pools.{}: rbd pool and client_id must be 1 to 128 of A-Za-z0-9._-",
                        p.name
                    )));
                }
                if !r.object_size_mb.is_power_of_two() || r.object_size_mb > 32 {
                    return Err(ConfigError::Invalid(format!(
                        "pools.{}: rbd object_size_mb must be 1, 2, 4, 8, 16 or 32",
                        p.name
                    )));
                }
            } else if p.rbd.is_some() {
                return Err(ConfigError::Invalid(format!("pools.{}: rbd settings on a non-rbd pool", p.name)));
            }
            match (p.driver, &p.lvm) {
                (DriverKind::Rbd, _) => {}
                (DriverKind::File, None) if !p.path.as_os_str().is_empty() => {}
                (DriverKind::File, None) => {
                    return Err(ConfigError::Invalid(format!("pools.{}: the file driver needs a path", p.name)))
                }
                (DriverKind::File, Some(_)) => {
                    return Err(ConfigError::Invalid(format!("pools.{}: lvm settings on a file pool", p.name)))
                }
                (DriverKind::Lvm, None) => {
                    return Err(ConfigError::Invalid(format!(
                        "pools.{}: the lvm driver needs lvm = {{ vg, thin_pool, devices }}",
                        p.name
                    )))
                }
                (DriverKind::Lvm, Some(l)) => {
                    let name_ok = |n: &str| {
                        !n.is_empty()
                            && !n.starts_with('-')
                            && n.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
                    };
                    if !name_ok(&l.vg) || !name_ok(&l.thin_pool) {
                        return Err(ConfigError::Invalid(format!("pools.{}: bad lvm vg or thin_pool name", p.name)));
                    }
                    if l.devices.is_empty()
                        || !l.devices.iter().all(|d| crate::driver::lvm::command::valid_device_path(d))
                    {
                        return Err(ConfigError::Invalid(format!(
                            "pools.{}: lvm.devices must list the VG's PVs as absolute paths",
                            p.name
                        )));
                    }
                    let pct = |x: f64| x > 0.0 && x <= 100.0;
                    if !pct(l.data_high_water_percent) || !pct(l.metadata_high_water_percent) {
                        return Err(ConfigError::Invalid(format!(
                            "pools.{}: lvm high-water marks must be in (0, 100]",
                            p.name
                        )));
                    }
                }
            }
            if p.max_over_subscription_ratio.is_nan() || p.max_over_subscription_ratio < 1.0 {
                return Err(ConfigError::Invalid(format!(
                    "pools.{}: max_over_subscription_ratio must be >= 1.0",
                    p.name
                )));
            }
        }
        if !self.pools.iter().any(|p| p.volume_types.contains(&self.default_volume_type)) {
            return Err(ConfigError::Invalid(format!(
                "default_volume_type {:?} is not served by any pool",
                self.default_volume_type
            )));
        }
        if !self.pools.iter().any(|p| p.availability_zone == self.default_availability_zone) {
            return Err(ConfigError::Invalid(format!(
                "default_availability_zone {:?} is not served by any pool",
                self.default_availability_zone
            )));
        }
        if self.auth.token_ttl_seconds == 0 {
            return Err(ConfigError::Invalid("auth.token_ttl_seconds must be at least 1".into()));
        }
        if let Some(u) = &self.auth.public_endpoint {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "auth.public_endpoint {u:?} must start with http:// or https://"
                )));
            }
        }
        if self.jobs.workers == 0 {
            return Err(ConfigError::Invalid("jobs.workers must be at least 1".into()));
        }
        let t = &self.tls;
        if t.cert.is_some() != t.key.is_some() {
            return Err(ConfigError::Invalid("tls.cert and tls.key must be set together".into()));
        }
        if (t.client_ca.is_some() || t.require_client_cert) && !t.nbd_enabled() {
            return Err(ConfigError::Invalid(
                "tls.client_ca and tls.require_client_cert apply to NBD over TLS: set tls.cert, tls.key and tls.nbd"
                    .into(),
            ));
        }
        if t.require_client_cert && t.client_ca.is_none() {
            return Err(ConfigError::Invalid("tls.require_client_cert needs tls.client_ca".into()));
        }
        Ok(())
    }

    /// Every volume type name any pool serves, in first-seen order.
    pub fn volume_type_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.pools {
            for t in &p.volume_types {
                if !out.contains(t) {
                    out.push(t.clone());
                }
            }
        }
        out
    }

    /// Every availability zone any pool serves, in first-seen order.
    pub fn availability_zones(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.pools {
            if !out.contains(&p.availability_zone) {
                out.push(p.availability_zone.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tls_settings_must_make_sense_together() {
        let mut c = Config::default();
        c.tls.cert = Some("/c.pem".into());
        assert!(c.validate().unwrap_err().to_string().contains("tls.cert and tls.key"));
        c.tls.key = Some("/k.pem".into());
        c.validate().expect("cert and key");
        assert!(c.tls.api_enabled() && c.tls.nbd_enabled());
        c.tls.require_client_cert = true;
        assert!(c.validate().unwrap_err().to_string().contains("needs tls.client_ca"));
        c.tls.client_ca = Some("/ca.pem".into());
        c.validate().expect("client certificates");
        c.tls.nbd = false;
        assert!(c.validate().unwrap_err().to_string().contains("apply to NBD over TLS"));
        let off = Config::default();
        assert!(!off.tls.enabled() && !off.tls.api_enabled() && !off.tls.nbd_enabled());
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        c.validate().expect("defaults validate");
        assert!(c.volume_type_names().contains(&"SSD".to_string()));
    }

    /// The packaged config (deploy/config.default.toml, /etc/cinderblock/config.toml in the
    /// .deb) loads, and what its comments call defaults are the defaults: uncommenting every
    /// `# key = value` line but the marked examples changes nothing. tests/deb_package.rs
    /// starts the daemon on it.
    #[test]
    fn packaged_default_config_loads_and_its_comments_are_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config.default.toml");
        let text = std::fs::read_to_string(&path).expect("read deploy/config.default.toml");
        let shipped = Config::load(Some(&path)).expect("the packaged config loads");
        assert_eq!(shipped.listen, SocketAddr::from(([127, 0, 0, 1], 8776)));
        assert_eq!(shipped.auth.mode, AuthMode::Noauth);
        assert_eq!(shipped.database.url, "sqlite:///var/lib/cinderblock/cinderblock.db");
        assert_eq!(shipped.pools.len(), 1);
        assert_eq!(shipped.pools[0].path, Path::new("/var/lib/cinderblock/pools/default"));
        // Examples of keys unset by default, not defaults.
        const EXAMPLES: &[&str] = &["node", "public_url", "nbd_unix_socket", "listen = \"127.0.0.1:9477\""];
        let mut uncommented = 0;
        let all: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(kv)
                    if kv
                        .split_once(" = ")
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                        && !EXAMPLES.iter().any(|e| kv.starts_with(e)) =>
                {
                    uncommented += 1;
                    format!("{kv}\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        assert!(uncommented >= 15, "only {uncommented} commented defaults found");
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(all.as_bytes()).expect("write");
        let explicit = Config::load(Some(f.path())).expect("the uncommented config loads");
        assert_eq!(explicit, shipped, "a commented value in deploy/config.default.toml is not the default");
    }

    #[test]
    fn rbd_pools_are_validated() {
        let mut c = Config::default();
        let mut p = c.pools[0].clone();
        p.name = "ceph".into();
        p.driver = DriverKind::Rbd;
        c.pools.push(p);
        assert!(c.validate().unwrap_err().to_string().contains("the rbd driver needs rbd ="));
        let r = RbdPoolConfig {
            ceph_conf: default_ceph_conf(),
            client_id: default_ceph_client(),
            keyring: None,
            pool: "volumes".into(),
            object_size_mb: default_rbd_object_size(),
            max_clone_depth: default_rbd_clone_depth(),
        };
        c.pools[1].rbd = Some(r.clone());
        c.validate().expect("a valid rbd pool");
        c.pools[1].rbd = Some(RbdPoolConfig { object_size_mb: 3, ..r.clone() });
        assert!(c.validate().unwrap_err().to_string().contains("object_size_mb"));
        c.pools[1].rbd = Some(RbdPoolConfig { pool: "../x".into(), ..r.clone() });
        assert!(c.validate().unwrap_err().to_string().contains("rbd pool and client_id"));
        c.pools[1].rbd = Some(r.clone());
        c.pools[1].path = PathBuf::new();
        assert!(c.validate().unwrap_err().to_string().contains("needs a path"));
        c.pools[1].path = "/x".into();
        c.pools[0].rbd = Some(r);
        assert!(c.validate().unwrap_err().to_string().contains("rbd settings on a non-rbd pool"));
    }

    #[test]
    fn unknown_key_is_named() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        writeln!(f, "listen = \"127.0.0.1:1\"\n[database]\nurll = \"x\"").expect("write");
        let err = Config::load(Some(f.path())).expect_err("must fail").to_string();
        assert!(err.contains("urll"), "{err}");
    }
}
