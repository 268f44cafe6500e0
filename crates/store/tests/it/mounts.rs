//! The MOUNT list is journaled: it survives restarts and checkpoints, a
//! replica receives it with the other records (so DUMP at the DR site lists
//! the clients after a failover), and a replica never writes it itself.

use crate::common::*;
use tandem_store::checkpoint::{checkpoint_path, CHECKPOINT_HEADER_BYTES};
use tandem_store::*;

fn listed(store: &Store) -> Vec<(String, String)> {
    store.mounts()
}

fn pair(host: &str, path: &str) -> (String, String) {
    (host.to_owned(), path.to_owned())
}

#[test]
fn mounts_are_journaled_replicated_and_survive_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _) = new_store(&dir, StoreOptions::default());
    let lsn = store.last_lsn();
    assert!(store.mount_added("10.0.0.1", "/data").unwrap().is_some());
    assert!(store.mount_added("10.0.0.2", "/data").unwrap().is_some());
    assert_eq!(store.last_lsn(), lsn + 2);
    assert_eq!(
        store.mount_added("10.0.0.1", "/data").unwrap(),
        None,
        "a mount listed already writes nothing"
    );
    assert_eq!(store.mount_removed("10.0.0.3", None).unwrap(), None);
    assert_eq!(
        store.mount_removed("10.0.0.1", Some("/other")).unwrap(),
        None
    );
    assert_eq!(store.last_lsn(), lsn + 2);

    let replica = Store::init_replica(&tmp.path().join("r"), StoreOptions::default()).unwrap();
    ship(&store, &replica);
    assert_eq!(
        listed(&replica),
        vec![pair("10.0.0.1", "/data"), pair("10.0.0.2", "/data")]
    );
    let before = replica.last_lsn();
    assert!(matches!(
        replica.mount_added("10.0.0.9", "/data"),
        Err(StoreError::ReadOnly(_))
    ));
    assert!(matches!(
        replica.mount_removed("10.0.0.1", None),
        Err(StoreError::ReadOnly(_))
    ));
    assert_eq!(replica.last_lsn(), before, "a replica wrote nothing");
    assert_eq!(listed(&replica).len(), 2);

    store.mount_removed("10.0.0.1", Some("/data")).unwrap();
    // Replayed after an unclean restart ...
    drop(store);
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    assert_eq!(listed(&store), vec![pair("10.0.0.2", "/data")]);
    // ... and kept by a checkpoint.
    store.mount_added("10.0.0.4", "/data").unwrap();
    store.mount_removed("10.0.0.2", None).unwrap();
    store.close().unwrap();
    drop(store);
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    assert_eq!(listed(&store), vec![pair("10.0.0.4", "/data")]);
}

#[test]
fn overlong_mount_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = new_store(&tmp.path().join("s"), StoreOptions::default());
    let lsn = store.last_lsn();
    let long = "h".repeat(tandem_store::mounts::MAX_MOUNT_HOST_BYTES + 1);
    assert!(matches!(
        store.mount_added(&long, "/data"),
        Err(StoreError::NameTooLong { .. })
    ));
    let long = format!(
        "/{}",
        "p".repeat(tandem_store::mounts::MAX_MOUNT_PATH_BYTES)
    );
    assert!(matches!(
        store.mount_added("10.0.0.1", &long),
        Err(StoreError::NameTooLong { .. })
    ));
    assert_eq!(store.last_lsn(), lsn);
}

/// A version 1 checkpoint (before the mount list) opens with an empty one.
#[test]
fn a_version_1_checkpoint_reads_with_no_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _) = new_store(&dir, StoreOptions::default());
    store.close().unwrap();
    let want = store.snapshot();
    drop(store);
    let path = checkpoint_path(&dir);
    let bytes = std::fs::read(&path).unwrap();
    let (header, payload) = bytes.split_at(CHECKPOINT_HEADER_BYTES);
    assert_eq!(payload.last(), Some(&0), "an empty mount list ends it");
    let old = &payload[..payload.len() - 1];
    let mut v1 = header.to_vec();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    v1[24..32].copy_from_slice(&(old.len() as u64).to_le_bytes());
    v1[32..36].copy_from_slice(&crc32c::crc32c(old).to_le_bytes());
    v1.extend_from_slice(old);
    std::fs::write(&path, v1).unwrap();
    let read = tandem_store::checkpoint::read(&dir).unwrap().unwrap();
    assert_eq!(read, want);

    let mut v9 = std::fs::read(&path).unwrap();
    v9[8..12].copy_from_slice(&9u32.to_le_bytes());
    std::fs::write(&path, v9).unwrap();
    assert!(tandem_store::checkpoint::read(&dir).is_err());
}
