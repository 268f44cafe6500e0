//! Lock state as vserver state: share reservations, NSM monitoring and
//! reboots, limits, records that do not fit refused, older checkpoints,
//! removed files, verify's digest and fsck.

use crate::common::*;
use tandem_store::checkpoint::{checkpoint_path, CHECKPOINT_HEADER_BYTES};
use tandem_store::locks::*;
use tandem_store::pending::{DataOp, DataSink};
use tandem_store::record::{Op, Record};
use tandem_store::*;

fn opts() -> StoreOptions {
    StoreOptions {
        retain_journal: true,
        ..StoreOptions::default()
    }
}

fn owner(host: &str, svid: u32) -> LockOwner {
    LockOwner {
        host: host.into(),
        svid,
        oh: vec![svid as u8; 4],
    }
}

fn sowner(host: &str) -> ShareOwner {
    ShareOwner {
        host: host.into(),
        oh: b"oh".to_vec(),
    }
}

fn range(start: u64, len: u64) -> ByteRange {
    ByteRange::from_offset_len(start, len)
}

fn id(name: &str) -> MonitorId {
    MonitorId {
        my_name: name.into(),
        prog: 100021,
        vers: 4,
        proc_: 16,
    }
}

fn granted(o: LockOutcome) -> bool {
    matches!(o, LockOutcome::Granted(_))
}

#[test]
fn shares_conflict_by_access_and_deny() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, fs) = new_store(&tmp.path().join("s"), opts());
    let f = create_file(&store, fs.root_ino, b"f");
    let rw_deny_w = ShareMode {
        access: 3,
        deny: ShareMode::WRITE,
    };
    let read = ShareMode {
        access: ShareMode::READ,
        deny: 0,
    };
    let write = ShareMode {
        access: ShareMode::WRITE,
        deny: 0,
    };
    assert!(matches!(
        store.share(f, &sowner("a"), rw_deny_w).unwrap(),
        ShareOutcome::Granted(Some(_))
    ));
    assert_eq!(
        store.share(f, &sowner("a"), rw_deny_w).unwrap(),
        ShareOutcome::Granted(None),
        "the same reservation again writes nothing"
    );
    assert!(matches!(
        store.share(f, &sowner("b"), read).unwrap(),
        ShareOutcome::Granted(_)
    ));
    assert_eq!(
        store.share(f, &sowner("c"), write).unwrap(),
        ShareOutcome::Denied
    );
    assert!(matches!(
        store.share(f, &sowner("c"), ShareMode { access: 4, deny: 0 }),
        Err(StoreError::Inval(_))
    ));
    store.unshare(f, &sowner("a")).unwrap();
    assert_eq!(store.unshare(f, &sowner("a")).unwrap(), None);
    assert!(matches!(
        store.share(f, &sowner("c"), write).unwrap(),
        ShareOutcome::Granted(_)
    ));
    assert_eq!(store.lock_state().share_count(), 2);
}

#[test]
fn a_rebooted_host_loses_its_locks_and_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, fs) = new_store(&tmp.path().join("s"), opts());
    let f = create_file(&store, fs.root_ino, b"f");
    assert!(granted(
        store.lock(f, &owner("a", 1), range(0, 0), true).unwrap()
    ));
    store
        .share(f, &sowner("a"), ShareMode { access: 1, deny: 2 })
        .unwrap();
    store.monitor("a", &id("server"), [7; 16]).unwrap();
    assert_eq!(store.monitor("a", &id("server"), [7; 16]).unwrap(), None);
    assert!(!granted(
        store.lock(f, &owner("b", 1), range(5, 1), false).unwrap()
    ));

    assert!(store.host_rebooted("a", 3).unwrap().is_some());
    let st = store.lock_state();
    assert_eq!(st.lock_count(), 0);
    assert_eq!(st.share_count(), 0);
    assert_eq!(st.monitored()["a"].state, 3);
    assert_eq!(st.monitored()["a"].regs[&id("server")], [7; 16]);
    assert_eq!(
        store.host_rebooted("a", 3).unwrap(),
        None,
        "a repeated notify"
    );
    assert!(granted(
        store.lock(f, &owner("b", 1), range(5, 1), false).unwrap()
    ));

    store.unmonitor(Some("a"), &id("other")).unwrap();
    assert_eq!(store.lock_state().monitored().len(), 1);
    store.monitor("c", &id("server"), [0; 16]).unwrap();
    store.unmonitor(None, &id("server")).unwrap();
    assert!(store.lock_state().monitored().is_empty(), "UNMON_ALL");
    assert!(store.free_host_locks("b").unwrap().is_some());
    assert_eq!(store.free_host_locks("b").unwrap(), None);
    assert!(store.lock_state().is_empty());
}

