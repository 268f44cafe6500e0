//! Demotion (switchover): the active store refuses local changes at once,
//! durably becomes a replica at its last LSN, takes the new active site's
//! frames (its epoch record included), survives a restart as a replica, and
//! can be undone while the peer was never asked to promote.

use crate::common::*;
use tandem_store::*;

fn write_one(store: &Store, fs: &FsConfig, name: &[u8]) -> Result<Lsn> {
    let ctx = OpCtx::new(Cred::root());
    store
        .create(
            &ctx,
            fs.root_ino,
            name,
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .map(|m| m.lsn)
}

#[test]
fn demotion_is_durable_refuses_changes_and_takes_the_peers_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, fs) = new_store(&tmp.path().join("a"), StoreOptions::default());
    write_one(&a, &fs, b"before").unwrap();
    a.wait_durable_blocking(a.last_lsn()).unwrap();
    let b = Store::init_replica(&tmp.path().join("b"), StoreOptions::default()).unwrap();
    b.apply_replicated(&a.read_frames(0, usize::MAX).unwrap())
        .unwrap();

    let d = a.demote().unwrap();
    assert_eq!((d.epoch, d.lsn), (1, a.last_lsn()));
    assert!(a.is_replica());
    assert!(a.durable_lsn() >= d.lsn);
    assert!(matches!(
        write_one(&a, &fs, b"refused"),
        Err(StoreError::ReadOnly(_))
    ));
    assert!(matches!(a.demote(), Err(StoreError::Inval(_))), "twice");

    // The peer promotes at the same LSN; its records come back to A.
    assert_eq!(b.last_lsn(), d.lsn);
    b.promote(d.epoch + 1).unwrap();
    write_one(&b, &fs, b"after").unwrap();
    b.wait_durable_blocking(b.last_lsn()).unwrap();
    a.apply_replicated(&b.read_frames(d.lsn, usize::MAX).unwrap())
        .unwrap();
    assert_eq!(a.last_lsn(), b.last_lsn());
    assert_eq!(a.epoch(), 2, "the epoch record came with the frames");

    // A restart opens it as a replica.
    let dir = a.dir().to_path_buf();
    a.close().unwrap();
    drop(a);
    let a = Store::open(&dir, StoreOptions::default()).unwrap();
    assert!(a.is_replica());
    assert_eq!(a.epoch(), 2);
}

#[test]
fn an_undone_demotion_takes_changes_again_and_leaves_no_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, fs) = new_store(&tmp.path().join("a"), StoreOptions::default());
    let d = a.demote().unwrap();
    assert!(a.dir().join(replica::ROLE_FILE).exists());
    a.undo_demote().unwrap();
    assert!(!a.is_replica());
    assert!(!a.dir().join(replica::ROLE_FILE).exists());
    let lsn = write_one(&a, &fs, b"again").unwrap();
    assert_eq!(lsn, d.lsn + 1);
    assert_eq!(a.epoch(), d.epoch);
}

#[test]
fn a_fenced_store_is_not_demoted() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _fs) = new_store(&tmp.path().join("a"), StoreOptions::default());
    a.fence(5).unwrap();
    assert!(matches!(a.demote(), Err(StoreError::Fenced { .. })));
    assert!(!a.is_replica());
}
