//! Helpers the repl integration tests share (each test binary uses some).
#![allow(dead_code, unused_macros)]

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_repl::session::SessionConfig;
use tandem_repl::wire::{decode, WireError, WIRE_VERSION};
use tandem_store::{Cred, Export, FileType, Ino, Store, StoreOptions};

pub const SITE: &str = "3f2a9c0d5e6b7a8f3f2a9c0d5e6b7a8f3f2a9c0d5e6b7a8f3f2a9c0d5e6b7a8f";

pub fn export(path: &str) -> Export {
    Export {
        path: path.into(),
        clients: Vec::new(),
        read_only: false,
        root_squash: false,
        anon_uid: 65534,
        anon_gid: 65534,
    }
}

/// Small segments and frequent checkpoints: without the retention floor,
/// checkpoints would delete frames the replica still lacks.
pub fn small_segments() -> StoreOptions {
    StoreOptions {
        max_segment_bytes: 32 << 10,
        checkpoint_every_bytes: 64 << 10,
        ..StoreOptions::default()
    }
}

/// Fast heartbeats and a short idle timeout, so a dead link shows quickly.
pub fn session_cfg() -> SessionConfig {
    SessionConfig {
        site_id: SITE.into(),
        message_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(500),
        window_batches: 3,
        max_batch_bytes: 16 << 10,
        ..SessionConfig::new(SITE)
    }
}

/// Every regular file's bytes, by inode.
pub fn contents(store: &Store) -> BTreeMap<Ino, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (&ino, inode) in &store.snapshot().inodes {
        if inode.attr.ftype != FileType::Regular {
            continue;
        }
        let mut data = Vec::new();
        while (data.len() as u64) < inode.attr.size {
            let r = store
                .read(&Cred::root(), ino, data.len() as u64, 1 << 20)
                .expect("read");
            assert!(!r.data.is_empty(), "short read");
            data.extend_from_slice(&r.data);
        }
        out.insert(ino, data);
    }
    out
}

/// Same LSN, same state, same file contents.
pub fn assert_same(active: &Store, replica: &Store) {
    assert_eq!(active.last_lsn(), replica.last_lsn());
    assert!(active.snapshot() == replica.snapshot(), "states differ");
    assert_eq!(contents(active), contents(replica));
}

/// Ships every durable frame after the replica's LSN, raising the active's
/// retention floor as a sender would.
pub fn ship(active: &Store, replica: &Store) {
    active
        .wait_durable_blocking(active.last_lsn())
        .expect("durable");
    loop {
        let frames = active
            .read_frames(replica.last_lsn(), 1 << 20)
            .expect("read frames");
        if frames.is_empty() {
            return;
        }
        replica.apply_replicated(&frames).expect("apply");
        active.set_retention_floor(replica.last_lsn());
    }
}

/// The receiver task `h` ended refusing, with an error matching `pat`.
macro_rules! assert_refused {
    ($h:expr, $pat:pat) => {{
        let err = $h.await.expect("join").err().expect("refused");
        assert!(matches!(err, $pat), "{err}");
    }};
}

/// Recomputes the envelope CRC after a test changed bytes on purpose.
pub fn reseal(bytes: &mut [u8]) {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..12]), &bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// A message with this payload and type, correctly sealed.
pub fn sealed(msg_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"TNRP");
    b.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    b.extend_from_slice(&msg_type.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(payload);
    reseal(&mut b);
    b
}

/// Why `decode` refused `bytes` as malformed (anything else fails the test).
pub fn malformed(bytes: &[u8]) -> String {
    match decode(bytes) {
        Err(WireError::Malformed { why, .. }) => why,
        other => panic!("expected Malformed, got {other:?}"),
    }
}