#[test]
fn limits_refuse_with_a_typed_error_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, fs) = new_store(&tmp.path().join("s"), opts());
    let f = create_file(&store, fs.root_ino, b"f");
    let o = owner("flood", 1);
    // Gaps keep every lock a piece of its own.
    for i in 0..MAX_LOCKS_PER_HOST as u64 {
        assert!(granted(store.lock(f, &o, range(i * 2, 1), true).unwrap()));
    }
    let lsn = store.last_lsn();
    let beyond = MAX_LOCKS_PER_HOST as u64 * 2;
    assert!(matches!(
        store.lock(f, &o, range(beyond, 1), true),
        Err(StoreError::TooManyLocks {
            max: MAX_LOCKS_PER_HOST,
            ..
        })
    ));
    // Splitting a piece in two grows the count too.
    assert!(matches!(
        store.lock(f, &o, range(0, 1), false).map(granted),
        Ok(true)
    ));
    assert_eq!(store.last_lsn(), lsn + 1);
    // A merge shrinks it, and another host is not held back.
    assert!(granted(store.lock(f, &o, range(0, 4), true).unwrap()));
    assert!(granted(store.lock(f, &o, range(beyond, 1), true).unwrap()));
    assert!(granted(
        store
            .lock(f, &owner("quiet", 1), range(beyond + 10, 1), true)
            .unwrap()
    ));

    for i in 0..MAX_MONITORED_HOSTS {
        store.monitor(&format!("h{i}"), &id("s"), [0; 16]).unwrap();
    }
    assert!(matches!(
        store.monitor("one-more", &id("s"), [0; 16]),
        Err(StoreError::TooManyLocks { .. })
    ));
    for i in 0..MAX_MONITORS_PER_HOST {
        store.monitor("h0", &id(&format!("s{i}")), [0; 16]).ok();
    }
    assert!(matches!(
        store.monitor("h0", &id("s-more"), [0; 16]),
        Err(StoreError::TooManyLocks { .. })
    ));
    for i in 0..MAX_SHARES_PER_VSERVER {
        let o = ShareOwner {
            host: "s".into(),
            oh: i.to_le_bytes().to_vec(),
        };
        store
            .share(f, &o, ShareMode { access: 1, deny: 0 })
            .unwrap();
    }
    assert!(matches!(
        store.share(f, &sowner("x"), ShareMode { access: 1, deny: 0 }),
        Err(StoreError::TooManyLocks { .. })
    ));
}

#[test]
fn bad_arguments_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, fs) = new_store(&tmp.path().join("s"), opts());
    let f = create_file(&store, fs.root_ino, b"f");
    let lsn = store.last_lsn();
    let long = owner(&"h".repeat(MAX_LOCK_HOST_BYTES + 1), 1);
    assert!(matches!(
        store.lock(f, &long, range(0, 1), true),
        Err(StoreError::NameTooLong { .. })
    ));
    let mut big = owner("a", 1);
    big.oh = vec![0; MAX_OWNER_HANDLE_BYTES + 1];
    assert!(matches!(
        store.lock(f, &big, range(0, 1), true),
        Err(StoreError::Inval(_))
    ));
    assert!(matches!(
        store.lock(f, &owner("", 1), range(0, 1), true),
        Err(StoreError::Inval(_))
    ));
    let empty = ByteRange { start: 5, end: 4 };
    assert!(matches!(
        store.lock(f, &owner("a", 1), empty, true),
        Err(StoreError::Inval(_))
    ));
    assert!(matches!(
        store.lock(9999, &owner("a", 1), range(0, 1), true),
        Err(StoreError::Stale)
    ));
    assert_eq!(store.last_lsn(), lsn);
}

struct Discard;
impl DataSink for Discard {
    fn data_op(&self, _: u64, _: Ino, _: DataOp) -> Result<()> {
        Ok(())
    }
}

