//! The verify digest: equal content gives equal digests, each kind of
//! difference is named by the right first path, and a digest taken while
//! clients write is exactly the digest of the state at its LSN.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::*;
use tandem_store::digest::{first_difference, Digests};
use tandem_store::*;

fn opts() -> StoreOptions {
    StoreOptions {
        retain_journal: true,
        ..StoreOptions::default()
    }
}

fn digest(store: &Store) -> (Digests, state::State) {
    store
        .digest_snapshot()
        .expect("snapshot")
        .compute(&|| false)
        .expect("digest")
}

struct Tree {
    root: Ino,
    sub: Ino,
    data: Ino,
}

/// /sub/data (a 2 MiB file with a hole), /sub/other, /top, a hard link
/// /sub/link -> /top, a symlink and a second file system.
fn build(store: &Store, root: Ino) -> Tree {
    let ctx = OpCtx::new(Cred::root());
    let set = SetAttr::default();
    let sub = store
        .mkdir(&ctx, root, b"sub", &set)
        .expect("mkdir")
        .value
        .ino;
    let data = store
        .create(&ctx, sub, b"data", CreateHow::Unchecked, &set)
        .expect("create")
        .value
        .ino;
    store.write(&ctx, data, 0, b"first bytes").expect("write");
    store
        .write(&ctx, data, 2 << 20, b"after a hole")
        .expect("write");
    store
        .create(&ctx, sub, b"other", CreateHow::Unchecked, &set)
        .expect("create");
    let top = store
        .create(&ctx, root, b"top", CreateHow::Unchecked, &set)
        .expect("create")
        .value
        .ino;
    store.write(&ctx, top, 0, b"top contents").expect("write");
    store.link(&ctx, top, sub, b"link").expect("link");
    store
        .symlink(&ctx, root, b"ln", b"sub/data", &set)
        .expect("symlink");
    let fs2 = store.create_fs("fs2", export("/fs2")).expect("fs2").value;
    store
        .create(&ctx, fs2.root_ino, b"f", CreateHow::Unchecked, &set)
        .expect("create in fs2");
    Tree { root, sub, data }
}

/// A store with the tree, closed, and a byte-for-byte copy of it: both
/// reopen to the same content at the same LSN.
fn twin(dir: &Path) -> (Store, Store, Tree) {
    let (a, fs) = new_store(&dir.join("a"), opts());
    let tree = build(&a, fs.root_ino);
    a.close().expect("close");
    drop(a);
    copy_tree(&dir.join("a"), &dir.join("b"));
    let a = Store::open(&dir.join("a"), opts()).expect("open a");
    let b = Store::open(&dir.join("b"), opts()).expect("open b");
    (a, b, tree)
}

/// A twin whose copy had /sub/data's data file changed by `change` while
/// closed.
fn twin_with_b_data_changed(dir: &Path, change: impl FnOnce(&Path)) -> (Store, Store) {
    let (a, b, tree) = twin(dir);
    drop(b);
    let bdir = dir.join("b");
    change(
        &bdir
            .join("data")
            .join(format!("{:02x}", tree.data & 0xff))
            .join(format!("{:016x}", tree.data)),
    );
    let b = Store::open(&bdir, opts()).expect("reopen b");
    (a, b)
}

fn difference(a: &Store, b: &Store) -> Option<String> {
    let (da, sa) = digest(a);
    let (db, _) = digest(b);
    assert_eq!(da.lsn, db.lsn, "both sides digest the same LSN");
    first_difference(&da, &db, &sa)
}

#[test]
fn identical_stores_match_and_count_what_they_read() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b, _) = twin(tmp.path());
    let (da, sa) = digest(&a);
    let (db, _) = digest(&b);
    assert_eq!(da, db);
    assert_eq!(first_difference(&da, &db, &sa), None);
    assert_eq!(da.files, 4, "data, other, top, fs2's f");
    assert_eq!(da.bytes, (2 << 20) + 12 + 12);
    assert_eq!(da.inodes.len(), sa.inodes.len());
}

#[test]
fn a_changed_data_byte_names_its_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = twin_with_b_data_changed(tmp.path(), |path| {
        let mut bytes = std::fs::read(path).expect("data file");
        bytes[3] ^= 1;
        std::fs::write(path, bytes).expect("corrupt");
    });
    assert_eq!(difference(&a, &b).as_deref(), Some("fs1:/sub/data"));
}

