//! Journal shipping between two stores: frames read from an active store
//! and applied to a replica give the same state, field for field and byte
//! for byte, at every batch size; bad frames change nothing; the retention
//! floor keeps what a replica still lacks.

use crate::common;

use std::path::Path;

use crate::common::*;
use bytes::Bytes;
use tandem_store::journal::{decode_payload, encode_frame, FrameHeader, FRAME_HEADER_BYTES};
use tandem_store::*;

fn opts() -> StoreOptions {
    StoreOptions {
        // Small segments, so shipping crosses segment boundaries.
        max_segment_bytes: 256 << 10,
        ..StoreOptions::default()
    }
}

/// An active store with a bit of everything: two file systems, users,
/// addresses, files written small and large (1 MiB), sparse, renamed over
/// others, hard-linked, truncated, removed, directories, symlinks, chmod.
fn mixed_history(dir: &Path) -> Store {
    let (store, fs) = new_store(dir, opts());
    let ctx = OpCtx::new(Cred::root());
    let set = SetAttr::default();
    let root = fs.root_ino;
    store
        .add_user(User {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![10, 20],
        })
        .expect("add user");
    store
        .add_address(AddressSpec {
            ip: "127.0.0.9".parse().expect("ip"),
            prefix: 8,
            interface: None,
        })
        .expect("add address");
    let fs2 = store.create_fs("fs2", export("/fs2")).expect("fs2").value;
    let sub = store
        .mkdir(&ctx, root, b"sub", &set)
        .expect("mkdir")
        .value
        .ino;
    let a = store
        .create(&ctx, root, b"a", CreateHow::Unchecked, &set)
        .expect("create a")
        .value
        .ino;
    let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 7 % 251) as u8).collect();
    for i in 0..3u64 {
        // FILE_SYNC-like: each big write its own journal batch, so the
        // small segments roll several times.
        let m = store.write(&ctx, a, i << 20, &big).expect("big write");
        store.wait_durable_blocking(m.lsn).expect("durable");
    }
    store.write(&ctx, a, 10, b"hello").expect("small write");
    let b = store
        .create(&ctx, sub, b"b", CreateHow::Exclusive(*b"verifier"), &set)
        .expect("create b")
        .value
        .ino;
    store
        .write(&ctx, b, 5 << 20, b"sparse tail")
        .expect("sparse");
    store.link(&ctx, b, root, b"b-link").expect("link");
    store
        .symlink(&ctx, sub, b"ln", b"../a", &set)
        .expect("symlink");
    let c = store
        .create(&ctx, fs2.root_ino, b"c", CreateHow::Guarded, &set)
        .expect("create c")
        .value
        .ino;
    store.write(&ctx, c, 0, &big[..100_000]).expect("write c");
    let trunc = SetAttr {
        size: Some(4096),
        ..SetAttr::default()
    };
    store.setattr(&ctx, a, &trunc, None).expect("truncate");
    let chmod = SetAttr {
        mode: Some(0o640),
        uid: Some(1000),
        ..SetAttr::default()
    };
    store.setattr(&ctx, b, &chmod, None).expect("chmod");
    store
        .rename(&ctx, root, b"a", sub, b"a2")
        .expect("rename across dirs");
    store
        .create(&ctx, root, b"victim", CreateHow::Unchecked, &set)
        .expect("create victim");
    store
        .rename(&ctx, sub, b"a2", root, b"victim")
        .expect("rename over");
    store.remove(&ctx, sub, b"b").expect("remove one link");
    let gone = store
        .create(&ctx, root, b"gone", CreateHow::Unchecked, &set)
        .expect("create gone")
        .value
        .ino;
    store
        .write(&ctx, gone, 0, b"short-lived")
        .expect("write gone");
    store.remove(&ctx, root, b"gone").expect("remove last link");
    store.mkdir(&ctx, sub, b"empty", &set).expect("mkdir empty");
    store.rmdir(&ctx, sub, b"empty").expect("rmdir");
    store
        .wait_durable_blocking(store.last_lsn())
        .expect("durable");
    store
}

