//! Baselines: a copy taken while the active site keeps writing, truncating
//! and removing files, installed at a replica and followed by the journal
//! from its LSN, equals the active store field for field and byte for byte;
//! an interrupted copy resumes; bad input is refused and nothing half-
//! installed can be opened.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::*;
use tandem_store::baseline::*;
use tandem_store::*;

fn opts() -> StoreOptions {
    StoreOptions {
        // Small segments and frequent checkpoints: without the retention
        // floor a checkpoint would delete the frames after the baseline.
        max_segment_bytes: 64 << 10,
        checkpoint_every_bytes: 128 << 10,
        ..StoreOptions::default()
    }
}

/// Tiny deterministic generator: the tests need variety, not randomness.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// An active store with files of many sizes (some sparse), a directory, a
/// symlink, a hard link, a removal and a truncation.
fn history(dir: &Path) -> (Arc<Store>, Ino) {
    let (store, fs) = new_store(dir, opts());
    let ctx = OpCtx::new(Cred::root());
    let set = SetAttr::default();
    let root = fs.root_ino;
    let sub = store
        .mkdir(&ctx, root, b"sub", &set)
        .expect("mkdir")
        .value
        .ino;
    for i in 0..24u64 {
        let parent = if i % 3 == 0 { sub } else { root };
        let name = format!("f{i}");
        let ino = store
            .create(&ctx, parent, name.as_bytes(), CreateHow::Unchecked, &set)
            .expect("create")
            .value
            .ino;
        let len = (i as usize * 7919) % 70_000 + 1;
        let data: Vec<u8> = (0..len).map(|k| (k as u64 * 31 + i) as u8 | 1).collect();
        store.write(&ctx, ino, 0, &data).expect("write");
        if i % 5 == 0 {
            store
                .write(&ctx, ino, 300_000 + i * 1000, b"sparse tail")
                .expect("sparse write");
        }
    }
    store
        .symlink(&ctx, sub, b"ln", b"../f1", &set)
        .expect("symlink");
    let f2 = store
        .lookup(&Cred::root(), root, b"f2")
        .expect("lookup")
        .ino;
    store.link(&ctx, f2, sub, b"f2-link").expect("link");
    store.remove(&ctx, root, b"f4").expect("remove");
    let f5 = store
        .lookup(&Cred::root(), root, b"f5")
        .expect("lookup")
        .ino;
    let trunc = SetAttr {
        size: Some(100),
        ..SetAttr::default()
    };
    store.setattr(&ctx, f5, &trunc, None).expect("truncate");
    (Arc::new(store), root)
}

/// Two threads change the same files: one may remove what the other is
/// about to change. Anything else is a failure.
fn raced<T>(r: Result<T>, what: &str) {
    match r {
        Ok(_) | Err(StoreError::NoEnt) | Err(StoreError::Stale) => {}
        Err(e) => panic!("{what}: {e}"),
    }
}

/// One change of the kinds a baseline must survive: writes inside and past
/// the end, truncations (down and up), removals, new files.
fn churn(store: &Store, root: Ino, rng: &mut Lcg, round: u64) {
    let ctx = OpCtx::new(Cred::root());
    let files: Vec<Ino> = store
        .snapshot()
        .inodes
        .iter()
        .filter(|(_, i)| i.attr.ftype == FileType::Regular)
        .map(|(&ino, _)| ino)
        .collect();
    let Some(&ino) = files.get(rng.below(files.len() as u64) as usize) else {
        return;
    };
    match rng.below(6) {
        0 | 1 => {
            let off = rng.below(120_000);
            let len = rng.below(20_000) as usize + 1;
            let data = vec![(round as u8) | 0x80; len];
            raced(store.write(&ctx, ino, off, &data), "churn write");
        }
        2 => {
            let set = SetAttr {
                size: Some(rng.below(50_000)),
                ..SetAttr::default()
            };
            raced(store.setattr(&ctx, ino, &set, None), "churn truncate");
        }
        3 => {
            let set = SetAttr {
                size: Some(rng.below(200_000)),
                ..SetAttr::default()
            };
            raced(store.setattr(&ctx, ino, &set, None), "churn resize");
        }
        4 => {
            // Remove some name of the root (files only).
            let names: Vec<Vec<u8>> = match &store.snapshot().inodes[&root].body {
                state::Body::Dir(d) => d
                    .entries
                    .iter()
                    .filter(|(n, _)| n.starts_with(b"f") || n.starts_with(b"n"))
                    .map(|(n, _)| n.to_vec())
                    .collect(),
                _ => Vec::new(),
            };
            if let Some(name) = names.get(rng.below(names.len() as u64) as usize) {
                raced(store.remove(&ctx, root, name), "churn remove");
            }
        }
        _ => {
            let name = format!("n{round}");
            let set = SetAttr::default();
            let f = store
                .create(&ctx, root, name.as_bytes(), CreateHow::Unchecked, &set)
                .expect("churn create");
            raced(
                store.write(&ctx, f.value.ino, rng.below(9000), &[7u8; 5000]),
                "churn create write",
            );
        }
    }
}