#[test]
fn a_byte_in_a_hole_counts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = twin_with_b_data_changed(tmp.path(), |path| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open");
        std::os::unix::fs::FileExt::write_at(&f, b"x", 1 << 20).expect("write in hole");
    });
    assert_eq!(difference(&a, &b).as_deref(), Some("fs1:/sub/data"));
}

#[test]
fn a_changed_mode_names_its_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b, tree) = twin(tmp.path());
    let ctx = OpCtx::new(Cred::root());
    for (store, mode) in [(&a, 0o600), (&b, 0o640)] {
        let set = SetAttr {
            mode: Some(mode),
            ..SetAttr::default()
        };
        store.setattr(&ctx, tree.data, &set, None).expect("chmod");
    }
    assert_eq!(difference(&a, &b).as_deref(), Some("fs1:/sub/data"));
}

#[test]
fn a_different_name_names_its_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b, tree) = twin(tmp.path());
    let ctx = OpCtx::new(Cred::root());
    a.rename(&ctx, tree.sub, b"other", tree.sub, b"renamed-a")
        .expect("rename");
    b.rename(&ctx, tree.sub, b"other", tree.sub, b"renamed-b")
        .expect("rename");
    // The file itself only changed ctime, at slightly different times: so
    // the first difference may be the file; the names differ in the
    // directory either way.
    let found = difference(&a, &b).expect("differs");
    assert!(
        found == "fs1:/sub" || found == "fs1:/sub/renamed-a",
        "reported {found}"
    );
}

#[test]
fn a_user_map_change_is_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b, _) = twin(tmp.path());
    for (store, uid) in [(&a, 1000), (&b, 1001)] {
        store
            .add_user(User {
                name: "alice".into(),
                uid,
                gid: 1000,
                groups: vec![],
            })
            .expect("add user");
    }
    assert_eq!(difference(&a, &b).as_deref(), Some("config: user map"));
}

#[test]
fn an_extra_file_on_our_side_is_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b, tree) = twin(tmp.path());
    let ctx = OpCtx::new(Cred::root());
    let set = SetAttr::default();
    a.create(&ctx, tree.sub, b"extra", CreateHow::Unchecked, &set)
        .expect("create extra");
    // Same LSN at b: one change elsewhere.
    b.mkdir(&ctx, tree.root, b"zz-elsewhere", &set)
        .expect("mkdir");
    assert_eq!(difference(&a, &b).as_deref(), Some("fs1:/sub/extra"));
    // Seen from b, the extra entry is a's only: b reaches "sub" first (name
    // order), finds all its own children there matching, and names it.
    assert_eq!(difference(&b, &a).as_deref(), Some("fs1:/sub"));
}

#[test]
fn a_digest_taken_while_writing_is_the_state_at_its_lsn() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, fs) = new_store(&tmp.path().join("active"), opts());
    let tree = build(&active, fs.root_ino);
    let active = Arc::new(active);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (active.clone(), stop.clone());
        std::thread::spawn(move || {
            let ctx = OpCtx::new(Cred::root());
            let set = SetAttr::default();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let block = vec![(i % 251) as u8; 64 << 10];
                store
                    .write(&ctx, tree.data, (i % 64) * (64 << 10), &block)
                    .expect("write");
                if i.is_multiple_of(16) {
                    let name = format!("f{i}");
                    store
                        .create(&ctx, tree.sub, name.as_bytes(), CreateHow::Unchecked, &set)
                        .expect("create");
                    let size = SetAttr {
                        size: Some(i % 3 * 4096),
                        ..SetAttr::default()
                    };
                    store
                        .setattr(&ctx, tree.data, &size, None)
                        .expect("truncate");
                }
                i += 1;
            }
            i
        })
    };
    // Let the writer get going: wait (polling) until it has made changes.
    let start = active.last_lsn();
    while active.last_lsn() < start + 50 {
        assert!(!writer.is_finished(), "writer stopped early");
        std::thread::yield_now();
    }
    let (ours, _) = digest(&active);
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(written > 0);
    let end = active.last_lsn();
    active.wait_durable_blocking(end).expect("durable");

    let replica = Store::init_replica(&tmp.path().join("replica"), opts()).expect("replica");
    while replica.last_lsn() < ours.lsn {
        let mut frames = active
            .read_frames(replica.last_lsn(), 4 << 20)
            .expect("frames");
        frames.retain(|f| f.lsn <= ours.lsn);
        replica.apply_replicated(&frames).expect("apply");
    }
    assert_eq!(replica.last_lsn(), ours.lsn);
    let (theirs, state) = digest(&replica);
    assert_eq!(first_difference(&ours, &theirs, &state), None);
    assert_eq!(ours, theirs);
    // And the active's current digest is another one, if it moved on.
    if end > ours.lsn {
        assert_ne!(digest(&active).0.root, ours.root);
    }
}

