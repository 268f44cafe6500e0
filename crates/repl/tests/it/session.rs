//! Sender and receiver sessions over an in-memory pipe: streaming while
//! the active site keeps writing, resuming after a broken connection,
//! refusals (older epoch, wrong vserver), and a dead link detected.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_repl::session::*;
use tandem_repl::wire::{self, code, HelloOk, Message};
use tandem_store::journal::{decode_payload, encode_frame};
use tandem_store::*;
use tokio::sync::watch;

use crate::common::{export, session_cfg, small_segments};

fn new_active(dir: &std::path::Path) -> (Arc<Store>, Ino) {
    let store = Store::init(dir, "vs1", small_segments()).expect("init");
    // Small segments checkpoint in the background after a few writes; with
    // no floor they could delete LSN 1 before the first session asks for
    // it (seen once as NotRetained). The sender raises the floor from here.
    store.set_retention_floor(0);
    let fs = store.create_fs("fs1", export("/fs1")).expect("fs").value;
    (Arc::new(store), fs.root_ino)
}

/// Some writes: files with data, a rename, a removal.
fn write_some(store: &Store, root: Ino, round: u32) {
    let ctx = OpCtx::new(Cred::root());
    let set = SetAttr::default();
    for i in 0..10u32 {
        let name = format!("r{round}-{i}");
        let f = store
            .create(&ctx, root, name.as_bytes(), CreateHow::Unchecked, &set)
            .expect("create");
        let data = vec![(round + i) as u8; 3000 * i as usize + 1];
        store.write(&ctx, f.value.ino, 0, &data).expect("write");
    }
    let from = format!("r{round}-1");
    let to = format!("r{round}-2");
    store
        .rename(&ctx, root, from.as_bytes(), root, to.as_bytes())
        .expect("rename");
    let gone = format!("r{round}-3");
    store.remove(&ctx, root, gone.as_bytes()).expect("remove");
}

async fn wait_for(acked: &mut watch::Receiver<Lsn>, lsn: Lsn) {
    tokio::time::timeout(Duration::from_secs(20), acked.wait_for(|&a| a >= lsn))
        .await
        .expect("replica caught up in time")
        .expect("sender alive");
}

fn contents(store: &Store) -> Vec<(Ino, Vec<u8>)> {
    let st = store.snapshot();
    st.inodes
        .iter()
        .filter(|(_, i)| i.attr.ftype == FileType::Regular)
        .map(|(&ino, i)| {
            let data = store
                .read(&Cred::root(), ino, 0, i.attr.size as u32)
                .expect("read")
                .data;
            (ino, data)
        })
        .collect()
}

type Side = tokio::task::JoinHandle<std::result::Result<(), SessionError>>;

/// A session from `active` to `replica` for "vs1", each end on its own
/// task; the LSNs the replica acknowledges arrive on the receiver.
fn spawn_session(active: &Arc<Store>, replica: &Arc<Store>) -> (Side, Side, watch::Receiver<Lsn>) {
    spawn_session_with(active, replica, session_cfg())
}