/// Sends the encoded state in pieces of `piece` bytes.
fn send_state(snap: &BaselineSnapshot, install: &mut BaselineInstall, piece: usize) {
    let mut off = 0usize;
    while off < snap.state.len() {
        let end = (off + piece).min(snap.state.len());
        install
            .write_state(off as u64, &snap.state[off..end])
            .expect("write state");
        off = end;
    }
}

/// Copies file data from the resume point as a sender would: chunks of
/// `chunk` bytes, removed files and all-zero chunks skipped. Calls
/// `between` after each chunk; stops early (returning false) once
/// `max_chunks` chunks are written.
fn copy(
    active: &Store,
    snap: &BaselineSnapshot,
    install: &mut BaselineInstall,
    chunk: usize,
    max_chunks: usize,
    between: &mut dyn FnMut(usize),
) -> bool {
    let p = install.progress();
    let mut n = 0;
    for f in snap.files.iter().filter(|f| f.ino >= p.next_ino) {
        let mut off = if f.ino == p.next_ino {
            p.next_offset
        } else {
            0
        };
        while off < f.size {
            if n == max_chunks {
                return false;
            }
            let want = chunk.min((f.size - off) as usize);
            let data = match active.baseline_read(f.ino, off, want) {
                Ok(d) => d,
                Err(StoreError::NoEnt) => break,
                Err(e) => panic!("baseline read: {e}"),
            };
            if data.is_empty() {
                break;
            }
            if data.iter().any(|&b| b != 0) {
                install.write(f.ino, off, &data).expect("install write");
            }
            off += data.len() as u64;
            n += 1;
            between(n);
        }
    }
    true
}

/// Copies all remaining file data in `chunk`-byte pieces, finishes the
/// install, ships the frames after it and checks the replica matches.
fn complete(active: &Store, snap: &BaselineSnapshot, mut install: BaselineInstall, chunk: usize) {
    let mut nothing = |_: usize| {};
    assert!(copy(
        active,
        snap,
        &mut install,
        chunk,
        usize::MAX,
        &mut nothing
    ));
    let replica = install.finish(snap.lsn, opts()).expect("finish");
    ship(active, &replica);
    assert_same(active, &replica);
}

/// Runs `churn` on another thread until stopped.
fn background_churn(
    store: Arc<Store>,
    root: Ino,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut rng = Lcg(99);
        let mut round = 1000;
        while !flag.load(Ordering::Relaxed) {
            churn(&store, root, &mut rng, round);
            round += 1;
            if round.is_multiple_of(16) {
                // Some changes durable, so they reach the data files while
                // the copy reads them.
                store
                    .wait_durable_blocking(store.last_lsn())
                    .expect("durable");
            }
        }
        round - 1000
    });
    (stop, handle)
}

