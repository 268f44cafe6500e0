//! Promotion: a replica holding everything it received becomes the
//! writable active copy at epoch + 1, with a journal record for the new
//! epoch, a new write verifier and no replica mark; a rerun with the same
//! target finishes without a second record; a wrong target is refused and
//! changes nothing; frames are refused afterwards.

use crate::common::*;
use tandem_store::*;

fn replica_of(tmp: &std::path::Path) -> (Store, Store, FsConfig) {
    let (active, fs) = new_store(&tmp.join("active"), StoreOptions::default());
    let ctx = OpCtx::new(Cred::root());
    let f = active
        .create(
            &ctx,
            fs.root_ino,
            b"f",
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .unwrap()
        .value
        .ino;
    active.write(&ctx, f, 0, b"hello").unwrap();
    active.wait_durable_blocking(active.last_lsn()).unwrap();
    let replica = Store::init_replica(&tmp.join("replica"), StoreOptions::default()).unwrap();
    let frames = active.read_frames(0, usize::MAX).unwrap();
    replica.apply_replicated(&frames).unwrap();
    (active, replica, fs)
}

#[test]
fn promotion_raises_the_epoch_durably_and_opens_for_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (active, replica, fs) = replica_of(tmp.path());
    let lsn_before = replica.last_lsn();
    let verifier_before = replica.write_verifier();
    assert_eq!(replica.epoch(), 1);

    // A wrong target changes nothing (the current epoch itself is taken
    // as a rerun, see rerun_after_crash_between_record_and_role_finishes).
    for bad in [0, 3] {
        assert!(matches!(replica.promote(bad), Err(StoreError::Inval(_))));
    }
    assert!(replica.is_replica());
    assert_eq!(replica.last_lsn(), lsn_before);

    let p = replica.promote(2).unwrap();
    assert_eq!(p.epoch, 2);
    assert!(p.raised);
    assert_eq!(p.lsn, lsn_before + 1, "one epoch record");
    assert!(!replica.is_replica());
    assert_eq!(replica.epoch(), 2);
    assert_ne!(replica.write_verifier(), verifier_before);
    assert!(!replica.dir().join(replica::ROLE_FILE).exists());

    // Writable now; replicated frames are refused.
    let ctx = OpCtx::new(Cred::root());
    replica
        .create(
            &ctx,
            fs.root_ino,
            b"after",
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .unwrap();
    let frames = active.read_frames(0, usize::MAX).unwrap();
    assert!(matches!(
        replica.apply_replicated(&frames),
        Err(StoreError::Replication(_))
    ));

    // The epoch record is in the journal, in a frame of the new epoch, and
    // a rerun writes no second one.
    let raised = replica.read_frames(lsn_before, usize::MAX).unwrap();
    assert_eq!(raised[0].epoch, 2);
    let again = replica.promote(2).unwrap();
    assert!(!again.raised);
    replica.wait_durable_blocking(replica.last_lsn()).unwrap();
    let dir = replica.dir().to_path_buf();
    let last = replica.last_lsn();
    drop(replica);
    let reopened = Store::open(&dir, StoreOptions::default()).unwrap();
    assert!(!reopened.is_replica());
    assert_eq!(reopened.epoch(), 2);
    assert_eq!(reopened.last_lsn(), last);
}

/// A crash after the epoch record but before the replica mark went: the
/// reopened store is a replica at the new epoch, and a rerun finishes.
#[test]
fn rerun_after_crash_between_record_and_role_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_active, replica, _fs) = replica_of(tmp.path());
    replica.promote(2).unwrap();
    let dir = replica.dir().to_path_buf();
    drop(replica);
    std::fs::write(dir.join(replica::ROLE_FILE), replica::ROLE_REPLICA).unwrap();
    let reopened = Store::open(&dir, StoreOptions::default()).unwrap();
    assert!(reopened.is_replica());
    assert_eq!(reopened.epoch(), 2);
    let lsn = reopened.last_lsn();
    let p = reopened.promote(2).unwrap();
    assert!(!p.raised);
    assert_eq!(reopened.last_lsn(), lsn);
    assert!(!reopened.is_replica());
}

#[test]
fn a_fenced_store_is_not_promoted() {
    let tmp = tempfile::tempdir().unwrap();
    let (_active, replica, _fs) = replica_of(tmp.path());
    replica.fence(5).unwrap();
    assert!(matches!(replica.promote(2), Err(StoreError::Fenced { .. })));
    assert!(replica.is_replica());
}
