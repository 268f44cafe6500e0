//! The replication wire format: every message round-trips, and every kind
//! of bad input (truncated, foreign, oversized, corrupted, garbage) is a
//! clear error, never a panic, a hang or a large allocation.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tandem_repl::wire::*;
use tandem_store::journal::encode_frame;
use tandem_store::record::{Op, Record};
use tandem_store::RawFrame;
use tokio::io::AsyncWriteExt;

use crate::common::{malformed, reseal, sealed, SITE};

const TIMEOUT: Duration = Duration::from_secs(5);

fn frame(lsn: u64, epoch: u64, name: &str) -> RawFrame {
    let record = Record {
        req: None,
        op: Op::VserverCreated { name: name.into() },
    };
    let mut out = Vec::new();
    encode_frame(&mut out, lsn, epoch, &record).expect("encode frame");
    RawFrame::parse(Bytes::from(out)).expect("parse frame")
}

fn batch(first: u64, n: u64) -> Message {
    Message::Batch(Batch {
        vserver: "vs1".into(),
        epoch: 3,
        frames: (first..first + n).map(|l| frame(l, 3, "vs1")).collect(),
    })
}

fn every_message() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            site_id: SITE.into(),
            vserver: "vs1".into(),
            epoch: 7,
            last_lsn: 12345,
        }),
        Message::HelloOk(HelloOk {
            protocol_version: PROTOCOL_VERSION,
            epoch: 7,
            last_lsn: 99,
        }),
        Message::Refuse {
            code: code::FENCED,
            reason: "epoch 6 is below ours (7)".into(),
        },
        batch(100, 1),
        batch(5, 40),
        Message::Ack(Ack {
            received_lsn: 10,
            durable_lsn: 9,
            applied_lsn: 8,
        }),
        Message::Heartbeat { now_ms: u64::MAX },
        Message::Error {
            code: 0xbeef,
            text: "ünïcode is fine".into(),
        },
        Message::BatchZstd(Batch {
            vserver: "vs1".into(),
            epoch: 3,
            frames: (1..=30).map(|l| frame(l, 3, "vs1")).collect(),
        }),
        Message::VerifyRequest { lsn: 9 },
        Message::VerifyResult(VerifyResult {
            lsn: 9,
            outcome: Ok(VerifyHeader {
                version: 1,
                root: [1; 32],
                config: tandem_store::digest::ConfigDigests {
                    name: [2; 32],
                    addresses: [3; 32],
                    filesystems: [4; 32],
                    users: [5; 32],
                },
                files: 2,
                bytes: 3,
                entries: 2,
            }),
        }),
        Message::VerifyResult(VerifyResult {
            lsn: 9,
            outcome: Err("too much change".into()),
        }),
        Message::VerifyEntries {
            lsn: 9,
            entries: vec![(1, [6; 32]), (5, [7; 32])],
        },
        Message::BaselineStart(BaselineStart {
            vserver: "vs1".into(),
            epoch: 1,
            lsn: 40,
            state_len: 1000,
            state_crc: 0xdead_beef,
            files: 3,
            total_bytes: 1 << 30,
        }),
        Message::BaselineResume(BaselineResume {
            lsn: 40,
            state_received: true,
            next_ino: 7,
            next_offset: 4096,
            done_bytes: 8192,
        }),
        Message::BaselineState {
            offset: 0,
            data: Bytes::from_static(b"state"),
        },
        Message::BaselineChunk {
            ino: 7,
            offset: 4096,
            data: Bytes::from_static(b"data"),
        },
        Message::BaselineDone { lsn: 40 },
        Message::CatchupStart(CatchupStart {
            vserver: "vs1".into(),
            epoch: 2,
            from_lsn: 10,
            lsn: 40,
            state_len: 1000,
            state_crc: 1,
            range_count: 2,
            total_bytes: 5000,
        }),
        Message::CatchupState {
            offset: 10,
            data: Bytes::from_static(b"state"),
        },
        Message::CatchupChunk {
            ino: 8,
            offset: 0,
            data: Bytes::from_static(b"chunk"),
        },
        Message::CatchupZeros {
            ino: 8,
            offset: 5,
            len: 4995,
        },
        Message::CatchupDone { lsn: 40 },
        Message::ResyncRequest(ResyncRequest {
            vserver: "vs1".into(),
            epoch: 1,
            shared_lsn: 30,
            ranges: vec![(2, 0, 10), (3, 5, u64::MAX)],
            present: vec![(1, 4), (9, 9)],
        }),
        Message::SwitchoverRequest(SwitchoverRequest {
            vserver: "vs1".into(),
            lsn: 50,
            epoch: 4,
            settings: "to = \"alpha\"\nmode = \"sync\"\n".into(),
        }),
        Message::SwitchoverDone {
            lsn: 50,
            epoch: 4,
            notes: String::new(),
        },
        Message::SwitchoverRefused {
            lsn: 50,
            reason: "a verify runs".into(),
        },
        Message::Ping {
            site_id: SITE.into(),
        },
        Message::Pong {
            site_id: SITE.into(),
        },
        Message::EpochQuery {
            vserver: "vs1".into(),
            epoch: 3,
        },
        Message::EpochAnswer(EpochAnswer {
            epoch: 4,
            role: Role::Active,
            shared_lsn: Some(41),
        }),
        Message::EpochAnswer(EpochAnswer {
            epoch: 0,
            role: Role::None,
            shared_lsn: None,
        }),
        Message::Replicate {
            vserver: "vs1".into(),
            replica_address: Some("fd00::9/64@eth0".into()),
        },
        Message::Replicate {
            vserver: "vs1".into(),
            replica_address: None,
        },
        Message::ReplicateOk(ReplicaAt {
            lsn: 12,
            unfinished_baseline: false,
        }),
        Message::Transfer(TransferKind::Catchup),
        Message::Resync(ResyncOpen {
            vserver: "vs1".into(),
            epoch: 1,
            shared_lsn: 30,
            replica_address: Some("127.0.0.9/32".into()),
        }),
        Message::ResyncOk,
        Message::ResyncReady,
        Message::ResyncDone(ResyncDone {
            lsn: 60,
            data_bytes: 1,
            state_bytes: 2,
            own_changed_bytes: 3,
            divergent_bytes: 4,
        }),
        Message::ActiveHere {
            epoch: 5,
            reason: "vs1 is active here".into(),
        },
    ]
}

