//! Baselines over an in-memory pipe: a copy taken while the active site
//! keeps writing, then streaming on the same connection, ends equal to the
//! active store; a broken copy resumes where it stopped; corrupt, truncated
//! or out-of-place baseline messages are refused and leave nothing that
//! opens.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_repl::baseline::*;
use tandem_repl::session;
use tandem_repl::wire::{self, BaselineResume, BaselineStart, Message, WireError};
use tandem_store::baseline::{BaselineError, BaselineSnapshot};
use tandem_store::*;
use tokio::sync::watch;

use crate::common::{assert_same, export, session_cfg, small_segments};

const T: Duration = Duration::from_secs(10);

fn bcfg(chunk_bytes: usize) -> BaselineConfig {
    BaselineConfig {
        message_timeout: T,
        finish_timeout: T,
        chunk_bytes,
        state_piece_bytes: 1000,
        max_bytes_per_s: None,
    }
}

/// An active store with files of several sizes, one sparse.
fn new_active(dir: &Path) -> (Arc<Store>, Ino) {
    let store = Store::init(dir, "vs1", small_segments()).expect("init");
    let root = store
        .create_fs("fs1", export("/fs1"))
        .expect("fs")
        .value
        .root_ino;
    let ctx = OpCtx::new(Cred::root());
    let set = SetAttr::default();
    for i in 0..12u64 {
        let name = format!("f{i}");
        let ino = store
            .create(&ctx, root, name.as_bytes(), CreateHow::Unchecked, &set)
            .expect("create")
            .value
            .ino;
        let data: Vec<u8> = (0..(i as usize * 9000 + 1))
            .map(|k| (k as u64 * 13 + i) as u8 | 1)
            .collect();
        store.write(&ctx, ino, 0, &data).expect("write");
    }
    let f3 = store.lookup(&Cred::root(), root, b"f3").expect("f3").ino;
    store
        .write(&ctx, f3, 400_000, b"sparse tail")
        .expect("sparse");
    (Arc::new(store), root)
}

/// Writes, truncations and removals on another thread until stopped.
fn churn(store: Arc<Store>, root: Ino, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let ctx = OpCtx::new(Cred::root());
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let name = format!("f{}", n % 12);
            if let Ok(attr) = store.lookup(&Cred::root(), root, name.as_bytes()) {
                match n % 4 {
                    0 | 1 => {
                        let data = vec![(n as u8) | 0x80; 3000];
                        store
                            .write(&ctx, attr.ino, (n * 977) % 90_000, &data)
                            .expect("write");
                    }
                    2 => {
                        let set = SetAttr {
                            size: Some((n * 131) % 40_000),
                            ..SetAttr::default()
                        };
                        store.setattr(&ctx, attr.ino, &set, None).expect("truncate");
                    }
                    _ if n % 24 == 3 => {
                        store.remove(&ctx, root, name.as_bytes()).expect("remove");
                    }
                    _ => {}
                }
            }
            n += 1;
            if n.is_multiple_of(8) {
                store
                    .wait_durable_blocking(store.last_lsn())
                    .expect("durable");
            }
        }
        n
    })
}

