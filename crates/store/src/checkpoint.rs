//! Checkpoints bound recovery time: the whole metadata state at one LSN,
//! written to a temporary file, synced, and renamed over the previous one.
//! Layout (little-endian): magic "TANDEMC\0" | version u32 | reserved u32 |
//! lsn u64 | payload_len u64 | crc32c(payload) u32 | reserved u32 | payload
//! (postcard of `State`). Version 2 had no lock state, the last field of
//! `State`, and version 1 no mount list either: they read as empty ones.

use std::path::{Path, PathBuf};

use crate::durable;
use crate::error::{Result, StoreError};
use crate::state::State;
use crate::types::{le_u32, le_u64};

pub const CHECKPOINT_MAGIC: &[u8; 8] = b"TANDEMC\0";
pub const CHECKPOINT_VERSION: u32 = 3;
/// Version 2: `State` without its last field, the lock state.
const CHECKPOINT_VERSION_WITHOUT_LOCKS: u32 = 2;
/// Version 1: without the mount list either.
const CHECKPOINT_VERSION_WITHOUT_MOUNTS: u32 = 1;
/// postcard of an empty `MountList` (a zero count).
const EMPTY_MOUNT_LIST: [u8; 1] = [0];
/// postcard of an empty `LockState` (three empty maps).
const EMPTY_LOCK_STATE: [u8; 3] = [0, 0, 0];
pub const CHECKPOINT_HEADER_BYTES: usize = 40;
/// A checkpoint larger than this is refused as corrupt rather than read.
pub const MAX_CHECKPOINT_BYTES: u64 = 16 << 30;

pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint")
}

pub fn write(dir: &Path, state: &State) -> Result<()> {
    let payload = postcard::to_stdvec(state)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode checkpoint: {e}")))?;
    let mut header = [0u8; CHECKPOINT_HEADER_BYTES];
    header[0..8].copy_from_slice(CHECKPOINT_MAGIC);
    header[8..12].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&state.lsn.to_le_bytes());
    header[24..32].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[32..36].copy_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    let parts: [&[u8]; 2] = [&header, &payload];
    Ok(durable::replace_file(
        &checkpoint_path(dir),
        &parts,
        durable::MODE_READABLE,
    )?)
}

/// The checkpointed state, or `None` if no checkpoint was ever written.
pub fn read(dir: &Path) -> Result<Option<State>> {
    let path = checkpoint_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let bad = |why: &str| StoreError::Corrupt(format!("checkpoint {}: {why}", path.display()));
    if bytes.len() < CHECKPOINT_HEADER_BYTES || &bytes[0..8] != CHECKPOINT_MAGIC {
        return Err(bad("bad header"));
    }
    let version = le_u32(&bytes, 8);
    let missing: &[&[u8]] = match version {
        CHECKPOINT_VERSION => &[],
        CHECKPOINT_VERSION_WITHOUT_LOCKS => &[&EMPTY_LOCK_STATE],
        CHECKPOINT_VERSION_WITHOUT_MOUNTS => &[&EMPTY_MOUNT_LIST, &EMPTY_LOCK_STATE],
        _ => return Err(bad(&format!("unsupported version {version}"))),
    };
    let lsn = le_u64(&bytes, 16);
    let len = le_u64(&bytes, 24);
    if len > MAX_CHECKPOINT_BYTES || len != (bytes.len() - CHECKPOINT_HEADER_BYTES) as u64 {
        return Err(bad("payload length does not match the file"));
    }
    let payload = &bytes[CHECKPOINT_HEADER_BYTES..];
    if crc32c::crc32c(payload) != le_u32(&bytes, 32) {
        return Err(bad("checksum mismatch"));
    }
    // Fields added since the file's version are last in `State`: their
    // empty encodings complete an older payload.
    let state: State = if missing.is_empty() {
        postcard::from_bytes(payload)
    } else {
        let mut upgraded = payload.to_vec();
        missing.iter().for_each(|m| upgraded.extend_from_slice(m));
        postcard::from_bytes(&upgraded)
    }
    .map_err(|e| bad(&format!("undecodable: {e}")))?;
    if state.lsn != lsn {
        return Err(bad("header LSN differs from the state's"));
    }
    Ok(Some(state))
}
