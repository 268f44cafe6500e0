//! Journal overflow and catch-up through the store APIs: an active store
//! whose replica stays away past `journal_max_bytes` lets its journal go,
//! tracks changed ranges (across a restart too), and a catch-up sends
//! about the changed bytes; installed at the replica (also after a crash
//! at any step) and followed by the journal, the replica equals the active.

use std::path::Path;

use crate::common::*;
use tandem_store::baseline::BaselineError;
use tandem_store::catchup::{CatchupInstall, CrashPoint, CATCHUP_DIR, CATCHUP_FILE};
use tandem_store::overflow::{CatchupPiece, CatchupSnapshot, OVERFLOW_FILE};
use tandem_store::*;

const JOURNAL_MAX_BYTES: u64 = 512 << 10;

fn opts() -> StoreOptions {
    StoreOptions {
        max_segment_bytes: 64 << 10,
        checkpoint_every_bytes: 128 << 10,
        journal_max_bytes: JOURNAL_MAX_BYTES,
        ..StoreOptions::default()
    }
}

fn journal_bytes(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .map(|p| std::fs::metadata(p).expect("segment").len())
        .sum()
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed | 1)
        .collect()
}

/// The active store with 16 files of 256 KiB under the root, a replica
/// holding all of it (streamed), and the root inode.
fn setup(dir: &Path) -> (Store, Store, Ino) {
    let (active, fs) = new_store(&dir.join("active"), opts());
    active.set_retention_floor(0);
    let ctx = OpCtx::new(Cred::root());
    let replica = Store::init_replica(&dir.join("replica"), opts()).expect("replica");
    for i in 0..16u8 {
        let ino = create_file(&active, fs.root_ino, format!("f{i}").as_bytes());
        active
            .write(&ctx, ino, 0, &data(i, 256 << 10))
            .expect("write");
        // Streamed as it goes: the replica never falls far behind.
        ship(&active, &replica);
    }
    assert_same(&active, &replica);
    (active, replica, fs.root_ino)
}

fn lookup(store: &Store, dir: Ino, name: &str) -> Ino {
    store
        .lookup(&Cred::root(), dir, name.as_bytes())
        .expect("lookup")
        .ino
}

/// Changes while the replica is away; returns the file bytes written
/// (writes, plus bytes re-extended after a shrink).
fn away_changes(store: &Store, root: Ino, round: u8) -> u64 {
    let ctx = OpCtx::new(Cred::root());
    let mut written = 0u64;
    let size = |n: u64| SetAttr {
        size: Some(n),
        ..SetAttr::default()
    };
    // The same ranges overwritten again and again: much journal, few
    // changed bytes.
    for k in 0..40u8 {
        let f = lookup(store, root, &format!("f{}", k % 4));
        let buf = data(round ^ k, 32 << 10);
        store
            .write(&ctx, f, u64::from(k % 3) * 40_000, &buf)
            .expect("overwrite");
        if k % 8 == 0 {
            store.checkpoint().expect("checkpoint");
        }
    }
    written += 3 * 4 * (32 << 10);
    // Shrink, then extend by a write far past the old end: the bytes in
    // between must come back as zeros at the replica.
    let f5 = lookup(store, root, "f5");
    store.setattr(&ctx, f5, &size(1000), None).expect("shrink");
    store
        .write(&ctx, f5, 200_000, b"tail after shrink")
        .expect("extend");
    written += 200_017 - 1000;
    // Grow by setattr only (zeros), and truncate to nothing.
    let f6 = lookup(store, root, "f6");
    store
        .setattr(&ctx, f6, &size(300 << 10), None)
        .expect("grow");
    let f7 = lookup(store, root, "f7");
    store.setattr(&ctx, f7, &size(0), None).expect("truncate");
    // A removal, a rename over another file, a new file.
    let _ = store.remove(&ctx, root, format!("f{}", 8 + round % 2).as_bytes());
    let _ = store.rename(&ctx, root, b"f10", root, b"f11");
    let name = format!("new{round}");
    let n = store
        .create(
            &ctx,
            root,
            name.as_bytes(),
            CreateHow::Unchecked,
            &SetAttr::default(),
        )
        .expect("create")
        .value
        .ino;
    store
        .write(&ctx, n, 4096, &data(round, 100_000))
        .expect("new");
    written += 100_000;
    store.checkpoint().expect("checkpoint");
    written
}