#[test]
fn baseline_taken_while_writing_converges() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = history(&tmp.path().join("active"));
    let (stop, churner) = background_churn(active.clone(), root);
    let snap = active.baseline_begin().expect("baseline begin");
    assert!(snap.total_bytes > 0);
    assert!(snap.files.len() >= 20, "most files are still there");
    let dir = tmp.path().join("replica");
    let mut install =
        Store::baseline_install_begin(&dir, snap.lsn, snap.state.len() as u64, snap.state_crc)
            .expect("install begin");
    assert!(!install.resumed());
    send_state(&snap, &mut install, 1000);
    assert!(install.progress().state_received);
    assert_eq!(install.progress().total_bytes, snap.total_bytes);
    // Deterministic changes between chunks too, made durable and applied
    // (checkpoint), so the copy surely reads files changed after X; the
    // checkpoints also try to delete segments the replica still needs.
    let mut rng = Lcg(7);
    let mut between = |n: usize| {
        if n.is_multiple_of(5) {
            for k in 0..4 {
                churn(&active, root, &mut rng, n as u64 * 10 + k);
            }
            active.checkpoint().expect("checkpoint");
        }
    };
    assert!(copy(
        &active,
        &snap,
        &mut install,
        8 << 10,
        usize::MAX,
        &mut between
    ));
    stop.store(true, Ordering::Relaxed);
    let rounds = churner.join().expect("churner");
    assert!(rounds > 0, "the background writer ran");
    assert!(active.last_lsn() > snap.lsn);
    assert!(matches!(
        Store::open(&dir, opts()),
        Err(StoreError::Replication(_))
    ));
    let replica = install.finish(snap.lsn, opts()).expect("finish");
    assert!(replica.is_replica());
    assert_eq!(replica.last_lsn(), snap.lsn);
    assert!(baseline_in_progress(&dir).expect("progress").is_none());
    ship(&active, &replica);
    assert_same(&active, &replica);

    // And it stays so across a reopen of the replica.
    drop(replica);
    let replica = Store::open(&dir, opts()).expect("reopen replica");
    assert!(replica.is_replica());
    assert_same(&active, &replica);
}

#[test]
fn interrupted_baseline_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = history(&tmp.path().join("active"));
    let snap = active.baseline_begin().expect("baseline begin");
    let dir = tmp.path().join("replica");
    let state_len = snap.state.len() as u64;

    // First attempt: the state, some chunks made durable, more chunks that
    // are not, then the connection "breaks" (the install is dropped).
    let mut install =
        BaselineInstall::begin(&dir, snap.lsn, state_len, snap.state_crc).expect("begin");
    send_state(&snap, &mut install, 4096);
    let mut rng = Lcg(3);
    let mut synced = None;
    let mut n_total = 0;
    {
        let mut between = |n: usize| {
            n_total = n;
            churn(&active, root, &mut rng, n as u64);
        };
        assert!(!copy(
            &active,
            &snap,
            &mut install,
            4 << 10,
            40,
            &mut between
        ));
    }
    install.sync_progress().expect("sync progress");
    let at_sync = install.progress();
    synced.replace(at_sync);
    assert!(at_sync.done_bytes > 0 && at_sync.done_bytes < snap.total_bytes);
    let mut nothing = |_: usize| {};
    assert!(!copy(
        &active,
        &snap,
        &mut install,
        4 << 10,
        10,
        &mut nothing
    ));
    drop(install);
    assert!(n_total == 40);

    // Nothing half-copied opens.
    assert!(matches!(
        Store::open(&dir, opts()),
        Err(StoreError::Replication(_))
    ));
    assert!(matches!(
        Store::open_replica(&dir, opts()),
        Err(StoreError::Replication(_))
    ));
    let marked = baseline_in_progress(&dir)
        .expect("read progress")
        .expect("in progress");
    assert_eq!(marked.lsn, snap.lsn);
    assert_eq!(
        (marked.next_ino, marked.next_offset),
        (at_sync.next_ino, at_sync.next_offset)
    );

    // Second attempt: the same baseline resumes from the durable position,
    // without the state.
    let mut install =
        BaselineInstall::begin(&dir, snap.lsn, state_len, snap.state_crc).expect("resume");
    assert!(install.resumed());
    let p = install.progress();
    assert!(p.state_received);
    assert_eq!(Some(p), synced);
    let mut more = |n: usize| {
        if n.is_multiple_of(7) {
            churn(&active, root, &mut rng, 5000 + n as u64);
        }
    };
    assert!(copy(
        &active,
        &snap,
        &mut install,
        4 << 10,
        usize::MAX,
        &mut more
    ));
    let replica = install.finish(snap.lsn, opts()).expect("finish");
    ship(&active, &replica);
    assert_same(&active, &replica);
}

