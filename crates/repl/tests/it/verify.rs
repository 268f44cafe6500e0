//! Verify inside a replication session: both sites digest the same LSN
//! while the active site keeps writing; a replica made to differ is named
//! by path; malformed or out-of-place verify messages are refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tandem_repl::session::*;
use tandem_repl::verify::{VerifyAsk, VerifyOutcome};
use tandem_repl::wire::{self, HelloOk, Message, VerifyHeader, VerifyResult, WireError};
use tandem_store::digest::ConfigDigests;
use tandem_store::*;
use tokio::sync::{mpsc, oneshot, watch};

use crate::common;
use crate::common::{export, session_cfg, small_segments};

struct Pair {
    active: Arc<Store>,
    replica: Arc<Store>,
    root: Ino,
    asks: mpsc::Sender<VerifyAsk>,
    acked: watch::Receiver<Lsn>,
    sides: Vec<tokio::task::JoinHandle<std::result::Result<(), SessionError>>>,
}

fn pair(dir: &std::path::Path) -> Pair {
    let active = Store::init(&dir.join("active"), "vs1", small_segments()).expect("init");
    active.set_retention_floor(0);
    let root = active
        .create_fs("fs1", export("/fs1"))
        .expect("fs")
        .value
        .root_ino;
    let active = Arc::new(active);
    let replica =
        Arc::new(Store::init_replica(&dir.join("replica"), small_segments()).expect("replica"));
    let c = session_cfg();
    let (a, b) = tokio::io::duplex(64 << 10);
    let (ack_tx, acked) = watch::channel(0);
    let (asks, mut ask_rx) = mpsc::channel(4);
    let sender = tokio::spawn({
        let (active, c) = (active.clone(), c.clone());
        async move {
            send(
                active,
                a,
                &c,
                SendOptions {
                    acked: Some(ack_tx),
                    verify: Some(&mut ask_rx),
                    ..SendOptions::default()
                },
            )
            .await
        }
    });
    let receiver = tokio::spawn({
        let replica = replica.clone();
        async move { receive(replica, "vs1", b, &c).await }
    });
    Pair {
        active,
        replica,
        root,
        asks,
        acked,
        sides: vec![sender, receiver],
    }
}

/// `count` files "f<i>" in `dir`, each with a few KiB of data.
fn files(store: &Store, dir: Ino, from: u32, count: u32) {
    let ctx = OpCtx::new(Cred::root());
    for i in from..from + count {
        let name = format!("f{i}");
        let f = store
            .create(
                &ctx,
                dir,
                name.as_bytes(),
                CreateHow::Unchecked,
                &SetAttr::default(),
            )
            .expect("create");
        let data = vec![i as u8; 1000 + 700 * (i as usize % 9)];
        store.write(&ctx, f.value.ino, 0, &data).expect("write");
    }
}

async fn verify(p: &mut Pair) -> VerifyOutcome {
    let (reply, rx) = oneshot::channel();
    p.asks
        .send(VerifyAsk { reply })
        .await
        .expect("sender alive");
    let answer = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("verify answered in time");
    match answer {
        Ok(r) => r.expect("verify ran"),
        Err(_) => {
            // The session ended: say how.
            let mut ends = Vec::new();
            for side in p.sides.drain(..) {
                ends.push(format!("{:?}", side.await));
            }
            panic!("session ended: {ends:?}");
        }
    }
}

/// Sets the flag when dropped, so a failing test stops its writer thread
/// (the runtime waits for it before the test can end).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_while_writing_matches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut p = pair(tmp.path());
    files(&p.active, p.root, 0, 20);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let writer = tokio::task::spawn_blocking({
        let (active, root, stop) = (p.active.clone(), p.root, stop.clone());
        move || {
            // Bounded, so a failing test cannot fill the disk.
            let mut round = 100;
            while !stop.load(Ordering::Relaxed) && round < 3000 {
                files(&active, root, round, 5);
                round += 5;
            }
        }
    });
    let mut last = 0;
    for _ in 0..3 {
        let out = verify(&mut p).await;
        assert!(out.matches, "{out:?}");
        assert_eq!(out.first_difference, None);
        assert_eq!(out.ours_root, out.theirs_root);
        assert!(out.files >= 20, "{out:?}");
        assert!(out.lsn >= last, "LSNs go forward");
        last = out.lsn;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_data_file_changed_on_disk_is_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut p = pair(tmp.path());
    files(&p.active, p.root, 0, 10);
    let target = p
        .active
        .lookup(&Cred::root(), p.root, b"f4")
        .expect("f4")
        .ino;
    let lsn = p.active.last_lsn();
    p.active.wait_durable_blocking(lsn).expect("durable");
    tokio::time::timeout(Duration::from_secs(20), p.acked.wait_for(|&a| a >= lsn))
        .await
        .expect("caught up")
        .expect("sender alive");
    // Its write reached the replica's data file before the byte is changed
    // (else the pending write would overwrite the change).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while p.replica.pending_data_bytes() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "replica applier stuck"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let path = tmp
        .path()
        .join("replica/data")
        .join(format!("{:02x}", target & 0xff))
        .join(format!("{target:016x}"));
    let mut bytes = std::fs::read(&path).expect("replica data file");
    bytes[10] ^= 0xff;
    std::fs::write(&path, bytes).expect("change a byte");
    // Writes to other files go on; the difference stays the same.
    files(&p.active, p.root, 50, 3);
    let out = verify(&mut p).await;
    assert!(!out.matches);
    assert_ne!(out.ours_root, out.theirs_root);
    assert_eq!(out.first_difference.as_deref(), Some("fs1:/f4"));
}

