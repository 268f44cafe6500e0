//! Malformed and unusual RPC traffic in raw form: the server answers what
//! it can, closes what it must, and keeps serving everyone else.

use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const NFS: u32 = 100_003;
const MOUNT: u32 = 100_005;
const PROG_UNAVAIL: u32 = 1;
const PROG_MISMATCH: u32 = 2;
const PROC_UNAVAIL: u32 = 3;
const GARBAGE_ARGS: u32 = 4;
const RPC_MISMATCH: u32 = 0;
const AUTH_ERROR: u32 = 1;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_program_version_procedure_and_rpcvers() {
    let srv = start().await;
    let port = srv.ep.nfs_port;
    let r = raw_call(port, &RawCall::new(1, 100_099, 3, 0)).await;
    assert!(
        matches!(
            r,
            RawReply::Accepted {
                xid: 1,
                stat: PROG_UNAVAIL,
                ..
            }
        ),
        "{r:?}"
    );
    // MOUNT on the NFS port is not served there.
    let r = raw_call(port, &RawCall::new(2, MOUNT, 3, 0)).await;
    assert_eq!(r.accept_stat(), Some(PROG_UNAVAIL), "{r:?}");

    let r = raw_call(port, &RawCall::new(3, NFS, 4, 0)).await;
    let RawReply::Accepted {
        stat: PROG_MISMATCH,
        rest,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(rest, [0, 0, 0, 3, 0, 0, 0, 3], "low = high = 3");

    let r = raw_call(port, &RawCall::new(4, NFS, 3, 22)).await;
    assert_eq!(r.accept_stat(), Some(PROC_UNAVAIL), "{r:?}");
    let r = raw_call(srv.ep.mount_port, &RawCall::new(5, MOUNT, 3, 6)).await;
    assert_eq!(r.accept_stat(), Some(PROC_UNAVAIL), "{r:?}");

    let mut call = RawCall::new(6, NFS, 3, 0);
    call.rpcvers = 3;
    let r = raw_call(port, &call).await;
    let RawReply::Denied {
        xid: 6,
        stat: RPC_MISMATCH,
        rest,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(rest, [0, 0, 0, 2, 0, 0, 0, 2], "low = high = 2");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_arguments() {
    let srv = start().await;
    let port = srv.ep.nfs_port;
    // GETATTR whose handle length runs past the end of the record.
    let mut call = RawCall::new(10, NFS, 3, 1);
    call.args = vec![0, 0, 0, 32, 1, 2, 3];
    let r = raw_call(port, &call).await;
    assert!(
        matches!(
            r,
            RawReply::Accepted {
                xid: 10,
                stat: GARBAGE_ARGS,
                ..
            }
        ),
        "{r:?}"
    );
    // A handle longer than NFS3_FHSIZE.
    let mut call = RawCall::new(11, NFS, 3, 1);
    call.args = 65u32.to_be_bytes().to_vec();
    call.args.extend([0u8; 68]);
    let r = raw_call(port, &call).await;
    assert_eq!(r.accept_stat(), Some(GARBAGE_ARGS), "{r:?}");
    // A length prefix of 4 GiB must not be believed (nor allocated).
    let mut call = RawCall::new(12, NFS, 3, 3);
    call.args = vec![0xff; 8];
    let r = raw_call(port, &call).await;
    assert_eq!(r.accept_stat(), Some(GARBAGE_ARGS), "{r:?}");
    // Bad WRITE stable_how.
    let mut call = RawCall::new(13, NFS, 3, 7);
    call.args = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    let r = raw_call(port, &call).await;
    assert_eq!(r.accept_stat(), Some(GARBAGE_ARGS), "{r:?}");
    // MNT with an empty argument.
    let r = raw_call(srv.ep.mount_port, &RawCall::new(14, MOUNT, 3, 1)).await;
    assert_eq!(r.accept_stat(), Some(GARBAGE_ARGS), "{r:?}");
    still_serving(&srv).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_auth_errors() {
    let srv = start().await;
    let mut s = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    // AUTH_SYS claiming 17 gids (limit 16).
    let mut cred = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cred.extend(17u32.to_be_bytes());
    cred.extend([0u8; 17 * 4]);
    let mut body = Vec::new();
    for v in [20u32, 0, 2, NFS, 3, 0, 1, cred.len() as u32] {
        body.extend(v.to_be_bytes());
    }
    body.extend(&cred);
    body.extend([0u8; 8]);
    let mut rec = ((body.len() as u32) | 0x8000_0000).to_be_bytes().to_vec();
    rec.extend(body);
    s.write_all(&rec).await.unwrap();
    let r = read_reply(&mut s).await;
    let RawReply::Denied {
        xid: 20,
        stat: AUTH_ERROR,
        rest,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(rest, [0, 0, 0, 1], "AUTH_BADCRED");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mknod_of_regular_file_is_badtype() {
    let srv = start().await;
    let root = srv.store.root_handle(srv.fsids[0]).unwrap();
    let fh = make_handle(root.fsid, root.ino, root.generation);
    let mut call = RawCall::new(30, NFS, 3, 11);
    call.args.extend(32u32.to_be_bytes());
    call.args.extend(fh.data.as_ref());
    call.args.extend(1u32.to_be_bytes());
    call.args.extend(b"r\0\0\0");
    call.args.extend(1u32.to_be_bytes()); // NF3REG
    let r = raw_call(srv.ep.nfs_port, &call).await;
    let RawReply::Accepted { stat: 0, rest, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(&rest[..4], &10007u32.to_be_bytes(), "NFS3ERR_BADTYPE");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_record_then_close() {
    let srv = start().await;
    let mut s = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    s.write_all(&(100u32 | 0x8000_0000).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&[0u8; 10]).await.unwrap();
    drop(s);
    still_serving(&srv).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_record_closes_only_that_connection() {
    let srv = start().await;
    let mut other = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    s.write_all(&((64u32 << 20) | 0x8000_0000).to_be_bytes())
        .await
        .unwrap();
    expect_closed(&mut s).await;
    // A record split across fragments whose sum exceeds the limit, too.
    let mut s = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    let frag = vec![0u8; 700 * 1024];
    let mut rec = (frag.len() as u32).to_be_bytes().to_vec();
    rec.extend(&frag);
    rec.extend(((frag.len() as u32) | 0x8000_0000).to_be_bytes());
    // The server may close before all of it is written.
    let _ = s.write_all(&rec).await;
    expect_closed(&mut s).await;

    other
        .write_all(&RawCall::new(40, NFS, 3, 0).record())
        .await
        .unwrap();
    assert_eq!(read_reply(&mut other).await.xid(), 40);
    still_serving(&srv).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_on_one_connection() {
    let srv = start().await;
    let root = srv.store.root_handle(srv.fsids[0]).unwrap();
    let fh = make_handle(root.fsid, root.ino, root.generation);
    let mut s = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
        .await
        .unwrap();
    let mut batch = Vec::new();
    let count = 40u32;
    for xid in 100..100 + count {
        let mut call = RawCall::new(xid, NFS, 3, if xid % 2 == 0 { 0 } else { 1 });
        if xid % 2 == 1 {
            call.args.extend(32u32.to_be_bytes());
            call.args.extend(fh.data.as_ref());
        }
        // Alternate single- and multi-fragment records.
        if xid % 3 == 0 {
            let rec = call.record();
            let body = &rec[4..];
            let (a, b) = body.split_at(body.len() / 2 / 4 * 4);
            batch.extend((a.len() as u32).to_be_bytes());
            batch.extend(a);
            batch.extend(((b.len() as u32) | 0x8000_0000).to_be_bytes());
            batch.extend(b);
        } else {
            batch.extend(call.record());
        }
    }
    s.write_all(&batch).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..count {
        let r = tokio::time::timeout(DEADLINE, read_reply(&mut s))
            .await
            .expect("reply in time");
        let RawReply::Accepted { xid, stat: 0, rest } = r else {
            panic!("{r:?}")
        };
        if xid % 2 == 1 {
            assert_eq!(&rest[..4], &[0, 0, 0, 0], "GETATTR NFS3_OK");
        }
        assert!(seen.insert(xid), "one reply per xid");
    }
    assert_eq!(seen, (100..100 + count).collect());
    srv.stop().await;
}

/// With one service-wide request slot, two connections that each pipeline
/// many calls are still all answered: the limit serialises, never deadlocks
/// (a slot is freed once its reply is written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_wide_request_limit_serialises_without_deadlock() {
    let cfg = tandem_nfs::ServerConfig {
        max_requests_total: 1,
        ..test_config()
    };
    let srv = start_with_config(vec![("data", export("/data"))], cfg).await;
    let mut conns = Vec::new();
    for c in 0..2u32 {
        let mut s = TcpStream::connect(("127.0.0.1", srv.ep.nfs_port))
            .await
            .unwrap();
        let mut batch = Vec::new();
        for i in 0..20u32 {
            batch.extend(RawCall::new(c * 100 + i, NFS, 3, 0).record());
        }
        s.write_all(&batch).await.unwrap();
        conns.push(s);
    }
    for (c, s) in conns.iter_mut().enumerate() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let r = tokio::time::timeout(DEADLINE, read_reply(s))
                .await
                .expect("reply in time");
            seen.insert(r.xid());
        }
        let c = c as u32;
        assert_eq!(seen, (c * 100..c * 100 + 20).collect());
    }
    srv.stop().await;
}

#[tokio::test]
async fn zero_request_limit_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = tandem_store::Store::init(
        &dir.path().join("vs"),
        "vs1",
        tandem_store::StoreOptions::default(),
    )
    .unwrap();
    let cfg = tandem_nfs::ServerConfig {
        max_requests_total: 0,
        ..test_config()
    };
    let r = tandem_nfs::VserverService::start(
        std::sync::Arc::new(store),
        vec!["127.0.0.1".parse().unwrap()],
        cfg,
    )
    .await;
    assert!(matches!(r, Err(tandem_nfs::NfsError::Config(_))));
}
