//! Switchover inside a session, over an in-memory pipe: the demoted active
//! store's tail is shipped, the replica promotes at exactly its LSN and
//! says so; a replica that cannot (wrong epoch) refuses and changes
//! nothing; an asker that gave up before the request went out sends
//! nothing. And the three messages, byte for byte and malformed.

use std::sync::Arc;
use std::time::Duration;

use tandem_repl::session::*;
use tandem_repl::switchover::*;
use tandem_repl::wire::{self, Message, SwitchoverRequest};
use tandem_store::*;
use tokio::sync::{mpsc, oneshot};

use crate::common::{export, session_cfg, small_segments};

struct Pair {
    active: Arc<Store>,
    replica: Arc<Store>,
    _tmp: tempfile::TempDir,
}

fn pair() -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let active = Store::init(&tmp.path().join("a"), "vs1", small_segments()).unwrap();
    active.set_retention_floor(0);
    let fs = active.create_fs("fs1", export("/fs1")).unwrap().value;
    let ctx = OpCtx::new(Cred::root());
    for i in 0..20u32 {
        let f = active
            .create(
                &ctx,
                fs.root_ino,
                format!("f{i}").as_bytes(),
                CreateHow::Unchecked,
                &SetAttr::default(),
            )
            .unwrap();
        active
            .write(&ctx, f.value.ino, 0, &vec![i as u8; 5000])
            .unwrap();
    }
    let replica = Store::init_replica(&tmp.path().join("b"), small_segments()).unwrap();
    Pair {
        active: Arc::new(active),
        replica: Arc::new(replica),
        _tmp: tmp,
    }
}

/// Runs a session with one switchover ask; the replica's daemon is a task
/// that promotes (or answers `refuse`). Returns what the asker got.
async fn switch(
    p: &Pair,
    epoch: u64,
    refuse: Option<&str>,
    stage: Arc<Stage>,
) -> std::result::Result<std::result::Result<HandedOver, SwitchoverError>, oneshot::error::RecvError>
{
    let demoted = p.active.demote().unwrap();
    let (a_end, b_end) = tokio::io::duplex(1 << 20);
    let (ask_tx, mut ask_rx) = mpsc::channel(1);
    let (reply, answer) = oneshot::channel();
    ask_tx
        .send(SwitchoverAsk {
            lsn: demoted.lsn,
            epoch,
            settings: "mode = \"async\"\n".into(),
            stage,
            reply,
        })
        .await
        .unwrap();
    let (ptx, mut prx) = mpsc::channel::<PromoteAsk>(1);
    let replica = p.replica.clone();
    let refusing = refuse.is_some();
    let refuse = refuse.map(str::to_string);
    let daemon = tokio::spawn(async move {
        while let Some(ask) = prx.recv().await {
            assert_eq!(ask.request.settings, "mode = \"async\"\n");
            let r = match &refuse {
                Some(why) => Err(why.clone()),
                None => {
                    let s = replica.clone();
                    let e = ask.request.epoch;
                    tokio::task::spawn_blocking(move || s.promote(e))
                        .await
                        .unwrap()
                        .map(|_| String::new())
                        .map_err(|e| e.to_string())
                }
            };
            let _ = ask.reply.send(r);
        }
    });
    let active = p.active.clone();
    let sender = tokio::spawn(async move {
        let cfg = session_cfg();
        send(
            active,
            a_end,
            &cfg,
            SendOptions {
                switchover: Some(&mut ask_rx),
                ..SendOptions::default()
            },
        )
        .await
    });
    let replica = p.replica.clone();
    let receiver = tokio::spawn(async move {
        let cfg = session_cfg();
        receive_switchable(replica, "vs1", b_end, &cfg, Some(ptx)).await
    });
    let got = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .expect("an answer in time");
    if !refusing && matches!(got, Ok(Ok(_))) {
        // Promoted: the replica's side ends; the sender waits to be stopped.
        let r = tokio::time::timeout(Duration::from_secs(10), receiver)
            .await
            .expect("receiver ends")
            .unwrap();
        assert!(r.is_ok(), "{r:?}");
    } else {
        receiver.abort();
    }
    sender.abort();
    daemon.abort();
    got
}

