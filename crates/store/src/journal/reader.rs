//! Reads the journal back at start-up, for fsck, and (later) for shipping.
//!
//! A process crash can leave the end of the last segment torn: a frame cut
//! short (the write was interrupted) or, after a power loss, zeros where
//! the file grew but its blocks never reached the disk. That tail was never
//! acknowledged as durable and is cut off. A complete frame that fails its
//! checksum is damage, not a crash: no write we make produces one. So are a
//! cut-short frame that a valid frame follows (its length field was hit), a
//! bad frame in an older segment and a gap in LSNs. Damage is a clear
//! error, never a silently shorter store.

use std::path::{Path, PathBuf};

use super::frame::{decode_payload, FrameHeader, FRAME_HEADER_BYTES, MAX_PAYLOAD_BYTES};
use super::segment::{list_segments, parse_header, SEGMENT_HEADER_BYTES};
use crate::error::{Result, StoreError};
use crate::record::Record;
use crate::types::Lsn;

pub struct ScannedRecord {
    pub lsn: Lsn,
    pub epoch: u64,
    pub record: Record,
    /// Bytes of the whole frame, for accounting.
    pub frame_bytes: usize,
}

#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// LSN of the last good record (0 if none).
    pub last_lsn: Lsn,
    pub records: u64,
    /// A torn tail to cut: segment path and the length to keep.
    pub torn_tail: Option<(PathBuf, u64)>,
}

/// Calls `visit` for every record with LSN > `after_lsn`, in order.
pub fn scan(
    dir: &Path,
    after_lsn: Lsn,
    mut visit: impl FnMut(ScannedRecord) -> Result<()>,
) -> Result<ScanOutcome> {
    let segments = list_segments(dir)?;
    let mut outcome = ScanOutcome {
        last_lsn: after_lsn,
        ..ScanOutcome::default()
    };
    let mut expected: Option<Lsn> = None;
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        // Segments wholly before `after_lsn` need no reading.
        if let Some(next) = segments.get(i + 1) {
            if next.first_lsn <= after_lsn + 1 {
                continue;
            }
        }
        let bytes = std::fs::read(&seg.path).map_err(|e| StoreError::io(&seg.path, e))?;
        // The header is written and synced before any frame: a short one
        // means the crash hit while creating the segment.
        if is_last && bytes.len() < SEGMENT_HEADER_BYTES {
            outcome.torn_tail = Some((seg.path.clone(), 0));
            break;
        }
        let first_lsn = parse_header(&bytes, &seg.path)?;
        if first_lsn != seg.first_lsn {
            return Err(corrupt(&seg.path, 0, "header LSN differs from file name"));
        }
        let mut expect_lsn = expected.unwrap_or(first_lsn);
        if expect_lsn != first_lsn {
            return Err(corrupt(
                &seg.path,
                0,
                &format!("journal gap: expected LSN {expect_lsn}, segment starts at {first_lsn}"),
            ));
        }
        let mut pos = SEGMENT_HEADER_BYTES;
        while pos < bytes.len() {
            match next_frame(&bytes, pos) {
                Frame::Good { header, payload } => {
                    if header.lsn != expect_lsn {
                        return Err(corrupt(
                            &seg.path,
                            pos,
                            &format!("expected LSN {expect_lsn}, found {}", header.lsn),
                        ));
                    }
                    let frame_bytes = FRAME_HEADER_BYTES + payload.len();
                    if header.lsn > after_lsn {
                        let record = decode_payload(payload)
                            .map_err(|e| corrupt(&seg.path, pos, &e.to_string()))?;
                        visit(ScannedRecord {
                            lsn: header.lsn,
                            epoch: header.epoch,
                            record,
                            frame_bytes,
                        })?;
                        outcome.records += 1;
                        outcome.last_lsn = header.lsn;
                    }
                    // A crafted frame at LSN u64::MAX must not overflow.
                    expect_lsn = expect_lsn
                        .checked_add(1)
                        .ok_or_else(|| corrupt(&seg.path, pos, "LSN out of range"))?;
                    pos += frame_bytes;
                }
                Frame::Bad(why) => {
                    let torn = match why {
                        BadFrame::Truncated => !valid_frame_follows(&bytes, pos + 1, expect_lsn),
                        BadFrame::TooLarge | BadFrame::Checksum => {
                            bytes[pos..].iter().all(|b| *b == 0)
                        }
                    };
                    if is_last && torn {
                        outcome.torn_tail = Some((seg.path.clone(), pos as u64));
                        break;
                    }
                    return Err(corrupt(&seg.path, pos, why.describe()));
                }
            }
        }
        expected = Some(expect_lsn);
    }
    Ok(outcome)
}

/// Whether a well-formed frame with an LSN at or after `expect_lsn` starts
/// anywhere from `from` on. If one does, the bad frame before it is damage
/// inside the journal, not a tail torn by a crash.
fn valid_frame_follows(bytes: &[u8], from: usize, expect_lsn: Lsn) -> bool {
    // Cheap filters first: only LSNs near the expected one are plausible.
    const LSN_WINDOW: u64 = 1 << 32;
    (from..bytes.len().saturating_sub(FRAME_HEADER_BYTES)).any(|pos| {
        let mut lsn = [0u8; 8];
        lsn.copy_from_slice(&bytes[pos + 8..pos + 16]);
        let lsn = u64::from_le_bytes(lsn);
        lsn >= expect_lsn
            && lsn - expect_lsn < LSN_WINDOW
            && matches!(next_frame(bytes, pos), Frame::Good { .. })
    })
}

/// A damaged-journal error naming the segment and byte offset.
pub(crate) fn corrupt(path: &Path, offset: impl std::fmt::Display, why: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "journal segment {} at byte {offset}: {why}",
        path.display()
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadFrame {
    Truncated,
    TooLarge,
    Checksum,
}

impl BadFrame {
    fn describe(&self) -> &'static str {
        match self {
            BadFrame::Truncated => "frame cut short",
            BadFrame::TooLarge => "frame length over the limit",
            BadFrame::Checksum => "frame checksum mismatch",
        }
    }
}

enum Frame<'a> {
    Good {
        header: FrameHeader,
        payload: &'a [u8],
    },
    Bad(BadFrame),
}

fn next_frame(bytes: &[u8], pos: usize) -> Frame<'_> {
    let Some(head) = bytes.get(pos..pos + FRAME_HEADER_BYTES) else {
        return Frame::Bad(BadFrame::Truncated);
    };
    let mut head_arr = [0u8; FRAME_HEADER_BYTES];
    head_arr.copy_from_slice(head);
    let header = FrameHeader::parse(&head_arr);
    let len = header.payload_len as usize;
    if len > MAX_PAYLOAD_BYTES {
        return Frame::Bad(BadFrame::TooLarge);
    }
    let start = pos + FRAME_HEADER_BYTES;
    let Some(payload) = bytes.get(start..start + len) else {
        return Frame::Bad(BadFrame::Truncated);
    };
    if !header.verify(payload) {
        return Frame::Bad(BadFrame::Checksum);
    }
    Frame::Good { header, payload }
}