/// Receives the catch-up into the closed replica at `dir` as a receiver
/// would: state in pieces, changed ranges in chunks of `chunk` bytes.
/// Returns the install (not finished) and the data bytes sent.
fn stage(
    active: &Store,
    snap: &CatchupSnapshot,
    dir: &Path,
    chunk: usize,
) -> (CatchupInstall, u64) {
    let mut install = CatchupInstall::begin(
        dir,
        snap.from_lsn,
        snap.lsn,
        snap.state.len() as u64,
        snap.state_crc,
        snap.total_bytes,
    )
    .expect("install begin");
    for (i, piece) in snap.state.chunks(1000).enumerate() {
        install
            .write_state(i as u64 * 1000, piece)
            .expect("write state");
    }
    let mut sent = 0u64;
    for r in &snap.ranges {
        let mut off = r.offset;
        let end = r.offset + r.len;
        while off < end {
            let want = chunk.min((end - off) as usize);
            match active.catchup_read(r.ino, off, want).expect("read") {
                CatchupPiece::Bytes(b) => {
                    assert_eq!(b.len(), want);
                    install.write(r.ino, off, &b).expect("stage bytes");
                    sent += b.len() as u64;
                }
                CatchupPiece::Zeros(n) => {
                    assert_eq!(n, want as u64);
                    install.zeros(r.ino, off, n).expect("stage zeros");
                }
            }
            off += want as u64;
        }
    }
    (install, sent)
}

/// Writes enough while the replica is away that the store overflows; the
/// replica (closed) is at `replica_lsn`.
fn overflow(active: &Store, root: Ino) -> u64 {
    let mut written = 0;
    for round in 0..4u8 {
        written += away_changes(active, root, round);
    }
    written
}

#[test]
fn catchup_after_overflow_sends_the_changed_bytes_and_converges() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, replica, root) = setup(tmp.path());
    let replica_lsn = replica.last_lsn();
    drop(replica);
    let store_bytes: u64 = all_contents(&active).values().map(|v| v.len() as u64).sum();
    assert!(active.overflow_status().is_none());
    let written = overflow(&active, root);
    let status = active.overflow_status().expect("in overflow");
    assert_eq!(status.since_lsn, replica_lsn);
    assert!(status.changed_inodes > 0 && status.map_lost.is_none());
    // The journal the replica lacks was let go.
    let adir = tmp.path().join("active");
    assert!(active.oldest_retained_lsn().expect("oldest") > replica_lsn + 1);
    assert!(
        journal_bytes(&adir) <= JOURNAL_MAX_BYTES + 2 * opts().max_segment_bytes,
        "journal {} bytes",
        journal_bytes(&adir)
    );
    assert!(adir.join(OVERFLOW_FILE).exists());

    // A catch-up for an LSN the map does not cover is refused.
    assert!(matches!(
        active.catchup_begin(replica_lsn - 1),
        Err(StoreError::CatchupUnavailable(_))
    ));
    let snap = active.catchup_begin(replica_lsn).expect("catch-up begin");
    // Status's figure (summed without building the list) is what it sends.
    assert_eq!(status.changed_bytes, snap.total_bytes);
    assert_eq!(
        snap.total_bytes,
        snap.ranges.iter().map(|r| r.len).sum::<u64>()
    );
    assert!(
        snap.total_bytes <= written * 5 / 4 + (1 << 20) && snap.total_bytes < store_bytes / 2,
        "catch-up of {} bytes for {written} written (store {store_bytes})",
        snap.total_bytes
    );
    // Changes after X while the copy runs (less than the journal limit, so
    // the journal from X+1 is kept): a write, a shrink, a removal.
    let ctx = OpCtx::new(Cred::root());
    let f1 = lookup(&active, root, "f1");
    active.write(&ctx, f1, 10, &[5u8; 70_000]).expect("write");
    let f2 = lookup(&active, root, "f2");
    let shrink = SetAttr {
        size: Some(77),
        ..SetAttr::default()
    };
    active.setattr(&ctx, f2, &shrink, None).expect("shrink");
    active.remove(&ctx, root, b"f3").expect("remove");
    active.checkpoint().expect("checkpoint");
    let rdir = tmp.path().join("replica");
    let (install, sent) = stage(&active, &snap, &rdir, 64 << 10);
    assert!(sent <= snap.total_bytes);
    let replica = install.finish(snap.lsn, opts()).expect("finish");
    assert_eq!(replica.last_lsn(), snap.lsn);
    assert!(!rdir.join(CATCHUP_DIR).exists() && !rdir.join(CATCHUP_FILE).exists());
    active.catchup_finished(snap.lsn).expect("finished");
    assert!(active.overflow_status().is_none());
    assert!(!adir.join(OVERFLOW_FILE).exists());
    ship(&active, &replica);
    assert_same(&active, &replica);
    drop(replica);
    let replica = Store::open(&rdir, opts()).expect("reopen");
    assert!(replica.is_replica());
    assert_same(&active, &replica);
}