async fn snapshot(store: &Arc<Store>) -> Arc<BaselineSnapshot> {
    let s = store.clone();
    Arc::new(
        tokio::task::spawn_blocking(move || s.baseline_begin())
            .await
            .expect("join")
            .expect("baseline begin"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_then_streaming_on_one_connection() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = new_active(&tmp.path().join("active"));
    let stop = Arc::new(AtomicBool::new(false));
    let churner = churn(active.clone(), root, stop.clone());

    let (mut a, mut b) = tokio::io::duplex(64 << 10);
    let dir = tmp.path().join("replica");
    let (rtx, mut rrx) = watch::channel(BaselineStatus::default());
    let (replica_tx, replica_rx) = tokio::sync::oneshot::channel();
    let receiver = tokio::spawn(async move {
        let store = receive_baseline(&mut b, &dir, "vs1", small_segments(), &bcfg(0), Some(&rtx))
            .await
            .expect("receive baseline");
        let store = Arc::new(store);
        let _ = replica_tx.send(store.clone());
        session::receive(store, "vs1", b, &session_cfg()).await
    });

    let snap = snapshot(&active).await;
    let (ptx, prx) = watch::channel(BaselineStatus::default());
    let lsn = send_baseline(
        &mut a,
        active.clone(),
        snap.clone(),
        // Paced (generously: the data is small) so the bucket's path runs.
        &BaselineConfig {
            max_bytes_per_s: Some(64 << 20),
            ..bcfg(4096)
        },
        Some(&ptx),
    )
    .await
    .expect("send baseline");
    assert_eq!(lsn, snap.lsn);
    let sent = *prx.borrow();
    assert!(sent.finished);
    assert_eq!(sent.done_bytes, snap.total_bytes);
    assert_eq!(sent.resumed_from_bytes, 0);
    assert!(sent.rate_bytes_per_sec().is_some());
    let got = *rrx.borrow_and_update();
    assert!(got.finished && got.done_bytes == got.total_bytes);
    let replica = replica_rx.await.expect("replica store");
    assert_eq!(replica.last_lsn(), snap.lsn);

    // The same connection carries the stream from the baseline LSN on.
    let (acked_tx, mut acked) = watch::channel(0);
    let sender = {
        let active = active.clone();
        tokio::spawn(async move {
            session::send(
                active,
                a,
                &session_cfg(),
                session::SendOptions::acked(acked_tx),
            )
            .await
        })
    };
    // Stop churning once the stream has carried writes made after the
    // baseline, not after a guessed while.
    tokio::time::timeout(Duration::from_secs(20), acked.wait_for(|&l| l > snap.lsn))
        .await
        .expect("streaming carried post-baseline writes in time")
        .expect("sender alive");
    stop.store(true, Ordering::Relaxed);
    let rounds = tokio::task::spawn_blocking(move || churner.join())
        .await
        .expect("join")
        .expect("churner");
    assert!(rounds > 0);
    let last = active.last_lsn();
    active.wait_durable(last).await.expect("durable");
    tokio::time::timeout(Duration::from_secs(20), acked.wait_for(|&l| l >= last))
        .await
        .expect("replica caught up in time")
        .expect("sender alive");
    assert!(last > snap.lsn, "writes happened after the baseline");
    assert_same(&active, &replica);
    sender.abort();
    receiver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_baseline_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = new_active(&tmp.path().join("active"));
    let dir = tmp.path().join("replica");
    let snap = snapshot(&active).await;

    // First attempt: the connection breaks a third of the way in.
    let (mut a, mut b) = tokio::io::duplex(16 << 10);
    let d = dir.clone();
    let receiver = tokio::spawn(async move {
        receive_baseline(&mut b, &d, "vs1", small_segments(), &bcfg(0), None).await
    });
    let (ptx, mut prx) = watch::channel(BaselineStatus::default());
    let third = snap.total_bytes / 3;
    {
        let cfg = bcfg(2048);
        let send = send_baseline(&mut a, active.clone(), snap.clone(), &cfg, Some(&ptx));
        tokio::select! {
            r = send => panic!("baseline finished before the break: {r:?}"),
            r = prx.wait_for(|s| s.done_bytes > third) => { r.expect("progress"); }
        }
    }
    drop(a);
    let err = receiver.await.expect("join").err().expect("broken");
    assert!(matches!(err, BaselineSessionError::Wire(_)), "{err}");
    assert!(matches!(
        Store::open(&dir, small_segments()),
        Err(StoreError::Replication(_))
    ));

    // Meanwhile the active site changes things.
    let stop = Arc::new(AtomicBool::new(false));
    let churner = churn(active.clone(), root, stop.clone());

    // Second attempt with the same snapshot resumes past zero.
    let (mut a, mut b) = tokio::io::duplex(16 << 10);
    let d = dir.clone();
    let (rtx, rrx) = watch::channel(BaselineStatus::default());
    let receiver = tokio::spawn(async move {
        let store =
            receive_baseline(&mut b, &d, "vs1", small_segments(), &bcfg(0), Some(&rtx)).await;
        (store, b)
    });
    let (ptx, prx) = watch::channel(BaselineStatus::default());
    send_baseline(
        &mut a,
        active.clone(),
        snap.clone(),
        &bcfg(2048),
        Some(&ptx),
    )
    .await
    .expect("resumed baseline");
    let sent = *prx.borrow();
    assert!(sent.resumed_from_bytes > 0, "{sent:?}");
    assert!(sent.finished && sent.done_bytes == snap.total_bytes);
    let (replica, b) = receiver.await.expect("join");
    let replica = Arc::new(replica.expect("installed"));
    assert!(rrx.borrow().resumed_from_bytes > 0);
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || churner.join())
        .await
        .expect("join")
        .expect("churner");

    let (acked_tx, mut acked) = watch::channel(0);
    let sender = {
        let active = active.clone();
        tokio::spawn(async move {
            session::send(
                active,
                a,
                &session_cfg(),
                session::SendOptions::acked(acked_tx),
            )
            .await
        })
    };
    let recv = {
        let replica = replica.clone();
        tokio::spawn(async move { session::receive(replica, "vs1", b, &session_cfg()).await })
    };
    let last = active.last_lsn();
    active.wait_durable(last).await.expect("durable");
    tokio::time::timeout(Duration::from_secs(20), acked.wait_for(|&l| l >= last))
        .await
        .expect("caught up")
        .expect("sender alive");
    assert_same(&active, &replica);
    sender.abort();
    recv.abort();
}

/// Plays the active site by hand: Start, then the whole state; returns the
/// replica's answer.
async fn start_by_hand(
    a: &mut tokio::io::DuplexStream,
    snap: &BaselineSnapshot,
    lsn: Lsn,
) -> BaselineResume {
    let start = Message::BaselineStart(BaselineStart {
        vserver: "vs1".into(),
        epoch: snap.epoch,
        lsn,
        state_len: snap.state.len() as u64,
        state_crc: snap.state_crc,
        files: snap.files.len() as u64,
        total_bytes: snap.total_bytes,
    });
    wire::write_message(a, &start, T).await.expect("start");
    let Message::BaselineResume(r) = wire::read_message(a, T).await.expect("resume") else {
        panic!("expected BaselineResume");
    };
    let state = Message::BaselineState {
        offset: 0,
        data: snap.state.clone(),
    };
    wire::write_message(a, &state, T).await.expect("state");
    r
}

fn spawn_receiver(
    dir: &Path,
) -> (
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<std::result::Result<Store, BaselineSessionError>>,
) {
    let (a, mut b) = tokio::io::duplex(1 << 20);
    let d = dir.to_path_buf();
    let h = tokio::spawn(async move {
        receive_baseline(&mut b, &d, "vs1", small_segments(), &bcfg(0), None).await
    });
    (a, h)
}

#[tokio::test]
async fn corrupt_truncated_or_wrong_baseline_messages_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = new_active(&tmp.path().join("active"));
    let snap = snapshot(&active).await;
    let file = snap.files[1];
    let chunk = Message::BaselineChunk {
        ino: file.ino,
        offset: 0,
        data: Bytes::from_static(b"abc"),
    };

    // A chunk whose bytes were damaged in flight.
    let dir = tmp.path().join("corrupt");
    let (mut a, h) = spawn_receiver(&dir);
    let r = start_by_hand(&mut a, &snap, snap.lsn).await;
    assert!(!r.state_received && r.next_ino == 0 && r.next_offset == 0);
    let mut bytes = wire::encode(&chunk).expect("encode");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    tokio::io::AsyncWriteExt::write_all(&mut a, &bytes)
        .await
        .expect("write");
    assert_refused!(h, BaselineSessionError::Wire(WireError::Checksum { .. }));
    assert!(matches!(
        Store::open(&dir, small_segments()),
        Err(StoreError::Replication(_))
    ));

    // A chunk cut short by the connection closing.
    let dir = tmp.path().join("truncated");
    let (mut a, h) = spawn_receiver(&dir);
    start_by_hand(&mut a, &snap, snap.lsn).await;
    let bytes = wire::encode(&chunk).expect("encode");
    tokio::io::AsyncWriteExt::write_all(&mut a, &bytes[..bytes.len() - 2])
        .await
        .expect("write");
    drop(a);
    assert_refused!(h, BaselineSessionError::Wire(WireError::Truncated { .. }));
    assert!(Store::open(&dir, small_segments()).is_err());

    // A chunk for a directory: refused with an Error to the sender.
    let dir = tmp.path().join("unknown");
    let (mut a, h) = spawn_receiver(&dir);
    start_by_hand(&mut a, &snap, snap.lsn).await;
    let bad = Message::BaselineChunk {
        ino: root,
        offset: 0,
        data: Bytes::from_static(b"abc"),
    };
    wire::write_message(&mut a, &bad, T).await.expect("write");
    assert!(matches!(
        wire::read_message(&mut a, T).await,
        Ok(Message::Error { .. })
    ));
    assert_refused!(
        h,
        BaselineSessionError::Install(BaselineError::UnknownInode { .. })
    );

    // A state announced at another LSN than it holds.
    let dir = tmp.path().join("lsn");
    let (mut a, h) = spawn_receiver(&dir);
    start_by_hand(&mut a, &snap, snap.lsn + 5).await;
    assert_refused!(
        h,
        BaselineSessionError::Install(BaselineError::LsnMismatch { .. })
    );
    assert!(Store::open(&dir, small_segments()).is_err());

    // Done at another LSN than started.
    let dir = tmp.path().join("done");
    let (mut a, h) = spawn_receiver(&dir);
    start_by_hand(&mut a, &snap, snap.lsn).await;
    let done = Message::BaselineDone { lsn: snap.lsn + 1 };
    wire::write_message(&mut a, &done, T).await.expect("write");
    assert_refused!(
        h,
        BaselineSessionError::Install(BaselineError::LsnMismatch { .. })
    );
    assert!(!dir.join("checkpoint").exists());

    // A baseline for another vserver is refused up front.
    let dir = tmp.path().join("other");
    let (mut a, h) = spawn_receiver(&dir);
    let start = Message::BaselineStart(BaselineStart {
        vserver: "vs2".into(),
        epoch: 1,
        lsn: 1,
        state_len: 1,
        state_crc: 0,
        files: 0,
        total_bytes: 0,
    });
    wire::write_message(&mut a, &start, T).await.expect("start");
    assert!(matches!(
        wire::read_message(&mut a, T).await,
        Ok(Message::Refuse { .. })
    ));
    assert_refused!(h, BaselineSessionError::Refused { .. });
}

