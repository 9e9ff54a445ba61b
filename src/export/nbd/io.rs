//! Blocking file operations behind the NBD commands. Every function is called from
//! `spawn_blocking` with a range that [`super::proto::validate_request`] already checked against
//! the export size, and works on the export's one shared file descriptor with positional calls
//! only (`pread`/`pwrite`/`fallocate`/`lseek` with SEEK_DATA/SEEK_HOLE): the fd's own offset is
//! never relied upon, so connections can share it freely.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::fcntl::{fallocate, posix_fadvise, FallocateFlags, PosixFadviseAdvice};
use nix::unistd::{fdatasync, lseek, Whence};

use super::proto::{Extent, STATE_HOLE, STATE_ZERO};

/// Most descriptors returned for one BLOCK_STATUS request; the client asks again for the rest.
pub const MAX_EXTENTS: usize = 1024;

/// Large I/O buffers are recycled: a fresh 1 MiB allocation is an `mmap` whose pages fault in
/// and are cleared on first touch, a measurable part of the cost of a 1 MiB request.
pub mod pool {
    use std::sync::Mutex;

    /// Buffers smaller than this come from malloc's own free lists anyway.
    const MIN: usize = 64 * 1024;
    /// Buffers larger than this are not kept.
    const MAX: usize = 4 * 1024 * 1024;
    /// At most this many bytes are kept, process-wide.
    const KEEP_BYTES: usize = 64 * 1024 * 1024;

    static POOL: Mutex<(Vec<Vec<u8>>, usize)> = Mutex::new((Vec::new(), 0));

    /// An empty buffer with room for at least `cap` bytes.
    pub fn get(cap: usize) -> Vec<u8> {
        if (MIN..=MAX).contains(&cap) {
            let mut p = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = p.0.iter().position(|b| b.capacity() >= cap) {
                let b = p.0.swap_remove(i);
                p.1 -= b.capacity();
                return b;
            }
        }
        Vec::with_capacity(cap)
    }

    /// Give a buffer back for reuse.
    pub fn put(mut b: Vec<u8>) {
        let cap = b.capacity();
        if !(MIN..=MAX).contains(&cap) {
            return;
        }
        b.clear();
        let mut p = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if p.1 + cap <= KEEP_BYTES {
            p.1 += cap;
            p.0.push(b);
        }
    }
}

fn off(v: u64) -> io::Result<i64> {
    i64::try_from(v).map_err(|_| io::Error::from_raw_os_error(Errno::EOVERFLOW as i32))
}

/// Size in bytes of a regular file or a block device (`lseek(SEEK_END)` works for both).
pub fn size(file: &File) -> io::Result<u64> {
    let end = lseek(file, 0, Whence::SeekEnd).map_err(io::Error::from)?;
    Ok(end as u64)
}

/// Read exactly `buf.len()` bytes at `offset`.
#[cfg(test)]
pub fn read(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

/// Outcome of a non-blocking attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoWait {
    /// Done: every byte was transferred without waiting.
    Done,
    /// It would have waited (data not cached, allocation needed, short transfer) or failed:
    /// redo it on the blocking pool, which also reports any real error.
    Retry,
    /// The kernel or filesystem does not support `RWF_NOWAIT` for this: stop trying.
    Unsupported,
}

fn nowait_outcome(n: isize, want: usize) -> NoWait {
    if n < 0 {
        return match Errno::last() {
            Errno::EOPNOTSUPP | Errno::EINVAL => NoWait::Unsupported,
            _ => NoWait::Retry,
        };
    }
    if n as usize == want {
        NoWait::Done
    } else {
        NoWait::Retry
    }
}

/// `cachestat(2)` (Linux 6.5+): the syscall number is the same on every architecture that uses
/// the unified table (all but alpha), and the libc crate does not name it for x86_64.
const SYS_CACHESTAT: nix::libc::c_long = 451;

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().map_or(4096, |v| v as u64)
    })
}

/// Whether every page of `[offset, offset + len)` is in the page cache, so that reading it (or
/// `sendfile` from it) will not wait for the disk. `len` must be positive. Errors (ENOSYS on
/// kernels before 6.5, EOPNOTSUPP on files without a page cache) mean "cannot tell".
pub fn fully_cached(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    let page = page_size();
    let first = offset / page;
    let last = (offset + len - 1) / page;
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: cachestat reads `range` and writes one `struct cachestat` into `stat`; both are
    // live, properly aligned `repr(C)` values matching the kernel's layout (five/two u64s), and
    // the descriptor is open for the lifetime of `file`.
    let rc = unsafe {
        nix::libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.nr_cache > last - first)
}