#[test]
fn every_message_type_has_an_example() {
    let mut types: Vec<u16> = every_message().iter().map(Message::type_code).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types, msg_type::ALL);
}

#[test]
fn every_message_round_trips() {
    for msg in every_message() {
        let bytes = encode(&msg).expect("encode");
        assert_eq!(&bytes[..4], b"TNRP");
        assert_eq!(decode(&bytes).expect("decode"), msg, "{}", msg.kind());
    }
}

#[tokio::test]
async fn messages_round_trip_over_a_stream() {
    let (mut a, mut b) = tokio::io::duplex(1 << 16);
    let msgs = every_message();
    let sent = msgs.clone();
    let writer = tokio::spawn(async move {
        for m in &sent {
            write_message(&mut a, m, TIMEOUT).await.expect("write");
        }
    });
    for m in &msgs {
        assert_eq!(&read_message(&mut b, TIMEOUT).await.expect("read"), m);
    }
    writer.await.expect("writer");
    // The writer is gone: a clean end between messages.
    assert!(matches!(
        read_message(&mut b, TIMEOUT).await,
        Err(WireError::Closed)
    ));
}

fn good() -> Vec<u8> {
    encode(&Message::Heartbeat { now_ms: 42 }).expect("encode")
}

#[test]
fn truncated_messages_are_refused() {
    let bytes = encode(&batch(1, 3)).expect("encode");
    for cut in [0, 1, 15, 16, 17, bytes.len() - 1] {
        let err = decode(&bytes[..cut]).expect_err("truncated");
        assert!(
            matches!(err, WireError::Truncated { .. }),
            "cut {cut}: {err}"
        );
    }
}

#[tokio::test]
async fn truncated_stream_is_refused() {
    let bytes = encode(&batch(1, 3)).expect("encode");
    for cut in [5, 16, 40, bytes.len() - 1] {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&bytes[..cut]).await.expect("write");
        drop(a);
        let err = read_message(&mut b, TIMEOUT).await.expect_err("truncated");
        assert!(
            matches!(err, WireError::Truncated { .. }),
            "cut {cut}: {err}"
        );
    }
}

#[test]
fn wrong_magic_version_and_type_are_refused() {
    let mut b = good();
    b[0] = b'X';
    assert!(matches!(decode(&b), Err(WireError::BadMagic { .. })));

    let mut b = good();
    b[4..6].copy_from_slice(&2u16.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        decode(&b),
        Err(WireError::UnsupportedVersion { found: 2 })
    ));

    for t in [0u16, 15, 0xffff] {
        let mut b = good();
        b[6..8].copy_from_slice(&t.to_le_bytes());
        reseal(&mut b);
        assert!(
            matches!(decode(&b), Err(WireError::UnknownType { found }) if found == t),
            "type {t}"
        );
    }
}

