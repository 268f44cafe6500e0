//! Resync over an in-memory pipe: a store promoted from a copy of an
//! active one (B) and the old active store (A) both change files after the
//! shared LSN (overwrites, truncation, creations with clashing inode
//! numbers, a removal); A, rewound by a resync, equals B field for field
//! and byte for byte, having received about the changed bytes only. Bad
//! requests are refused and change nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tandem_repl::baseline::BaselineConfig;
use tandem_repl::resync::*;
use tandem_repl::wire::{self, msg_type, Message, ResyncRequest};
use tandem_store::resync::{mark_replica, shared_lsn_in};
use tandem_store::*;

use crate::common;
use crate::common::{assert_same, export, malformed, sealed};

const T: Duration = Duration::from_secs(10);

fn cfg() -> BaselineConfig {
    BaselineConfig {
        message_timeout: T,
        finish_timeout: T,
        chunk_bytes: 16 << 10,
        state_piece_bytes: 1000,
        max_bytes_per_s: None,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn create(s: &Store, dir: Ino, name: &str, data: &[u8]) -> Ino {
    let ctx = OpCtx::new(Cred::root());
    let ino = s
        .create(
            &ctx,
            dir,
            name.as_bytes(),
            CreateHow::Unchecked,
            &SetAttr::default(),
        )
        .unwrap()
        .value
        .ino;
    s.write(&ctx, ino, 0, data).unwrap();
    ino
}

fn ino_of(s: &Store, dir: Ino, name: &str) -> Ino {
    s.lookup(&Cred::root(), dir, name.as_bytes()).unwrap().ino
}

/// A (active, diverged, closed) and B (promoted) after both changed files.
/// Returns B, A's directory, the root, and A's request.
fn diverged(dir: &Path) -> (Arc<Store>, std::path::PathBuf, ResyncRequest) {
    let (a_dir, b_dir) = (dir.join("a"), dir.join("b"));
    let a = Store::init(&a_dir, "vs1", StoreOptions::default()).unwrap();
    let root = a.create_fs("fs1", export("/fs1")).unwrap().value.root_ino;
    for i in 0..6u8 {
        create(&a, root, &format!("f{i}"), &vec![i + 1; 64 << 10]);
    }
    a.close().unwrap();
    drop(a);
    copy_dir(&a_dir, &b_dir);
    mark_replica(&b_dir).unwrap();
    let a = Store::open(&a_dir, StoreOptions::default()).unwrap();
    a.set_retention_floor(0);
    let b = Arc::new(Store::open_replica(&b_dir, StoreOptions::default()).unwrap());
    b.promote(2).unwrap();

    let ctx = OpCtx::new(Cred::root());
    // A: overwrite, shrink, a new file, a removal.
    a.write(&ctx, ino_of(&a, root, "f0"), 100, &[0xAA; 5000])
        .unwrap();
    let shrink = SetAttr {
        size: Some(1000),
        ..SetAttr::default()
    };
    a.setattr(&ctx, ino_of(&a, root, "f1"), &shrink, None)
        .unwrap();
    create(&a, root, "only-a", &[0xA1; 20_000]);
    a.remove(&ctx, root, b"f2").unwrap();
    // B: a new file (the same inode number as A's), an overwrite, a shrink.
    create(&b, root, "only-b", &[0xB1; 7000]);
    b.write(&ctx, ino_of(&b, root, "f3"), 0, &[0xBB; 3000])
        .unwrap();
    b.setattr(&ctx, ino_of(&b, root, "f4"), &shrink, None)
        .unwrap();
    a.fence(2).unwrap();

    let shared = shared_lsn_in(&b.epoch_history().unwrap(), 1).expect("shared LSN");
    let div = a.divergence(shared).unwrap();
    assert_eq!(div.records.len(), 5, "{:?}", div.records);
    let req = request("vs1", 1, &div).unwrap();
    a.close().unwrap();
    drop(a);
    mark_replica(&a_dir).unwrap();
    (b, a_dir, req)
}

#[tokio::test]
async fn the_diverged_store_becomes_the_promoted_one_for_about_the_changed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (b, a_dir, req) = diverged(dir.path());
    let (mut x, mut y) = tokio::io::duplex(1 << 20);
    let (epoch, shared) = (req.epoch, req.shared_lsn);
    let sender = {
        let b = b.clone();
        tokio::spawn(async move { serve_resync(&mut x, b, epoch, shared, &cfg()).await })
    };
    let a = receive_resync(&mut y, &a_dir, req, StoreOptions::default(), &cfg())
        .await
        .unwrap();
    let sent = sender.await.unwrap().unwrap();
    assert_same(&b, &a);
    assert!(a.is_replica());
    // Divergent: 5000 + (64 KiB - 1000) + 20000 (clipped to only-b's 7000)
    // + 64 KiB (f2, removed at A); B changed 7000 + 3000 + 0 (past 1000).
    assert_eq!(sent.own_changed_bytes, 7000 + 3000);
    assert!(sent.divergent_bytes >= 5000 + (64 << 10));
    assert!(
        sent.data_bytes <= sent.divergent_bytes + sent.own_changed_bytes,
        "{sent:?}"
    );
    assert!(sent.data_bytes < 6 * (64 << 10), "a full copy: {sent:?}");
    // Its fence (epoch 2) is outgrown: the opened store is a plain replica.
    assert_eq!(a.fenced_by(), None);
    assert!(!a_dir.join("FENCED").exists());
}

#[tokio::test]
async fn a_wrong_shared_lsn_or_vserver_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (b, a_dir, req) = diverged(dir.path());
    let before = b.last_lsn();
    for bad in [
        ResyncRequest {
            shared_lsn: req.shared_lsn + 1,
            ..req.clone()
        },
        ResyncRequest {
            vserver: "other".into(),
            ..req.clone()
        },
    ] {
        let (mut x, mut y) = tokio::io::duplex(1 << 20);
        let b2 = b.clone();
        let (epoch, shared) = (req.epoch, req.shared_lsn);
        let sender =
            tokio::spawn(async move { serve_resync(&mut x, b2, epoch, shared, &cfg()).await });
        wire::write_message(&mut y, &Message::ResyncRequest(bad), T)
            .await
            .unwrap();
        assert!(sender.await.unwrap().is_err());
    }
    // The promoted site knows no shared LSN for an epoch it did not follow.
    let (mut x, mut y) = tokio::io::duplex(1 << 20);
    let b2 = b.clone();
    let shared = req.shared_lsn;
    let sender = tokio::spawn(async move { serve_resync(&mut x, b2, 7, shared, &cfg()).await });
    let bad = ResyncRequest {
        epoch: 7,
        ..req.clone()
    };
    wire::write_message(&mut y, &Message::ResyncRequest(bad), T)
        .await
        .unwrap();
    assert!(sender.await.unwrap().is_err());
    assert_eq!(b.last_lsn(), before);

    // Once the promoted site forgot its changes since S, the diverged one
    // is told to fall back to a baseline, and its directory is untouched.
    b.forget_replica().unwrap();
    let a_lsn = tandem_store::catchup::closed_store_lsn(&a_dir).unwrap();
    let (mut x, mut y) = tokio::io::duplex(1 << 20);
    let b2 = b.clone();
    let (epoch, shared) = (req.epoch, req.shared_lsn);
    let sender = tokio::spawn(async move { serve_resync(&mut x, b2, epoch, shared, &cfg()).await });
    let err = receive_resync(&mut y, &a_dir, req, StoreOptions::default(), &cfg())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("fall back to a new baseline"),
        "{err}"
    );
    assert!(sender.await.unwrap().is_err());
    assert_eq!(
        tandem_store::catchup::closed_store_lsn(&a_dir).unwrap(),
        a_lsn
    );
    assert!(a_dir.join("FENCED").exists());
}

