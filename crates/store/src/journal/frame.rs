//! One journal frame: `len u32 | crc32c u32 | lsn u64 | epoch u64 | payload`,
//! little-endian; the CRC covers lsn, epoch and payload. Replication ships
//! frames as they are, so it needs LSN, epoch and checksum without knowing
//! what the payload means.

use crate::error::{Result, StoreError};
use crate::record::Record;
use crate::types::{le_u32, le_u64, Lsn};

pub const FRAME_HEADER_BYTES: usize = 24;
/// Largest record payload: a 1 MiB write plus its attributes fits with room.
pub const MAX_PAYLOAD_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub payload_len: u32,
    pub crc: u32,
    pub lsn: Lsn,
    pub epoch: u64,
}

impl FrameHeader {
    pub fn parse(bytes: &[u8; FRAME_HEADER_BYTES]) -> FrameHeader {
        FrameHeader {
            payload_len: le_u32(bytes, 0),
            crc: le_u32(bytes, 4),
            lsn: le_u64(bytes, 8),
            epoch: le_u64(bytes, 16),
        }
    }

    pub fn checksum(lsn: Lsn, epoch: u64, payload: &[u8]) -> u32 {
        let mut crc = crc32c::crc32c(&lsn.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &epoch.to_le_bytes());
        crc32c::crc32c_append(crc, payload)
    }

    pub fn verify(&self, payload: &[u8]) -> bool {
        Self::checksum(self.lsn, self.epoch, payload) == self.crc
    }
}

/// Appends the frame of `record` to `out`; returns the frame's length.
pub fn encode_frame(out: &mut Vec<u8>, lsn: Lsn, epoch: u64, record: &Record) -> Result<usize> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    let encoded = postcard::to_extend(record, std::mem::take(out));
    *out = encoded.map_err(|e| StoreError::Corrupt(format!("cannot encode record: {e}")))?;
    let payload_len = out.len() - start - FRAME_HEADER_BYTES;
    if payload_len > MAX_PAYLOAD_BYTES {
        out.truncate(start);
        return Err(StoreError::Inval(format!(
            "record of {payload_len} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit"
        )));
    }
    let crc = FrameHeader::checksum(lsn, epoch, &out[start + FRAME_HEADER_BYTES..]);
    let header = &mut out[start..start + FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    header[8..16].copy_from_slice(&lsn.to_le_bytes());
    header[16..24].copy_from_slice(&epoch.to_le_bytes());
    Ok(out.len() - start)
}

pub fn decode_payload(payload: &[u8]) -> Result<Record> {
    postcard::from_bytes(payload)
        .map_err(|e| StoreError::Corrupt(format!("undecodable record: {e}")))
}
