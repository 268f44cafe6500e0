//! A full disk (space.rs), with the store's test hooks standing in for
//! the disk: changes that would not fit are refused and write nothing,
//! changes that free space may use the reserve, a data file that cannot be
//! written stalls the applier without stopping the store, a store reopens
//! when replay finds no room, and a full replica refuses whole batches.
//! The real-disk test (a small tmpfs, NFS clients) is tandem's it::full_disk.

use std::sync::Arc;
use std::time::Duration;

use tandem_store::space::{SpaceFaults, SpaceState, DEFAULT_RESERVE_BYTES};
use tandem_store::{Cred, FsConfig, Ino, OpCtx, SetAttr, Store, StoreError, StoreOptions};

use crate::common::{create_file, file_contents, new_store};

const RESERVE: u64 = DEFAULT_RESERVE_BYTES;

fn with_faults(faults: &Arc<SpaceFaults>) -> StoreOptions {
    StoreOptions {
        space_faults: Some(faults.clone()),
        ..StoreOptions::default()
    }
}

/// A store in a fresh directory on a pretended disk (the real one until
/// the test says otherwise).
fn faulty_store() -> (tempfile::TempDir, Arc<SpaceFaults>, Store, FsConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Arc::new(SpaceFaults::default());
    let (store, fs) = new_store(tmp.path(), with_faults(&faults));
    (tmp, faults, store, fs)
}

fn root() -> OpCtx {
    OpCtx::new(Cred::root())
}

fn write_synced(store: &Store, ino: Ino, offset: u64, data: &[u8]) {
    let m = store.write(&root(), ino, offset, data).expect("write");
    store.wait_durable_blocking(m.lsn).expect("durable");
}

fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "within 30 s: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_disk_full<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::DiskFull(_)))
}

#[test]
fn changes_that_do_not_fit_are_refused_and_write_nothing() {
    let (_tmp, faults, store, fs) = faulty_store();
    let file = create_file(&store, fs.root_ino, b"f");
    // One MiB above the reserve: a small write fits, a 1 MiB one (twice
    // its size on disk) does not.
    faults.set_free_bytes(Some(RESERVE + (1 << 20)));
    write_synced(&store, file, 0, &[7u8; 64 << 10]);
    let lsn = store.last_lsn();
    let before = store.snapshot();
    let r = store.write(&root(), file, 0, &[9u8; 1 << 20]);
    assert!(is_disk_full(r), "a write past the reserve must be DiskFull");
    assert_eq!(store.last_lsn(), lsn, "a refused write journals nothing");
    assert!(
        store.snapshot() == before,
        "a refused write changes nothing"
    );
    assert_eq!(file_contents(&store, file), vec![7u8; 64 << 10]);
    // Into the reserve: creating anything is refused too.
    faults.set_free_bytes(Some(RESERVE / 2));
    let r = store.create(
        &root(),
        fs.root_ino,
        b"g",
        tandem_store::CreateHow::Guarded,
        &SetAttr::default(),
    );
    assert!(
        is_disk_full(r),
        "a create inside the reserve must be DiskFull"
    );
    let r = store.mkdir(&root(), fs.root_ino, b"d", &SetAttr::default());
    assert!(
        is_disk_full(r),
        "a mkdir inside the reserve must be DiskFull"
    );
    assert_eq!(store.last_lsn(), lsn);
    assert_eq!(store.space().unwrap().state, SpaceState::Full);
}

#[test]
fn removals_and_truncations_may_use_the_reserve() {
    let (_tmp, faults, store, fs) = faulty_store();
    let a = create_file(&store, fs.root_ino, b"a");
    let b = create_file(&store, fs.root_ino, b"b");
    store
        .mkdir(&root(), fs.root_ino, b"d", &SetAttr::default())
        .unwrap();
    write_synced(&store, a, 0, &[1u8; 256 << 10]);
    write_synced(&store, b, 0, &[2u8; 256 << 10]);
    faults.set_free_bytes(Some(RESERVE / 2));
    assert!(is_disk_full(store.write(&root(), a, 0, b"x")));
    let grow = SetAttr {
        size: Some(1 << 20),
        ..SetAttr::default()
    };
    assert!(
        is_disk_full(store.setattr(&root(), b, &grow, None)),
        "growing a file is not freeing space"
    );
    let shrink = SetAttr {
        size: Some(4096),
        ..SetAttr::default()
    };
    store.setattr(&root(), b, &shrink, None).expect("truncate");
    assert_eq!(file_contents(&store, b), vec![2u8; 4096]);
    store.remove(&root(), fs.root_ino, b"a").expect("remove");
    store.rmdir(&root(), fs.root_ino, b"d").expect("rmdir");
    // With nothing free at all, even a removal has nowhere to go.
    faults.set_free_bytes(Some(0));
    let r = store.remove(&root(), fs.root_ino, b"b");
    assert!(is_disk_full(r), "no room for the removal's record");
    faults.set_free_bytes(None);
    store.remove(&root(), fs.root_ino, b"b").expect("remove");
}

