//! `qemu-img`, only ever on files the inspector passed, always with an explicit `-f`, and
//! under resource limits (CPU seconds and address space, as Cinder's `qemu_img_info` runs it
//! under `prlimit`), set in the child between fork and exec.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::inspect;
use crate::error::{Error, Result};

/// Limits for one qemu-img run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// RLIMIT_CPU, seconds.
    pub cpu_seconds: u64,
    /// RLIMIT_AS, bytes.
    pub address_space_bytes: u64,
}

/// What `qemu-img info` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The format qemu opened it as (always the one given with `-f`).
    pub format: String,
    /// Virtual size in bytes.
    pub virtual_size: u64,
}

/// qemu-img's name for a Glance disk format.
pub fn qemu_format(disk_format: &str) -> Result<&'static str> {
    Ok(match disk_format {
        "raw" | "iso" | "ami" => "raw",
        "qcow2" => "qcow2",
        "vmdk" => "vmdk",
        "vhd" => "vpc",
        "vhdx" => "vhdx",
        "vdi" => "vdi",
        other => return Err(Error::invalid("EVS.5400", format!("disk_format {other} cannot be converted"))),
    })
}

fn set_limits(cmd: &mut Command, limits: Limits) {
    let (cpu, mem) = (limits.cpu_seconds, limits.address_space_bytes);
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit(2),
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CPU, cpu, cpu)?;
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, mem, mem)?;
            Ok(())
        });
    }
    cmd.env("LC_ALL", "C").stdin(std::process::Stdio::null());
}

fn run(mut cmd: Command, limits: Limits) -> Result<Vec<u8>> {
    set_limits(&mut cmd, limits);
    let out = cmd.output().map_err(|e| Error::internal(format!("cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::internal(format!("qemu-img failed ({}): {}", out.status, err.trim())));
    }
    Ok(out.stdout)
}

/// `qemu-img info -f <fmt> --output=json` of a file the inspector passes as `disk_format`.
pub fn info(path: &Path, disk_format: &str, limits: Limits) -> Result<Info> {
    inspect::inspect_path(path, disk_format).map_err(|e| Error::invalid("EVS.5400", e.0))?;
    let fmt = qemu_format(disk_format)?;
    let mut cmd = Command::new("qemu-img");
    cmd.args(["info", "-f", fmt, "--output=json"]).arg(path);
    let out = run(cmd, limits)?;
    let v: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| Error::internal(format!("qemu-img info output: {e}")))?;
    if v.get("backing-filename").is_some() || v.get("full-backing-filename").is_some() {
        return Err(Error::invalid("EVS.5400", "the image has a backing file"));
    }
    if v.pointer("/format-specific/data/data-file").is_some() {
        return Err(Error::invalid("EVS.5400", "the image has an external data file"));
    }
    let virtual_size = v
        .get("virtual-size")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| Error::internal("qemu-img info gave no virtual-size"))?;
    Ok(Info { format: fmt.to_string(), virtual_size })
}

/// `qemu-img convert -p -f <src_fmt> -O <dst_fmt>` of a file the inspector passes (`-n` when
/// the target exists already, e.g. a block device); its progress goes to the running job. `src_fmt`/`dst_fmt` are Glance disk formats.
pub fn convert(src: &Path, src_fmt: &str, dst: &Path, dst_fmt: &str, existing: bool, limits: Limits) -> Result<()> {
    if src_fmt != "raw" {
        inspect::inspect_path(src, src_fmt).map_err(|e| Error::invalid("EVS.5400", e.0))?;
    }
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-p", "-f", qemu_format(src_fmt)?, "-O", qemu_format(dst_fmt)?]);
    if existing {
        cmd.arg("-n");
    }
    if dst_fmt == "vmdk" {
        cmd.args(["-o", "subformat=streamOptimized"]);
    }
    cmd.arg(src).arg(dst);
    run_with_progress(cmd, limits)
}

/// Units of a qemu-img progress report: hundredths of a percent.
const QEMU_PROGRESS_TOTAL: u64 = 10_000;

/// Run a `qemu-img convert` with `-p` and pass its `(12.34/100%)` reports on to the running
/// job ([`crate::model::progress`]) as they come. stderr is drained on its own thread so
/// neither pipe can fill and stall the child.
fn run_with_progress(mut cmd: Command, limits: Limits) -> Result<()> {
    use std::io::Read;
    set_limits(&mut cmd, limits);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::internal(format!("cannot run qemu-img: {e}")))?;
    let mut stderr = child.stderr.take().ok_or_else(|| Error::internal("qemu-img: no stderr pipe"))?;
    let errs = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    if let Some(mut out) = child.stdout.take() {
        let mut buf = [0u8; 512];
        let mut line = Vec::new();
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b == b'\r' || b == b'\n' {
                    if let Some(p) = parse_qemu_progress(&line) {
                        crate::model::progress::report(p, QEMU_PROGRESS_TOTAL);
                    }
                    line.clear();
                } else if line.len() < 64 {
                    line.push(b);
                }
            }
        }
    }
    let status = child.wait().map_err(|e| Error::internal(format!("qemu-img: {e}")))?;
    let err = errs.join().unwrap_or_default();
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        return Err(Error::internal(format!("qemu-img failed ({status}): {}", err.trim())));
    }
    Ok(())
}

/// `    (12.34/100%)` → 1234 (hundredths of a percent).
fn parse_qemu_progress(line: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(line).ok()?.trim();
    let pct = s.strip_prefix('(')?.strip_suffix("/100%)")?;
    let (whole, frac) = pct.split_once('.').unwrap_or((pct, "0"));
    let whole: u64 = whole.parse().ok()?;
    let frac: u64 = format!("{frac:0<2}").get(..2)?.parse().ok()?;
    Some((whole * 100 + frac).min(QEMU_PROGRESS_TOTAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_progress_lines_parse_to_hundredths_of_a_percent() {
        assert_eq!(parse_qemu_progress(b"    (0.00/100%)"), Some(0));
        assert_eq!(parse_qemu_progress(b"    (12.34/100%)"), Some(1234));
        assert_eq!(parse_qemu_progress(b"(100.00/100%)"), Some(10_000));
        assert_eq!(parse_qemu_progress(b"(7.5/100%)"), Some(750));
        assert_eq!(parse_qemu_progress(b"garbage"), None);
        assert_eq!(parse_qemu_progress(b"(x/100%)"), None);
    }
}