#[test]
fn baseline_messages_round_trip_and_limits_hold() {
    let msgs = [
        Message::BaselineStart(BaselineStart {
            vserver: "vs1".into(),
            epoch: 3,
            lsn: 77,
            state_len: 12345,
            state_crc: 0xdead_beef,
            files: 9,
            total_bytes: 1 << 40,
        }),
        Message::BaselineResume(BaselineResume {
            lsn: 77,
            state_received: true,
            next_ino: 12,
            next_offset: 4096,
            done_bytes: 999,
        }),
        Message::BaselineState {
            offset: 10,
            data: Bytes::from_static(b"state"),
        },
        Message::BaselineChunk {
            ino: 5,
            offset: 1 << 33,
            data: Bytes::from(vec![7u8; wire::MAX_BASELINE_CHUNK_BYTES]),
        },
        Message::BaselineDone { lsn: 77 },
    ];
    for m in msgs {
        let bytes = wire::encode(&m).expect("encode");
        assert_eq!(wire::decode(&bytes).expect("decode"), m);
    }
    // Empty and oversized pieces, a huge state, a bad flag.
    let refused = [
        Message::BaselineChunk {
            ino: 5,
            offset: 0,
            data: Bytes::new(),
        },
        Message::BaselineChunk {
            ino: 5,
            offset: 0,
            data: Bytes::from(vec![1u8; wire::MAX_BASELINE_CHUNK_BYTES + 1]),
        },
        Message::BaselineState {
            offset: 0,
            data: Bytes::from(vec![1u8; wire::MAX_BASELINE_STATE_PIECE_BYTES + 1]),
        },
        Message::BaselineStart(BaselineStart {
            vserver: "vs1".into(),
            epoch: 1,
            lsn: 1,
            state_len: wire::MAX_BASELINE_STATE_BYTES + 1,
            state_crc: 0,
            files: 0,
            total_bytes: 0,
        }),
    ];
    for m in refused {
        assert!(
            matches!(wire::encode(&m), Err(WireError::Malformed { .. })),
            "{m:?}"
        );
    }
    let mut resume = wire::encode(&Message::BaselineResume(BaselineResume {
        lsn: 1,
        state_received: false,
        next_ino: 0,
        next_offset: 0,
        done_bytes: 0,
    }))
    .expect("encode");
    resume[wire::ENVELOPE_BYTES + 8] = 2;
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&resume[..12]),
        &resume[wire::ENVELOPE_BYTES..],
    );
    resume[12..16].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        wire::decode(&resume),
        Err(WireError::Malformed { .. })
    ));
}
