//! A format inspector for untrusted image files, after Glance's and Cinder's
//! `format_inspector.py`: it reads magic bytes and headers itself, never through qemu, and
//! refuses what would let qemu-img reach outside the file:
//! - qcow2 with a backing file, an external data file (incompatible feature bit 2, or the data
//!   file header extension), or unknown incompatible features;
//! - VMDK other than `monolithicSparse`/`streamOptimized`, or whose descriptor names an extent
//!   that is not the file itself (a descriptor-only VMDK always names another file);
//! - data whose detected format is not the declared `disk_format` (a qcow2 declared raw, raw
//!   declared qcow2);
//! - headers cut short (a truncated qcow2 or VMDK header).
//!
//! Only the first [`HEAD_BYTES`] of a file and the VMDK descriptor (bounded) are read.

use std::io::{Read, Seek, SeekFrom};

/// Bytes read from the start of a file to detect its format.
pub const HEAD_BYTES: usize = 64 * 1024;

/// Largest VMDK embedded descriptor read.
const MAX_DESCRIPTOR: u64 = 1 << 20;

/// Why a file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What the inspector found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The detected format (`raw` when nothing else matched).
    pub format: &'static str,
    /// The virtual disk size in bytes, when the header gives it.
    pub virtual_size: Option<u64>,
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}
fn be64(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes)
}
fn le32(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn le64(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes)
}

fn refuse(msg: impl Into<String>) -> Refused {
    Refused(msg.into())
}

/// The format the first bytes of a file announce (no safety rules yet).
pub fn detect(head: &[u8]) -> &'static str {
    if head.starts_with(b"QFI\xfb") {
        "qcow2"
    } else if head.starts_with(b"KDMV") || head.starts_with(b"COWD") || is_vmdk_descriptor(head) {
        "vmdk"
    } else if head.starts_with(b"vhdxfile") {
        "vhdx"
    } else if head.starts_with(b"conectix") {
        "vhd"
    } else if le32(head, 0x40) == Some(0xbeda_107f) {
        "vdi"
    } else if head.get(0x8001..0x8006) == Some(b"CD001") {
        "iso"
    } else {
        "raw"
    }
}

fn is_vmdk_descriptor(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
    text.trim_start().starts_with("# Disk DescriptorFile")
}

/// Inspect the file `f` declared as `declared` (`raw`, `qcow2`, …) and apply the safety rules.
/// `file_len` is the file's length.
pub fn inspect_file(f: &mut std::fs::File, declared: &str, file_len: u64) -> Result<Inspected, Refused> {
    let mut head = vec![0u8; HEAD_BYTES.min(file_len as usize)];
    f.seek(SeekFrom::Start(0)).map_err(|e| refuse(format!("cannot read the image: {e}")))?;
    f.read_exact(&mut head).map_err(|e| refuse(format!("cannot read the image: {e}")))?;
    let found = detect(&head);
    // Formats this inspector does not know (Glance: ami/aki/ari) are taken as given, but never
    // when the data is a format qemu would open with its own rules.
    let opaque = matches!(declared, "ami" | "aki" | "ari");
    if found != declared && !(opaque && found == "raw") && !(declared == "iso" && found == "raw") {
        return Err(refuse(format!("Image disk_format {declared} does not match stream data {found}")));
    }
    let virtual_size = match found {
        "qcow2" => Some(check_qcow2(&head, file_len)?),
        "vmdk" => Some(check_vmdk(f, &head, file_len)?),
        "vhd" => Some(be64(&head, 48).ok_or_else(|| refuse("Truncated VHD footer"))?),
        "vhdx" => {
            if file_len < 1 << 20 {
                return Err(refuse("Truncated VHDX header"));
            }
            None
        }
        "vdi" => Some(le64(&head, 0x170).ok_or_else(|| refuse("Truncated VDI header"))?),
        _ => Some(file_len),
    };
    Ok(Inspected { format: found, virtual_size })
}

/// Inspect a file by path (see [`inspect_file`]).
pub fn inspect_path(path: &std::path::Path, declared: &str) -> Result<Inspected, Refused> {
    let mut f = std::fs::File::open(path).map_err(|e| refuse(format!("cannot open the image: {e}")))?;
    let len = f.metadata().map_err(|e| refuse(format!("cannot stat the image: {e}")))?.len();
    inspect_file(&mut f, declared, len)
}

/// qcow2 incompatible feature bits qemu knows: dirty, corrupt, external data file,
/// compression type, extended L2.
const QCOW2_KNOWN_INCOMPAT: u64 = 0x1f;
const QCOW2_INCOMPAT_DATA_FILE: u64 = 1 << 2;
const QCOW2_EXT_DATA_FILE: u32 = 0x4441_5441;