/// Ships everything the replica lacks, `max_bytes` per batch; returns
/// the number of batches.
fn ship(active: &Store, replica: &Store, max_bytes: usize) -> usize {
    let mut batches = 0;
    loop {
        let frames = active
            .read_frames(replica.last_lsn(), max_bytes)
            .expect("read frames");
        if frames.is_empty() {
            return batches;
        }
        let total: usize = frames.iter().map(|f| f.bytes.len()).sum();
        assert!(frames.len() == 1 || total <= max_bytes, "batch over budget");
        let last = frames.last().map(|f| f.lsn).unwrap_or_default();
        assert_eq!(replica.apply_replicated(&frames).expect("apply"), last);
        batches += 1;
    }
}

fn assert_same(active: &Store, replica: &Store) {
    assert_eq!(replica.snapshot(), active.snapshot());
    assert_eq!(all_contents(replica), all_contents(active));
}

#[test]
fn replica_equals_active_at_every_batch_size() {
    let tmp = tempfile::tempdir().expect("tmp");
    let active = mixed_history(&tmp.path().join("active"));
    for (i, max_bytes) in [0usize, 4096, 300 << 10, 16 << 20].into_iter().enumerate() {
        let rdir = tmp.path().join(format!("replica{i}"));
        let replica = Store::init_replica(&rdir, opts()).expect("init replica");
        assert_eq!(replica.last_lsn(), 0);
        let batches = ship(&active, &replica, max_bytes);
        assert!(batches >= 1);
        if max_bytes == 0 {
            assert_eq!(batches as u64, active.last_lsn(), "one frame per batch");
        }
        assert_same(&active, &replica);
        // The replica's journal holds the active's frames byte for byte.
        assert_eq!(
            replica.read_frames(0, usize::MAX).expect("replica frames"),
            active.read_frames(0, usize::MAX).expect("active frames")
        );
        drop(replica);
        let replica = Store::open_replica(&rdir, opts()).expect("reopen replica");
        assert!(replica.is_replica());
        assert_same(&active, &replica);
        replica.checkpoint().expect("checkpoint replica");
        drop(replica);
        let replica = Store::open_replica(&rdir, opts()).expect("reopen after checkpoint");
        assert_same(&active, &replica);
    }
}

#[test]
fn replica_refuses_local_changes_and_active_refuses_frames() {
    let tmp = tempfile::tempdir().expect("tmp");
    let active = mixed_history(&tmp.path().join("active"));
    let replica = Store::init_replica(&tmp.path().join("replica"), opts()).expect("init");
    ship(&active, &replica, 1 << 20);
    let before = replica.snapshot();
    let err = replica
        .create_fs("fs3", export("/fs3"))
        .expect_err("replica must refuse");
    assert!(matches!(err, StoreError::ReadOnly(_)), "{err}");
    let root = before.config.filesystems["fs1"].root_ino;
    let err = replica
        .mkdir(
            &OpCtx::new(Cred::root()),
            root,
            b"nope",
            &SetAttr::default(),
        )
        .expect_err("replica must refuse");
    assert!(matches!(err, StoreError::ReadOnly(_)), "{err}");
    assert_eq!(replica.snapshot(), before);

    let frames = active.read_frames(0, 1).expect("frames");
    let err = active
        .apply_replicated(&frames)
        .expect_err("active must refuse");
    assert!(matches!(err, StoreError::Replication(_)), "{err}");
}

/// Re-encodes frames with another epoch (what a new active site would send).
fn with_epoch(frames: &[RawFrame], epoch: u64) -> Vec<RawFrame> {
    frames
        .iter()
        .map(|f| {
            let record = decode_payload(f.payload()).expect("decode");
            let mut out = Vec::new();
            encode_frame(&mut out, f.lsn, epoch, &record).expect("encode");
            RawFrame::parse(Bytes::from(out)).expect("parse")
        })
        .collect()
}

/// A frame with a correct checksum around `payload`.
fn frame_with_payload(lsn: Lsn, epoch: u64, payload: &[u8]) -> RawFrame {
    let mut out = Vec::new();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&FrameHeader::checksum(lsn, epoch, payload).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(payload);
    RawFrame {
        lsn,
        epoch,
        bytes: Bytes::from(out),
    }
}