#[test]
fn another_baseline_discards_an_unfinished_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = history(&tmp.path().join("active"));
    let dir = tmp.path().join("replica");
    let old = active.baseline_begin().expect("first baseline");
    let mut install = BaselineInstall::begin(&dir, old.lsn, old.state.len() as u64, old.state_crc)
        .expect("begin");
    send_state(&old, &mut install, 1 << 20);
    let mut nothing = |_: usize| {};
    copy(&active, &old, &mut install, 4 << 10, 5, &mut nothing);
    install.sync_progress().expect("sync");
    drop(install);

    churn(&active, root, &mut Lcg(1), 1);
    let snap = active.baseline_begin().expect("second baseline");
    assert!(snap.lsn > old.lsn);
    let mut install =
        BaselineInstall::begin(&dir, snap.lsn, snap.state.len() as u64, snap.state_crc)
            .expect("begin again");
    assert!(!install.resumed());
    assert!(!install.progress().state_received);
    send_state(&snap, &mut install, 1 << 20);
    complete(&active, &snap, install, 64 << 10);
}

#[test]
fn baseline_into_a_fresh_replica_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, _) = history(&tmp.path().join("active"));
    let dir = tmp.path().join("replica");
    drop(Store::init_replica(&dir, opts()).expect("init replica"));
    let snap = active.baseline_begin().expect("baseline");
    let mut install =
        BaselineInstall::begin(&dir, snap.lsn, snap.state.len() as u64, snap.state_crc)
            .expect("begin over an empty replica");
    send_state(&snap, &mut install, 1 << 20);
    complete(&active, &snap, install, 1 << 20);
}

