//! Sparse-aware full copy (what `qemu-img convert` does), for full clones and for filesystems
//! without reflink.
//!
//! Invariants: the destination shares no extents with the source (we never call
//! `copy_file_range` or `std::fs::copy`, which reflink on XFS/btrfs); holes stay holes (only
//! SEEK_DATA extents are read, and all-zero chunks inside them are skipped); the destination is
//! sized with `ftruncate` before any write, so XFS speculative EOF preallocation never ends up
//! inside the file; data is `fdatasync`ed before the caller renames the file into place.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsFd;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

/// Copy chunk size: large enough for sequential throughput, small enough to skip zero runs.
const CHUNK: usize = 1 << 20;

/// Copy `src` into `dst` (which must be empty) keeping holes, then set `dst`'s length to
/// `dst_len` (≥ the source length; a larger value grows the copy sparsely) and `fdatasync` it.
/// Returns the number of data bytes written. Reports how far it is (bytes of the source
/// passed, holes included) to the running job, if any ([`crate::model::progress`]).
pub fn sparse_copy(src: &File, dst: &File, dst_len: u64) -> io::Result<u64> {
    use crate::model::progress::report;
    let src_len = src.metadata()?.len();
    dst.set_len(dst_len.max(src_len))?;
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0u64;
    let mut pos = 0u64;
    while pos < src_len {
        let data = match lseek(src.as_fd(), pos as i64, Whence::SeekData) {
            Ok(off) => off as u64,
            Err(Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = match lseek(src.as_fd(), data as i64, Whence::SeekHole) {
            Ok(off) => (off as u64).min(src_len),
            Err(Errno::ENXIO) => src_len,
            Err(e) => return Err(e.into()),
        };
        let mut off = data;
        while off < hole {
            let n = ((hole - off) as usize).min(CHUNK);
            let chunk = &mut buf[..n];
            src.read_exact_at(chunk, off)?;
            crate::model::progress::throttle(n as u64);
            if chunk.iter().any(|&b| b != 0) {
                dst.write_all_at(chunk, off)?;
                written += n as u64;
            }
            off += n as u64;
            report(off, src_len);
        }
        pos = hole;
        report(pos, src_len);
    }
    dst.sync_data()?;
    report(src_len, src_len);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn keeps_holes_and_data() {
        let dir = tempfile::tempdir().expect("tmp");
        let sp = dir.path().join("src");
        let dp = dir.path().join("dst");
        let src = File::options().read(true).write(true).create_new(true).open(&sp).expect("src");
        src.set_len(64 << 20).expect("len");
        src.write_all_at(&[7u8; 4096], 8 << 20).expect("w1");
        src.write_all_at(&[9u8; 100], (40 << 20) + 5).expect("w2");
        let dst = File::options().read(true).write(true).create_new(true).open(&dp).expect("dst");
        sparse_copy(&src, &dst, 64 << 20).expect("copy");
        let a = std::fs::read(&sp).expect("read src");
        let b = std::fs::read(&dp).expect("read dst");
        assert_eq!(a, b);
        let md = std::fs::metadata(&dp).expect("md");
        assert!(md.blocks() * 512 <= 4 << 20, "dst allocated {} bytes", md.blocks() * 512);
    }

    #[test]
    fn grows_destination() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = File::options().read(true).write(true).create_new(true).open(dir.path().join("s")).expect("s");
        src.set_len(1 << 20).expect("len");
        let dst = File::options().read(true).write(true).create_new(true).open(dir.path().join("d")).expect("d");
        sparse_copy(&src, &dst, 4 << 20).expect("copy");
        assert_eq!(dst.metadata().expect("md").len(), 4 << 20);
    }
}
