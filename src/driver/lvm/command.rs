//! The one place that builds and runs `lvm` commands.
//!
//! Every command runs as `lvm <subcommand> --config <filter and no-udev settings> …` with
//! `LC_ALL=C` and `LVM_SUPPRESS_FD_WARNINGS=1`: the `--config` string gives LVM a device filter
//! accepting only the pool's configured PVs (it never scans other devices, such as the loop
//! devices or NBD disks we export, whose guests may carry their own VGs) and turns off udev
//! synchronisation, udev rules, dmeventd monitoring, lvmpolld, hints and the devices file, so
//! the driver works on hosts without udev. Reports add `--reportformat json --units b
//! --nosuffix` and are parsed into typed rows (see [`parse_report`]); on failure the error
//! carries the command line, exit status and LVM's stderr.
//!
//! Changes (anything but a report) must hold the volume group's mutex ([`Lvm::change`]): one
//! mutex per VG name in the process, shared by every pool on that VG.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::driver::DriverError;

/// Attempts of a command that failed for a transient reason (lock contention, LVM's exit-139
/// crash seen by Cinder, LP #1901783).
const ATTEMPTS: u32 = 5;

/// How to run LVM for one volume group.
#[derive(Debug, Clone)]
pub struct Lvm {
    binary: PathBuf,
    vg: String,
    devices: Vec<PathBuf>,
    system_dir: Option<PathBuf>,
    lock: Arc<Mutex<()>>,
}

/// Proof that the caller holds its volume group's change mutex.
pub struct VgGuard<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

/// A command line ready to run (kept apart from `std::process::Command` so tests can read it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The `lvm` binary.
    pub program: PathBuf,
    /// Arguments, the subcommand first.
    pub args: Vec<String>,
    /// Environment variables set on top of the daemon's.
    pub env: Vec<(String, String)>,
}

impl Invocation {
    /// The command line as one string, for errors and logs.
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            if a.contains(' ') || a.contains('"') {
                s.push('\'');
                s.push_str(a);
                s.push('\'');
            } else {
                s.push_str(a);
            }
        }
        s
    }
}

fn vg_lock(vg: &str) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut m = LOCKS.get_or_init(|| Mutex::new(HashMap::new())).lock().unwrap_or_else(|e| e.into_inner());
    m.entry(vg.to_string()).or_default().clone()
}