#[test]
fn records_that_do_not_fit_are_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, fs) = new_store(&tmp.path().join("s"), opts());
    let f = create_file(&store, fs.root_ino, b"f");
    store.lock(f, &owner("a", 1), range(0, 10), true).unwrap();
    store
        .share(f, &sowner("a"), ShareMode { access: 3, deny: 3 })
        .unwrap();
    let st = store.snapshot();
    let bad = [
        Op::LockGranted {
            ino: f,
            owner: owner("b", 1),
            range: range(5, 1),
            exclusive: false,
        },
        Op::LockGranted {
            ino: 9999,
            owner: owner("b", 1),
            range: range(5, 1),
            exclusive: false,
        },
        Op::LockGranted {
            ino: f,
            owner: owner("b", 1),
            range: ByteRange { start: 50, end: 40 },
            exclusive: false,
        },
        Op::LockReleased {
            ino: f,
            owner: owner("a", 1),
            range: ByteRange { start: 50, end: 40 },
        },
        Op::ShareGranted {
            ino: f,
            owner: sowner("b"),
            mode: ShareMode { access: 1, deny: 0 },
        },
        Op::ShareGranted {
            ino: f,
            owner: sowner("a"),
            mode: ShareMode { access: 9, deny: 0 },
        },
    ];
    for op in bad {
        let mut s = st.clone();
        let r = s.apply(
            st.lsn + 1,
            &Record {
                req: None,
                op: op.clone(),
            },
            &Discard,
        );
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{op:?}: {r:?}");
    }
}

/// Two stores with one history so far (a file "f"), to diverge.
fn two_copies(tmp: &std::path::Path) -> (Store, Store, Ino) {
    let base = tmp.join("a");
    let (store, fs) = new_store(&base, opts());
    let f = create_file(&store, fs.root_ino, b"f");
    store.close().unwrap();
    drop(store);
    copy_tree(&base, &tmp.join("b"));
    let a = Store::open(&base, opts()).unwrap();
    let b = Store::open(&tmp.join("b"), opts()).unwrap();
    (a, b, f)
}

/// A replica refuses a batch whose lock record conflicts with the locks it
/// holds (a frame from another history), before writing any of it.
#[test]
fn a_replica_refuses_a_conflicting_lock_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, f) = two_copies(tmp.path());
    a.lock(f, &owner("a", 1), range(0, 10), true).unwrap();
    b.mount_added("10.0.0.1", "/fs1").unwrap();
    b.lock(f, &owner("b", 1), range(0, 10), true).unwrap();
    let replica = Store::init_replica(&tmp.path().join("r"), opts()).unwrap();
    ship(&a, &replica);
    assert_eq!(
        replica.lock_state(),
        a.lock_state(),
        "the replica holds the locks"
    );
    b.wait_durable_blocking(b.last_lsn()).unwrap();
    let frames = b.read_frames(replica.last_lsn(), 1 << 20).unwrap();
    assert_eq!(frames.len(), 1);
    let lsn = replica.last_lsn();
    assert!(matches!(
        replica.apply_replicated(&frames),
        Err(StoreError::Replication(_))
    ));
    assert_eq!(replica.last_lsn(), lsn);
    assert!(matches!(
        replica.lock(f, &owner("c", 1), range(20, 1), true),
        Err(StoreError::ReadOnly(_))
    ));
}

/// A batch that releases a lock, frees a host and grants over both
/// (the replica's dry run sees the batch's own changes).
#[test]
fn a_replica_applies_a_batch_that_reuses_freed_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, fs) = new_store(&tmp.path().join("s"), opts());
    let f = create_file(&store, fs.root_ino, b"f");
    let g = create_file(&store, fs.root_ino, b"g");
    store.lock(f, &owner("a", 1), range(0, 10), true).unwrap();
    store.lock(g, &owner("b", 1), range(0, 10), true).unwrap();
    let replica = Store::init_replica(&tmp.path().join("r"), opts()).unwrap();
    ship(&store, &replica);
    store.unlock(f, &owner("a", 1), range(0, 10)).unwrap();
    store.lock(f, &owner("c", 1), range(0, 10), true).unwrap();
    store.free_host_locks("b").unwrap();
    store.lock(g, &owner("c", 1), range(0, 0), true).unwrap();
    store.unlock(f, &owner("c", 1), range(0, 10)).unwrap();
    store.lock(f, &owner("d", 1), range(0, 10), true).unwrap();
    store
        .remove(&OpCtx::new(Cred::root()), fs.root_ino, b"g")
        .unwrap();
    ship(&store, &replica);
    assert_same(&store, &replica);
}