/// `preadv2` of up to `want` bytes at `offset` into the spare capacity of `buf`, growing its
/// length by what was read (no zero-filling first). Returns the syscall's result.
fn pread_spare(file: &File, buf: &mut Vec<u8>, want: usize, pos: i64, flags: i32) -> isize {
    buf.reserve(want);
    let spare = buf.spare_capacity_mut();
    let iov = nix::libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: want };
    // SAFETY: `iov` points into `buf`'s spare capacity, which `reserve` made at least `want`
    // bytes long and which nothing else aliases during the call; the descriptor is open for the
    // lifetime of `file`.
    let n = unsafe { nix::libc::preadv2(file.as_raw_fd(), &iov, 1, pos, flags) };
    if n > 0 {
        // SAFETY: the kernel initialised exactly `n` (<= `want` <= spare capacity) bytes right
        // after the current length.
        unsafe { buf.set_len(buf.len() + n as usize) };
    }
    n
}

/// Append `len` bytes read at `offset` to `buf`, only if the page cache has all of them
/// (`preadv2(RWF_NOWAIT)`), so the async reader can answer cache hits without a thread hop. On
/// anything but `Done`, `buf` is left as it was.
pub fn read_append_nowait(file: &File, buf: &mut Vec<u8>, len: usize, offset: u64) -> NoWait {
    let Ok(pos) = off(offset) else { return NoWait::Retry };
    let start = buf.len();
    let n = pread_spare(file, buf, len, pos, nix::libc::RWF_NOWAIT);
    let outcome = nowait_outcome(n, len);
    if outcome != NoWait::Done {
        buf.truncate(start);
    }
    outcome
}

/// Append exactly `len` bytes read at `offset` to `buf` (blocking). On error `buf` may hold
/// part of the data; the caller discards it.
pub fn read_append(file: &File, buf: &mut Vec<u8>, len: usize, offset: u64) -> io::Result<()> {
    let mut done = 0usize;
    while done < len {
        let pos = off(offset + done as u64)?;
        let n = pread_spare(file, buf, len - done, pos, 0);
        if n < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e.into()),
            }
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file"));
        }
        done += n as usize;
    }
    Ok(())
}

/// Write all of `buf` at `offset`; with `fua`, persist before returning.
pub fn write(file: &File, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
    file.write_all_at(buf, offset)?;
    if fua {
        flush(file)?;
    }
    Ok(())
}

/// Persist every completed write (`fdatasync`).
pub fn flush(file: &File) -> io::Result<()> {
    fdatasync(file).map_err(io::Error::from)
}

