//! Replay equivalence: state = checkpoint + replay(journal). A store
//! rebuilt from nothing but its journal, or from a checkpoint plus the
//! journal after it, equals the original field for field (attributes,
//! generations, timestamps, cookies, next_ino) and byte for byte.

use std::path::Path;

use crate::common::*;
use proptest::prelude::*;
use tandem_store::*;

fn opts(max_segment_bytes: u64) -> StoreOptions {
    StoreOptions {
        retain_journal: true,
        max_segment_bytes,
        ..StoreOptions::default()
    }
}

#[derive(Debug, Clone)]
enum Step {
    Create(Vec<usize>, bool),
    Mkdir(Vec<usize>),
    Symlink(Vec<usize>),
    Write(Vec<usize>, u64, Vec<u8>),
    Truncate(Vec<usize>, u64),
    Chmod(Vec<usize>, u32),
    Chown(Vec<usize>, u32),
    Times(Vec<usize>, u64),
    Remove(Vec<usize>),
    Rmdir(Vec<usize>),
    Rename(Vec<usize>, Vec<usize>),
    Link(Vec<usize>, Vec<usize>),
    Checkpoint,
    /// Wait for durability (separates journal batches).
    Sync,
}

fn path_s() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..NAMES.len(), 1..=3)
}

fn step_s() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (path_s(), any::<bool>()).prop_map(|(p, x)| Step::Create(p, x)),
        3 => path_s().prop_map(Step::Mkdir),
        1 => path_s().prop_map(Step::Symlink),
        5 => (path_s(), 0..(64u64 << 10), prop::collection::vec(any::<u8>(), 1..300))
            .prop_map(|(p, o, d)| Step::Write(p, o, d)),
        2 => (path_s(), 0..(70u64 << 10)).prop_map(|(p, s)| Step::Truncate(p, s)),
        1 => (path_s(), 0..0o7777u32).prop_map(|(p, m)| Step::Chmod(p, m)),
        1 => (path_s(), 0..3u32).prop_map(|(p, u)| Step::Chown(p, u)),
        1 => (path_s(), any::<u64>()).prop_map(|(p, t)| Step::Times(p, t >> 20)),
        2 => path_s().prop_map(Step::Remove),
        1 => path_s().prop_map(Step::Rmdir),
        3 => (path_s(), path_s()).prop_map(|(a, b)| Step::Rename(a, b)),
        2 => (path_s(), path_s()).prop_map(|(a, b)| Step::Link(a, b)),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Sync),
    ]
}