#[test]
fn resync_requests_round_trip_and_malformed_ones_are_refused() {
    let q = ResyncRequest {
        vserver: "vs1".into(),
        epoch: 1,
        shared_lsn: 42,
        ranges: vec![(5, 0, 10), (9, 100, u64::MAX)],
        present: vec![(1, 4), (6, 9)],
    };
    let bytes = wire::encode(&Message::ResyncRequest(q.clone())).unwrap();
    assert_eq!(wire::decode(&bytes).unwrap(), Message::ResyncRequest(q));
    let head = |ranges: &[(u64, u64, u64)], runs: &[(u64, u64)], claim: Option<u32>| {
        let mut p = Vec::new();
        p.extend_from_slice(&3u16.to_le_bytes());
        p.extend_from_slice(b"vs1");
        p.extend_from_slice(&1u64.to_le_bytes());
        p.extend_from_slice(&42u64.to_le_bytes());
        p.extend_from_slice(&claim.unwrap_or(ranges.len() as u32).to_le_bytes());
        for &(i, s, e) in ranges {
            for v in [i, s, e] {
                p.extend_from_slice(&v.to_le_bytes());
            }
        }
        p.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        for &(f, l) in runs {
            p.extend_from_slice(&f.to_le_bytes());
            p.extend_from_slice(&l.to_le_bytes());
        }
        sealed(msg_type::RESYNC_REQUEST, &p)
    };
    assert!(malformed(&head(&[(1, 5, 5)], &[], None)).contains("empty range"));
    assert!(malformed(&head(&[], &[(5, 9), (3, 4)], None)).contains("ascending"));
    assert!(malformed(&head(&[], &[(5, 4)], None)).contains("ascending"));
    assert!(malformed(&head(&[], &[], Some(u32::MAX))).contains("exceeds the payload"));
    let mut trailing = head(&[], &[], None);
    trailing.push(0);
    let n = trailing.len() - 16;
    trailing[8..12].copy_from_slice(&(n as u32).to_le_bytes());
    common::reseal(&mut trailing);
    assert!(malformed(&trailing).contains("after the last field"));
}