/// Everything a bad batch could have touched: state, file contents and
/// every byte of the store directory. The checkpoint first brings the data
/// files up to the state, so the data applier has nothing left to do.
fn capture(store: &Store) -> (state::State, impl PartialEq + std::fmt::Debug) {
    store.checkpoint().expect("checkpoint");
    (
        store.snapshot(),
        (all_contents(store), dir_bytes(store.dir())),
    )
}

#[test]
fn bad_frames_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let active = mixed_history(&tmp.path().join("active"));
    let rdir = tmp.path().join("replica");
    let replica = Store::init_replica(&rdir, opts()).expect("init");
    let first = active.read_frames(0, usize::MAX).expect("first frames");
    replica.apply_replicated(&first[..3]).expect("first batch");
    // The rest of the history, in epoch 2 (a failover happened).
    let rest = with_epoch(&active.read_frames(3, usize::MAX).expect("rest"), 2);
    assert!(rest.len() > 10);
    replica
        .apply_replicated(&rest[..2])
        .expect("higher epoch accepted");
    assert_eq!(replica.epoch(), 2);
    let rest = &rest[2..];
    let before = capture(&replica);

    let refuse = |batch: &[RawFrame], what: &str, want: fn(&StoreError) -> bool| {
        let err = replica
            .apply_replicated(batch)
            .expect_err(&format!("{what} must be refused"));
        assert!(want(&err), "{what}: unexpected error {err:?}");
        assert_eq!(capture(&replica), before, "{what} changed the replica");
    };
    let replication = |e: &StoreError| matches!(e, StoreError::Replication(_));

    // A bad checksum in the middle of a batch: the good frames before it
    // are not applied either.
    let mut bad = rest[..4].to_vec();
    let mut bytes = bad[2].bytes.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    bad[2].bytes = Bytes::from(bytes);
    refuse(&bad, "bad checksum", replication);

    // A gap.
    let gap = vec![rest[0].clone(), rest[2].clone()];
    refuse(&gap, "LSN gap", replication);
    refuse(&rest[1..3], "batch not following the state", replication);

    // A lower epoch than the store's.
    let old = with_epoch(&rest[..3], 1);
    refuse(&old, "lower epoch", |e| {
        matches!(e, StoreError::Fenced { ours: 2, theirs: 1 })
    });
    // Epochs must not go down inside a batch either.
    let mut mixed = with_epoch(&rest[..2], 3);
    mixed.extend(with_epoch(&rest[2..3], 2));
    refuse(&mixed, "epoch going down", |e| {
        matches!(e, StoreError::Fenced { ours: 3, theirs: 2 })
    });

    // A truncated frame, and one with bytes after it.
    let mut cut = rest[..3].to_vec();
    cut[1].bytes = cut[1].bytes.slice(..cut[1].bytes.len() - 1);
    refuse(&cut, "truncated frame", replication);
    let mut short = rest[..1].to_vec();
    short[0].bytes = short[0].bytes.slice(..FRAME_HEADER_BYTES - 1);
    refuse(&short, "frame shorter than its header", replication);
    let mut long = rest[..1].to_vec();
    let mut bytes = long[0].bytes.to_vec();
    bytes.push(0);
    long[0].bytes = Bytes::from(bytes);
    refuse(&long, "trailing bytes", replication);

    // A frame whose checksum is right but whose payload is no record.
    let lsn = rest[0].lsn;
    let garbage = vec![rest[0].clone(), frame_with_payload(lsn + 1, 2, &[0xff; 16])];
    refuse(&garbage, "undecodable payload", replication);

    // Well-formed, decodable records that do not fit the replica's state:
    // refused before anything is written, not half-applied.
    let state = replica.snapshot();
    let root = state.config.filesystems["fs1"].root_ino;
    let attr = state.inodes[&root].attr.clone();
    let unfit = [
        record::Op::SetAttr { ino: 999_999, attr },
        record::Op::Unlink {
            dir: root,
            name: b"no-such-entry".to_vec(),
            time: Timestamp::default(),
        },
        record::Op::Link {
            ino: root,
            dir: 999_999,
            name: b"x".to_vec(),
            cookie: 1 << 40,
            time: Timestamp::default(),
        },
    ];
    for op in unfit {
        let record = record::Record { req: None, op };
        let mut out = Vec::new();
        encode_frame(&mut out, lsn + 1, 2, &record).expect("encode");
        let frame = RawFrame::parse(Bytes::from(out)).expect("parse");
        let batch = vec![rest[0].clone(), frame];
        refuse(&batch, record.op.kind(), replication);
    }

    // Declared LSN or epoch differing from the frame's header.
    let mut lying = rest[..1].to_vec();
    lying[0].lsn += 1;
    refuse(&lying, "declared LSN not the header's", replication);

    // None of that stopped the replica: the good batch still goes in.
    let lsn = replica.apply_replicated(rest).expect("good batch");
    assert_eq!(lsn, active.last_lsn());
    let mut want = active.snapshot();
    want.epoch = 2;
    assert_eq!(replica.snapshot(), want);
    assert_eq!(all_contents(&replica), all_contents(&active));
    drop(replica);
    // The epoch survives a reopen (it is in the frames), and still fences.
    let replica = Store::open_replica(&rdir, opts()).expect("reopen");
    assert_eq!(replica.snapshot(), want);
    assert_eq!(all_contents(&replica), all_contents(&active));
    let ctx = OpCtx::new(Cred::root());
    let root = active.snapshot().config.filesystems["fs1"].root_ino;
    let m = active
        .mkdir(&ctx, root, b"later", &SetAttr::default())
        .expect("mkdir");
    active.wait_durable_blocking(m.lsn).expect("durable");
    let next = active.read_frames(m.lsn - 1, 1).expect("next");
    let err = replica.apply_replicated(&next).expect_err("epoch 1 fenced");
    assert!(
        matches!(err, StoreError::Fenced { ours: 2, theirs: 1 }),
        "{err:?}"
    );
    replica
        .apply_replicated(&with_epoch(&next, 2))
        .expect("epoch 2 accepted");
}

