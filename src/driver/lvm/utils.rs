//! Block-level helpers of the LVM driver: a zero-skipping copy between files or block
//! devices, device size, and discard.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

/// Read size of one copy step.
const CHUNK: usize = 1 << 20;
/// Granularity of zero skipping: a thin pool's smallest chunk (64 KiB), so an all-zero block
/// never makes the pool allocate one.
const BLOCK: usize = 64 << 10;

/// Size in bytes of a file or block device.
pub fn size_of(f: &File) -> io::Result<u64> {
    let end = lseek(f.as_fd(), 0, Whence::SeekEnd).map_err(io::Error::from)?;
    Ok(end as u64)
}

/// Copy the first `len` bytes of `src` (a file or a block device) into `dst` (already at least
/// `len` long and reading as zeroes), writing only the 64 KiB blocks that hold a non-zero byte:
/// unallocated ranges of the source (SEEK_DATA, where it works; block devices report all
/// data) and zero blocks are skipped, so the copy allocates only data. Then `fsync`s `dst`.
/// Returns the bytes written. Reports how far it is to the running job, if any.
pub fn block_copy(src: &File, dst: &File, len: u64) -> io::Result<u64> {
    use crate::model::progress::report;
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0u64;
    let mut pos = 0u64;
    while pos < len {
        let data = match lseek(src.as_fd(), pos as i64, Whence::SeekData) {
            Ok(off) => off as u64,
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL) => pos,
            Err(e) => return Err(e.into()),
        };
        let hole = match lseek(src.as_fd(), data as i64, Whence::SeekHole) {
            Ok(off) => (off as u64).min(len),
            Err(_) => len,
        };
        let mut off = data;
        while off < hole {
            let n = ((hole - off) as usize).min(CHUNK);
            let chunk = &mut buf[..n];
            src.read_exact_at(chunk, off)?;
            crate::model::progress::throttle(n as u64);
            for (i, block) in chunk.chunks(BLOCK).enumerate() {
                if block.iter().any(|&b| b != 0) {
                    dst.write_all_at(block, off + (i * BLOCK) as u64)?;
                    written += block.len() as u64;
                }
            }
            off += n as u64;
            report(off, len);
        }
        if hole <= data {
            break;
        }
        pos = hole;
        report(pos, len);
    }
    dst.sync_all()?;
    report(len, len);
    Ok(written)
}

nix::ioctl_write_ptr_bad!(ioctl_blkdiscard, nix::request_code_none!(0x12, 119), [u64; 2]);

/// Discard (`BLKDISCARD`) the whole block device `dev`, so a thin pool unmaps its chunks.
/// Returns `Ok(false)` when the device does not support discard.
pub fn discard(dev: &File) -> io::Result<bool> {
    let len = size_of(dev)?;
    if len == 0 {
        return Ok(true);
    }
    let range = [0u64, len];
    // SAFETY: BLKDISCARD reads a `[u64; 2]` (start, length) from the pointer, which points to
    // `range`, alive for the call; the fd is an open block device.
    match unsafe { ioctl_blkdiscard(dev.as_raw_fd(), &range) } {
        Ok(_) => Ok(true),
        Err(Errno::EOPNOTSUPP) | Err(Errno::ENOTTY) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copies_data_skips_zero_blocks() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = File::options().read(true).write(true).create_new(true).open(dir.path().join("s")).expect("s");
        src.set_len(32 << 20).expect("len");
        src.write_all_at(&[5u8; 10], 3 << 20).expect("w");
        // A fully written but all-zero range: allocated in the source, must not be in the copy.
        src.write_all_at(&vec![0u8; 4 << 20], 8 << 20).expect("zeros");
        src.write_all_at(&[6u8; 1], (32 << 20) - 1).expect("last");
        let dst = File::options().read(true).write(true).create_new(true).open(dir.path().join("d")).expect("d");
        dst.set_len(32 << 20).expect("len");
        let n = block_copy(&src, &dst, 32 << 20).expect("copy");
        assert!(n > 0 && n <= 2 * BLOCK as u64, "wrote {n} bytes");
        assert_eq!(std::fs::read(dir.path().join("s")).expect("s"), std::fs::read(dir.path().join("d")).expect("d"));
        assert!(dst.metadata().expect("md").blocks() * 512 <= 4 * BLOCK as u64);
    }

    #[test]
    fn discard_on_a_regular_file_is_not_supported() {
        let f = tempfile::tempfile().expect("tmp");
        f.set_len(1 << 20).expect("len");
        assert!(matches!(discard(&f), Ok(false) | Err(_)));
    }
}
