//! The preface of a site-to-site connection: every request and answer
//! round-trips through `peer::Connection`, and every bad input (truncated,
//! oversized, unknown variant, wrong field, a message out of place, a
//! version-1 text line, silence) is a typed error.

use std::time::Duration;

use tandem_repl::peer::{Answer, Connection, PeerError, Request};
use tandem_repl::wire::msg_type::*;
use tandem_repl::wire::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::{malformed, sealed, SITE};

const TIMEOUT: Duration = Duration::from_secs(5);

fn str_field(s: &[u8]) -> Vec<u8> {
    let mut p = (s.len() as u16).to_le_bytes().to_vec();
    p.extend_from_slice(s);
    p
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn truncated_preface_payloads_are_refused() {
    malformed(&sealed(PING, &[]));
    malformed(&sealed(PONG, &str_field(b"ab")[..3]));
    malformed(&sealed(EPOCH_QUERY, &str_field(b"vs1")));
    malformed(&sealed(EPOCH_ANSWER, &[0; 9]));
    malformed(&sealed(REPLICATE, &str_field(b"vs1")));
    malformed(&sealed(REPLICATE_OK, &[0; 8]));
    malformed(&sealed(TRANSFER, &[]));
    malformed(&sealed(RESYNC, &cat(&[&str_field(b"vs1"), &[0; 16]])));
    malformed(&sealed(RESYNC_DONE, &[0; 39]));
    malformed(&sealed(ACTIVE_HERE, &[0; 9]));
}

#[test]
fn oversized_and_trailing_preface_fields_are_refused() {
    let long_id = "a".repeat(MAX_SITE_ID_BYTES + 1);
    malformed(&sealed(PING, &str_field(long_id.as_bytes())));
    let long_addr = "a".repeat(MAX_ADDRESS_BYTES + 1);
    malformed(&sealed(
        REPLICATE,
        &cat(&[&str_field(b"vs1"), &str_field(long_addr.as_bytes())]),
    ));
    let long_text = "a".repeat(MAX_TEXT_BYTES + 1);
    malformed(&sealed(
        ACTIVE_HERE,
        &cat(&[&[0; 8], &str_field(long_text.as_bytes())]),
    ));
    // Bytes after the last field.
    malformed(&sealed(RESYNC_OK, &[0]));
    malformed(&sealed(RESYNC_READY, &[1, 2]));
    malformed(&sealed(TRANSFER, &[0, 0]));
    malformed(&sealed(EPOCH_QUERY, &cat(&[&str_field(b"vs1"), &[0; 9]])));
    // Encoding refuses what decoding would.
    for bad in [
        Message::Ping {
            site_id: long_id.clone(),
        },
        Message::Replicate {
            vserver: "vs1".into(),
            replica_address: Some(long_addr),
        },
    ] {
        assert!(matches!(encode(&bad), Err(WireError::Malformed { .. })));
    }
}

#[test]
fn unknown_preface_variants_are_refused() {
    // Role 3, a presence byte of 2, an absent LSN that is not 0.
    let why = malformed(&sealed(EPOCH_ANSWER, &cat(&[&[0; 8], &[3, 0], &[0; 8]])));
    assert!(why.contains("role"), "{why}");
    malformed(&sealed(EPOCH_ANSWER, &cat(&[&[0; 8], &[2, 2], &[0; 8]])));
    let why = malformed(&sealed(EPOCH_ANSWER, &cat(&[&[0; 8], &[2, 0], &[1; 8]])));
    assert!(why.contains("absent"), "{why}");
    let why = malformed(&sealed(TRANSFER, &[3]));
    assert!(why.contains("transfer"), "{why}");
    malformed(&sealed(REPLICATE_OK, &cat(&[&[0; 8], &[2]])));
    // A type in the preface block that is not assigned.
    let mut b = sealed(PING, &str_field(SITE.as_bytes()));
    b[6..8].copy_from_slice(&63u16.to_le_bytes());
    crate::common::reseal(&mut b);
    assert!(matches!(
        decode(&b),
        Err(WireError::UnknownType { found: 63 })
    ));
}

#[test]
fn wrong_preface_fields_are_refused() {
    malformed(&sealed(PONG, &str_field(b"has space")));
    malformed(&sealed(PING, &str_field(b"")));
    for vs in [&b""[..], b"../etc", b".hidden"] {
        malformed(&sealed(EPOCH_QUERY, &cat(&[&str_field(vs), &[0; 8]])));
        malformed(&sealed(REPLICATE, &cat(&[&str_field(vs), &str_field(b"")])));
    }
    // An address with a space, or not UTF-8.
    malformed(&sealed(
        REPLICATE,
        &cat(&[&str_field(b"vs1"), &str_field(b"10.0.0.1/24 x")]),
    ));
    malformed(&sealed(
        RESYNC,
        &cat(&[&str_field(b"vs1"), &[0; 16], &str_field(&[0xc3, 0x28])]),
    ));
    assert!(matches!(
        encode(&Message::Resync(ResyncOpen {
            vserver: "vs1".into(),
            epoch: 1,
            shared_lsn: 1,
            replica_address: Some("a b".into()),
        })),
        Err(WireError::Malformed { .. })
    ));
    // An empty address is none.
    let b = sealed(REPLICATE, &cat(&[&str_field(b"vs1"), &str_field(b"")]));
    assert_eq!(
        decode(&b).expect("decode"),
        Message::Replicate {
            vserver: "vs1".into(),
            replica_address: None
        }
    );
}

/// Serves one exchange: reads a request, answers what `answer` makes of it.
fn serve_one(
    server: tokio::io::DuplexStream,
    answer: impl FnOnce(Request) -> Answer + Send + 'static,
) -> tokio::task::JoinHandle<std::result::Result<Request, PeerError>> {
    tokio::spawn(async move {
        let mut conn = Connection::new(server, TIMEOUT);
        let req = conn.read_request().await?;
        conn.answer(answer(req.clone())).await?;
        Ok(req)
    })
}

#[tokio::test]
async fn requests_and_answers_round_trip() {
    let cases = [
        (
            Request::Ping {
                site_id: SITE.into(),
            },
            Answer::Pong {
                site_id: SITE.into(),
            },
        ),
        (
            Request::Epoch {
                vserver: "vs1".into(),
                epoch: 3,
            },
            Answer::Epoch(EpochAnswer {
                epoch: 4,
                role: Role::Replica,
                shared_lsn: None,
            }),
        ),
        (
            Request::Replicate {
                vserver: "vs1".into(),
                replica_address: None,
            },
            Answer::Replicate(ReplicaAt {
                lsn: 0,
                unfinished_baseline: true,
            }),
        ),
        (
            Request::Replicate {
                vserver: "vs1".into(),
                replica_address: Some("10.0.0.9/24".into()),
            },
            Answer::ActiveHere {
                epoch: 9,
                reason: "active here".into(),
            },
        ),
        (
            Request::Resync(ResyncOpen {
                vserver: "vs1".into(),
                epoch: 1,
                shared_lsn: 7,
                replica_address: None,
            }),
            Answer::ResyncOk,
        ),
        (
            Request::Ready,
            Answer::ResyncDone(ResyncDone {
                lsn: 1,
                data_bytes: 2,
                state_bytes: 3,
                own_changed_bytes: 4,
                divergent_bytes: 5,
            }),
        ),
        (
            Request::Transfer(TransferKind::Baseline),
            Answer::Refused {
                code: code::BUSY,
                reason: "later".into(),
            },
        ),
    ];
    for (req, ans) in cases {
        let (client, server) = tokio::io::duplex(4096);
        let expected = ans.clone();
        let served = serve_one(server, move |_| expected);
        let mut conn = Connection::new(client, TIMEOUT);
        assert_eq!(conn.request(req.clone()).await.expect("request"), ans);
        assert_eq!(served.await.expect("join").expect("served"), req);
    }
}

#[tokio::test]
async fn a_message_out_of_place_is_unexpected() {
    // A session message where a request belongs.
    let (client, server) = tokio::io::duplex(4096);
    let served = tokio::spawn(async move { Connection::new(server, TIMEOUT).read_request().await });
    let mut client = client;
    write_message(&mut client, &Message::Heartbeat { now_ms: 1 }, TIMEOUT)
        .await
        .expect("write");
    assert!(matches!(
        served.await.expect("join"),
        Err(PeerError::Unexpected {
            got: "Heartbeat",
            ..
        })
    ));

    // A request where an answer belongs.
    let (client, mut server) = tokio::io::duplex(4096);
    let serving = tokio::spawn(async move {
        read_message(&mut server, TIMEOUT).await.expect("read");
        let ping = Message::Ping {
            site_id: SITE.into(),
        };
        write_message(&mut server, &ping, TIMEOUT)
            .await
            .expect("write");
        server
    });
    let mut conn = Connection::new(client, TIMEOUT);
    let got = conn.request(Request::Ready).await;
    assert!(
        matches!(got, Err(PeerError::Unexpected { got: "Ping", .. })),
        "{got:?}"
    );
    drop(serving.await.expect("join"));
}

#[tokio::test]
async fn a_version_one_site_is_refused_and_told_in_a_line() {
    // Its text line is shorter than an envelope: the magic alone decides.
    let (client, server) = tokio::io::duplex(4096);
    let served = tokio::spawn(async move { Connection::new(server, TIMEOUT).read_request().await });
    let mut client = BufReader::new(client);
    client.write_all(b"EPOCH vs 1\n").await.expect("write");
    let mut line = String::new();
    client.read_line(&mut line).await.expect("read");
    assert!(
        line.starts_with("ERR ") && line.contains("protocol 2"),
        "{line}"
    );
    assert!(matches!(
        served.await.expect("join"),
        Err(PeerError::Wire(WireError::BadMagic { .. }))
    ));

    // A version-1 listener answers a message it was not expecting with a
    // Refuse: that is an answer, with its reason.
    let (client, mut server) = tokio::io::duplex(4096);
    let serving = tokio::spawn(async move {
        read_message(&mut server, TIMEOUT).await.expect("read");
        let refuse = Message::Refuse {
            code: code::INTERNAL,
            reason: "send REPLICATE first".into(),
        };
        write_message(&mut server, &refuse, TIMEOUT)
            .await
            .expect("write");
        server
    });
    let mut conn = Connection::new(client, TIMEOUT);
    let got = conn
        .request(Request::Ping {
            site_id: SITE.into(),
        })
        .await
        .expect("answer");
    assert!(matches!(
        got,
        Answer::Refused {
            code: code::INTERNAL,
            ..
        }
    ));
    drop(serving.await.expect("join"));
}

#[tokio::test]
async fn silence_and_a_closed_peer_are_errors() {
    let (client, _server) = tokio::io::duplex(4096);
    let mut conn = Connection::new(client, Duration::from_millis(50));
    let got = conn.request(Request::Ready).await;
    assert!(
        matches!(got, Err(PeerError::Wire(WireError::Timeout { .. }))),
        "{got:?}"
    );

    let (client, server) = tokio::io::duplex(4096);
    drop(client);
    let got = Connection::new(server, TIMEOUT).read_request().await;
    assert!(
        matches!(got, Err(PeerError::Wire(WireError::Closed))),
        "{got:?}"
    );
}