/// Runs one step as root; failures are fine (they write no record).
fn run_step(store: &Store, root: Ino, step: &Step) {
    let ctx = OpCtx::new(Cred::root());
    let set = SetAttr::default();
    match step {
        Step::Create(p, excl) => {
            if let Some((d, n)) = parent(store, root, p) {
                let how = if *excl {
                    CreateHow::Exclusive(*b"verifier")
                } else {
                    CreateHow::Unchecked
                };
                let _ = store.create(&ctx, d, n, how, &set);
            }
        }
        Step::Mkdir(p) => {
            if let Some((d, n)) = parent(store, root, p) {
                let _ = store.mkdir(&ctx, d, n, &set);
            }
        }
        Step::Symlink(p) => {
            if let Some((d, n)) = parent(store, root, p) {
                let _ = store.symlink(&ctx, d, n, b"../target", &set);
            }
        }
        Step::Write(p, off, data) => {
            if let Some(ino) = resolve(store, root, p) {
                let _ = store.write(&ctx, ino, *off, data);
            }
        }
        Step::Truncate(p, size) => {
            if let Some(ino) = resolve(store, root, p) {
                let set = SetAttr {
                    size: Some(*size),
                    ..SetAttr::default()
                };
                let _ = store.setattr(&ctx, ino, &set, None);
            }
        }
        Step::Chmod(p, mode) => {
            if let Some(ino) = resolve(store, root, p) {
                let set = SetAttr {
                    mode: Some(*mode),
                    ..SetAttr::default()
                };
                let _ = store.setattr(&ctx, ino, &set, None);
            }
        }
        Step::Chown(p, id) => {
            if let Some(ino) = resolve(store, root, p) {
                let set = SetAttr {
                    uid: Some(1000 + id),
                    gid: Some(2000 + id),
                    ..SetAttr::default()
                };
                let _ = store.setattr(&ctx, ino, &set, None);
            }
        }
        Step::Times(p, t) => {
            if let Some(ino) = resolve(store, root, p) {
                let t = Timestamp {
                    secs: *t,
                    nsecs: (*t % 1_000_000_000) as u32,
                };
                let set = SetAttr {
                    atime: Some(SetTime::Client(t)),
                    mtime: Some(SetTime::ServerNow),
                    ..SetAttr::default()
                };
                let _ = store.setattr(&ctx, ino, &set, None);
            }
        }
        Step::Remove(p) => {
            if let Some((d, n)) = parent(store, root, p) {
                let _ = store.remove(&ctx, d, n);
            }
        }
        Step::Rmdir(p) => {
            if let Some((d, n)) = parent(store, root, p) {
                let _ = store.rmdir(&ctx, d, n);
            }
        }
        Step::Rename(a, b) => {
            if let (Some((fd, fnm)), Some((td, tnm))) =
                (parent(store, root, a), parent(store, root, b))
            {
                let _ = store.rename(&ctx, fd, fnm, td, tnm);
            }
        }
        Step::Link(a, b) => {
            if let (Some(ino), Some((d, n))) = (resolve(store, root, a), parent(store, root, b)) {
                let _ = store.link(&ctx, ino, d, n);
            }
        }
        Step::Checkpoint => store.checkpoint().expect("checkpoint"),
        Step::Sync => store.wait_durable_blocking(store.last_lsn()).expect("sync"),
    }
}

/// Copies only FORMAT and journal/ of `from` into a fresh `to`.
fn copy_journal_only(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("FORMAT"), to.join("FORMAT")).unwrap();
    copy_tree(&from.join("journal"), &to.join("journal"));
}

/// Opens `dir` and checks it equals `store` in state and contents.
fn assert_same(store: &Store, dir: &Path) {
    let copy = Store::open(dir, opts(1 << 20)).expect("open copy");
    assert_eq!(copy.snapshot(), store.snapshot(), "state differs");
    assert_eq!(all_contents(&copy), all_contents(store), "contents differ");
    let mut report = tandem_store::fsck::FsckReport::default();
    tandem_store::fsck::check_state(&copy.snapshot(), &mut report);
    assert!(report.is_clean(), "{report}");
}

fn replay_case(steps: &[Step], max_segment_bytes: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orig");
    let (store, fs) = new_store(&dir, opts(max_segment_bytes));
    let user = OpCtx::new(Cred::root());
    store
        .add_user(User {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![5],
        })
        .unwrap();
    store
        .add_address(AddressSpec {
            ip: "127.0.0.9".parse().unwrap(),
            prefix: 8,
            interface: None,
        })
        .unwrap();
    let fs2 = store.create_fs("fs2", export("/fs2")).unwrap().value;
    store
        .mkdir(&user, fs2.root_ino, b"other", &SetAttr::default())
        .unwrap();
    for step in steps {
        run_step(&store, fs.root_ino, step);
    }
    store.wait_durable_blocking(store.last_lsn()).unwrap();

    let journal_only = tmp.path().join("journal-only");
    copy_journal_only(&dir, &journal_only);
    assert_same(&store, &journal_only);

    // The original itself after a clean close (checkpoint) and reopen.
    let state = store.snapshot();
    let contents = all_contents(&store);
    store.close().unwrap();
    drop(store);
    let reopened = Store::open(&dir, opts(max_segment_bytes)).unwrap();
    assert_eq!(reopened.snapshot(), state);
    assert_eq!(all_contents(&reopened), contents);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn journal_replay_equals_original(
        steps in prop::collection::vec(step_s(), 1..80),
        small_segments in any::<bool>(),
    ) {
        replay_case(&steps, if small_segments { 700 } else { 64 << 20 });
    }
}