/// A fake sender: Hello, then `msgs`; returns the receiver's result and
/// what it sent back.
async fn receiver_given(
    msgs: Vec<Message>,
) -> (std::result::Result<(), SessionError>, Vec<Message>) {
    let tmp = tempfile::tempdir().expect("tmp");
    let replica =
        Arc::new(Store::init_replica(&tmp.path().join("replica"), small_segments()).expect("r"));
    let (a, mut b) = tokio::io::duplex(64 << 10);
    let c = session_cfg();
    let receiver = tokio::spawn(async move { receive(replica, "vs1", a, &c).await });
    let t = Duration::from_secs(5);
    let hello = Message::Hello(wire::Hello {
        protocol_version: wire::PROTOCOL_VERSION,
        site_id: common::SITE.into(),
        vserver: "vs1".into(),
        epoch: 1,
        last_lsn: 0,
    });
    wire::write_message(&mut b, &hello, t).await.expect("hello");
    for m in &msgs {
        wire::write_message(&mut b, m, t).await.expect("send");
    }
    let mut back = Vec::new();
    while let Ok(m) = wire::read_message(&mut b, t).await {
        back.push(m);
    }
    (receiver.await.expect("join"), back)
}

#[tokio::test]
async fn a_verify_request_off_the_replica_lsn_is_refused() {
    let (r, back) = receiver_given(vec![Message::VerifyRequest { lsn: 7 }]).await;
    assert!(
        matches!(r, Err(SessionError::Protocol(ref t)) if t.contains("LSN 7")),
        "{r:?}"
    );
    assert!(
        matches!(back.first(), Some(Message::HelloOk(_))),
        "{back:?}"
    );
    assert!(
        matches!(back.last(), Some(Message::Error { text, .. }) if text.contains("LSN 7")),
        "{back:?}"
    );
}