#[tokio::test]
async fn oversized_length_is_refused_before_reading_the_payload() {
    for len in [MAX_MESSAGE_BYTES as u32 + 1, u32::MAX] {
        let mut head = good()[..16].to_vec();
        head[8..12].copy_from_slice(&len.to_le_bytes());
        // Only the envelope is sent and the stream stays open: a reader
        // that tried to read (or allocate) the payload would wait for the
        // timeout instead of answering at once.
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&head).await.expect("write");
        let err = read_message(&mut b, Duration::from_secs(30))
            .await
            .expect_err("oversized");
        assert!(
            matches!(err, WireError::TooLarge { len_bytes, .. } if len_bytes == len as u64),
            "{err}"
        );
        drop(a);
    }
}

#[test]
fn bad_checksum_is_refused() {
    let good = encode(&batch(1, 2)).expect("encode");
    // Payload byte, envelope type byte and the CRC itself.
    for at in [good.len() - 1, 20, 12] {
        let mut b = good.clone();
        b[at] ^= 0x01;
        let err = decode(&b).expect_err("corrupt");
        assert!(
            matches!(
                err,
                WireError::Checksum { .. } | WireError::UnknownType { .. }
            ),
            "byte {at}: {err}"
        );
    }
    let mut b = good.clone();
    b[6] ^= 0x01; // type 4 -> 5: a known type, so only the CRC catches it.
    assert!(matches!(decode(&b), Err(WireError::Checksum { .. })));
}

#[tokio::test]
async fn silence_times_out() {
    let (_a, mut b) = tokio::io::duplex(64);
    let err = read_message(&mut b, Duration::from_millis(50))
        .await
        .expect_err("timeout");
    assert!(
        matches!(err, WireError::Timeout { timeout_ms: 50 }),
        "{err}"
    );
}

#[test]
fn garbage_payloads_are_refused() {
    use tandem_repl::wire::msg_type::*;
    // Correct envelope and CRC around payloads that are not the message.
    malformed(&sealed(HEARTBEAT, &[1, 2, 3]));
    malformed(&sealed(HEARTBEAT, &[0; 9]));
    malformed(&sealed(ACK, &[0; 23]));
    malformed(&sealed(HELLO, &[0xff; 40]));
    malformed(&sealed(ERROR, &[1, 0, 0xff, 0xff]));
    malformed(&sealed(REFUSE, &[1, 0, 2, 0, 0xc3, 0x28])); // not UTF-8
    malformed(&sealed(BATCH, &[]));

    // Hello with an empty or bad vserver name, or a bad site id.
    let hello = |site: &str, vs: &str| {
        let mut p = Vec::new();
        p.extend_from_slice(&1u16.to_le_bytes());
        p.extend_from_slice(&(site.len() as u16).to_le_bytes());
        p.extend_from_slice(site.as_bytes());
        p.extend_from_slice(&(vs.len() as u16).to_le_bytes());
        p.extend_from_slice(vs.as_bytes());
        p.extend_from_slice(&[0; 16]);
        sealed(HELLO, &p)
    };
    assert!(matches!(decode(&hello(SITE, "vs1")), Ok(Message::Hello(_))));
    malformed(&hello(SITE, ""));
    malformed(&hello(SITE, "../etc"));
    malformed(&hello("", "vs1"));
    malformed(&hello("has space", "vs1"));
    // A text length over its limit.
    let mut p = vec![1, 0];
    p.extend_from_slice(&(MAX_TEXT_BYTES as u16 + 1).to_le_bytes());
    p.resize(p.len() + MAX_TEXT_BYTES + 1, b'a');
    malformed(&sealed(ERROR, &p));
}

/// A batch payload from parts, for building bad ones.
fn batch_payload(epoch: u64, first: u64, count: u32, frames: &[&[u8]]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&3u16.to_le_bytes());
    p.extend_from_slice(b"vs1");
    p.extend_from_slice(&epoch.to_le_bytes());
    p.extend_from_slice(&first.to_le_bytes());
    p.extend_from_slice(&count.to_le_bytes());
    for f in frames {
        p.extend_from_slice(f);
    }
    p
}

