//! Hostile and broken clients spend their own share: silent connections,
//! half-sent records, a client that never reads its replies, a host that
//! opens too many connections, a full port, an idle connection.

use std::net::SocketAddr;

use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;
use tandem_nfs::{ServerConfig, Shares};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const NFS: u32 = 100_003;

fn config(shares: Shares) -> ServerConfig {
    ServerConfig {
        shares,
        ..test_config()
    }
}

/// A connection to the NFS port from `source` (another loopback address
/// is another client host).
async fn connect_from(source: &str, srv: &Server) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(from).unwrap();
    let to: SocketAddr = format!("127.0.0.1:{}", srv.ep.nfs_port).parse().unwrap();
    socket.connect(to).await.unwrap()
}

/// A NULL call on `s` is answered within the deadline.
async fn answered(s: &mut TcpStream, xid: u32) {
    s.write_all(&RawCall::new(xid, NFS, 3, 0).record())
        .await
        .unwrap();
    let reply = tokio::time::timeout(DEADLINE, read_reply(s))
        .await
        .expect("a reply within the deadline");
    assert_eq!(reply.xid(), xid);
}

/// The header of a record of 100 bytes, and nothing after it.
const HALF_RECORD: [u8; 4] = (100u32 | 0x8000_0000).to_be_bytes();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_records_hold_no_request_slot() {
    let cfg = ServerConfig {
        max_requests_total: 2,
        ..config(Shares {
            record_timeout_ms: 600_000,
            ..Shares::default()
        })
    };
    let srv = start_with_config(vec![("data", export("/data"))], cfg).await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
            .await
            .unwrap();
        s.write_all(&HALF_RECORD).await.unwrap();
        silent.push(s);
    }
    // With the slots taken at the header, as before, this waited for the
    // record timeout.
    still_serving(&srv).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_only_its_hosts_share() {
    let cfg = ServerConfig {
        max_requests_total: 8,
        ..config(Shares {
            max_requests_per_host: 4,
            ..Shares::default()
        })
    };
    let srv = start_with_config(vec![("data", export("/data"))], cfg).await;
    let mut c = mount(&srv, "/data", root()).await;
    let root_fh = c.root_nfs_fh3();
    let made = c
        .create(&CREATE3args {
            where_: dirop(&root_fh, "big"),
            how: createhow3::UNCHECKED(sattr3 {
                mode: Nfs3Option::Some(0o644),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(fh) = made.obj else {
        panic!("CREATE returned no handle")
    };
    // Sparse (a new file's size is set apart from CREATE): every READ of
    // it is answered with a full buffer.
    c.setattr(&SETATTR3args {
        object: fh.clone(),
        new_attributes: sattr3 {
            size: Nfs3Option::Some(256 << 20),
            ..Default::default()
        },
        guard: Nfs3Option::None,
    })
    .await
    .unwrap()
    .unwrap();
    // 64 READs of 1 MiB on one connection whose replies nobody reads: the
    // socket buffers fill and the replies wait, holding their slots.
    let mut greedy = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    let mut calls = Vec::new();
    for i in 0..64u32 {
        let mut read = RawCall::new(1000 + i, NFS, 3, 6);
        read.args.extend((fh.data.len() as u32).to_be_bytes());
        read.args.extend(fh.data.as_ref());
        read.args.extend(u64::from(i << 20).to_be_bytes());
        read.args.extend((1u32 << 20).to_be_bytes());
        calls.extend(read.record_as_root());
    }
    greedy.write_all(&calls).await.unwrap();
    // The READs are being answered, a MiB each (so the replies fill the
    // socket and hold their slots), before another host asks.
    let mut marker = [0u8; 4];
    let seen = tokio::time::timeout(DEADLINE, greedy.peek(&mut marker)).await;
    assert!(matches!(seen, Ok(Ok(4))), "no READ reply: {seen:?}");
    let reply_bytes = u32::from_be_bytes(marker) & 0x7fff_ffff;
    assert!(reply_bytes > 1 << 20, "a short READ: {reply_bytes} bytes");
    // Another host is answered at once, from the slots left to it.
    let mut other = connect_from("127.0.0.2", &srv).await;
    answered(&mut other, 7).await;
    drop(greedy);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_past_its_connection_share_is_closed_and_others_are_served() {
    let cfg = config(Shares {
        max_connections_per_host: 2,
        ..Shares::default()
    });
    let srv = start_with_config(vec![("data", export("/data"))], cfg).await;
    let mut a1 = connect_from("127.0.0.3", &srv).await;
    let mut a2 = connect_from("127.0.0.3", &srv).await;
    answered(&mut a1, 1).await;
    answered(&mut a2, 2).await;
    let mut a3 = connect_from("127.0.0.3", &srv).await;
    expect_closed(&mut a3).await;
    let mut b = connect_from("127.0.0.4", &srv).await;
    answered(&mut b, 3).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_port_closes_its_longest_idle_connection() {
    let cfg = ServerConfig {
        max_connections: 2,
        ..test_config()
    };
    let srv = start_with_config(vec![("data", export("/data"))], cfg).await;
    let mut first = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    let mut second = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    answered(&mut first, 1).await;
    answered(&mut second, 2).await;
    // A newcomer takes the place of the one idle the longest.
    let mut third = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    answered(&mut third, 3).await;
    expect_closed(&mut first).await;
    answered(&mut second, 4).await;
    // (A busy connection is never the one closed: budget.rs's unit test,
    // where when the server has seen a record start is not a race.)
    // The MOUNT port has a budget of its own.
    let mut mount_conn = TcpStream::connect(("127.0.0.1", srv.ep.mount_port))
        .await
        .unwrap();
    answered(&mut mount_conn, 5).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_a_busy_one_kept() {
    let cfg = config(Shares {
        idle_timeout_ms: 1500,
        record_timeout_ms: 600_000,
        ..Shares::default()
    });
    let srv = start_with_config(vec![("data", export("/data"))], cfg).await;
    let mut idle = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    answered(&mut idle, 1).await;
    let mut busy = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    busy.write_all(&HALF_RECORD).await.unwrap();
    expect_closed(&mut idle).await;
    // The half-sent record is still awaited: its rest is answered.
    let mut rest = RawCall::new(9, NFS, 3, 0).record()[4..].to_vec();
    rest.resize(100, 0);
    busy.write_all(&rest).await.unwrap();
    let mut head = [0u8; 4];
    let got = tokio::time::timeout(DEADLINE, busy.read_exact(&mut head)).await;
    assert!(matches!(got, Ok(Ok(_))), "the busy connection was closed");
    srv.stop().await;
}