/// Escape a path for an LVM filter regex (`a|^<path>$|`) with bracket classes, not
/// backslashes (LVM's config strings treat the backslash as their own escape).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '.' || c == '+' {
            out.push('[');
            out.push(c);
            out.push(']');
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `p` may appear in a device filter: absolute, made of `A-Za-z0-9/._+:@=,-` only.
pub fn valid_device_path(p: &Path) -> bool {
    p.to_str()
        .is_some_and(|s| s.starts_with('/') && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._+:@=,-".contains(c)))
}

impl Lvm {
    /// LVM for volume group `vg`, looking only at `devices`; `system_dir` sets
    /// `LVM_SYSTEM_DIR` (a private `lvm.conf`), `binary` is the `lvm` program.
    pub fn new(binary: impl Into<PathBuf>, vg: &str, devices: Vec<PathBuf>, system_dir: Option<PathBuf>) -> Lvm {
        Lvm { binary: binary.into(), vg: vg.to_string(), devices, system_dir, lock: vg_lock(vg) }
    }

    /// The volume group.
    pub fn vg(&self) -> &str {
        &self.vg
    }

    /// Take the volume group's change mutex.
    pub fn change(&self) -> VgGuard<'_> {
        VgGuard(self.lock.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The `--config` string: device filter plus the no-udev settings.
    pub fn config_string(&self) -> String {
        let mut accept: Vec<String> =
            self.devices.iter().map(|d| format!("\"a|^{}$|\"", regex_escape(&d.display().to_string()))).collect();
        accept.push("\"r|.*|\"".into());
        let filter = accept.join(", ");
        format!(
            "devices {{ filter = [ {filter} ] global_filter = [ {filter} ] obtain_device_list_from_udev = 0 \
             use_devicesfile = 0 hints = \"none\" scan_lvs = 0 }} \
             activation {{ udev_sync = 0 udev_rules = 0 monitoring = 0 retry_deactivation = 1 }} \
             global {{ use_lvmpolld = 0 }}"
        )
    }

    /// Build `lvm <sub> --config … <args>`; reports (`lvs`, `vgs`, `pvs`) get the JSON options.
    pub fn invocation(&self, sub: &str, args: &[&str]) -> Invocation {
        let mut a = vec![sub.to_string(), "--config".to_string(), self.config_string()];
        if matches!(sub, "lvs" | "vgs" | "pvs") {
            a.extend(["--reportformat", "json", "--units", "b", "--nosuffix"].map(String::from));
        }
        a.extend(args.iter().map(|s| s.to_string()));
        let mut env = vec![("LC_ALL".to_string(), "C".to_string()), ("LVM_SUPPRESS_FD_WARNINGS".into(), "1".into())];
        if let Some(d) = &self.system_dir {
            env.push(("LVM_SYSTEM_DIR".into(), d.display().to_string()));
        }
        Invocation { program: self.binary.clone(), args: a, env }
    }

    fn exec(&self, inv: &Invocation) -> Result<String, DriverError> {
        let mut attempt = 1;
        loop {
            let mut cmd = Command::new(&inv.program);
            cmd.args(&inv.args).stdin(std::process::Stdio::null());
            for (k, v) in &inv.env {
                cmd.env(k, v);
            }
            let out = cmd.output().map_err(|e| DriverError::io(format!("run {}", inv.display()), e))?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                tracing::debug!(cmd = %inv.display(), "lvm ok");
                return Ok(stdout);
            }
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let code = out.status.code();
            let transient = code == Some(139)
                || code.is_none()
                || stderr.contains("Resource temporarily unavailable")
                || stderr.contains("Can't get lock");
            if transient && attempt < ATTEMPTS {
                tracing::warn!(cmd = %inv.display(), ?code, %stderr, attempt, "lvm failed, retrying");
                // A bounded back-off between retries of a failed command (not synchronisation).
                std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
                attempt += 1;
                continue;
            }
            return Err(DriverError::Command { cmd: inv.display(), code, stderr });
        }
    }

    /// Run a changing command; the caller holds the VG mutex.
    pub fn run(&self, _held: &VgGuard<'_>, sub: &str, args: &[&str]) -> Result<String, DriverError> {
        self.exec(&self.invocation(sub, args))
    }

    /// Run a read-only command that needs no mutex (`lvm version`, `vgs`).
    pub fn query(&self, sub: &str, args: &[&str]) -> Result<String, DriverError> {
        self.exec(&self.invocation(sub, args))
    }

    /// Run a report (`lvs`/`vgs`/`pvs`) and parse its `section` (`lv`, `vg`, `pv`).
    pub fn report<T: DeserializeOwned>(&self, sub: &str, section: &str, args: &[&str]) -> Result<Vec<T>, DriverError> {
        let inv = self.invocation(sub, args);
        let out = self.exec(&inv)?;
        parse_report(&out, section).map_err(|e| DriverError::Command {
            cmd: inv.display(),
            code: Some(0),
            stderr: format!("unparseable report: {e}; output: {}", out.chars().take(2000).collect::<String>()),
        })
    }
}

#[derive(Deserialize)]
struct ReportDoc {
    report: Vec<HashMap<String, serde_json::Value>>,
}

fn parse_doc(text: &str) -> Result<ReportDoc, serde_json::Error> {
    let start = text.find('{').unwrap_or(text.len());
    let mut it = serde_json::Deserializer::from_str(&text[start..]).into_iter::<ReportDoc>();
    match it.next() {
        Some(r) => r,
        None => serde_json::from_str::<ReportDoc>(""),
    }
}

/// Parse an LVM JSON report (`{"report": [{"lv": [...]}]}`) into rows of `section`, ignoring
/// anything LVM printed around the JSON (warnings before it, advice after it) and, when that
/// is not enough, any non-JSON line inside it (LVM has printed "Consider pruning … archive"
/// in the middle of a report).
pub fn parse_report<T: DeserializeOwned>(stdout: &str, section: &str) -> Result<Vec<T>, serde_json::Error> {
    let doc = match parse_doc(stdout) {
        Ok(d) => d,
        Err(first) => {
            let cleaned: String = stdout
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    t.is_empty() || t.starts_with(['{', '}', '[', ']', '"'])
                })
                .collect::<Vec<_>>()
                .join("\n");
            parse_doc(&cleaned).map_err(|_| first)?
        }
    };
    let mut rows = Vec::new();
    for part in doc.report {
        if let Some(v) = part.get(section) {
            rows.extend(Vec::<T>::deserialize(v)?);
        }
    }
    Ok(rows)
}