fn spawn_session_with(
    active: &Arc<Store>,
    replica: &Arc<Store>,
    c: SessionConfig,
) -> (Side, Side, watch::Receiver<Lsn>) {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (ack_tx, acked) = watch::channel(0);
    let sender = tokio::spawn({
        let (active, c) = (active.clone(), c.clone());
        async move { send(active, a, &c, SendOptions::acked(ack_tx)).await }
    });
    let receiver = tokio::spawn({
        let replica = replica.clone();
        async move { receive(replica, "vs1", b, &c).await }
    });
    (sender, receiver, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_while_writing_and_resumes_after_a_cut() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = new_active(&tmp.path().join("active"));
    let replica = Arc::new(
        Store::init_replica(&tmp.path().join("replica"), StoreOptions::default()).expect("replica"),
    );
    write_some(&active, root, 0);

    let (sender, receiver, mut acked) = spawn_session(&active, &replica);
    // More writes while streaming; each round made durable (like COMMIT).
    for round in 1..4 {
        write_some(&active, root, round);
        active
            .wait_durable_blocking(active.last_lsn())
            .expect("durable");
    }
    wait_for(&mut acked, active.last_lsn()).await;
    assert_eq!(replica.snapshot(), active.snapshot());
    assert_eq!(contents(&replica), contents(&active));

    // Cut the link: the receiver sees it close (or break), nothing is
    // corrupted.
    sender.abort();
    let _ = sender.await;
    let r = receiver.await.expect("join");
    assert!(
        r.is_ok() || matches!(r, Err(SessionError::Wire(_))),
        "{r:?}"
    );

    // The active site goes on alone, checkpointing; the floor the last ack
    // set keeps every segment the replica lacks. Then a new session resumes.
    let floor = replica.last_lsn();
    for round in 4..6 {
        write_some(&active, root, round);
        active
            .wait_durable_blocking(active.last_lsn())
            .expect("durable");
        active.checkpoint().expect("checkpoint");
    }
    assert!(active.oldest_retained_lsn().expect("oldest") <= floor + 1);
    assert!(
        active.oldest_retained_lsn().expect("oldest") > 1,
        "older segments went"
    );
    let (sender, receiver, mut acked) = spawn_session(&active, &replica);
    wait_for(&mut acked, active.last_lsn()).await;
    assert_eq!(replica.snapshot(), active.snapshot());
    assert_eq!(contents(&replica), contents(&active));
    // Idle for a while: heartbeats keep the session up.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !sender.is_finished(),
        "heartbeats keep an idle session alive"
    );
    assert!(!receiver.is_finished());
    sender.abort();
    let _ = sender.await;
    let _ = receiver.await;
}

/// With compression on or off, and under a bandwidth limit, the replica
/// converges; the counters say what went over the wire and was acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_and_bandwidth_limit_converge_and_count() {
    for compress in [true, false] {
        let tmp = tempfile::tempdir().expect("tmp");
        let (active, root) = new_active(&tmp.path().join("active"));
        let replica = Arc::new(
            Store::init_replica(&tmp.path().join("replica"), StoreOptions::default())
                .expect("replica"),
        );
        write_some(&active, root, 0);
        let mut c = session_cfg();
        c.compress = compress;
        c.max_bytes_per_s = Some(tandem_repl::throttle::mbps_to_bytes_per_s(100));
        let counters = c.counters.clone();
        let (sender, receiver, mut acked) = spawn_session_with(&active, &replica, c);
        write_some(&active, root, 1);
        active
            .wait_durable_blocking(active.last_lsn())
            .expect("durable");
        wait_for(&mut acked, active.last_lsn()).await;
        assert_eq!(contents(&replica), contents(&active));
        let (wire, journal, acked_bytes) = counters.read();
        assert!(journal > 0);
        assert_eq!(acked_bytes, journal, "everything sent was acked");
        if compress {
            // The writes repeat one byte: they pack well.
            assert!(wire * 2 < journal, "{wire} wire bytes for {journal}");
        } else {
            assert!(wire > journal, "{wire} wire bytes for {journal}");
        }
        sender.abort();
        let _ = sender.await;
        let _ = receiver.await;
    }
}

/// A limit far below what the writes need: batches wait for the bucket
/// much longer than the receiver's idle timeout, yet the same session
/// carries everything (heartbeats go out while the sender waits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_bandwidth_limit_keeps_the_session_alive() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = new_active(&tmp.path().join("active"));
    let replica = Arc::new(
        Store::init_replica(&tmp.path().join("replica"), StoreOptions::default()).expect("replica"),
    );
    for round in 0..3 {
        write_some(&active, root, round);
    }
    active
        .wait_durable_blocking(active.last_lsn())
        .expect("durable");
    let mut c = session_cfg();
    c.compress = false;
    c.max_batch_bytes = 1 << 20;
    // 1 Mbit/s: 125 kB/s, and the writes are ~420 kB: about 2.5 s of
    // waits, ~1 s each (a batch holds about a second's worth), each
    // longer than the 500 ms idle timeout would allow without heartbeats.
    c.max_bytes_per_s = Some(tandem_repl::throttle::mbps_to_bytes_per_s(1));
    let (sender, receiver, mut acked) = spawn_session_with(&active, &replica, c);
    let last = active.last_lsn();
    let caught_up =
        tokio::time::timeout(Duration::from_secs(20), acked.wait_for(|&a| a >= last)).await;
    if caught_up.is_err() || sender.is_finished() {
        panic!(
            "the session stalled or ended: sender {:?}, receiver {:?}",
            sender.await,
            receiver.await
        );
    }
    assert_eq!(contents(&replica), contents(&active));
    assert!(!sender.is_finished(), "the session survived the waits");
    assert!(!receiver.is_finished());
    sender.abort();
    let _ = sender.await;
    let _ = receiver.await;
}

