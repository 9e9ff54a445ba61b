//! Loop devices: a volume file as `/dev/loopN` (STORAGE.md §1, our own small module).
//!
//! Attach is `LOOP_CTL_GET_FREE` + `LOOP_CONFIGURE` (one ioctl sets the backing fd, block size
//! and flags atomically), retried when another process takes the free device first (EBUSY).
//! Direct I/O is asked for by default so the page cache is not filled twice (loop + backing
//! file); a kernel or filesystem that refuses it (EINVAL) gets a buffered device instead, and
//! [`Attached::direct_io`] says which one it got. Detach is `LOOP_CLR_FD`, capacity changes after
//! an extend are `LOOP_SET_CAPACITY`, and [`find_by_backing_file`] finds the device of a file
//! after a restart (sysfs `loop/backing_file`), so existing attachments are adopted, not doubled.
//!
//! Kernel structures are defined here `#[repr(C)]` after `<linux/loop.h>`; sizes are checked at
//! compile time. Every call needs root (CAP_SYS_ADMIN). All functions block.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

/// `LOOP_CLR_FD`.
const LOOP_CLR_FD: u32 = 0x4C01;
/// `LOOP_SET_CAPACITY`.
const LOOP_SET_CAPACITY: u32 = 0x4C07;
/// `LOOP_CONFIGURE` (Linux 5.8+).
const LOOP_CONFIGURE: u32 = 0x4C0A;
/// `LOOP_CTL_GET_FREE` on `/dev/loop-control`.
const LOOP_CTL_GET_FREE: u32 = 0x4C82;

/// `LO_FLAGS_READ_ONLY`.
pub const LO_FLAGS_READ_ONLY: u32 = 1;
/// `LO_FLAGS_AUTOCLEAR` (never set by us: the device must outlive our descriptor).
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// `LO_FLAGS_PARTSCAN`.
pub const LO_FLAGS_PARTSCAN: u32 = 8;
/// `LO_FLAGS_DIRECT_IO`.
pub const LO_FLAGS_DIRECT_IO: u32 = 16;

const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

impl LoopConfig {
    fn new(fd: u32, block_size: u32, flags: u32, name: &Path) -> LoopConfig {
        let mut info = LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: flags,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; LO_KEY_SIZE],
            lo_init: [0; 2],
        };
        // Informational only (the kernel reports the real path in sysfs); keep a NUL at the end.
        let bytes = name.as_os_str().as_encoded_bytes();
        let n = bytes.len().min(LO_NAME_SIZE - 1);
        info.lo_file_name[..n].copy_from_slice(&bytes[..n]);
        LoopConfig { fd, block_size, info, reserved: [0; 8] }
    }
}

nix::ioctl_write_int_bad!(ioctl_loop_clr_fd, LOOP_CLR_FD);
nix::ioctl_write_int_bad!(ioctl_loop_set_capacity, LOOP_SET_CAPACITY);
nix::ioctl_write_ptr_bad!(ioctl_loop_configure, LOOP_CONFIGURE, LoopConfig);
nix::ioctl_none_bad!(ioctl_loop_ctl_get_free, LOOP_CTL_GET_FREE);

/// Errors from loop device calls.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// A system call failed; `op` says which.
    #[error("{op}: {source}")]
    Io {
        /// The step that failed.
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Every free device was taken by someone else before we could configure it.
    #[error("no free loop device after {0} attempts")]
    NoFreeDevice(u32),
}

fn io_err(op: impl Into<String>, source: impl Into<io::Error>) -> LoopError {
    LoopError::Io { op: op.into(), source: source.into() }
}

/// One loop device, `/dev/loop<number>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoopDevice {
    /// The N of `/dev/loopN`.
    pub number: u32,
}

impl LoopDevice {
    /// `/dev/loopN`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/loop{}", self.number))
    }

    fn sys(&self) -> PathBuf {
        PathBuf::from(format!("/sys/block/loop{}", self.number))
    }

    /// Parse `/dev/loopN` (or `loopN`).
    pub fn from_path(path: &Path) -> Option<LoopDevice> {
        let name = path.file_name()?.to_str()?;
        let n = name.strip_prefix("loop")?.parse().ok()?;
        Some(LoopDevice { number: n })
    }

    /// The file this device is bound to, or `None` when it is free. A backing file that was
    /// deleted or renamed over keeps its old path with a ` (deleted)` suffix.
    pub fn backing_file(&self) -> Option<PathBuf> {
        let s = std::fs::read_to_string(self.sys().join("loop/backing_file")).ok()?;
        let s = s.trim_end_matches('\n');
        (!s.is_empty()).then(|| PathBuf::from(s))
    }

    /// True when the device is bound read-only.
    pub fn is_read_only(&self) -> bool {
        read_flag(&self.sys().join("ro"))
    }

    /// True when the device does direct I/O to its file.
    pub fn is_direct_io(&self) -> bool {
        read_flag(&self.sys().join("loop/dio"))
    }

    /// Device size in bytes as the kernel sees it now.
    pub fn size_bytes(&self) -> Option<u64> {
        let s = std::fs::read_to_string(self.sys().join("size")).ok()?;
        s.trim().parse::<u64>().ok().map(|sectors| sectors * 512)
    }
}