#[tokio::test]
async fn a_verify_request_at_the_replica_lsn_is_answered() {
    let (r, back) = receiver_given(vec![Message::VerifyRequest { lsn: 0 }]).await;
    // The fake sender closes after reading: the receiver ends cleanly or
    // with a write error; it answered first.
    let _ = r;
    let result = back.iter().find_map(|m| match m {
        Message::VerifyResult(v) => Some(v.clone()),
        _ => None,
    });
    let result = result.expect("a VerifyResult");
    assert_eq!(result.lsn, 0);
    let header = result.outcome.expect("digest");
    let entries: usize = back
        .iter()
        .map(|m| match m {
            Message::VerifyEntries { entries, .. } => entries.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(header.entries as usize, entries);
}

type SenderSide = tokio::task::JoinHandle<std::result::Result<(), SessionError>>;

/// A sender of a fresh store talking to a fake replica (the returned end of
/// the pipe) that has answered its Hello with HelloOk at LSN 0.
async fn fake_replica() -> (
    SenderSide,
    tokio::io::DuplexStream,
    mpsc::Sender<VerifyAsk>,
    tempfile::TempDir,
) {
    let tmp = tempfile::tempdir().expect("tmp");
    let active = Arc::new(Store::init(&tmp.path().join("a"), "vs1", small_segments()).expect("a"));
    active.set_retention_floor(0);
    let (a, mut b) = tokio::io::duplex(64 << 10);
    let c = session_cfg();
    let (asks, mut ask_rx) = mpsc::channel(1);
    let sender = tokio::spawn(async move {
        send(
            active,
            a,
            &c,
            SendOptions {
                verify: Some(&mut ask_rx),
                ..SendOptions::default()
            },
        )
        .await
    });
    let t = Duration::from_secs(5);
    let _hello = wire::read_message(&mut b, t).await.expect("hello");
    let ok = Message::HelloOk(HelloOk {
        protocol_version: wire::PROTOCOL_VERSION,
        epoch: 1,
        last_lsn: 0,
    });
    wire::write_message(&mut b, &ok, t).await.expect("ok");
    (sender, b, asks, tmp)
}

/// Sends `msgs` from the fake replica, then reads (batches, heartbeats)
/// until the sender ends; returns its result.
async fn answer_and_wait(
    sender: SenderSide,
    mut b: tokio::io::DuplexStream,
    msgs: Vec<Message>,
) -> std::result::Result<(), SessionError> {
    let t = Duration::from_secs(5);
    for m in &msgs {
        wire::write_message(&mut b, m, t).await.expect("send");
    }
    tokio::spawn(async move { while wire::read_message(&mut b, t).await.is_ok() {} });
    tokio::time::timeout(Duration::from_secs(10), sender)
        .await
        .expect("sender ended")
        .expect("join")
}

/// A fake replica that sends `msgs` unasked; returns the sender's result.
async fn sender_given(msgs: Vec<Message>) -> std::result::Result<(), SessionError> {
    let (sender, b, _asks, _tmp) = fake_replica().await;
    answer_and_wait(sender, b, msgs).await
}

fn header(entries: u64) -> VerifyHeader {
    VerifyHeader {
        version: 1,
        root: [1; 32],
        config: ConfigDigests::default(),
        files: 0,
        bytes: 0,
        entries,
    }
}

#[tokio::test]
async fn unasked_verify_messages_end_the_session() {
    let r = sender_given(vec![Message::VerifyEntries {
        lsn: 1,
        entries: vec![(2, [0; 32])],
    }])
    .await;
    assert!(
        matches!(r, Err(SessionError::Protocol(ref t)) if t.contains("no verify asked")),
        "{r:?}"
    );
    let r = sender_given(vec![Message::VerifyResult(VerifyResult {
        lsn: 1,
        outcome: Ok(header(1)),
    })])
    .await;
    assert!(matches!(r, Err(SessionError::Protocol(_))), "{r:?}");
}

fn decode_err(msg: &Message, patch: impl FnOnce(&mut Vec<u8>)) -> WireError {
    let mut bytes = wire::encode(msg).expect("encode");
    patch(&mut bytes);
    // Re-seal the envelope so only the payload's content is wrong.
    let len = (bytes.len() - wire::ENVELOPE_BYTES) as u32;
    bytes[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..12]), &bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    wire::decode(&bytes).expect_err("refused")
}

#[test]
fn verify_messages_round_trip_and_malformed_ones_are_refused() {
    let msgs = [
        Message::VerifyRequest { lsn: 42 },
        Message::VerifyResult(VerifyResult {
            lsn: 42,
            outcome: Ok(header(3)),
        }),
        Message::VerifyResult(VerifyResult {
            lsn: 42,
            outcome: Err("too much change".into()),
        }),
        Message::VerifyEntries {
            lsn: 42,
            entries: vec![(2, [7; 32]), (5, [8; 32]), (9, [9; 32])],
        },
    ];
    for m in &msgs {
        let bytes = wire::encode(m).expect("encode");
        assert_eq!(&wire::decode(&bytes).expect("decode"), m);
    }
    let entries = &msgs[3];
    // Count says 4, three entries follow.
    let e = decode_err(entries, |b| b[24] = 4);
    assert!(e.to_string().contains("do not fit"), "{e}");
    // Not ascending: the second inode made equal to the first.
    let e = decode_err(entries, |b| b[68] = 2);
    assert!(e.to_string().contains("not ascending"), "{e}");
    // A trailing byte.
    let e = decode_err(entries, |b| b.push(0));
    assert!(matches!(e, WireError::Malformed { .. }), "{e}");
    // Status 2 in a VerifyResult.
    let e = decode_err(&msgs[1], |b| b[24] = 2);
    assert!(e.to_string().contains("status is 2"), "{e}");
    // A VerifyRequest cut short.
    let e = decode_err(&msgs[0], |b| b.truncate(20));
    assert!(matches!(e, WireError::Malformed { .. }), "{e}");
    // What a reader refuses, a writer refuses too.
    let empty = Message::VerifyEntries {
        lsn: 1,
        entries: vec![],
    };
    assert!(wire::encode(&empty).is_err());
    let unordered = Message::VerifyEntries {
        lsn: 1,
        entries: vec![(3, [0; 32]), (2, [0; 32])],
    };
    assert!(wire::encode(&unordered).is_err());
}

type Answer = Box<dyn FnOnce(Lsn) -> Vec<Message>>;

/// A fake replica that is asked to verify and answers `answer(lsn)`;
/// returns the sender's result and whether the verify caller was told.
async fn bad_answer(answer: Answer) -> (std::result::Result<(), SessionError>, bool) {
    let (sender, mut b, asks, _tmp) = fake_replica().await;
    let (reply, answered) = oneshot::channel();
    asks.send(VerifyAsk { reply }).await.expect("ask");
    // Take batches (never acked: the window holds them) and heartbeats
    // until the request.
    let t = Duration::from_secs(5);
    let lsn = loop {
        match wire::read_message(&mut b, t).await.expect("message") {
            Message::VerifyRequest { lsn } => break lsn,
            Message::Batch(_) | Message::Heartbeat { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    let r = answer_and_wait(sender, b, answer(lsn)).await;
    // The caller learns the session ended (its reply is dropped).
    (r, answered.await.is_err())
}

#[tokio::test]
async fn bad_verify_answers_end_the_session() {
    let result = |lsn, entries| {
        Message::VerifyResult(VerifyResult {
            lsn,
            outcome: Ok(header(entries)),
        })
    };
    let cases: Vec<(&str, Answer)> = vec![
        ("for LSN", Box::new(move |lsn| vec![result(lsn + 1, 1)])),
        (
            "a second VerifyResult",
            Box::new(move |lsn| vec![result(lsn, 1), result(lsn, 1)]),
        ),
        (
            "more VerifyEntries entries",
            Box::new(move |lsn| {
                vec![
                    result(lsn, 1),
                    Message::VerifyEntries {
                        lsn,
                        entries: vec![(2, [0; 32]), (3, [0; 32])],
                    },
                ]
            }),
        ),
        (
            "not ascending across messages",
            Box::new(move |lsn| {
                let one = |ino| Message::VerifyEntries {
                    lsn,
                    entries: vec![(ino, [0; 32])],
                };
                vec![result(lsn, 2), one(5), one(5)]
            }),
        ),
        (
            "announces",
            Box::new(move |lsn| vec![result(lsn, 10_000_000)]),
        ),
        (
            "before a successful VerifyResult",
            Box::new(move |lsn| {
                vec![Message::VerifyEntries {
                    lsn,
                    entries: vec![(2, [0; 32])],
                }]
            }),
        ),
    ];
    for (want, answer) in cases {
        let (r, caller_told) = bad_answer(answer).await;
        assert!(
            matches!(r, Err(SessionError::Protocol(ref t)) if t.contains(want)),
            "{want}: {r:?}"
        );
        assert!(caller_told, "{want}");
    }
}

/// The fake replica's end from here on: reads everything and sends a
/// heartbeat every 50 ms, so the sender's short idle timeout never ends the
/// session while a test looks at it.
fn keep_alive(b: tokio::io::DuplexStream) {
    let t = Duration::from_secs(5);
    let (mut rd, mut wr) = tokio::io::split(b);
    tokio::spawn(async move { while wire::read_message(&mut rd, t).await.is_ok() {} });
    tokio::spawn(async move {
        let hb = Message::Heartbeat { now_ms: 0 };
        while wire::write_message(&mut wr, &hb, t).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[tokio::test]
async fn a_second_verify_while_one_runs_is_answered_busy() {
    let (sender, mut b, asks, _tmp) = fake_replica().await;
    let (first, _first_answer) = oneshot::channel();
    asks.send(VerifyAsk { reply: first }).await.expect("ask");
    let t = Duration::from_secs(5);
    // The request is out and never answered: the first verify stays running.
    loop {
        if let Message::VerifyRequest { .. } = wire::read_message(&mut b, t).await.expect("msg") {
            break;
        }
    }
    keep_alive(b);
    let (second, answer) = oneshot::channel();
    asks.send(VerifyAsk { reply: second }).await.expect("ask");
    let busy = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("answered in time")
        .expect("session alive");
    assert!(
        matches!(busy, Err(tandem_repl::verify::VerifyError::Busy)),
        "{busy:?}"
    );
    sender.abort();
}

#[tokio::test]
async fn a_replica_that_cannot_digest_fails_the_verify_not_the_session() {
    let (sender, mut b, asks, _tmp) = fake_replica().await;
    let (reply, answer) = oneshot::channel();
    asks.send(VerifyAsk { reply }).await.expect("ask");
    let t = Duration::from_secs(5);
    let lsn = loop {
        if let Message::VerifyRequest { lsn } = wire::read_message(&mut b, t).await.expect("msg") {
            break lsn;
        }
    };
    let failed = Message::VerifyResult(VerifyResult {
        lsn,
        outcome: Err("too much change during verify".into()),
    });
    wire::write_message(&mut b, &failed, t)
        .await
        .expect("answer");
    keep_alive(b);
    let got = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("answered in time")
        .expect("session alive");
    assert!(
        matches!(got, Err(tandem_repl::verify::VerifyError::Theirs(ref t)) if t.contains("too much change")),
        "{got:?}"
    );
    assert!(!sender.is_finished(), "the session goes on");
    sender.abort();
}