fn fixed_steps() -> Vec<Step> {
    use Step::*;
    let mut v = vec![
        Mkdir(vec![0]),
        Mkdir(vec![0, 1]),
        Create(vec![0, 1, 2], false),
        Write(vec![0, 1, 2], 0, vec![7; 5000]),
        Checkpoint,
        Create(vec![1], true),
        Write(vec![1], 100, b"after the checkpoint".to_vec()),
        Link(vec![1], vec![0, 2]),
        Sync,
        Truncate(vec![0, 1, 2], 17),
        Rename(vec![0, 1], vec![2]),
        Checkpoint,
        Write(vec![2, 2], 60_000, vec![1; 2000]),
        Remove(vec![1]),
        Symlink(vec![0, 1]),
        Chmod(vec![0], 0o1777),
        Chown(vec![0, 2], 2),
        Times(vec![2], 123_456_789),
    ];
    for i in 0..40u64 {
        v.push(Write(vec![2, 2], i * 97, vec![i as u8; 64]));
        if i % 9 == 0 {
            v.push(Sync);
        }
        if i % 17 == 0 {
            v.push(Checkpoint);
        }
    }
    v
}

#[test]
fn fixed_sequence_with_checkpoints_and_many_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orig");
    let (store, fs) = new_store(&dir, opts(512));
    for step in fixed_steps() {
        run_step(&store, fs.root_ino, &step);
    }
    store.wait_durable_blocking(store.last_lsn()).unwrap();
    let n = segments(&dir).len();
    assert!(n >= 5, "expected several segments, found {n}");
    assert!(dir.join("checkpoint").exists());

    let journal_only = tmp.path().join("journal-only");
    copy_journal_only(&dir, &journal_only);
    assert_same(&store, &journal_only);
}

/// A copy of the store taken at a checkpoint (checkpoint + data files), plus
/// the journal written after it, recovers to the original's state: the
/// journal suffix replays over data files as they were at the checkpoint.
#[test]
fn checkpoint_plus_suffix_equals_original() {
    for retain in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("orig");
        let o = StoreOptions {
            retain_journal: retain,
            max_segment_bytes: 600,
            ..StoreOptions::default()
        };
        let (store, fs) = new_store(&dir, o.clone());
        let steps = fixed_steps();
        let (before, after) = steps.split_at(12);
        for step in before {
            run_step(&store, fs.root_ino, step);
        }
        store.checkpoint().unwrap();
        let at_checkpoint = tmp.path().join("at-checkpoint");
        std::fs::create_dir_all(&at_checkpoint).unwrap();
        for f in ["FORMAT", "checkpoint"] {
            std::fs::copy(dir.join(f), at_checkpoint.join(f)).unwrap();
        }
        copy_tree(&dir.join("data"), &at_checkpoint.join("data"));
        for step in after {
            if !matches!(step, Step::Checkpoint) {
                run_step(&store, fs.root_ino, step);
            }
        }
        store.wait_durable_blocking(store.last_lsn()).unwrap();
        copy_tree(&dir.join("journal"), &at_checkpoint.join("journal"));
        assert_same(&store, &at_checkpoint);

        // The original, stopped without a clean close (no final
        // checkpoint), recovers to the same state too.
        let state = store.snapshot();
        let contents = all_contents(&store);
        drop(store);
        let reopened = Store::open(&dir, o).unwrap();
        assert_eq!(reopened.snapshot(), state, "retain_journal={retain}");
        assert_eq!(all_contents(&reopened), contents);
    }
}
