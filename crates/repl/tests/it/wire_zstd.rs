//! BatchZstd (type 11): a compressible batch goes compressed and comes
//! back the same; an incompressible one goes as a plain Batch; every bad
//! compressed payload (a bomb, corrupt or truncated zstd, a wrong length,
//! bad frames inside) is a clear error.

use bytes::Bytes;
use tandem_repl::wire::msg_type::{BATCH, BATCH_ZSTD};
use tandem_repl::wire::*;
use tandem_store::journal::encode_frame;
use tandem_store::record::{Op, Record};
use tandem_store::RawFrame;

use crate::common::{malformed, sealed};

fn frame(lsn: u64, name: &str) -> RawFrame {
    let record = Record {
        req: None,
        op: Op::VserverCreated { name: name.into() },
    };
    let mut out = Vec::new();
    encode_frame(&mut out, lsn, 3, &record).expect("encode frame");
    RawFrame::parse(Bytes::from(out)).expect("parse frame")
}

fn batch(names: &[String]) -> Batch {
    Batch {
        vserver: "vs1".into(),
        epoch: 3,
        frames: names
            .iter()
            .enumerate()
            .map(|(i, n)| frame(i as u64 + 1, n))
            .collect(),
    }
}

fn compressible() -> Batch {
    batch(
        &(0..200)
            .map(|i| format!("vserver-{}", i % 4))
            .collect::<Vec<_>>(),
    )
}

/// Frames of random bytes (frames are not decoded on the wire, only
/// checked): zstd cannot shrink them.
fn incompressible() -> Batch {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let frames = (1..=20u64)
        .map(|lsn| {
            let payload: Vec<u8> = (0..4000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut body = lsn.to_le_bytes().to_vec();
            body.extend_from_slice(&3u64.to_le_bytes());
            body.extend_from_slice(&payload);
            let mut f = (payload.len() as u32).to_le_bytes().to_vec();
            f.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
            f.extend_from_slice(&body);
            RawFrame::parse(Bytes::from(f)).expect("parse frame")
        })
        .collect();
    Batch {
        vserver: "vs1".into(),
        epoch: 3,
        frames,
    }
}

fn frame_bytes(b: &Batch) -> usize {
    b.frames.iter().map(|f| f.bytes.len()).sum()
}

/// The BatchZstd payload: Batch's fields, the uncompressed length, `zstd`.
fn zstd_payload(count: u32, raw_len: u32, zstd: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&3u16.to_le_bytes());
    p.extend_from_slice(b"vs1");
    p.extend_from_slice(&3u64.to_le_bytes());
    p.extend_from_slice(&1u64.to_le_bytes());
    p.extend_from_slice(&count.to_le_bytes());
    p.extend_from_slice(&raw_len.to_le_bytes());
    p.extend_from_slice(zstd);
    p
}

fn raw_frames(b: &Batch) -> Vec<u8> {
    b.frames.iter().flat_map(|f| f.bytes.to_vec()).collect()
}

#[test]
fn our_crc_matches_the_wire_crc() {
    let bytes = encode(&Message::Heartbeat { now_ms: 42 }).expect("encode");
    let again = sealed(6, &bytes[16..]);
    assert_eq!(again, bytes);
}

#[test]
fn compressible_batches_round_trip_compressed() {
    let b = compressible();
    let bytes = encode_batch(b.clone(), true).expect("encode");
    assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), BATCH_ZSTD);
    assert!(
        bytes.len() * 4 < frame_bytes(&b),
        "{} wire bytes for {} frame bytes",
        bytes.len(),
        frame_bytes(&b)
    );
    assert_eq!(
        decode(&bytes).expect("decode"),
        Message::BatchZstd(b.clone())
    );
    // Without compression: a plain Batch.
    let plain = encode_batch(b.clone(), false).expect("encode");
    assert_eq!(decode(&plain).expect("decode"), Message::Batch(b));
}

#[test]
fn incompressible_batches_go_plain_and_stay_small() {
    let b = incompressible();
    let bytes = encode_batch(b.clone(), true).expect("encode");
    assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), BATCH);
    assert!(bytes.len() * 100 <= frame_bytes(&b) * 105);
    assert_eq!(decode(&bytes).expect("decode"), Message::Batch(b));
}

#[test]
fn a_decompression_bomb_is_refused() {
    // 8 MiB of zeros packs into a few hundred bytes; announced as 1000.
    let zeros = vec![0u8; 8 << 20];
    let packed = zstd::bulk::compress(&zeros, 1).expect("compress");
    assert!(packed.len() < 4096);
    let why = malformed(&sealed(BATCH_ZSTD, &zstd_payload(1, 1000, &packed)));
    assert!(why.contains("inflate"), "{why}");
    // Nor may the announcement itself exceed the message limit.
    let why = malformed(&sealed(
        BATCH_ZSTD,
        &zstd_payload(1, (MAX_MESSAGE_BYTES + 1) as u32, &packed),
    ));
    assert!(why.contains("uncompressed length"), "{why}");
}

#[test]
fn bad_compressed_payloads_are_refused() {
    let b = compressible();
    let raw = raw_frames(&b);
    let packed = zstd::bulk::compress(&raw, 1).expect("compress");
    let count = b.frames.len() as u32;
    let ok = sealed(BATCH_ZSTD, &zstd_payload(count, raw.len() as u32, &packed));
    assert_eq!(decode(&ok).expect("decode"), Message::BatchZstd(b.clone()));

    // Corrupt zstd (the envelope CRC is right: the sender sealed garbage).
    let mut corrupt = packed.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    corrupt[4] ^= 0xff;
    malformed(&sealed(
        BATCH_ZSTD,
        &zstd_payload(count, raw.len() as u32, &corrupt),
    ));
    // Truncated zstd data.
    let cut = &packed[..packed.len() / 2];
    malformed(&sealed(
        BATCH_ZSTD,
        &zstd_payload(count, raw.len() as u32, cut),
    ));
    // No zstd data, and a zero length.
    malformed(&sealed(
        BATCH_ZSTD,
        &zstd_payload(count, raw.len() as u32, &[]),
    ));
    malformed(&sealed(BATCH_ZSTD, &zstd_payload(count, 0, &packed)));
    // Inflates to less than announced.
    let why = malformed(&sealed(
        BATCH_ZSTD,
        &zstd_payload(count, raw.len() as u32 + 10, &packed),
    ));
    assert!(why.contains("announced"), "{why}");
    // A payload that ends before the length field.
    malformed(&sealed(BATCH_ZSTD, &zstd_payload(count, 0, &[])[..20]));
    // Whole zstd, but the frames inside fail Batch's checks: a frame
    // checksum (the end-to-end one), and a count that does not match.
    let mut bad = raw.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    let packed_bad = zstd::bulk::compress(&bad, 1).expect("compress");
    let why = malformed(&sealed(
        BATCH_ZSTD,
        &zstd_payload(count, bad.len() as u32, &packed_bad),
    ));
    assert!(why.contains("checksum"), "{why}");
    malformed(&sealed(
        BATCH_ZSTD,
        &zstd_payload(count - 1, raw.len() as u32, &packed),
    ));
    malformed(&sealed(
        BATCH_ZSTD,
        &zstd_payload(count + 1, raw.len() as u32, &packed),
    ));
}