fn check_qcow2(h: &[u8], file_len: u64) -> Result<u64, Refused> {
    let truncated = || refuse("Truncated qcow2 header");
    let version = be32(h, 4).ok_or_else(truncated)?;
    if !(2..=3).contains(&version) {
        return Err(refuse(format!("Unsupported qcow2 version {version}")));
    }
    let header_len = if version == 2 { 72 } else { be32(h, 100).ok_or_else(truncated)? as usize };
    if header_len < 72 || (h.len() as u64) < header_len as u64 || file_len < header_len as u64 {
        return Err(truncated());
    }
    let backing_offset = be64(h, 8).ok_or_else(truncated)?;
    if backing_offset != 0 || be32(h, 16).ok_or_else(truncated)? != 0 {
        return Err(refuse("QCOW2 images with a backing file are not allowed"));
    }
    let cluster_bits = be32(h, 20).ok_or_else(truncated)?;
    if !(9..=21).contains(&cluster_bits) {
        return Err(refuse(format!("Invalid qcow2 cluster_bits {cluster_bits}")));
    }
    let size = be64(h, 24).ok_or_else(truncated)?;
    if be32(h, 32).ok_or_else(truncated)? != 0 {
        return Err(refuse("Encrypted qcow2 images are not supported"));
    }
    if version == 3 {
        let incompat = be64(h, 72).ok_or_else(truncated)?;
        if incompat & QCOW2_INCOMPAT_DATA_FILE != 0 {
            return Err(refuse("QCOW2 images with an external data file are not allowed"));
        }
        if incompat & !QCOW2_KNOWN_INCOMPAT != 0 {
            return Err(refuse(format!("QCOW2 image has unknown incompatible features {incompat:#x}")));
        }
    }
    // Header extensions follow the header up to the first cluster; a data-file name there is
    // refused even without the feature bit.
    let mut off = header_len;
    let end = (1usize << cluster_bits).min(h.len());
    while off + 8 <= end {
        let (Some(kind), Some(len)) = (be32(h, off), be32(h, off + 4)) else { break };
        if kind == 0 {
            break;
        }
        if kind == QCOW2_EXT_DATA_FILE {
            return Err(refuse("QCOW2 images with an external data file are not allowed"));
        }
        off += 8 + (len as usize).div_ceil(8) * 8;
    }
    Ok(size)
}

fn check_vmdk(f: &mut std::fs::File, h: &[u8], file_len: u64) -> Result<u64, Refused> {
    let descriptor = if h.starts_with(b"KDMV") {
        if h.len() < 512 || file_len < 512 {
            return Err(refuse("Truncated VMDK header"));
        }
        let sectors = le64(h, 12).ok_or_else(|| refuse("Truncated VMDK header"))?;
        let desc_sector = le64(h, 28).ok_or_else(|| refuse("Truncated VMDK header"))?;
        let desc_sectors = le64(h, 36).ok_or_else(|| refuse("Truncated VMDK header"))?;
        let (start, len) = (desc_sector.saturating_mul(512), desc_sectors.saturating_mul(512).min(MAX_DESCRIPTOR));
        if desc_sector == 0 || len == 0 || start.saturating_add(len) > file_len {
            return Err(refuse("VMDK image has no readable embedded descriptor"));
        }
        let mut buf = vec![0u8; len as usize];
        f.seek(SeekFrom::Start(start)).map_err(|e| refuse(format!("cannot read the image: {e}")))?;
        f.read_exact(&mut buf).map_err(|e| refuse(format!("cannot read the image: {e}")))?;
        (String::from_utf8_lossy(&buf).into_owned(), sectors.saturating_mul(512))
    } else if h.starts_with(b"COWD") {
        return Err(refuse("Unsupported VMDK format COWD"));
    } else {
        return Err(refuse("VMDK descriptor files (extents in other files) are not allowed"));
    };
    let (text, size) = descriptor;
    let text = text.trim_end_matches('\0');
    let mut create_type = None;
    let mut extents = 0;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("createType=") {
            create_type = Some(v.trim().trim_matches('"').to_string());
        } else if line.starts_with("RW ") || line.starts_with("RDONLY ") || line.starts_with("NOACCESS ") {
            extents += 1;
            let kind = line.split_whitespace().nth(2).unwrap_or("");
            if kind != "SPARSE" {
                return Err(refuse(format!("VMDK extent type {kind} is not allowed")));
            }
        }
    }
    match create_type.as_deref() {
        Some("monolithicSparse" | "streamOptimized") => {}
        Some(t) => return Err(refuse(format!("VMDK create type {t} is not allowed"))),
        None => return Err(refuse("VMDK descriptor has no createType")),
    }
    if extents != 1 {
        return Err(refuse("Only single-extent VMDK files are allowed"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qcow2_header(version: u32, incompat: u64, backing: u64) -> Vec<u8> {
        let mut h = vec![0u8; 65536];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&version.to_be_bytes());
        h[8..16].copy_from_slice(&backing.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        h[72..80].copy_from_slice(&incompat.to_be_bytes());
        h[100..104].copy_from_slice(&104u32.to_be_bytes());
        h
    }

    #[test]
    fn qcow2_rules() {
        assert_eq!(check_qcow2(&qcow2_header(3, 0, 0), 65536), Ok(1 << 30));
        assert!(check_qcow2(&qcow2_header(3, 0, 4096), 65536).unwrap_err().0.contains("backing"));
        assert!(check_qcow2(&qcow2_header(3, 4, 0), 65536).unwrap_err().0.contains("data file"));
        assert!(check_qcow2(&qcow2_header(3, 1 << 40, 0), 65536).unwrap_err().0.contains("unknown"));
        assert!(check_qcow2(&qcow2_header(3, 0, 0)[..50], 50).unwrap_err().0.contains("Truncated"));
    }

    #[test]
    fn detection() {
        assert_eq!(detect(b"QFI\xfb...."), "qcow2");
        assert_eq!(detect(b"# Disk DescriptorFile\nversion=1\n"), "vmdk");
        assert_eq!(detect(&[0u8; 1024]), "raw");
    }
}