#[test]
fn retention_floor_keeps_segments_across_checkpoints() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("active");
    let active = mixed_history(&dir);
    assert!(segments(&dir).len() > 3, "history spans several segments");
    assert_eq!(active.oldest_retained_lsn().expect("oldest"), 1);

    active.set_retention_floor(5);
    active.checkpoint().expect("checkpoint");
    let frames = active
        .read_frames(5, usize::MAX)
        .expect("frames after floor");
    assert_eq!(frames.first().map(|f| f.lsn), Some(6));
    assert_eq!(frames.last().map(|f| f.lsn), Some(active.last_lsn()));
    assert!(active.oldest_retained_lsn().expect("oldest") <= 6);

    // A replica started from scratch can still catch up from the floor's
    // segments only if it has the LSNs before them: here it has none.
    let oldest = active.oldest_retained_lsn().expect("oldest");
    if oldest > 1 {
        let err = active.read_frames(0, 1).expect_err("deleted");
        assert!(
            matches!(err, StoreError::NotRetained { lsn: 1, .. }),
            "{err}"
        );
    }

    // Without a floor the checkpoint deletes what it covers.
    active.clear_retention_floor();
    let ctx = OpCtx::new(Cred::root());
    let root = active.snapshot().config.filesystems["fs1"].root_ino;
    active
        .mkdir(&ctx, root, b"after", &SetAttr::default())
        .expect("mkdir");
    active
        .wait_durable_blocking(active.last_lsn())
        .expect("durable");
    active.checkpoint().expect("checkpoint");
    let err = active.read_frames(5, 1).expect_err("segments deleted");
    match err {
        StoreError::NotRetained { lsn, oldest_lsn } => {
            assert_eq!(lsn, 6);
            assert!(oldest_lsn > 6);
            assert_eq!(oldest_lsn, active.oldest_retained_lsn().expect("oldest"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn read_frames_stops_at_durable_and_budget() {
    let tmp = tempfile::tempdir().expect("tmp");
    let active = mixed_history(&tmp.path().join("active"));
    // Budget 0 still gives one frame; budgets are respected otherwise.
    assert_eq!(active.read_frames(0, 0).expect("one").len(), 1);
    let some = active.read_frames(2, 300).expect("some");
    assert_eq!(some[0].lsn, 3);
    assert!(some.len() == 1 || some.iter().map(|f| f.bytes.len()).sum::<usize>() <= 300);
    // Nothing past the end.
    assert!(active
        .read_frames(active.last_lsn(), usize::MAX)
        .expect("none")
        .is_empty());
    assert!(active.read_frames(u64::MAX, 1).expect("none").is_empty());
    // An UNSTABLE write nobody waited for may not be durable: never shipped
    // before it is.
    let ctx = OpCtx::new(Cred::root());
    let root = active.snapshot().config.filesystems["fs1"].root_ino;
    let f = active
        .create(
            &ctx,
            root,
            b"unstable",
            CreateHow::Unchecked,
            &SetAttr::default(),
        )
        .expect("create");
    active.wait_durable_blocking(f.lsn).expect("durable create");
    active.write(&ctx, f.value.ino, 0, b"x").expect("write");
    let durable = active.durable_lsn();
    let frames = active.read_frames(0, usize::MAX).expect("all");
    assert!(frames.last().map(|f| f.lsn).unwrap_or_default() <= durable.max(f.lsn));
    // Consecutive LSNs, each frame parses on its own.
    for (i, fr) in frames.iter().enumerate() {
        assert_eq!(fr.lsn, i as u64 + 1);
        assert_eq!(RawFrame::parse(fr.bytes.clone()).expect("parse"), *fr);
    }
    // A cursor left by one call does not confuse a call from elsewhere.
    let a = active.read_frames(10, 1).expect("a");
    let b = active.read_frames(3, 1).expect("b");
    let c = active.read_frames(11, 1).expect("c");
    assert_eq!((a[0].lsn, b[0].lsn, c[0].lsn), (11, 4, 12));
}

mod random {
    //! Random histories shipped in random batch sizes: the replica always
    //! ends equal to the active (this also checks that the trial apply
    //! before journaling never refuses a batch the real apply takes).
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Create(Vec<usize>),
        Mkdir(Vec<usize>),
        Write(Vec<usize>, u64, u16),
        Truncate(Vec<usize>, u64),
        Remove(Vec<usize>),
        Rmdir(Vec<usize>),
        Rename(Vec<usize>, Vec<usize>),
        Link(Vec<usize>, Vec<usize>),
    }

    fn path_s() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(0..NAMES.len(), 1..=3)
    }

    fn step_s() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => path_s().prop_map(Step::Create),
            3 => path_s().prop_map(Step::Mkdir),
            4 => (path_s(), 0..(32u64 << 10), 1..2000u16).prop_map(|(p, o, n)| Step::Write(p, o, n)),
            2 => (path_s(), 0..(40u64 << 10)).prop_map(|(p, s)| Step::Truncate(p, s)),
            2 => path_s().prop_map(Step::Remove),
            2 => path_s().prop_map(Step::Rmdir),
            4 => (path_s(), path_s()).prop_map(|(a, b)| Step::Rename(a, b)),
            2 => (path_s(), path_s()).prop_map(|(a, b)| Step::Link(a, b)),
        ]
    }

    /// Runs one step as root; failures are fine (they write no record).
    fn run(store: &Store, root: Ino, step: &Step) {
        let ctx = OpCtx::new(Cred::root());
        let set = SetAttr::default();
        match step {
            Step::Create(p) => {
                if let Some((d, n)) = parent(store, root, p) {
                    let _ = store.create(&ctx, d, n, CreateHow::Unchecked, &set);
                }
            }
            Step::Mkdir(p) => {
                if let Some((d, n)) = parent(store, root, p) {
                    let _ = store.mkdir(&ctx, d, n, &set);
                }
            }
            Step::Write(p, off, n) => {
                if let Some(ino) = resolve(store, root, p) {
                    let data = vec![(*n % 251) as u8; *n as usize];
                    let _ = store.write(&ctx, ino, *off, &data);
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
                if let (Some((fd, fnm)), Some((td, tn))) =
                    (parent(store, root, a), parent(store, root, b))
                {
                    let _ = store.rename(&ctx, fd, fnm, td, tn);
                }
            }
            Step::Link(a, b) => {
                if let (Some(ino), Some((d, n))) = (resolve(store, root, a), parent(store, root, b))
                {
                    let _ = store.link(&ctx, ino, d, n);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_histories_replicate_exactly(
            steps in prop::collection::vec(step_s(), 1..80),
            budget in prop_oneof![Just(0usize), 1usize..20_000, Just(usize::MAX)],
        ) {
            let tmp = tempfile::tempdir().expect("tmp");
            let (active, fs) = new_store(&tmp.path().join("active"), opts());
            let rdir = tmp.path().join("replica");
            let replica = Store::init_replica(&rdir, opts()).expect("replica");
            for (i, step) in steps.iter().enumerate() {
                run(&active, fs.root_ino, step);
                if i % 17 == 16 {
                    // Ship part way, as a live stream would.
                    active.wait_durable_blocking(active.last_lsn()).expect("durable");
                    ship(&active, &replica, budget);
                }
            }
            active.wait_durable_blocking(active.last_lsn()).expect("durable");
            ship(&active, &replica, budget);
            assert_same(&active, &replica);
            drop(replica);
            let replica = Store::open_replica(&rdir, opts()).expect("reopen");
            assert_same(&active, &replica);
        }
    }
}

/// The replica role is recorded in the store directory: reopening it with
/// plain `open` (as a daemon restart might) still refuses local changes.
#[test]
fn replica_role_survives_a_plain_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let replica = Store::init_replica(&dir, StoreOptions::default()).unwrap();
    assert!(replica.is_replica());
    drop(replica);
    let reopened = Store::open(&dir, StoreOptions::default()).unwrap();
    assert!(reopened.is_replica(), "plain open made a replica writable");
    drop(reopened);
    std::fs::write(dir.join("ROLE"), b"primary?\n").unwrap();
    assert!(matches!(
        Store::open(&dir, StoreOptions::default()),
        Err(StoreError::Corrupt(_))
    ));
}

/// A store that learns of a higher epoch elsewhere stops taking changes,
/// durably (a restart does not lift it), and still serves reads.
#[test]
fn fencing_stops_changes_and_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let (store, fs) = common::new_store(&dir, StoreOptions::default());
    let ctx = OpCtx::new(Cred::root());
    store
        .create(
            &ctx,
            fs.root_ino,
            b"before",
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .unwrap();
    assert!(
        matches!(store.fence(1), Err(StoreError::Inval(_))),
        "epoch 1 cannot fence epoch 1"
    );
    store.fence(2).unwrap();
    assert_eq!(store.fenced_by(), Some(2));
    let refused = store.create(
        &ctx,
        fs.root_ino,
        b"after",
        CreateHow::Guarded,
        &SetAttr::default(),
    );
    assert!(
        matches!(refused, Err(StoreError::Fenced { ours: 1, theirs: 2 })),
        "{refused:?}"
    );
    store
        .lookup(&Cred::root(), fs.root_ino, b"before")
        .expect("reads still work");
    drop(store);
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    assert_eq!(store.fenced_by(), Some(2), "the fence is durable");
    assert!(matches!(
        store.mkdir(&ctx, fs.root_ino, b"d", &SetAttr::default()),
        Err(StoreError::Fenced { .. })
    ));
    drop(store);
    std::fs::write(dir.join("FENCED"), b"soon\n").unwrap();
    assert!(matches!(
        Store::open(&dir, StoreOptions::default()),
        Err(StoreError::Corrupt(_))
    ));
}

/// Lag behind an acknowledged LSN, in records, bytes and age.
#[test]
fn lag_counts_records_bytes_and_age() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, fs) = common::new_store(&tmp.path().join("a"), StoreOptions::default());
    let ctx = OpCtx::new(Cred::root());
    let f = create_file(&store, fs.root_ino, b"f");
    let acked = store.last_lsn();
    assert_eq!(store.lag_behind(acked), lag::Lag::default());
    store.write(&ctx, f, 0, &[7u8; 10_000]).unwrap();
    store.write(&ctx, f, 10_000, &[7u8; 10_000]).unwrap();
    let lag = store.lag_behind(acked);
    assert_eq!(lag.records, 2);
    assert!(lag.bytes >= 20_000 && lag.bytes < 21_000, "{lag:?}");
    let one = store.lag_behind(acked + 1);
    assert_eq!(one.records, 1);
    assert!(one.bytes >= 10_000 && one.bytes < 10_500, "{one:?}");
    assert_eq!(store.lag_behind(store.last_lsn()), lag::Lag::default());
}