#[test]
fn the_space_state_warns_before_writes_are_refused() {
    let (_tmp, faults, store, fs) = faulty_store();
    let file = create_file(&store, fs.root_ino, b"f");
    // The pretended disk is 1 GiB; low is under 10% above the reserve.
    faults.set_free_bytes(Some(512 << 20));
    assert_eq!(store.space().unwrap().state, SpaceState::Ok);
    faults.set_free_bytes(Some(RESERVE + (50 << 20)));
    let low = store.space().unwrap();
    assert_eq!(low.state, SpaceState::Low);
    // Less what the journal still buffers.
    assert!(low.free_bytes <= RESERVE + (50 << 20));
    assert!(low.free_bytes > RESERVE + (49 << 20));
    assert_eq!(low.reserve_bytes, RESERVE);
    write_synced(&store, file, 0, &[3u8; 1 << 20]);
    faults.set_free_bytes(Some(RESERVE + (1 << 20)));
    assert_eq!(store.space().unwrap().state, SpaceState::Full);
}

#[test]
fn a_data_file_without_room_stalls_the_applier_not_the_store() {
    let (tmp, faults, store, fs) = faulty_store();
    let file = create_file(&store, fs.root_ino, b"f");
    let other = create_file(&store, fs.root_ino, b"other");
    faults.set_fail_data_writes(true);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    write_synced(&store, file, 0, &data);
    poll("the applier to report the stall", || {
        store.space().unwrap().stalled.is_some()
    });
    let space = store.space().unwrap();
    assert_eq!(space.state, SpaceState::Full);
    // Acknowledged data is served (from the journal's copy in memory) and
    // the store still takes changes.
    assert_eq!(file_contents(&store, file), data);
    store
        .remove(&root(), fs.root_ino, b"other")
        .expect("a removal while the data files wait");
    assert!(store.getattr(other).is_err());
    faults.set_fail_data_writes(false);
    poll("the waiting data to reach the files", || {
        store.pending_data_bytes() == 0
    });
    assert!(store.space().unwrap().stalled.is_none());
    write_synced(&store, file, data.len() as u64, b"more");
    store.close().expect("close");
    drop(store);
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("reopen");
    let mut want = data.clone();
    want.extend_from_slice(b"more");
    assert_eq!(file_contents(&store, file), want);
}

#[test]
fn a_store_opens_and_serves_reads_when_replay_finds_no_room() {
    let (tmp, faults, store, fs) = faulty_store();
    let file = create_file(&store, fs.root_ino, b"f");
    write_synced(&store, file, 0, b"before the disk filled");
    store.checkpoint().expect("checkpoint");
    faults.set_fail_data_writes(true);
    let data = vec![5u8; 200_000];
    write_synced(&store, file, 4096, &data);
    // Stops without a checkpoint (the data files are not written): the
    // journal holds the write, and replay must find no room for it.
    drop(store);
    let store = Store::open(tmp.path(), with_faults(&faults)).expect("open on a full disk");
    let mut want = b"before the disk filled".to_vec();
    want.resize(4096, 0);
    want.extend_from_slice(&data);
    assert_eq!(file_contents(&store, file), want);
    assert!(store.pending_data_bytes() > 0, "the write waits in memory");
    let free = store.remove(&root(), fs.root_ino, b"f");
    assert!(free.is_ok(), "a removal after such an open: {free:?}");
    faults.set_fail_data_writes(false);
    poll("the waiting data to reach the files", || {
        store.pending_data_bytes() == 0
    });
    store.close().expect("close");
    drop(store);
    let report = tandem_store::fsck::check(tmp.path()).expect("fsck");
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_full_replica_refuses_whole_batches_and_takes_them_later() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Arc::new(SpaceFaults::default());
    let (active, fs) = new_store(&tmp.path().join("a"), StoreOptions::default());
    let replica = Store::init_replica(&tmp.path().join("r"), with_faults(&faults)).unwrap();
    crate::common::ship(&active, &replica);
    let file = create_file(&active, fs.root_ino, b"f");
    write_synced(&active, file, 0, &[4u8; 512 << 10]);
    let lsn = replica.last_lsn();
    faults.set_free_bytes(Some(RESERVE + (256 << 10)));
    let frames = active.read_frames(lsn, usize::MAX).unwrap();
    let r = replica.apply_replicated(&frames);
    assert!(is_disk_full(r), "a batch that does not fit is refused");
    assert_eq!(replica.last_lsn(), lsn, "nothing of it applied");
    assert_eq!(replica.space().unwrap().state, SpaceState::Full);
    // A batch of removals alone may use the reserve: the active site
    // freeing space must reach a full replica too.
    faults.set_free_bytes(None);
    crate::common::ship(&active, &replica);
    faults.set_free_bytes(Some(RESERVE / 2));
    active.remove(&root(), fs.root_ino, b"f").unwrap();
    crate::common::ship(&active, &replica);
    crate::common::assert_same(&active, &replica);
}

#[test]
fn while_space_is_low_checkpoints_let_the_journal_shrink() {
    let (tmp, faults, store, fs) = faulty_store();
    let file = create_file(&store, fs.root_ino, b"f");
    faults.set_free_bytes(Some(RESERVE + (50 << 20)));
    // 12 MiB over the same 256 KiB: without checkpoints the journal would
    // hold all of it in its first segment.
    for i in 0..48u8 {
        write_synced(&store, file, 0, &[i; 256 << 10]);
    }
    let journal_bytes = || -> u64 {
        std::fs::read_dir(tmp.path().join("journal"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    poll("the journal to shrink below 8 MiB", || {
        journal_bytes() < 8 << 20
    });
    assert_eq!(file_contents(&store, file), vec![47u8; 256 << 10]);
    drop(store);
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(file_contents(&store, file), vec![47u8; 256 << 10]);
}