fn read_flag(p: &Path) -> bool {
    std::fs::read_to_string(p).map(|s| s.trim() == "1").unwrap_or(false)
}

/// How to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachOptions {
    /// Bind read-only (writes to the device fail with EROFS/EPERM).
    pub readonly: bool,
    /// Ask for direct I/O; falls back to buffered I/O when the kernel refuses (EINVAL).
    pub direct_io: bool,
    /// Logical block size; 0 lets the kernel choose (512, or the backing device's).
    pub block_size: u32,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions { readonly: false, direct_io: true, block_size: 0 }
    }
}

/// A device just attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    /// The device.
    pub device: LoopDevice,
    /// Whether the device really does direct I/O.
    pub direct_io: bool,
}

/// Times we ask for a free device when someone else keeps taking it.
const ATTACH_ATTEMPTS: u32 = 20;

/// Attach `file` to a free loop device. The file must exist (exports never create storage).
pub fn attach(file: &Path, opts: AttachOptions) -> Result<Attached, LoopError> {
    let backing = OpenOptions::new()
        .read(true)
        .write(!opts.readonly)
        .open(file)
        .map_err(|e| io_err(format!("open {}", file.display()), e))?;
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| io_err("open /dev/loop-control", e))?;
    let mut flags = if opts.readonly { LO_FLAGS_READ_ONLY } else { 0 };
    if opts.direct_io {
        flags |= LO_FLAGS_DIRECT_IO;
    }
    for attempt in 0..ATTACH_ATTEMPTS {
        // SAFETY: `ctl` is an open descriptor of /dev/loop-control for the whole call, and
        // LOOP_CTL_GET_FREE takes no argument; it returns the free device number or an error.
        let n = unsafe { ioctl_loop_ctl_get_free(ctl.as_raw_fd()) }.map_err(|e| io_err("LOOP_CTL_GET_FREE", e))?;
        let device = LoopDevice { number: n as u32 };
        let dev = match open_device(device, opts.readonly) {
            Ok(d) => d,
            Err(e) => return Err(io_err(format!("open {}", device.path().display()), e)),
        };
        let mut cfg_flags = flags;
        loop {
            let cfg = LoopConfig::new(backing.as_raw_fd() as u32, opts.block_size, cfg_flags, file);
            // SAFETY: `dev` is an open loop device and `cfg` a fully initialised `loop_config`
            // with the kernel's layout (size asserted above) that lives across the call; the
            // kernel only reads it. `backing` stays open until after the call (the kernel takes
            // its own reference to the file).
            match unsafe { ioctl_loop_configure(dev.as_raw_fd(), &cfg) } {
                Ok(_) => {
                    let direct_io = if cfg_flags & LO_FLAGS_DIRECT_IO != 0 { device.is_direct_io() } else { false };
                    if opts.direct_io && !direct_io {
                        tracing::info!(device = %device.path().display(), file = %file.display(), "loop: direct I/O unavailable, using buffered I/O");
                    }
                    tracing::info!(device = %device.path().display(), file = %file.display(), readonly = opts.readonly, direct_io, "loop: attached");
                    return Ok(Attached { device, direct_io });
                }
                Err(Errno::EINVAL) if cfg_flags & LO_FLAGS_DIRECT_IO != 0 => {
                    // The filesystem or block size does not allow O_DIRECT: buffered instead.
                    cfg_flags &= !LO_FLAGS_DIRECT_IO;
                }
                Err(Errno::EBUSY) => break,
                Err(e) => return Err(io_err(format!("LOOP_CONFIGURE {}", device.path().display()), e)),
            }
        }
        // Someone took the device between GET_FREE and CONFIGURE: ask again.
        std::thread::sleep(Duration::from_millis(5 * (attempt as u64 + 1)));
    }
    Err(LoopError::NoFreeDevice(ATTACH_ATTEMPTS))
}

