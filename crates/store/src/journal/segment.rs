//! Segment files: `journal/<first-lsn as 20 decimal digits>.seg`, each
//! opening with a 32-byte header so a stray or truncated file is told apart
//! from a journal segment.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::types::{le_u32, le_u64, Lsn};

pub const SEGMENT_MAGIC: &[u8; 8] = b"TANDEMJ\0";
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// More segments than this means something is wrong (journal retention runs
/// away); refuse rather than open millions of files.
pub const MAX_SEGMENTS: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub first_lsn: Lsn,
    pub path: PathBuf,
}

pub fn segment_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    dir.join(format!("{first_lsn:020}.seg"))
}

pub fn header_bytes(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    // 12..16 reserved (zero)
    h[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    // 28..32 reserved (zero)
    h
}

/// Checks a segment header; returns the first LSN it declares.
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<Lsn> {
    let bad = |why: &str| StoreError::Corrupt(format!("journal segment {}: {why}", path.display()));
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(bad("shorter than its header"));
    }
    if &bytes[0..8] != SEGMENT_MAGIC {
        return Err(bad("bad magic"));
    }
    let crc = le_u32(bytes, 24);
    if crc32c::crc32c(&bytes[0..24]) != crc {
        return Err(bad("header checksum mismatch"));
    }
    let version = le_u32(bytes, 8);
    if version != SEGMENT_VERSION {
        return Err(bad(&format!("unsupported version {version}")));
    }
    Ok(le_u64(bytes, 16))
}

pub fn create_segment(dir: &Path, first_lsn: Lsn) -> Result<File> {
    let path = segment_path(dir, first_lsn);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    let written = f
        .write_all(&header_bytes(first_lsn))
        .and_then(|_| f.sync_all());
    if let Err(e) = written {
        // A headless file would read as a corrupt segment at the next open
        // and block a retry under the same name (a full disk fails here).
        let _ = std::fs::remove_file(&path);
        return Err(StoreError::io(&path, e));
    }
    crate::data::sync_dir(dir)?;
    Ok(f)
}

/// Segments sorted by first LSN. Files that are not named like segments are
/// ignored (editors' backups and the like), which fsck reports.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentInfo>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        let Ok(first_lsn) = stem.parse::<u64>() else {
            continue;
        };
        out.push(SegmentInfo {
            first_lsn,
            path: entry.path(),
        });
        if out.len() > MAX_SEGMENTS {
            return Err(StoreError::Corrupt(format!(
                "more than {MAX_SEGMENTS} journal segments in {}",
                dir.display()
            )));
        }
    }
    out.sort_by_key(|s| s.first_lsn);
    Ok(out)
}