/// Discard a range: punch a hole, keeping the size. A filesystem that cannot punch holes makes
/// TRIM a no-op (the protocol allows ignoring it).
pub fn trim(file: &File, offset: u64, len: u32, fua: bool) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    match fallocate(
        file,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        off(offset)?,
        len as i64,
    ) {
        Ok(()) => {}
        Err(Errno::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if fua {
        flush(file)?;
    }
    Ok(())
}

/// Make a range read as zeroes. Without `no_hole` punch a hole (cheapest, frees space); with it,
/// or when punching is unsupported, use `ZERO_RANGE` (allocated, reads as zeroes). When neither
/// works, write zero buffers, unless `fast` (FAST_ZERO) asks to fail with EOPNOTSUPP instead.
pub fn write_zeroes(file: &File, offset: u64, len: u32, no_hole: bool, fast: bool, fua: bool) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let start = off(offset)?;
    let keep = FallocateFlags::FALLOC_FL_KEEP_SIZE;
    let mut done = false;
    if !no_hole {
        match fallocate(file, FallocateFlags::FALLOC_FL_PUNCH_HOLE | keep, start, len as i64) {
            Ok(()) => done = true,
            Err(Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !done {
        match fallocate(file, FallocateFlags::FALLOC_FL_ZERO_RANGE | keep, start, len as i64) {
            Ok(()) => done = true,
            Err(Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !done {
        if fast {
            return Err(io::Error::from_raw_os_error(Errno::EOPNOTSUPP as i32));
        }
        const CHUNK: usize = 1 << 20;
        let zeroes = vec![0u8; CHUNK.min(len as usize)];
        let mut pos = 0u64;
        while pos < len as u64 {
            let n = zeroes.len().min((len as u64 - pos) as usize);
            file.write_all_at(&zeroes[..n], offset + pos)?;
            pos += n as u64;
        }
    }
    if fua {
        flush(file)?;
    }
    Ok(())
}

/// Prefetch a range into the page cache.
pub fn cache(file: &File, offset: u64, len: u32) -> io::Result<()> {
    posix_fadvise(file, off(offset)?, len as i64, PosixFadviseAdvice::POSIX_FADV_WILLNEED).map_err(io::Error::from)
}

/// `base:allocation` extents of `[offset, offset + len)` by walking SEEK_DATA/SEEK_HOLE. Holes
/// (and unwritten extents, which SEEK_DATA also skips) are `HOLE|ZERO`, data is 0. A file or
/// device without SEEK_DATA support reports the whole range as data. At most `max` descriptors
/// (one with `req_one`); their lengths never pass the requested range.
pub fn extents(file: &File, offset: u64, len: u32, req_one: bool, max: usize) -> io::Result<Vec<Extent>> {
    let end = offset + len as u64;
    let limit = if req_one { 1 } else { max.max(1) };
    let mut out: Vec<Extent> = Vec::new();
    let mut pos = offset;
    while pos < end && out.len() < limit {
        let (next, flags) = match lseek(file, off(pos)?, Whence::SeekData) {
            Ok(data) if (data as u64) > pos => ((data as u64).min(end), STATE_HOLE | STATE_ZERO),
            Ok(_) => match lseek(file, off(pos)?, Whence::SeekHole) {
                Ok(hole) => ((hole as u64).clamp(pos + 1, end), 0),
                Err(Errno::EINVAL | Errno::EOPNOTSUPP) => (end, 0),
                Err(e) => return Err(e.into()),
            },
            // No data at or after `pos`: the rest is a hole.
            Err(Errno::ENXIO) => (end, STATE_HOLE | STATE_ZERO),
            Err(Errno::EINVAL | Errno::EOPNOTSUPP) => (end, 0),
            Err(e) => return Err(e.into()),
        };
        let length = (next - pos) as u32;
        match out.last_mut() {
            Some(last) if last.flags == flags => last.length += length,
            _ => out.push(Extent { length, flags }),
        }
        pos = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn sparse_file(size: u64) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        f.set_len(size).unwrap();
        (dir, f)
    }

    #[test]
    fn extents_follow_holes() {
        let (_d, f) = sparse_file(4 << 20);
        f.write_all_at(&vec![1u8; 1 << 20], 1 << 20).unwrap();
        f.sync_all().unwrap();
        let e = extents(&f, 0, 4 << 20, false, MAX_EXTENTS).unwrap();
        assert_eq!(
            e,
            vec![
                Extent { length: 1 << 20, flags: STATE_HOLE | STATE_ZERO },
                Extent { length: 1 << 20, flags: 0 },
                Extent { length: 2 << 20, flags: STATE_HOLE | STATE_ZERO },
            ]
        );
        let one = extents(&f, 0, 4 << 20, true, MAX_EXTENTS).unwrap();
        assert_eq!(one.len(), 1);
        // A range inside the data extent.
        assert_eq!(extents(&f, (1 << 20) + 5, 100, false, 8).unwrap(), vec![Extent { length: 100, flags: 0 }]);
        assert_eq!(e.iter().map(|x| x.length as u64).sum::<u64>(), 4 << 20);
        assert_eq!(size(&f).unwrap(), 4 << 20);
    }

    #[test]
    fn trim_and_zeroes() {
        let (_d, f) = sparse_file(4 << 20);
        f.write_all_at(&vec![7u8; 4 << 20], 0).unwrap();
        f.sync_all().unwrap();
        let before = f.metadata().unwrap().blocks();
        trim(&f, 0, 1 << 20, true).unwrap();
        assert!(f.metadata().unwrap().blocks() < before);
        write_zeroes(&f, 2 << 20, 1000, true, true, false).unwrap();
        write_zeroes(&f, 3 << 20, 4096, false, false, false).unwrap();
        let mut b = vec![1u8; 4 << 20];
        read(&f, &mut b, 0).unwrap();
        assert!(b[..1 << 20].iter().all(|&x| x == 0));
        assert!(b[1 << 20..2 << 20].iter().all(|&x| x == 7));
        assert!(b[2 << 20..(2 << 20) + 1000].iter().all(|&x| x == 0));
        assert_eq!(b[(2 << 20) + 1000], 7);
        assert!(b[3 << 20..(3 << 20) + 4096].iter().all(|&x| x == 0));
        cache(&f, 0, 4096).unwrap();
        flush(&f).unwrap();
    }
}