#[test]
fn change_map_survives_an_active_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, replica, root) = setup(tmp.path());
    let replica_lsn = replica.last_lsn();
    drop(replica);
    overflow(&active, root);
    let before = active.overflow_status().expect("overflow");
    // Changes after the last checkpoint: only replay brings them back.
    let ctx = OpCtx::new(Cred::root());
    let f3 = lookup(&active, root, "f3");
    active
        .write(&ctx, f3, 250_000, &[9u8; 20_000])
        .expect("write");
    let adir = tmp.path().join("active");
    drop(active);
    let active = Store::open(&adir, opts()).expect("reopen");
    let after = active.overflow_status().expect("still in overflow");
    assert_eq!(after.since_lsn, before.since_lsn);
    assert!(after.changed_bytes >= before.changed_bytes);
    let snap = active.catchup_begin(replica_lsn).expect("catch-up");
    assert!(snap
        .ranges
        .iter()
        .any(|r| r.ino == f3 && r.offset <= 250_000 && r.offset + r.len >= 270_000));
    let (install, _) = stage(&active, &snap, &tmp.path().join("replica"), 1 << 20);
    let replica = install.finish(snap.lsn, opts()).expect("finish");
    active.catchup_finished(snap.lsn).expect("finished");
    ship(&active, &replica);
    assert_same(&active, &replica);
}

#[test]
fn a_damaged_change_map_is_reported_not_dropped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, replica, root) = setup(tmp.path());
    let replica_lsn = replica.last_lsn();
    drop(replica);
    overflow(&active, root);
    let adir = tmp.path().join("active");
    drop(active);
    let path = adir.join(OVERFLOW_FILE);
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).expect("damage");
    let active = Store::open(&adir, opts()).expect("opens");
    let status = active.overflow_status().expect("reported");
    assert!(status.map_lost.expect("lost").contains("checksum"));
    assert!(matches!(
        active.catchup_begin(replica_lsn),
        Err(StoreError::CatchupUnavailable(_))
    ));
    active.checkpoint().expect("checkpoint");
    assert_eq!(std::fs::read(&path).expect("kept"), bytes, "left as found");
}

#[test]
fn an_install_interrupted_at_any_step_opens_whole() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, replica, root) = setup(tmp.path());
    let replica_lsn = replica.last_lsn();
    let old_state = replica.snapshot();
    let old_contents = all_contents(&replica);
    drop(replica);
    let pristine = tmp.path().join("pristine");
    copy_tree(&tmp.path().join("replica"), &pristine);
    overflow(&active, root);
    let snap = active.catchup_begin(replica_lsn).expect("catch-up");
    for crash in [
        CrashPoint::BeforeMark,
        CrashPoint::AfterMark,
        CrashPoint::AfterEntries,
        CrashPoint::AfterData,
        CrashPoint::AfterCheckpoint,
    ] {
        let dir = tmp.path().join(format!("{crash:?}"));
        copy_tree(&pristine, &dir);
        let (install, _) = stage(&active, &snap, &dir, 1 << 20);
        assert!(install
            .finish_until(snap.lsn, opts(), Some(crash))
            .expect("finish until")
            .is_none());
        let replica = Store::open_replica(&dir, opts()).expect("open after crash");
        assert!(!dir.join(CATCHUP_DIR).exists(), "{crash:?}: staging left");
        assert!(!dir.join(CATCHUP_FILE).exists(), "{crash:?}: mark left");
        if crash == CrashPoint::BeforeMark {
            assert_eq!(replica.last_lsn(), replica_lsn, "{crash:?}");
            assert!(replica.snapshot() == old_state, "{crash:?}: state changed");
            assert_eq!(all_contents(&replica), old_contents, "{crash:?}");
            continue;
        }
        assert_eq!(replica.last_lsn(), snap.lsn, "{crash:?}");
        ship(&active, &replica);
        assert_same(&active, &replica);
    }
}

