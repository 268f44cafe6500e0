//! The pieces together, over an in-memory stream: frames read from an
//! active store travel as wire Batches to a replica store, which applies
//! them and acks; the replica ends equal to the active. Damage on the way
//! and frames from an older epoch are refused with nothing applied.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_repl::wire::*;
use tandem_store::journal::{decode_payload, encode_frame};
use tandem_store::*;
use tokio::io::{AsyncWriteExt, DuplexStream};

use crate::common::export;

const TIMEOUT: Duration = Duration::from_secs(10);

fn active_with_history(dir: &std::path::Path) -> Store {
    let store = Store::init(dir, "vs1", StoreOptions::default()).expect("init");
    let fs = store.create_fs("fs1", export("/fs1")).expect("fs").value;
    let ctx = OpCtx::new(Cred::root());
    let set = SetAttr::default();
    for i in 0..20u32 {
        let name = format!("f{i}");
        let f = store
            .create(
                &ctx,
                fs.root_ino,
                name.as_bytes(),
                CreateHow::Unchecked,
                &set,
            )
            .expect("create");
        let data = vec![i as u8; 1000 * i as usize + 1];
        store.write(&ctx, f.value.ino, 0, &data).expect("write");
    }
    store
        .rename(&ctx, fs.root_ino, b"f1", fs.root_ino, b"f2")
        .expect("rename");
    store.remove(&ctx, fs.root_ino, b"f3").expect("remove");
    store
        .wait_durable_blocking(store.last_lsn())
        .expect("durable");
    store
}

/// The replica's side of a session: apply each batch, ack it.
async fn serve_replica(
    replica: Arc<Store>,
    mut conn: DuplexStream,
) -> tandem_repl::wire::Result<()> {
    loop {
        let msg = match read_message(&mut conn, TIMEOUT).await {
            Err(WireError::Closed) => return Ok(()),
            other => other?,
        };
        let Message::Batch(batch) = msg else {
            continue;
        };
        let r = replica.clone();
        let applied = tokio::task::spawn_blocking(move || r.apply_replicated(&batch.frames))
            .await
            .expect("join");
        let reply = match applied {
            Ok(lsn) => Message::Ack(Ack::through(lsn)),
            Err(StoreError::Fenced { ours, theirs }) => Message::Error {
                code: code::FENCED,
                text: format!("epoch {theirs} is below ours ({ours})"),
            },
            Err(e) => Message::Error {
                code: code::BAD_FRAME,
                text: e.to_string(),
            },
        };
        write_message(&mut conn, &reply, TIMEOUT).await?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_the_wire_make_an_equal_replica() {
    let tmp = tempfile::tempdir().expect("tmp");
    let active = active_with_history(&tmp.path().join("active"));
    let replica = Arc::new(
        Store::init_replica(&tmp.path().join("replica"), StoreOptions::default()).expect("replica"),
    );
    let (mut conn, far) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(serve_replica(replica.clone(), far));
    let mut acked = 0;
    let mut batches = 0;
    loop {
        let frames = active.read_frames(acked, 8 << 10).expect("read frames");
        if frames.is_empty() {
            break;
        }
        let msg = Message::Batch(Batch {
            vserver: "vs1".into(),
            epoch: active.epoch(),
            frames,
        });
        write_message(&mut conn, &msg, TIMEOUT).await.expect("send");
        match read_message(&mut conn, TIMEOUT).await.expect("ack") {
            Message::Ack(a) => {
                assert!(a.applied_lsn > acked);
                acked = a.applied_lsn;
            }
            other => panic!("unexpected {other:?}"),
        }
        batches += 1;
    }
    assert!(batches > 2, "several batches");
    assert_eq!(acked, active.last_lsn());
    assert_eq!(replica.snapshot(), active.snapshot());
    drop(conn);
    server.await.expect("join").expect("server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_transit_and_old_epochs_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let active = active_with_history(&tmp.path().join("active"));
    let replica =
        Store::init_replica(&tmp.path().join("replica"), StoreOptions::default()).expect("replica");
    let frames = active.read_frames(0, usize::MAX).expect("frames");

    // A flipped bit anywhere in the message: the envelope CRC catches it.
    let msg = Message::Batch(Batch {
        vserver: "vs1".into(),
        epoch: 1,
        frames: frames[..5].to_vec(),
    });
    let mut bytes = encode(&msg).expect("encode");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    a.write_all(&bytes).await.expect("write");
    let err = read_message(&mut b, TIMEOUT).await.expect_err("corrupt");
    assert!(matches!(err, WireError::Checksum { .. }), "{err}");
    assert_eq!(replica.last_lsn(), 0);

    // A good batch in epoch 2, then one from epoch 1: the wire carries it
    // (it is well-formed) but the replica's store fences it.
    let reepoch = |fs: &[RawFrame], epoch: u64| -> Vec<RawFrame> {
        fs.iter()
            .map(|f| {
                let rec = decode_payload(f.payload()).expect("decode");
                let mut out = Vec::new();
                encode_frame(&mut out, f.lsn, epoch, &rec).expect("encode");
                RawFrame::parse(Bytes::from(out)).expect("parse")
            })
            .collect()
    };
    replica
        .apply_replicated(&reepoch(&frames[..3], 2))
        .expect("epoch 2");
    let old = Message::Batch(Batch {
        vserver: "vs1".into(),
        epoch: 1,
        frames: frames[3..6].to_vec(),
    });
    let Message::Batch(got) = decode(&encode(&old).expect("encode")).expect("decode") else {
        panic!("not a batch");
    };
    let before = replica.snapshot();
    let err = replica.apply_replicated(&got.frames).expect_err("fenced");
    assert!(
        matches!(err, StoreError::Fenced { ours: 2, theirs: 1 }),
        "{err}"
    );
    assert_eq!(replica.snapshot(), before);
}