#[tokio::test]
async fn the_replica_promotes_at_exactly_the_demoted_lsn() {
    let p = pair();
    let got = switch(&p, 2, None, Arc::default()).await.unwrap().unwrap();
    assert_eq!(got.epoch, 2);
    assert_eq!(got.lsn, p.active.last_lsn());
    assert!(got.acked_at <= got.sent_at && got.sent_at <= got.done_at);
    assert!(!p.replica.is_replica());
    assert_eq!(p.replica.epoch(), 2);
    // Every record of A, then the epoch record.
    assert_eq!(p.replica.last_lsn(), got.lsn + 1);
}

#[tokio::test]
async fn a_refusal_changes_nothing_at_the_replica() {
    let p = pair();
    // Epoch 3 is not the replica's 1 + 1: refused by the session itself.
    let got = switch(&p, 3, None, Arc::default()).await.unwrap();
    assert!(
        matches!(got, Err(SwitchoverError::Refused(ref w)) if w.contains("epoch")),
        "{got:?}"
    );
    assert!(p.replica.is_replica());
    assert_eq!(p.replica.epoch(), 1);
    assert_eq!(
        p.replica.last_lsn(),
        p.active.last_lsn(),
        "the tail was shipped"
    );
}

#[tokio::test]
async fn a_daemon_refusal_is_passed_on() {
    let p = pair();
    let got = switch(&p, 2, Some("no room here"), Arc::default())
        .await
        .unwrap();
    assert!(
        matches!(got, Err(SwitchoverError::Refused(ref w)) if w == "no room here"),
        "{got:?}"
    );
    assert!(p.replica.is_replica());
}

#[tokio::test]
async fn a_cancelled_ask_sends_nothing() {
    let p = pair();
    let stage = Arc::new(Stage::default());
    assert!(stage.cancel());
    // The session drops the ask unanswered once the tail is acked.
    let got = switch(&p, 2, None, stage.clone()).await;
    assert!(got.is_err(), "{got:?}");
    assert!(!stage.sent());
    assert!(p.replica.is_replica());
}

#[test]
fn a_sent_request_cannot_be_cancelled() {
    let stage = Stage::default();
    assert!(!stage.sent());
    assert!(stage.cancel(), "pending: cancelled");
    assert!(stage.cancel(), "twice is fine");
    assert!(!stage.sent());
}

#[test]
fn switchover_messages_round_trip_and_bad_ones_are_refused() {
    let msgs = [
        Message::SwitchoverRequest(SwitchoverRequest {
            vserver: "vs1".into(),
            lsn: 77,
            epoch: 3,
            settings: "mode = \"commit-sync\"\n".into(),
        }),
        Message::SwitchoverDone {
            lsn: 77,
            epoch: 3,
            notes: String::new(),
        },
        Message::SwitchoverRefused {
            lsn: 77,
            reason: "no".into(),
        },
    ];
    for m in msgs {
        let bytes = wire::encode(&m).unwrap();
        assert_eq!(wire::decode(&bytes).unwrap(), m);
    }
    // SwitchoverDone byte for byte: envelope, LSN, epoch, empty text.
    let done = wire::encode(&Message::SwitchoverDone {
        lsn: 1,
        epoch: 2,
        notes: String::new(),
    })
    .unwrap();
    assert_eq!(&done[6..8], &41u16.to_le_bytes());
    assert_eq!(
        &done[16..],
        &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    // Cut short, a bad vserver name, bytes left over: refused.
    let sealed = |t: u16, payload: &[u8]| {
        let mut out = Vec::new();
        out.extend_from_slice(&wire::MAGIC);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out), payload);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(payload);
        out
    };
    use wire::msg_type::*;
    for (t, p) in [
        (SWITCHOVER_DONE, vec![0u8; 17]),
        (SWITCHOVER_DONE, vec![0u8; 19]),
        (SWITCHOVER_REFUSED, vec![0u8; 9]),
        (
            SWITCHOVER_REQUEST,
            [&[2u8, 0][..], b"..", &[0u8; 18]].concat(),
        ),
        (SWITCHOVER_REQUEST, vec![0u8; 20]),
    ] {
        assert!(
            matches!(
                wire::decode(&sealed(t, &p)),
                Err(wire::WireError::Malformed { .. })
            ),
            "type {t} payload {p:?}"
        );
    }
    assert!(matches!(
        wire::decode(&sealed(43, &[])),
        Err(wire::WireError::UnknownType { found: 43 })
    ));
}