#[test]
fn bad_catchup_input_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, replica, root) = setup(tmp.path());
    let replica_lsn = replica.last_lsn();
    drop(replica);
    overflow(&active, root);
    let snap = active.catchup_begin(replica_lsn).expect("catch-up");
    let rdir = tmp.path().join("replica");
    let begin = |from: Lsn, lsn: Lsn, crc: u32| {
        CatchupInstall::begin(
            &rdir,
            from,
            lsn,
            snap.state.len() as u64,
            crc,
            snap.total_bytes,
        )
    };
    // The replica's LSN outside from..=X.
    assert!(matches!(
        begin(replica_lsn + 1, snap.lsn, snap.state_crc),
        Err(BaselineError::NotCovered { .. })
    ));
    assert!(matches!(
        begin(0, replica_lsn - 1, snap.state_crc),
        Err(BaselineError::NotCovered { .. })
    ));
    // Not a replica.
    assert!(matches!(
        CatchupInstall::begin(&tmp.path().join("active"), 0, 1, 1, 0, 0),
        Err(BaselineError::Store(StoreError::ReadOnly(_))) | Err(BaselineError::NotReplica(_))
    ));
    // A state whose CRC is not the announced one.
    let mut i = begin(snap.from_lsn, snap.lsn, snap.state_crc ^ 1).expect("begin");
    assert!(matches!(
        i.write_state(0, &snap.state),
        Err(BaselineError::StateCorrupt(_))
    ));
    drop(i);
    let mut i = begin(snap.from_lsn, snap.lsn, snap.state_crc).expect("begin");
    assert!(matches!(
        i.write(1, 0, b"x"),
        Err(BaselineError::StateMissing)
    ));
    i.write_state(0, &snap.state).expect("state");
    let state_at_x: tandem_store::state::State = postcard::from_bytes(&snap.state).expect("decode");
    let dir_ino = root;
    assert!(matches!(
        i.write(dir_ino, 0, b"x"),
        Err(BaselineError::UnknownInode { .. })
    ));
    assert!(matches!(
        i.write(u64::MAX, 0, b"x"),
        Err(BaselineError::UnknownInode { .. })
    ));
    let (&ino, inode) = state_at_x
        .inodes
        .iter()
        .find(|(_, i)| i.attr.ftype == FileType::Regular && i.attr.size > 10)
        .expect("a file");
    let size = inode.attr.size;
    assert!(matches!(
        i.write(ino, size - 1, b"xy"),
        Err(BaselineError::BeyondSize { .. })
    ));
    assert!(matches!(
        i.zeros(ino, u64::MAX, 2),
        Err(BaselineError::BeyondSize { .. })
    ));
    i.write(ino, 4, b"ab").expect("in order");
    assert!(matches!(
        i.write(ino, 0, b"ab"),
        Err(BaselineError::OutOfOrder { .. })
    ));
    assert!(matches!(
        i.finish_until(snap.lsn + 1, opts(), None),
        Err(BaselineError::LsnMismatch { .. })
    ));
    // More range bytes than announced, and fewer.
    let mut i = CatchupInstall::begin(
        &rdir,
        snap.from_lsn,
        snap.lsn,
        snap.state.len() as u64,
        snap.state_crc,
        1,
    )
    .expect("begin");
    i.write_state(0, &snap.state).expect("state");
    assert!(matches!(
        i.write(ino, 0, b"ab"),
        Err(BaselineError::TooMuchData { .. })
    ));
    assert!(matches!(
        i.finish_until(snap.lsn, opts(), None),
        Err(BaselineError::Incomplete { .. })
    ));
    // Nothing reached the replica: it opens at its own LSN, staging gone.
    let replica = Store::open_replica(&rdir, opts()).expect("open");
    assert_eq!(replica.last_lsn(), replica_lsn);
    assert!(!rdir.join(CATCHUP_DIR).exists());
}