/// Deserialize LVM's string numbers (`"1073741824"`, `"12.50"`, `""` = none).
pub fn opt_num<'de, D, N>(d: D) -> Result<Option<N>, D::Error>
where
    D: serde::Deserializer<'de>,
    N: std::str::FromStr,
{
    let v = serde_json::Value::deserialize(d)?;
    let s = match &v {
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<N>().map(Some).map_err(|_| serde::de::Error::custom(format!("not a number: {s:?}")))
}

/// One row of `lvs -o` [`LV_FIELDS`].
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LvRow {
    /// LV name.
    pub lv_name: String,
    /// VG name.
    #[serde(default)]
    pub vg_name: String,
    /// Attribute string (`Vwi-a-tz--`: [0] type, [4] state, [9] activation skip).
    #[serde(default)]
    pub lv_attr: String,
    /// Size in bytes (virtual size for thin LVs).
    #[serde(default, deserialize_with = "opt_num")]
    pub lv_size: Option<u64>,
    /// Thin pool of a thin LV.
    #[serde(default)]
    pub pool_lv: String,
    /// Origin of a snapshot.
    #[serde(default)]
    pub origin: String,
    /// Data use, percent (thin pools and thin LVs).
    #[serde(default, deserialize_with = "opt_num")]
    pub data_percent: Option<f64>,
    /// Metadata use, percent (thin pools).
    #[serde(default, deserialize_with = "opt_num")]
    pub metadata_percent: Option<f64>,
    /// Tags, comma-separated.
    #[serde(default)]
    pub lv_tags: String,
}

/// The fields the driver asks `lvs` for.
pub const LV_FIELDS: &str = "lv_name,vg_name,lv_attr,lv_size,pool_lv,origin,data_percent,metadata_percent,lv_tags";

impl LvRow {
    /// Whether the LV carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.lv_tags.split(',').any(|t| t == tag)
    }
    /// Whether the LV is active (`lv_attr[4] == 'a'`).
    pub fn active(&self) -> bool {
        self.lv_attr.as_bytes().get(4) == Some(&b'a')
    }
    /// Whether the LV has the activation-skip flag (`lv_attr[9] == 'k'`).
    pub fn activation_skip(&self) -> bool {
        self.lv_attr.as_bytes().get(9) == Some(&b'k')
    }
    /// Bytes of the pool's data this LV maps (size × data%).
    pub fn allocated_bytes(&self) -> u64 {
        let size = self.lv_size.unwrap_or(0);
        (size as f64 * self.data_percent.unwrap_or(0.0) / 100.0).round() as u64
    }
}