/// Re-encodes frames with another epoch (what a newly promoted site sends).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_epoch_and_wrong_vserver_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = new_active(&tmp.path().join("active"));
    write_some(&active, root, 0);
    active
        .wait_durable_blocking(active.last_lsn())
        .expect("durable");
    let replica = Arc::new(
        Store::init_replica(&tmp.path().join("replica"), StoreOptions::default()).expect("replica"),
    );
    // The replica has seen epoch 2: the epoch-1 active site is fenced.
    let frames = active.read_frames(0, 1).expect("frames");
    replica
        .apply_replicated(&with_epoch(&frames, 2))
        .expect("epoch 2");
    let before = replica.snapshot();

    let (s, r) = one_session(&active, &replica, "vs1").await;
    assert!(refused_with(&s, code::FENCED), "{s:?}");
    assert!(matches!(r, Err(SessionError::Refused { .. })), "{r:?}");
    assert_eq!(replica.snapshot(), before);

    // A replica set up for another vserver.
    let (s, _r) = one_session(&active, &replica, "other").await;
    assert!(refused_with(&s, code::UNKNOWN_VSERVER), "{s:?}");

    // An active store never receives (nor changes for trying).
    let active_before = active.snapshot();
    let (s, _r) = one_session(&active, &active, "vs1").await;
    assert!(matches!(s, Err(SessionError::Refused { .. })), "{s:?}");
    assert_eq!(active.snapshot(), active_before);
    assert_eq!(replica.snapshot(), before);
}

/// One session from `active` to `receiver` (serving `vserver`): both ends'
/// results.
async fn one_session(
    active: &Arc<Store>,
    receiver: &Arc<Store>,
    vserver: &str,
) -> (
    std::result::Result<(), SessionError>,
    std::result::Result<(), SessionError>,
) {
    let c = session_cfg();
    let (a, b) = tokio::io::duplex(64 << 10);
    tokio::join!(
        send(active.clone(), a, &c, SendOptions::default()),
        receive(receiver.clone(), vserver, b, &c)
    )
}

fn refused_with(r: &std::result::Result<(), SessionError>, want: u16) -> bool {
    matches!(r, Err(SessionError::Refused { code, .. }) if *code == want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_replica_is_detected() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = new_active(&tmp.path().join("active"));
    write_some(&active, root, 0);
    active
        .wait_durable_blocking(active.last_lsn())
        .expect("durable");
    let (a, mut b) = tokio::io::duplex(64 << 10);
    // A peer that answers Hello, then reads everything and says nothing.
    let peer = tokio::spawn(async move {
        let t = Duration::from_secs(5);
        let _hello = wire::read_message(&mut b, t).await.expect("hello");
        let ok = Message::HelloOk(HelloOk {
            protocol_version: wire::PROTOCOL_VERSION,
            epoch: 1,
            last_lsn: 0,
        });
        wire::write_message(&mut b, &ok, t).await.expect("ok");
        while wire::read_message(&mut b, t).await.is_ok() {}
    });
    let c = session_cfg();
    let started = std::time::Instant::now();
    let s = send(active.clone(), a, &c, SendOptions::default()).await;
    assert!(
        matches!(s, Err(SessionError::Wire(wire::WireError::Timeout { .. }))),
        "{s:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    peer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_writes_ship_without_a_commit() {
    // Nobody waits for durability here (UNSTABLE writes, no COMMIT): the
    // sender makes the records durable itself after max_ship_delay, since
    // it ships durable frames only. Without that this waits forever.
    let tmp = tempfile::tempdir().expect("tmp");
    let (active, root) = new_active(&tmp.path().join("active"));
    let replica = Arc::new(
        Store::init_replica(&tmp.path().join("replica"), StoreOptions::default()).expect("replica"),
    );
    let (sender, receiver, mut acked) = spawn_session(&active, &replica);
    write_some(&active, root, 0);
    wait_for(&mut acked, active.last_lsn()).await;
    assert_eq!(contents(&active), contents(&replica));
    sender.abort();
    receiver.abort();
}