#[test]
fn journal_let_go_during_a_catchup_means_another_catchup() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, replica, root) = setup(tmp.path());
    let replica_lsn = replica.last_lsn();
    drop(replica);
    overflow(&active, root);
    let first = active.catchup_begin(replica_lsn).expect("catch-up");
    // The replica stays away past the limit again while it runs.
    overflow(&active, root);
    let rdir = tmp.path().join("replica");
    let (install, _) = stage(&active, &first, &rdir, 1 << 20);
    let replica = install.finish(first.lsn, opts()).expect("finish");
    active.catchup_finished(first.lsn).expect("finished");
    let status = active.overflow_status().expect("still in overflow");
    assert!(status.since_lsn <= first.lsn);
    assert!(active.oldest_retained_lsn().expect("oldest") > first.lsn + 1);
    drop(replica);
    let second = active.catchup_begin(first.lsn).expect("second catch-up");
    let (install, _) = stage(&active, &second, &rdir, 1 << 20);
    let replica = install.finish(second.lsn, opts()).expect("finish");
    active.catchup_finished(second.lsn).expect("finished");
    assert!(active.overflow_status().is_none());
    ship(&active, &replica);
    assert_same(&active, &replica);
}

#[test]
fn a_floor_older_than_the_journal_is_not_covered() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, replica, root) = setup(tmp.path());
    drop(replica);
    // No floor for a while: checkpoints drop the journal's start.
    active.clear_retention_floor();
    away_changes(&active, root, 1);
    active.checkpoint().expect("checkpoint");
    let oldest = active.oldest_retained_lsn().expect("oldest");
    assert!(oldest > 2);
    // A floor below what the journal holds (a replica already behind).
    active.set_retention_floor(1);
    overflow(&active, root);
    let status = active.overflow_status().expect("overflow");
    assert!(status.since_lsn >= oldest - 1, "{status:?} oldest {oldest}");
    assert!(matches!(
        active.catchup_begin(1),
        Err(StoreError::CatchupUnavailable(_))
    ));
}

#[test]
fn a_catchup_larger_than_the_free_space_is_refused_up_front() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, replica, _) = setup(tmp.path());
    let lsn = replica.last_lsn();
    drop(replica);
    let r = CatchupInstall::begin(
        &tmp.path().join("replica"),
        lsn,
        lsn + 1,
        10,
        0,
        u64::MAX / 2,
    );
    assert!(
        matches!(r, Err(BaselineError::Store(StoreError::NoSpace(_)))),
        "{:?}",
        r.err()
    );
    drop(active);
}

#[test]
fn forgetting_the_replica_ends_overflow_and_lets_the_journal_go() {
    // `tandem replicate --stop`: no journal nor change map is kept for a
    // replica nobody sends to any more.
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, _replica, root) = setup(tmp.path());
    overflow(&active, root);
    assert!(active.in_overflow());
    let dir = tmp.path().join("active");
    assert!(dir.join(OVERFLOW_FILE).exists());
    active.forget_replica().expect("forget");
    assert!(!active.in_overflow());
    assert!(!dir.join(OVERFLOW_FILE).exists());
    // Kept again for a replica only once a sender asks for it.
    active.keep_journal_for_replica();
    overflow(&active, root);
    active.checkpoint().expect("checkpoint");
    assert!(active.in_overflow(), "the limit still applies");
    assert!(journal_bytes(&dir) <= 2 * JOURNAL_MAX_BYTES);
    active.forget_replica().expect("forget");
    overflow(&active, root);
    active.checkpoint().expect("checkpoint");
    assert!(!active.in_overflow(), "no replica, no overflow");
    assert!(journal_bytes(&dir) <= 2 * JOURNAL_MAX_BYTES);
}