#[test]
fn bad_baseline_input_is_refused_and_nothing_opens() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = history(&tmp.path().join("active"));
    let snap = active.baseline_begin().expect("baseline");
    let len = snap.state.len() as u64;

    // Not into a store that holds records.
    let err = BaselineInstall::begin(&tmp.path().join("active"), snap.lsn, len, snap.state_crc)
        .err()
        .expect("active dir refused");
    assert!(
        matches!(err, BaselineError::Store(_) | BaselineError::NotEmpty(_)),
        "{err}"
    );
    let other = tmp.path().join("other");
    drop(new_store(&other, opts()));
    let err = BaselineInstall::begin(&other, snap.lsn, len, snap.state_crc)
        .err()
        .expect("store dir refused");
    assert!(matches!(err, BaselineError::NotEmpty(_)), "{err}");
    let err = BaselineInstall::begin(&tmp.path().join("huge"), 1, u64::MAX, 0)
        .err()
        .expect("huge state refused");
    assert!(matches!(err, BaselineError::StateTooLarge { .. }), "{err}");

    let dir = tmp.path().join("replica");
    let mut install = BaselineInstall::begin(&dir, snap.lsn, len, snap.state_crc).expect("begin");
    // Data before the state.
    let file = snap.files[0];
    let err = install.write(file.ino, 0, b"x").expect_err("no state yet");
    assert!(matches!(err, BaselineError::StateMissing), "{err}");
    // State pieces out of order or past the announced length.
    let err = install.write_state(1, &snap.state[1..2]).expect_err("gap");
    assert!(
        matches!(err, BaselineError::StateOutOfOrder { .. }),
        "{err}"
    );
    let mut too_long = snap.state.to_vec();
    too_long.push(0);
    let err = install.write_state(0, &too_long).expect_err("too long");
    assert!(
        matches!(err, BaselineError::StateOutOfOrder { .. }),
        "{err}"
    );
    // A corrupt state is found when it is complete.
    let mut bad = snap.state.to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    let err = install.write_state(0, &bad).expect_err("corrupt state");
    assert!(matches!(err, BaselineError::StateCorrupt(_)), "{err}");
    assert!(!install.progress().state_received);
    let err = install
        .finish(snap.lsn, opts())
        .err()
        .expect("finish without a state");
    assert!(matches!(err, BaselineError::StateMissing), "{err}");
    assert!(matches!(
        Store::open(&dir, opts()),
        Err(StoreError::Replication(_))
    ));
    assert!(!dir.join("checkpoint").exists());

    // A state whose LSN is not the one announced (CRC of the real bytes,
    // so only the LSN check catches it).
    let wrong = tmp.path().join("wrong-lsn");
    let mut install =
        BaselineInstall::begin(&wrong, snap.lsn + 1, len, snap.state_crc).expect("begin");
    let err = install
        .write_state(0, &snap.state)
        .expect_err("LSN mismatch");
    assert!(
        matches!(err, BaselineError::LsnMismatch { expected, got } if expected == snap.lsn + 1 && got == snap.lsn),
        "{err}"
    );
    drop(install);
    assert!(Store::open(&wrong, opts()).is_err());

    // A good state, then bad chunks.
    let dir = tmp.path().join("chunks");
    let mut install = BaselineInstall::begin(&dir, snap.lsn, len, snap.state_crc).expect("begin");
    send_state(&snap, &mut install, 1 << 20);
    let err = install.write(root, 0, b"x").expect_err("a directory");
    assert!(matches!(err, BaselineError::UnknownInode { .. }), "{err}");
    let err = install.write(1 << 40, 0, b"x").expect_err("no such inode");
    assert!(matches!(err, BaselineError::UnknownInode { .. }), "{err}");
    let err = install
        .write(file.ino, file.size, b"x")
        .expect_err("past the size");
    assert!(matches!(err, BaselineError::BeyondSize { .. }), "{err}");
    let err = install
        .write(file.ino, u64::MAX, b"x")
        .expect_err("offset overflow");
    assert!(matches!(err, BaselineError::BeyondSize { .. }), "{err}");
    let big = vec![1u8; MAX_BASELINE_CHUNK_BYTES + 1];
    let err = install.write(file.ino, 0, &big).expect_err("too large");
    assert!(matches!(err, BaselineError::ChunkTooLarge { .. }), "{err}");
    let err = install
        .finish(snap.lsn + 1, opts())
        .err()
        .expect("finish at another LSN");
    assert!(matches!(err, BaselineError::LsnMismatch { .. }), "{err}");
    assert!(matches!(
        Store::open(&dir, opts()),
        Err(StoreError::Replication(_))
    ));
    assert!(!dir.join("checkpoint").exists());

    // The active side: reading a removed file is NoEnt.
    let f0 = active.lookup(&Cred::root(), root, b"f1").expect("f1").ino;
    active
        .remove(&OpCtx::new(Cred::root()), root, b"f1")
        .expect("remove");
    active.checkpoint().expect("apply the removal");
    assert!(matches!(
        active.baseline_read(f0, 0, 10),
        Err(StoreError::NoEnt)
    ));
}

#[test]
fn unreadable_progress_mark_is_refused_by_open_and_started_over() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, _) = history(&tmp.path().join("active"));
    let snap = active.baseline_begin().expect("baseline");
    // What a crash leaves if it strikes while the mark is all there is.
    let dir = tmp.path().join("replica");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(BASELINE_FILE), b"garbage").expect("write mark");
    assert!(matches!(
        Store::open(&dir, opts()),
        Err(StoreError::Replication(_))
    ));
    assert!(matches!(
        baseline_in_progress(&dir),
        Err(StoreError::Corrupt(_))
    ));
    let mut install =
        BaselineInstall::begin(&dir, snap.lsn, snap.state.len() as u64, snap.state_crc)
            .expect("begin over a bad mark");
    assert!(!install.resumed());
    send_state(&snap, &mut install, 1 << 20);
    complete(&active, &snap, install, 1 << 20);
}