/// Open `/dev/loopN`, creating the node from sysfs when no devtmpfs made it.
fn open_device(device: LoopDevice, readonly: bool) -> io::Result<File> {
    let path = device.path();
    let open = || OpenOptions::new().read(true).write(!readonly).open(&path);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dev = std::fs::read_to_string(device.sys().join("dev"))?;
            let (maj, min) = dev.trim().split_once(':').ok_or_else(|| io::Error::other("bad sysfs dev"))?;
            let (maj, min): (u64, u64) =
                (maj.parse().map_err(io::Error::other)?, min.parse().map_err(io::Error::other)?);
            let r = nix::sys::stat::mknod(
                &path,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o660),
                nix::sys::stat::makedev(maj, min),
            );
            match r {
                Ok(()) | Err(Errno::EEXIST) => open(),
                Err(e) => Err(e.into()),
            }
        }
        r => r,
    }
}

/// Detach a device. Idempotent: a device already free is fine. A device still open elsewhere
/// (mounted) is detached by the kernel when its last user closes it.
pub fn detach(device: LoopDevice) -> Result<(), LoopError> {
    let dev = match OpenOptions::new().read(true).open(device.path()) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(format!("open {}", device.path().display()), e)),
    };
    for attempt in 0..ATTACH_ATTEMPTS {
        // SAFETY: `dev` is an open loop device descriptor for the whole call; LOOP_CLR_FD takes
        // an unused integer argument (0).
        match unsafe { ioctl_loop_clr_fd(dev.as_raw_fd(), 0) } {
            Ok(_) | Err(Errno::ENXIO) => {
                tracing::info!(device = %device.path().display(), "loop: detached");
                return Ok(());
            }
            // Older kernels refuse while the device is briefly held (udev probing): retry.
            Err(Errno::EBUSY) => std::thread::sleep(Duration::from_millis(10 * (attempt as u64 + 1))),
            Err(e) => return Err(io_err(format!("LOOP_CLR_FD {}", device.path().display()), e)),
        }
    }
    Err(io_err(format!("LOOP_CLR_FD {}", device.path().display()), Errno::EBUSY))
}

/// Tell the device its backing file changed size (after an extend).
pub fn set_capacity(device: LoopDevice) -> Result<(), LoopError> {
    let dev = OpenOptions::new()
        .read(true)
        .open(device.path())
        .map_err(|e| io_err(format!("open {}", device.path().display()), e))?;
    // SAFETY: `dev` is an open loop device descriptor for the whole call; LOOP_SET_CAPACITY
    // takes an unused integer argument (0).
    unsafe { ioctl_loop_set_capacity(dev.as_raw_fd(), 0) }
        .map_err(|e| io_err(format!("LOOP_SET_CAPACITY {}", device.path().display()), e))?;
    Ok(())
}

/// Every bound loop device with its backing file path.
pub fn list_attached() -> io::Result<Vec<(LoopDevice, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir("/sys/block") {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for ent in rd {
        let ent = ent?;
        let Some(dev) = LoopDevice::from_path(Path::new(&ent.file_name())) else { continue };
        if let Some(backing) = dev.backing_file() {
            out.push((dev, backing));
        }
    }
    out.sort();
    Ok(out)
}

/// The loop devices currently bound to `file` (normally zero or one), for adoption after a
/// restart. Compared by canonical path; a device whose file was deleted or replaced does not
/// match.
pub fn find_by_backing_file(file: &Path) -> io::Result<Vec<LoopDevice>> {
    let want = std::fs::canonicalize(file)?;
    Ok(list_attached()?.into_iter().filter(|(_, p)| *p == want).map(|(d, _)| d).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_layout() {
        let c = LoopConfig::new(3, 4096, LO_FLAGS_DIRECT_IO, Path::new("/a/b.raw"));
        assert_eq!(c.fd, 3);
        assert_eq!(c.info.lo_flags, LO_FLAGS_DIRECT_IO);
        assert_eq!(&c.info.lo_file_name[..8], b"/a/b.raw");
        assert_eq!(c.info.lo_file_name[8], 0);
        let long = "x".repeat(200);
        let c = LoopConfig::new(3, 0, 0, Path::new(&long));
        assert_eq!(c.info.lo_file_name[LO_NAME_SIZE - 1], 0);
        assert_eq!(std::mem::offset_of!(LoopConfig, info), 8);
        assert_eq!(std::mem::offset_of!(LoopInfo64, lo_flags), 52);
        assert_eq!(std::mem::offset_of!(LoopInfo64, lo_file_name), 56);
    }

    #[test]
    fn device_paths() {
        assert_eq!(LoopDevice::from_path(Path::new("/dev/loop12")), Some(LoopDevice { number: 12 }));
        assert_eq!(LoopDevice::from_path(Path::new("loop3")), Some(LoopDevice { number: 3 }));
        assert_eq!(LoopDevice::from_path(Path::new("/dev/loop-control")), None);
        assert_eq!(LoopDevice::from_path(Path::new("/dev/sda")), None);
        assert_eq!(LoopDevice { number: 7 }.path(), PathBuf::from("/dev/loop7"));
    }
}