/// One row of `vgs -o vg_name,vg_size,vg_free,vg_extent_size,vg_tags`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct VgRow {
    /// VG name.
    pub vg_name: String,
    /// Size in bytes.
    #[serde(default, deserialize_with = "opt_num")]
    pub vg_size: Option<u64>,
    /// Free bytes.
    #[serde(default, deserialize_with = "opt_num")]
    pub vg_free: Option<u64>,
    /// Extent size in bytes.
    #[serde(default, deserialize_with = "opt_num")]
    pub vg_extent_size: Option<u64>,
    /// Tags, comma-separated.
    #[serde(default)]
    pub vg_tags: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lvm() -> Lvm {
        Lvm::new("/sbin/lvm", "vg0", vec!["/dev/vda".into(), "/dev/disk/by-id/ata-X_1.0+b".into()], None)
    }

    #[test]
    fn builds_reports_with_json_units_filter_and_env() {
        let inv = lvm().invocation("lvs", &["-o", LV_FIELDS, "vg0"]);
        assert_eq!(inv.program, PathBuf::from("/sbin/lvm"));
        assert_eq!(inv.args[0], "lvs");
        assert_eq!(inv.args[1], "--config");
        let cfg = &inv.args[2];
        assert!(
            cfg.contains(r#"filter = [ "a|^/dev/vda$|", "a|^/dev/disk/by-id/ata-X_1[.]0[+]b$|", "r|.*|" ]"#),
            "{cfg}"
        );
        assert!(cfg.contains("global_filter = [ \"a|^/dev/vda$|\""), "{cfg}");
        for s in [
            "udev_sync = 0",
            "udev_rules = 0",
            "obtain_device_list_from_udev = 0",
            "use_devicesfile = 0",
            "monitoring = 0",
        ] {
            assert!(cfg.contains(s), "{s} missing from {cfg}");
        }
        assert_eq!(&inv.args[3..8], ["--reportformat", "json", "--units", "b", "--nosuffix"]);
        assert_eq!(&inv.args[8..], ["-o", LV_FIELDS, "vg0"]);
        assert!(inv.env.contains(&("LC_ALL".into(), "C".into())));
        assert!(inv.env.contains(&("LVM_SUPPRESS_FD_WARNINGS".into(), "1".into())));
        assert!(!inv.env.iter().any(|(k, _)| k == "LVM_SYSTEM_DIR"));
    }

    #[test]
    fn changes_get_no_report_options_and_system_dir_is_passed() {
        let l = Lvm::new("lvm", "vg0", vec!["/dev/vdb".into()], Some("/etc/cinderblock/lvm".into()));
        let inv = l.invocation("lvcreate", &["--thin", "-V", "1073741824b", "-n", "cbv-x", "vg0/pool"]);
        assert!(!inv.args.iter().any(|a| a == "--reportformat" || a == "--units"));
        assert_eq!(inv.args.last().map(String::as_str), Some("vg0/pool"));
        assert!(inv.env.contains(&("LVM_SYSTEM_DIR".into(), "/etc/cinderblock/lvm".into())));
        assert!(inv.display().starts_with("lvm lvcreate --config 'devices {"));
    }

    #[test]
    fn one_mutex_per_vg() {
        let a = Lvm::new("lvm", "vg-shared", vec![], None);
        let b = Lvm::new("lvm", "vg-shared", vec![], None);
        let c = Lvm::new("lvm", "vg-other", vec![], None);
        let _g = a.change();
        assert!(b.lock.try_lock().is_err(), "a second pool on the same VG must wait");
        assert!(c.lock.try_lock().is_ok(), "another VG is independent");
    }

    #[test]
    fn device_paths_are_checked() {
        assert!(valid_device_path(Path::new("/dev/sdb")));
        assert!(!valid_device_path(Path::new("dev/sdb")));
        assert!(!valid_device_path(Path::new("/dev/a|b")));
        assert!(!valid_device_path(Path::new("/dev/a\"b")));
        assert!(!valid_device_path(Path::new("/dev/a b")));
    }

    /// `lvs` output recorded from lvm2 2.03.16 in the test VM (thin pool, thin LV, snapshot,
    /// a foreign LV).
    const LVS: &str = r#"  {
      "report": [
          {
              "lv": [
                  {"lv_name":"cbs-5f0c1b8e-1f51-4c4e-9c59-3f1f1e0c2b11", "vg_name":"vg0", "lv_attr":"Vri---tz-k", "lv_size":"134217728", "pool_lv":"pool", "origin":"cbv-0b9a7c7e-2d4c-4a55-8f3e-6a1b2c3d4e5f", "data_percent":"", "metadata_percent":"", "lv_tags":"cinderblock,cinderblock_pool:thin"},
                  {"lv_name":"cbv-0b9a7c7e-2d4c-4a55-8f3e-6a1b2c3d4e5f", "vg_name":"vg0", "lv_attr":"Vwi-a-tz--", "lv_size":"134217728", "pool_lv":"pool", "origin":"", "data_percent":"3.13", "metadata_percent":"", "lv_tags":"cinderblock,cinderblock_pool:thin"},
                  {"lv_name":"pool", "vg_name":"vg0", "lv_attr":"twi-aotz--", "lv_size":"268435456", "pool_lv":"", "origin":"", "data_percent":"1.56", "metadata_percent":"10.94", "lv_tags":""},
                  {"lv_name":"theirs", "vg_name":"vg0", "lv_attr":"Vwi-a-tz--", "lv_size":"67108864", "pool_lv":"pool", "origin":"", "data_percent":"0.00", "metadata_percent":"", "lv_tags":""}
              ]
          }
      ]
  }