#[test]
fn bad_batches_are_refused() {
    use tandem_repl::wire::msg_type::BATCH;
    let f1 = frame(1, 3, "vs1");
    let f2 = frame(2, 3, "vs1");
    let f3 = frame(3, 3, "vs1");
    let ok = sealed(BATCH, &batch_payload(3, 1, 2, &[&f1.bytes, &f2.bytes]));
    assert!(matches!(decode(&ok), Ok(Message::Batch(_))));

    // No frames, more frames announced than sent, fewer announced.
    malformed(&sealed(BATCH, &batch_payload(3, 1, 0, &[])));
    malformed(&sealed(
        BATCH,
        &batch_payload(3, 1, 3, &[&f1.bytes, &f2.bytes]),
    ));
    malformed(&sealed(
        BATCH,
        &batch_payload(3, 1, 1, &[&f1.bytes, &f2.bytes]),
    ));
    // Too many frames announced (refused before reading them).
    malformed(&sealed(BATCH, &batch_payload(3, 1, u32::MAX, &[&f1.bytes])));
    // A gap, and a first LSN that is not the first frame's.
    malformed(&sealed(
        BATCH,
        &batch_payload(3, 1, 2, &[&f1.bytes, &f3.bytes]),
    ));
    malformed(&sealed(BATCH, &batch_payload(3, 2, 1, &[&f1.bytes])));
    // A frame from a higher epoch than the batch says.
    malformed(&sealed(BATCH, &batch_payload(2, 1, 1, &[&f1.bytes])));
    // A frame with a bad checksum inside a well-sealed message.
    let mut bad = f2.bytes.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    let why = malformed(&sealed(BATCH, &batch_payload(3, 1, 2, &[&f1.bytes, &bad])));
    assert!(why.contains("checksum"), "{why}");
    // A frame whose length field runs past the message.
    let mut long = f1.bytes.to_vec();
    long[0..4].copy_from_slice(&1000u32.to_le_bytes());
    malformed(&sealed(BATCH, &batch_payload(3, 1, 1, &[&long])));
    // A frame length over the journal's limit.
    long[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    malformed(&sealed(BATCH, &batch_payload(3, 1, 1, &[&long])));
}

#[test]
fn encode_refuses_what_a_reader_would_refuse() {
    let too_long = Message::Error {
        code: code::INTERNAL,
        text: "x".repeat(MAX_TEXT_BYTES + 1),
    };
    assert!(matches!(
        encode(&too_long),
        Err(WireError::Malformed { .. })
    ));
    let empty = Message::Batch(Batch {
        vserver: "vs1".into(),
        epoch: 1,
        frames: Vec::new(),
    });
    assert!(matches!(encode(&empty), Err(WireError::Malformed { .. })));
    // 5 frames of ~4 MiB each: more than one message may carry.
    let big = tandem_store::record::Record {
        req: None,
        op: Op::Write {
            ino: 2,
            offset: 0,
            data: Bytes::from(vec![7u8; 4_000_000]),
            attr: sample_attr(),
        },
    };
    let frames = (1..=5)
        .map(|lsn| {
            let mut out = Vec::new();
            encode_frame(&mut out, lsn, 1, &big).expect("encode");
            RawFrame::parse(Bytes::from(out)).expect("parse")
        })
        .collect();
    let huge = Message::Batch(Batch {
        vserver: "vs1".into(),
        epoch: 1,
        frames,
    });
    assert!(matches!(encode(&huge), Err(WireError::TooLarge { .. })));
}

fn sample_attr() -> tandem_store::Attr {
    use tandem_store::{Attr, FileType, Timestamp};
    Attr {
        ftype: FileType::Regular,
        mode: 0o644,
        nlink: 1,
        uid: 0,
        gid: 0,
        size: 4_000_000,
        rdev: (0, 0),
        fsid: 1,
        ino: 2,
        generation: 1,
        atime: Timestamp::default(),
        mtime: Timestamp::default(),
        ctime: Timestamp::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any bytes at all: an error or a message, never a panic.
    #[test]
    fn decode_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    /// Random bytes behind a valid, sealed envelope reach the payload
    /// decoders (the CRC would stop most of them otherwise).
    #[test]
    fn decode_never_panics_on_sealed_garbage(
        t in prop::sample::select(msg_type::ALL),
        payload in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = decode(&sealed(t, &payload));
    }

    /// Valid messages with bytes flipped, cut or resealed: never a panic.
    #[test]
    fn decode_never_panics_on_mutated_messages(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
        reseal_it in any::<bool>(),
    ) {
        let all = every_message();
        let mut b = encode(which.get(&all)).expect("encode");
        for (at, x) in flips {
            let i = at % b.len();
            b[i] ^= x;
        }
        if reseal_it && b.len() >= 16 {
            reseal(&mut b);
        }
        let keep = cut % (b.len() + 1);
        let _ = decode(&b[..keep]);
        let _ = decode(&b);
    }

    #[test]
    fn fields_round_trip(
        epoch in any::<u64>(),
        lsn in any::<u64>(),
        a in any::<u64>(),
        text in "\\PC{0,100}",
        code in any::<u16>(),
    ) {
        let msgs = [
            Message::Hello(Hello {
                protocol_version: code,
                site_id: SITE.into(),
                vserver: "a.b-c_d".into(),
                epoch,
                last_lsn: lsn,
            }),
            Message::Ack(Ack { received_lsn: lsn, durable_lsn: a, applied_lsn: epoch }),
            Message::Error { code, text: text.clone() },
            Message::Refuse { code, reason: text },
        ];
        for m in msgs {
            prop_assert_eq!(decode(&encode(&m).expect("encode")).expect("decode"), m);
        }
    }
}