#[test]
fn a_checkpoint_waits_for_a_held_snapshot_and_reads_stay_right() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (store, fs) = new_store(&tmp.path().join("s"), opts());
    let tree = build(&store, fs.root_ino);
    let store = Arc::new(store);
    let snap = store.digest_snapshot().expect("snapshot");
    let ctx = OpCtx::new(Cred::root());
    let m = store
        .write(&ctx, tree.data, 0, b"NEW!")
        .expect("write while held");
    store.wait_durable_blocking(m.lsn).expect("durable");
    // Held: the data file still has the old bytes, reads see the new ones.
    assert_eq!(&file_contents(&store, tree.data)[..4], b"NEW!");
    let done = Arc::new(AtomicBool::new(false));
    let ckpt = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            store.checkpoint().expect("checkpoint");
            done.store(true, Ordering::Release);
        })
    };
    let lsn = snap.lsn();
    let (d, _) = snap.compute(&|| false).expect("digest");
    assert_eq!(d.lsn, lsn);
    ckpt.join().expect("checkpoint thread");
    assert!(done.load(Ordering::Acquire));
    assert_eq!(&file_contents(&store, tree.data)[..4], b"NEW!");
}

#[test]
fn a_cancelled_digest_releases_the_hold() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (store, fs) = new_store(&tmp.path().join("s"), opts());
    build(&store, fs.root_ino);
    let snap = store.digest_snapshot().expect("snapshot");
    let err = snap.compute(&|| true).expect_err("cancelled");
    assert!(matches!(err, digest::DigestError::Cancelled), "{err}");
    // The hold is gone: a checkpoint (which needs it) completes.
    store.checkpoint().expect("checkpoint after cancel");
}

#[test]
fn too_much_change_while_held_stops_the_digest_and_releases_the_hold() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (store, fs) = new_store(&tmp.path().join("s"), opts());
    let tree = build(&store, fs.root_ino);
    let snap = store.digest_snapshot().expect("snapshot");
    let ctx = OpCtx::new(Cred::root());
    store
        .write(&ctx, tree.data, 0, &vec![7u8; 64 << 10])
        .expect("write while held");
    let err = snap
        .compute_bounded(32 << 10, &|| false)
        .expect_err("too much change");
    assert!(
        matches!(err, digest::DigestError::TooMuchChange { max_bytes, .. } if max_bytes == 32 << 10),
        "{err}"
    );
    assert!(err.to_string().contains("retry"), "{err}");
    store.checkpoint().expect("checkpoint after the abort");
    assert_eq!(file_contents(&store, tree.data)[..4], [7u8; 4]);
}

#[test]
fn dropping_the_store_before_its_snapshot_does_not_hang() {
    // The last `Arc<Store>` can go while a snapshot still holds the data
    // files (a verify task's closure drops its store handle first); the
    // store's threads must not wait for that hold while it shuts down.
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    let tree = build(&store, fs.root_ino);
    let snap = store.digest_snapshot().expect("snapshot");
    let ctx = OpCtx::new(Cred::root());
    let m = store
        .write(&ctx, tree.data, 0, b"LATE")
        .expect("write while held");
    store.wait_durable_blocking(m.lsn).expect("durable");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(store);
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the store's drop waited for the snapshot's hold");
    drop(snap);
    // What the applier left unwritten is in the journal: reopening has it.
    let store = Store::open(&dir, opts()).expect("reopen");
    assert_eq!(&file_contents(&store, tree.data)[..4], b"LATE");
}
