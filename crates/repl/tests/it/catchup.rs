//! Catch-ups over an in-memory pipe: an active store in journal overflow
//! sends its changed ranges to a replica that was away; installed and
//! followed by the journal, the replica equals the active store. Corrupt,
//! truncated or wrong catch-up messages are refused and leave the replica
//! as it was.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_repl::baseline::{BaselineConfig, BaselineSessionError};
use tandem_repl::catchup::*;
use tandem_repl::wire::{self, CatchupStart, Message, WireError};
use tandem_store::baseline::BaselineError;
use tandem_store::overflow::CatchupSnapshot;
use tandem_store::*;

use crate::common::{assert_same, export, ship};

const T: Duration = Duration::from_secs(10);
const JOURNAL_MAX_BYTES: u64 = 256 << 10;

fn opts() -> StoreOptions {
    StoreOptions {
        max_segment_bytes: 32 << 10,
        checkpoint_every_bytes: 64 << 10,
        journal_max_bytes: JOURNAL_MAX_BYTES,
        ..StoreOptions::default()
    }
}

fn cfg() -> BaselineConfig {
    BaselineConfig {
        message_timeout: T,
        finish_timeout: T,
        chunk_bytes: 16 << 10,
        state_piece_bytes: 1000,
        max_bytes_per_s: None,
    }
}

/// An active store, a closed replica holding 8 files of 64 KiB, and the
/// active past its journal limit with a few ranges changed. Returns the
/// active, the replica's LSN, the root, and the bytes written while away.
fn setup(dir: &Path) -> (Arc<Store>, Lsn, Ino, u64) {
    let active = Store::init(&dir.join("active"), "vs1", opts()).expect("init");
    active.set_retention_floor(0);
    let root = active
        .create_fs("fs1", export("/fs1"))
        .expect("fs")
        .value
        .root_ino;
    let replica = Store::init_replica(&dir.join("replica"), opts()).expect("replica");
    let ctx = OpCtx::new(Cred::root());
    let set = SetAttr::default();
    let mut files = Vec::new();
    for i in 0..8u8 {
        let ino = active
            .create(
                &ctx,
                root,
                format!("f{i}").as_bytes(),
                CreateHow::Unchecked,
                &set,
            )
            .expect("create")
            .value
            .ino;
        active
            .write(&ctx, ino, 0, &vec![i | 1; 64 << 10])
            .expect("write");
        ship(&active, &replica);
        files.push(ino);
    }
    let replica_lsn = replica.last_lsn();
    drop(replica);
    // The same 20 KiB rewritten many times: journal well past the limit.
    let mut written = 0;
    for round in 0..40u64 {
        active
            .write(&ctx, files[1], 1000, &vec![round as u8 | 0x80; 20_000])
            .expect("rewrite");
        if round % 5 == 0 {
            active.checkpoint().expect("checkpoint");
        }
    }
    written += 20_000;
    let shrink = SetAttr {
        size: Some(10),
        ..SetAttr::default()
    };
    active
        .setattr(&ctx, files[2], &shrink, None)
        .expect("shrink");
    active
        .write(&ctx, files[2], 30_000, b"tail")
        .expect("extend");
    written += 30_004 - 10;
    active.remove(&ctx, root, b"f3").expect("remove");
    active.checkpoint().expect("checkpoint");
    assert!(active.overflow_status().is_some(), "in overflow");
    (Arc::new(active), replica_lsn, root, written)
}