#[test]
fn removing_a_file_drops_its_locks() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, fs) = new_store(&tmp.path().join("s"), opts());
    let f = create_file(&store, fs.root_ino, b"f");
    store.lock(f, &owner("a", 1), range(0, 10), true).unwrap();
    store
        .share(f, &sowner("a"), ShareMode { access: 1, deny: 0 })
        .unwrap();
    store
        .remove(&OpCtx::new(Cred::root()), fs.root_ino, b"f")
        .unwrap();
    let st = store.lock_state();
    assert_eq!((st.lock_count(), st.share_count()), (0, 0));
    assert_eq!(store.unlock(f, &owner("a", 1), range(0, 10)).unwrap(), None);
}

/// A version 2 checkpoint (before lock state) reads with none; a version 3
/// one keeps the locks.
#[test]
fn checkpoints_keep_locks_and_version_2_reads_without() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    store.close().unwrap();
    let want = store.snapshot();
    let path = checkpoint_path(&dir);
    let bytes = std::fs::read(&path).unwrap();
    let (header, payload) = bytes.split_at(CHECKPOINT_HEADER_BYTES);
    assert_eq!(&header[8..12], &3u32.to_le_bytes());
    assert!(payload.ends_with(&[0, 0, 0]), "an empty lock state ends it");
    let old = &payload[..payload.len() - 3];
    let mut v2 = header.to_vec();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    v2[24..32].copy_from_slice(&(old.len() as u64).to_le_bytes());
    v2[32..36].copy_from_slice(&crc32c::crc32c(old).to_le_bytes());
    v2.extend_from_slice(old);
    std::fs::write(&path, v2).unwrap();
    assert_eq!(tandem_store::checkpoint::read(&dir).unwrap().unwrap(), want);
    drop(store);

    let store = Store::open(&dir, opts()).unwrap();
    let f = create_file(&store, fs.root_ino, b"f");
    store.lock(f, &owner("a", 1), range(0, 0), false).unwrap();
    store.lock(f, &owner("b", 1), range(4, 4), false).unwrap();
    store
        .share(f, &sowner("a"), ShareMode { access: 1, deny: 2 })
        .unwrap();
    store.monitor("a", &id("s"), [1; 16]).unwrap();
    store.close().unwrap();
    let want = store.snapshot();
    drop(store);
    let read = tandem_store::checkpoint::read(&dir).unwrap().unwrap();
    assert_eq!(read, want);
    assert_eq!(read.locks.lock_count(), 2, "derived counts rebuilt on load");
    assert_eq!(read.locks.host_lock_count("b"), 1);
}

fn digest(store: &Store) -> (digest::Digests, state::State) {
    store.digest_snapshot().unwrap().compute(&|| false).unwrap()
}

#[test]
fn verify_and_fsck_see_lock_state() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, f) = two_copies(tmp.path());
    a.monitor("x", &id("s"), [0; 16]).unwrap();
    b.monitor("x", &id("s"), [0; 16]).unwrap();
    assert_eq!(digest(&a).0.root, digest(&b).0.root);
    a.lock(f, &owner("a", 1), range(0, 10), true).unwrap();
    b.lock(f, &owner("a", 1), range(0, 11), true).unwrap();
    let (da, sa) = digest(&a);
    let (db, _) = digest(&b);
    assert_ne!(da.root, db.root);
    let diff = digest::first_difference(&da, &db, &sa).unwrap();
    assert!(diff.contains("lock state"), "{diff}");

    let mut state = a.snapshot();
    let mut report = fsck::FsckReport::default();
    fsck::check_state(&state, &mut report);
    assert!(report.is_clean(), "{report}");
    state.inodes.remove(&f);
    fsck::check_state(&state, &mut report);
    assert!(
        report.problems.iter().any(|p| p.contains("missing inode")),
        "{report}"
    );
}
