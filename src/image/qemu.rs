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

fn run(mut cmd: Command, limits: Limits) -> Result<Vec<u8>> {
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

/// `qemu-img convert -f <src_fmt> -O <dst_fmt>` of a file the inspector passes (`-n` when the
/// target exists already, e.g. a block device). `src_fmt`/`dst_fmt` are Glance disk formats.
pub fn convert(src: &Path, src_fmt: &str, dst: &Path, dst_fmt: &str, existing: bool, limits: Limits) -> Result<()> {
    if src_fmt != "raw" {
        inspect::inspect_path(src, src_fmt).map_err(|e| Error::invalid("EVS.5400", e.0))?;
    }
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-q", "-f", qemu_format(src_fmt)?, "-O", qemu_format(dst_fmt)?]);
    if existing {
        cmd.arg("-n");
    }
    if dst_fmt == "vmdk" {
        cmd.args(["-o", "subformat=streamOptimized"]);
    }
    cmd.arg(src).arg(dst);
    run(cmd, limits).map(|_| ())
}