async fn begin(store: &Arc<Store>, replica_lsn: Lsn) -> Arc<CatchupSnapshot> {
    let s = store.clone();
    Arc::new(
        tokio::task::spawn_blocking(move || s.catchup_begin(replica_lsn))
            .await
            .expect("join")
            .expect("catch-up begin"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catchup_over_a_connection_converges() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, replica_lsn, _, written) = setup(tmp.path());
    let snap = begin(&active, replica_lsn).await;
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    let dir = tmp.path().join("replica");
    let recv =
        tokio::spawn(
            async move { receive_catchup(&mut b, &dir, "vs1", opts(), &cfg(), None).await },
        );
    let (ptx, prx) = tokio::sync::watch::channel(Default::default());
    let sent = send_catchup(&mut a, active.clone(), snap.clone(), &cfg(), Some(&ptx))
        .await
        .expect("send");
    let replica = recv.await.expect("join").expect("receive");
    assert_eq!(sent.lsn, snap.lsn);
    assert!(prx.borrow().finished);
    assert!(
        sent.data_bytes <= written * 5 / 4 + (64 << 10),
        "{} data bytes sent for {written} written",
        sent.data_bytes
    );
    assert_eq!(replica.last_lsn(), snap.lsn);
    active.catchup_finished(snap.lsn).expect("finished");
    assert!(active.overflow_status().is_none());
    ship(&active, &replica);
    assert_same(&active, &replica);
}

/// Plays the active site by hand: Start (with `lsn` and `crc`), then the
/// whole state.
async fn start_by_hand(
    a: &mut tokio::io::DuplexStream,
    snap: &CatchupSnapshot,
    lsn: Lsn,
    crc: u32,
) {
    let start = Message::CatchupStart(CatchupStart {
        vserver: "vs1".into(),
        epoch: snap.epoch,
        from_lsn: snap.from_lsn,
        lsn,
        state_len: snap.state.len() as u64,
        state_crc: crc,
        range_count: snap.ranges.len() as u64,
        total_bytes: snap.total_bytes,
    });
    wire::write_message(a, &start, T).await.expect("start");
    let state = Message::CatchupState {
        offset: 0,
        data: snap.state.clone(),
    };
    // The receiver may already have refused.
    let _ = wire::write_message(a, &state, T).await;
}

fn spawn_receiver(
    dir: &Path,
) -> (
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<std::result::Result<Store, BaselineSessionError>>,
) {
    let (a, mut b) = tokio::io::duplex(1 << 20);
    let d = dir.to_path_buf();
    let h =
        tokio::spawn(async move { receive_catchup(&mut b, &d, "vs1", opts(), &cfg(), None).await });
    (a, h)
}

/// The replica was left as it was: it opens at its own LSN, no staging.
fn assert_intact(dir: &Path, lsn: Lsn) {
    let r = Store::open_replica(dir, opts()).expect("open");
    assert_eq!(r.last_lsn(), lsn);
    assert!(!dir.join(tandem_store::catchup::CATCHUP_DIR).exists());
}

#[tokio::test]
async fn bad_catchup_messages_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, replica_lsn, root, _) = setup(tmp.path());
    let snap = begin(&active, replica_lsn).await;
    let dir = tmp.path().join("replica");
    let range = snap.ranges[0];
    let chunk = |ino: Ino, offset: u64| Message::CatchupChunk {
        ino,
        offset,
        data: Bytes::from_static(b"abc"),
    };

    // A state whose CRC is not the announced one.
    let (mut a, h) = spawn_receiver(&dir);
    start_by_hand(&mut a, &snap, snap.lsn, snap.state_crc ^ 1).await;
    assert!(matches!(
        wire::read_message(&mut a, T).await,
        Ok(Message::Error { .. })
    ));
    assert_refused!(
        h,
        BaselineSessionError::Install(BaselineError::StateCorrupt(_))
    );
    assert_intact(&dir, replica_lsn);

    // A state announced at another LSN than it holds.
    let (mut a, h) = spawn_receiver(&dir);
    start_by_hand(&mut a, &snap, snap.lsn + 5, snap.state_crc).await;
    assert_refused!(
        h,
        BaselineSessionError::Install(BaselineError::LsnMismatch { .. })
    );
    assert_intact(&dir, replica_lsn);

    // A chunk for an inode that is not a regular file at X (the root).
    let (mut a, h) = spawn_receiver(&dir);
    start_by_hand(&mut a, &snap, snap.lsn, snap.state_crc).await;
    wire::write_message(&mut a, &chunk(root, 0), T)
        .await
        .expect("write");
    assert!(matches!(
        wire::read_message(&mut a, T).await,
        Ok(Message::Error { .. })
    ));
    assert_refused!(
        h,
        BaselineSessionError::Install(BaselineError::UnknownInode { .. })
    );
    assert_intact(&dir, replica_lsn);

    // A chunk past the file's size at X, and zeros past it.
    for bad in [
        chunk(range.ino, u64::MAX - 1),
        Message::CatchupZeros {
            ino: range.ino,
            offset: 1 << 50,
            len: 1,
        },
    ] {
        let (mut a, h) = spawn_receiver(&dir);
        start_by_hand(&mut a, &snap, snap.lsn, snap.state_crc).await;
        wire::write_message(&mut a, &bad, T).await.expect("write");
        assert_refused!(
            h,
            BaselineSessionError::Install(BaselineError::BeyondSize { .. })
        );
        assert_intact(&dir, replica_lsn);
    }

    // Done at another LSN than started.
    let (mut a, h) = spawn_receiver(&dir);
    start_by_hand(&mut a, &snap, snap.lsn, snap.state_crc).await;
    let done = Message::CatchupDone { lsn: snap.lsn + 1 };
    wire::write_message(&mut a, &done, T).await.expect("write");
    assert_refused!(
        h,
        BaselineSessionError::Install(BaselineError::LsnMismatch { .. })
    );
    assert_intact(&dir, replica_lsn);

    // A chunk damaged in flight, and one cut short by the link closing.
    let (mut a, h) = spawn_receiver(&dir);
    start_by_hand(&mut a, &snap, snap.lsn, snap.state_crc).await;
    let mut bytes = wire::encode(&chunk(range.ino, range.offset)).expect("encode");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    tokio::io::AsyncWriteExt::write_all(&mut a, &bytes)
        .await
        .expect("write");
    assert_refused!(h, BaselineSessionError::Wire(WireError::Checksum { .. }));
    assert_intact(&dir, replica_lsn);
    let (mut a, h) = spawn_receiver(&dir);
    start_by_hand(&mut a, &snap, snap.lsn, snap.state_crc).await;
    let bytes = wire::encode(&chunk(range.ino, range.offset)).expect("encode");
    tokio::io::AsyncWriteExt::write_all(&mut a, &bytes[..bytes.len() - 2])
        .await
        .expect("write");
    drop(a);
    assert_refused!(h, BaselineSessionError::Wire(WireError::Truncated { .. }));
    assert_intact(&dir, replica_lsn);

    // A catch-up that does not cover the replica's LSN.
    let (mut a, h) = spawn_receiver(&dir);
    let mut late = (*snap).clone();
    late.from_lsn = replica_lsn + 1;
    start_by_hand(&mut a, &late, snap.lsn, snap.state_crc).await;
    assert_refused!(
        h,
        BaselineSessionError::Install(BaselineError::NotCovered { .. })
    );
    assert_intact(&dir, replica_lsn);

    // Another vserver is refused up front.
    let (mut a, h) = spawn_receiver(&dir);
    let start = Message::CatchupStart(CatchupStart {
        vserver: "vs2".into(),
        epoch: 1,
        from_lsn: 1,
        lsn: 2,
        state_len: 1,
        state_crc: 0,
        range_count: 0,
        total_bytes: 0,
    });
    wire::write_message(&mut a, &start, T).await.expect("start");
    assert!(matches!(
        wire::read_message(&mut a, T).await,
        Ok(Message::Refuse { .. })
    ));
    assert_refused!(h, BaselineSessionError::Refused { .. });

    // And after all that, the real one installs.
    let (mut a, h) = spawn_receiver(&dir);
    send_catchup(&mut a, active.clone(), snap.clone(), &cfg(), None)
        .await
        .expect("send");
    let replica = h.await.expect("join").expect("installed");
    assert_eq!(replica.last_lsn(), snap.lsn);
}