"#;

    #[test]
    fn parses_lvs_report() {
        let rows: Vec<LvRow> = parse_report(LVS, "lv").expect("parse");
        assert_eq!(rows.len(), 4);
        let snap = &rows[0];
        assert!(snap.has_tag("cinderblock") && snap.has_tag("cinderblock_pool:thin") && !snap.has_tag("cinder"));
        assert!(snap.activation_skip() && !snap.active());
        assert_eq!(snap.data_percent, None);
        let vol = &rows[1];
        assert!(vol.active() && !vol.activation_skip());
        assert_eq!(vol.lv_size, Some(128 << 20));
        assert_eq!(vol.allocated_bytes(), (134217728f64 * 0.0313).round() as u64);
        let pool = &rows[2];
        assert_eq!(pool.metadata_percent, Some(10.94));
        assert!(!rows[3].has_tag("cinderblock"));
    }

    #[test]
    fn parses_report_with_warnings_around_and_inside() {
        let before = format!(
            "  WARNING: Failed to connect to lvmetad. Falling back to device scanning.\n  WARNING: {{not json}}\n{LVS}  Consider pruning vg0 VG archive with more then 8 MiB in 9000 files (check archiving is needed in lvm.conf).\n"
        );
        let rows: Vec<LvRow> = parse_report(&before, "lv").expect("warnings around");
        assert_eq!(rows.len(), 4);
        let inside = LVS.replacen(
            "              \"lv\": [\n",
            "              \"lv\": [\n  Consider pruning vg0 VG archive with more then 8 MiB in 9000 files.\n",
            1,
        );
        assert_ne!(inside, LVS);
        let rows: Vec<LvRow> = parse_report(&inside, "lv").expect("warning inside");
        assert_eq!(rows.len(), 4);
    }

    #[test]
    fn parses_vgs_and_empty_reports_and_rejects_garbage() {
        let vgs = r#"  {
      "report": [
          {
              "vg": [
                  {"vg_name":"vg0", "vg_size":"1069547520", "vg_free":"792723456", "vg_extent_size":"4194304", "vg_tags":"cinderblock_pool:thin"}
              ]
          }
      ]
  }
"#;
        let rows: Vec<VgRow> = parse_report(vgs, "vg").expect("vgs");
        assert_eq!(rows[0].vg_free, Some(792723456));
        assert_eq!(rows[0].vg_extent_size, Some(4 << 20));
        let empty = "  {\n      \"report\": [\n          {\n              \"lv\": [\n              ]\n          }\n      ]\n  }\n";
        assert!(parse_report::<LvRow>(empty, "lv").expect("empty").is_empty());
        assert!(parse_report::<LvRow>("  Volume group \"vg9\" not found\n", "lv").is_err());
        let bad = r#"{"report":[{"lv":[{"lv_name":"x","lv_size":"12abc"}]}]}"#;
        assert!(parse_report::<LvRow>(bad, "lv").is_err());
    }
}
