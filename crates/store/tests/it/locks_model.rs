//! Byte-range locks against a reference model: a map per byte of which
//! owner holds it and how. After every step the store's answer and its
//! whole table (expanded to bytes) must equal the model's, and the table
//! must be canonical (fsck clean). The same history then replays from the
//! journal alone, survives a checkpoint and reaches a replica unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;
use proptest::prelude::*;
use tandem_store::locks::{ByteRange, LockOutcome, LockOwner};
use tandem_store::*;

/// Bytes the model tracks; every range starts below `BYTES - 4`, so a lock
/// to EOF always covers some tracked bytes and overlaps are all visible.
const BYTES: u64 = 24;

fn owners() -> [LockOwner; 3] {
    let o = |host: &str, svid: u32| LockOwner {
        host: host.into(),
        svid,
        oh: format!("{host}-{svid}").into_bytes(),
    };
    [o("a", 1), o("a", 2), o("b", 1)]
}

#[derive(Debug, Clone)]
enum Step {
    Lock {
        owner: usize,
        start: u64,
        len: u64,
        exclusive: bool,
    },
    Unlock {
        owner: usize,
        start: u64,
        len: u64,
    },
    Test {
        owner: usize,
        start: u64,
        len: u64,
        exclusive: bool,
    },
    FreeHost(&'static str),
}

fn step_s() -> impl Strategy<Value = Step> {
    let o = 0..3usize;
    let start = 0..BYTES - 4;
    let len = 0..6u64;
    prop_oneof![
        5 => (o.clone(), start.clone(), len.clone(), any::<bool>()).prop_map(
            |(owner, start, len, exclusive)| Step::Lock { owner, start, len, exclusive }
        ),
        3 => (o.clone(), start.clone(), len.clone())
            .prop_map(|(owner, start, len)| Step::Unlock { owner, start, len }),
        2 => (o, start, len, any::<bool>()).prop_map(
            |(owner, start, len, exclusive)| Step::Test { owner, start, len, exclusive }
        ),
        1 => prop_oneof![Just("a"), Just("b")].prop_map(Step::FreeHost),
    ]
}

/// Per byte: owner index -> exclusive.
type Model = Vec<BTreeMap<usize, bool>>;

fn covered(start: u64, len: u64) -> std::ops::Range<usize> {
    let end = if len == 0 { BYTES } else { start + len };
    start as usize..end as usize
}

fn model_conflict(m: &Model, me: usize, start: u64, len: u64, exclusive: bool) -> bool {
    m[covered(start, len)]
        .iter()
        .any(|b| b.iter().any(|(&o, &x)| o != me && (x || exclusive)))
}

/// The store's table expanded to the model's bytes.
fn expand(store: &Store, ino: Ino) -> Model {
    let owners = owners();
    let mut m: Model = vec![BTreeMap::new(); BYTES as usize];
    let state = store.lock_state();
    for (i, byte) in m.iter_mut().enumerate() {
        for (file, owner, pieces) in state.locks() {
            assert_eq!(file, ino);
            let idx = owners.iter().position(|o| o == owner).expect("known owner");
            for p in pieces {
                if p.range.start <= i as u64 && i as u64 <= p.range.end {
                    assert!(
                        byte.insert(idx, p.exclusive).is_none(),
                        "owner pieces overlap"
                    );
                }
            }
        }
    }
    m
}

fn fsck_clean(store: &Store) {
    let mut report = tandem_store::fsck::FsckReport::default();
    tandem_store::fsck::check_state(&store.snapshot(), &mut report);
    assert!(report.is_clean(), "{report}");
}

fn run(store: &Store, ino: Ino, m: &mut Model, step: &Step) {
    let owners = owners();
    match *step {
        Step::Lock {
            owner,
            start,
            len,
            exclusive,
        } => {
            let range = ByteRange::from_offset_len(start, len);
            let got = store.lock(ino, &owners[owner], range, exclusive).unwrap();
            let conflict = model_conflict(m, owner, start, len, exclusive);
            match got {
                LockOutcome::Denied(h) => {
                    assert!(conflict, "denied without a conflict: {step:?}");
                    assert_ne!(h.owner, owners[owner]);
                    assert!(h.piece.range.overlaps(&range));
                    assert!(h.piece.exclusive || exclusive);
                }
                LockOutcome::Granted(_) => {
                    assert!(!conflict, "granted over a conflict: {step:?}");
                    for b in &mut m[covered(start, len)] {
                        b.insert(owner, exclusive);
                    }
                }
            }
        }
        Step::Unlock { owner, start, len } => {
            let range = ByteRange::from_offset_len(start, len);
            store.unlock(ino, &owners[owner], range).unwrap();
            for b in &mut m[covered(start, len)] {
                b.remove(&owner);
            }
        }
        Step::Test {
            owner,
            start,
            len,
            exclusive,
        } => {
            let range = ByteRange::from_offset_len(start, len);
            let lsn = store.last_lsn();
            let got = store
                .test_lock(ino, &owners[owner], range, exclusive)
                .unwrap();
            assert_eq!(
                got.is_some(),
                model_conflict(m, owner, start, len, exclusive)
            );
            assert_eq!(store.last_lsn(), lsn, "TEST wrote a record");
        }
        Step::FreeHost(host) => {
            store.free_host_locks(host).unwrap();
            for b in m.iter_mut() {
                b.retain(|&o, _| owners[o].host != host);
            }
        }
    }
    assert_eq!(&expand(store, ino), m, "after {step:?}");
}

fn opts() -> StoreOptions {
    StoreOptions {
        retain_journal: true,
        ..StoreOptions::default()
    }
}

fn copy_journal_only(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("FORMAT"), to.join("FORMAT")).unwrap();
    copy_tree(&from.join("journal"), &to.join("journal"));
}

fn case(steps: &[Step]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    let ino = create_file(&store, fs.root_ino, b"f");
    let mut m: Model = vec![BTreeMap::new(); BYTES as usize];
    for step in steps {
        run(&store, ino, &mut m, step);
    }
    fsck_clean(&store);
    store.wait_durable_blocking(store.last_lsn()).unwrap();

    let replica = Store::init_replica(&tmp.path().join("r"), opts()).unwrap();
    ship(&store, &replica);
    assert_same(&store, &replica);

    let copy_dir = tmp.path().join("journal-only");
    copy_journal_only(&dir, &copy_dir);
    let copy = Store::open(&copy_dir, opts()).unwrap();
    assert_eq!(copy.snapshot(), store.snapshot(), "replay differs");

    let state = store.snapshot();
    store.close().unwrap();
    drop(store);
    let reopened = Store::open(&dir, opts()).unwrap();
    assert_eq!(reopened.snapshot(), state, "checkpoint round trip differs");
    assert_eq!(expand(&reopened, ino), m);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn locks_follow_the_posix_model(steps in prop::collection::vec(step_s(), 1..60)) {
        case(&steps);
    }
}

/// Split, upgrade, downgrade, merge and to-EOF in one fixed story.
#[test]
fn fixed_story() {
    let l = |owner, start, len, exclusive| Step::Lock {
        owner,
        start,
        len,
        exclusive,
    };
    case(&[
        l(0, 0, 10, false),
        l(2, 5, 3, false),
        l(1, 2, 2, true),
        l(0, 4, 0, true),
        l(0, 4, 0, false),
        l(2, 5, 3, true),
        Step::Unlock {
            owner: 0,
            start: 6,
            len: 1,
        },
        l(2, 5, 3, true),
        l(2, 8, 0, false),
        Step::FreeHost("a"),
        l(1, 0, 0, false),
    ]);
}