#[test]
fn catchup_messages_round_trip_and_limits_hold() {
    let start = CatchupStart {
        vserver: "vs1".into(),
        epoch: 3,
        from_lsn: 70,
        lsn: 77,
        state_len: 12345,
        state_crc: 0xdead_beef,
        range_count: 9,
        total_bytes: 1 << 40,
    };
    let msgs = [
        Message::CatchupStart(start.clone()),
        Message::CatchupState {
            offset: 10,
            data: Bytes::from_static(b"state"),
        },
        Message::CatchupChunk {
            ino: 5,
            offset: 1 << 33,
            data: Bytes::from(vec![7u8; wire::MAX_BASELINE_CHUNK_BYTES]),
        },
        Message::CatchupZeros {
            ino: 5,
            offset: 4096,
            len: 1 << 40,
        },
        Message::CatchupDone { lsn: 77 },
    ];
    for m in msgs {
        let bytes = wire::encode(&m).expect("encode");
        assert_eq!(wire::decode(&bytes).expect("decode"), m);
        // Every message cut short is refused.
        assert!(wire::decode(&bytes[..bytes.len() - 1]).is_err());
    }
    let refused = [
        Message::CatchupStart(CatchupStart {
            from_lsn: 78,
            ..start.clone()
        }),
        Message::CatchupStart(CatchupStart {
            state_len: 0,
            ..start.clone()
        }),
        Message::CatchupStart(CatchupStart {
            state_len: wire::MAX_BASELINE_STATE_BYTES + 1,
            ..start.clone()
        }),
        Message::CatchupChunk {
            ino: 5,
            offset: 0,
            data: Bytes::new(),
        },
        Message::CatchupChunk {
            ino: 5,
            offset: 0,
            data: Bytes::from(vec![1u8; wire::MAX_BASELINE_CHUNK_BYTES + 1]),
        },
        Message::CatchupState {
            offset: 0,
            data: Bytes::from(vec![1u8; wire::MAX_BASELINE_STATE_PIECE_BYTES + 1]),
        },
        Message::CatchupZeros {
            ino: 5,
            offset: 0,
            len: 0,
        },
        Message::CatchupZeros {
            ino: 5,
            offset: u64::MAX,
            len: 2,
        },
    ];
    for m in refused {
        assert!(wire::encode(&m).is_err(), "{m:?} encoded");
    }
    // The same bad fields arriving from a peer are refused by decode:
    // patch a valid CatchupZeros into a zero length (CRC recomputed).
    let mut bytes = wire::encode(&Message::CatchupZeros {
        ino: 5,
        offset: 0,
        len: 1,
    })
    .expect("encode");
    let n = bytes.len();
    bytes[n - 8..].copy_from_slice(&0u64.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..12]), &bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        wire::decode(&bytes),
        Err(WireError::Malformed { .. })
    ));
}
