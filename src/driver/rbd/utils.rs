//! Data copies of the RBD driver: a local file into an image (skipping the file's holes and
//! all-zero blocks, since a new image reads as zeroes) and an image version into a local
//! sparse file (reading only the extents librbd reports allocated).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsFd;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

use super::rados::Image;

/// Read size of one copy step.
const CHUNK: usize = 4 << 20;
/// Granularity of zero skipping.
const BLOCK: usize = 64 << 10;

/// Write the first `len` bytes of `src` into `dst` (a new image reading as zeroes), skipping
/// holes (SEEK_DATA where the file system has it) and all-zero 64 KiB blocks, then flush.
/// Returns the bytes written.
pub fn file_to_image(src: &File, dst: &Image, len: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let (mut pos, mut written) = (0u64, 0u64);
    while pos < len {
        let data = match lseek(src.as_fd(), pos as i64, Whence::SeekData) {
            Ok(off) => off as u64,
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL) => pos,
            Err(e) => return Err(e.into()),
        };
        if data >= len {
            break;
        }
        let hole = match lseek(src.as_fd(), data as i64, Whence::SeekHole) {
            Ok(off) => (off as u64).min(len),
            Err(_) => len,
        };
        let mut off = data;
        while off < hole {
            let n = ((hole - off) as usize).min(CHUNK);
            let chunk = &mut buf[..n];
            src.read_exact_at(chunk, off)?;
            for (i, block) in chunk.chunks(BLOCK).enumerate() {
                if block.iter().any(|&b| b != 0) {
                    dst.write_at(block, off + (i * BLOCK) as u64)?;
                    written += block.len() as u64;
                }
            }
            off += n as u64;
        }
        if hole <= data {
            break;
        }
        pos = hole;
    }
    dst.flush()?;
    Ok(written)
}

/// Copy the open version of `src` (an image opened at a snapshot) into `dst`, a file already
/// `src`'s size and reading as zeroes: only allocated extents are read (parent data
/// included), all-zero blocks are not written, so `dst` stays sparse. Then fsync.
pub fn image_to_file(src: &Image, dst: &File) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0u64;
    for (start, len) in src.extents(true, false)? {
        let mut off = start;
        let end = start + len;
        while off < end {
            let n = ((end - off) as usize).min(CHUNK);
            let chunk = &mut buf[..n];
            src.read_at(chunk, off)?;
            for (i, block) in chunk.chunks(BLOCK).enumerate() {
                if block.iter().any(|&b| b != 0) {
                    dst.write_all_at(block, off + (i * BLOCK) as u64)?;
                    written += block.len() as u64;
                }
            }
            off += n as u64;
        }
    }
    dst.sync_all()?;
    Ok(written)
}
