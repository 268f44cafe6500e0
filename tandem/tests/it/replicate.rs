//! Replication through the real binary: two paired sites on their own
//! loopback addresses; a vserver written through NFS at the active site is
//! streamed to the other, which serves it read-only on a replica address
//! with the same file handles.

use std::time::{Duration, Instant};

use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;

use crate::common::nfs::*;
use crate::common::replication::*;

async fn lookup(c: &mut Conn, name: &str) -> nfs_fh3 {
    let root = c.root_nfs_fh3();
    must(
        "LOOKUP",
        c.lookup(&LOOKUP3args {
            what: dirop(&root, name),
        }),
    )
    .await
    .object
}

#[test]
fn streams_to_replica_with_same_handles_and_resumes_after_kill9() {
    const VS_ADDR: &str = "127.79.1.11";
    const REPLICA_ADDR: &str = "127.79.1.12";
    let (a, a_addr) = site("alpha", "127.79.1.1");
    let (b, b_addr) = site("beta", "127.79.1.2");
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, "vs", VS_ADDR, "data", "/data");
    let rt = runtime();

    let first = pattern(300 << 10, 1);
    let small = b"hello from alpha\n".to_vec();
    let (fh_first, fh_small) = rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        let f1 = write_file(&mut c, "first.bin", &first).await;
        let f2 = write_file(&mut c, "small.txt", &small).await;
        (f1, f2)
    });

    let out = a.tandem(&[
        "replicate",
        "vs",
        "--to",
        "beta",
        "--replica-address",
        &format!("{REPLICA_ADDR}/32"),
    ]);
    assert_success(&out, "replicate");
    assert!(
        stdout(&out).contains("Replicating vs to beta"),
        "{}",
        stdout(&out)
    );
    let logs = |da: &Daemon, db: &Daemon| format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    wait_converged(&a, &b, "vs", &|| logs(&da, &db));

    // The same bytes through the replica address, by lookup and by the
    // handles the active site gave out.
    rt.block_on(async {
        let mut c = mount(&b, REPLICA_ADDR).await;
        let fh = lookup(&mut c, "first.bin").await;
        assert_eq!(fh, fh_first, "handle differs at the replica");
        assert_eq!(read_all(&mut c, &fh_first).await, first);
        assert_eq!(read_all(&mut c, &fh_small).await, small);
        // Writes to the replica are refused.
        let st = call(
            "WRITE at replica",
            c.write(&WRITE3args {
                file: fh_small.clone(),
                offset: 0,
                count: 1,
                stable: stable_how::FILE_SYNC,
                data: Opaque::borrowed(b"x"),
            }),
        )
        .await
        .err();
        assert!(
            matches!(st, Some(nfsstat3::NFS3ERR_ROFS | nfsstat3::NFS3ERR_ACCES)),
            "write at the replica: {st:?}"
        );
        let root = c.root_nfs_fh3();
        let st = call(
            "CREATE at replica",
            c.create(&CREATE3args {
                where_: dirop(&root, "nope"),
                how: createhow3::UNCHECKED(sattr3::default()),
            }),
        )
        .await
        .err();
        assert!(
            matches!(st, Some(nfsstat3::NFS3ERR_ROFS | nfsstat3::NFS3ERR_ACCES)),
            "create at the replica: {st:?}"
        );
    });
    // The vserver's own address is not claimed at the replica site.
    let vb = vserver_status(&b, "vs").expect("replica");
    let endpoints = vb["endpoints"].as_array().expect("endpoints");
    assert!(
        endpoints.iter().all(|e| e["ip"] == REPLICA_ADDR),
        "replica serves more than its replica address: {vb}"
    );

    // kill -9 the replica while the active site keeps writing, restart it:
    // the sender reconnects and the replica converges.
    db.kill9();
    let second = pattern(200 << 10, 2);
    let fh_second = rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        write_file(&mut c, "second.bin", &second).await
    });
    // The sender notices the lost peer and says so.
    let start = Instant::now();
    loop {
        let st = vserver_status(&a, "vs").expect("active");
        if st["replication"]["state"] != "streaming" {
            assert!(st["replication"]["last_error"].is_string(), "{st}");
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "still streaming to a dead peer: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let db = b.start_daemon();
    wait_converged(&a, &b, "vs", &|| logs(&da, &db));
    rt.block_on(async {
        let mut c = mount(&b, REPLICA_ADDR).await;
        assert_eq!(read_all(&mut c, &fh_second).await, second);
        assert_eq!(read_all(&mut c, &fh_first).await, first);
    });

    // Mid-stream this time: B dies while a larger file is being shipped.
    let third = pattern(3 << 20, 3);
    let fh_third = rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        let writer = write_file(&mut c, "third.bin", &third);
        tokio::pin!(writer);
        // Let part of the file reach the journal (and the sender) first.
        let fh = tokio::select! {
            fh = &mut writer => Some(fh),
            () = tokio::time::sleep(Duration::from_millis(150)) => None,
        };
        db.kill9();
        match fh {
            Some(fh) => fh,
            None => writer.await,
        }
    });
    let db = b.start_daemon();
    wait_converged(&a, &b, "vs", &|| logs(&da, &db));

    // And the active site: kill -9, restart, write more; the sender
    // resumes from the replica's LSN.
    da.kill9();
    let da = a.start_daemon();
    let fourth = pattern(50 << 10, 4);
    let fh_fourth = rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        write_file(&mut c, "fourth.bin", &fourth).await
    });
    wait_converged(&a, &b, "vs", &|| logs(&da, &db));
    rt.block_on(async {
        let mut c = mount(&b, REPLICA_ADDR).await;
        assert_eq!(read_all(&mut c, &fh_third).await, third);
        assert_eq!(read_all(&mut c, &fh_fourth).await, fourth);
    });

    // Status in text form names the replication on both sides.
    let text = stdout(&a.tandem(&["status"]));
    assert!(
        text.contains("replication to beta (async): streaming"),
        "{text}"
    );
    let text = stdout(&b.tandem(&["status"]));
    assert!(text.contains("replica of site"), "{text}");
    drop(db);
    drop(da);
}

/// Polls the active site's status until replication of `vs` is in `state`.
fn wait_state(a: &TestSite, vs: &str, state: &str, logs: &dyn Fn() -> String) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = vserver_status(a, vs).expect("vserver");
        if v["replication"]["state"] == state {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "replication never reached {state}: {v}\nlogs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_requests_and_refusals_are_clear() {
    let (a, a_addr) = site("alpha", "127.79.2.1");
    let (b, b_addr) = site("beta", "127.79.2.2");
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, "vs", "127.79.2.11", "data", "/data");
    // The same name active at the other site: replicating over it is refused.
    create_vserver_and_fs(&b, "vs", "127.79.2.21", "data", "/data");

    let out = a.tandem(&["replicate", "vs", "--to", "nobody"]);
    assert_fails_with(&out, "no peer named nobody");
    let out = a.tandem(&["replicate", "nope", "--to", "beta"]);
    assert_fails_with(&out, "no vserver named nope");
    let out = a.tandem(&["replicate", "vs", "--to", "beta", "--mode", "eventually"]);
    assert_fails_with(&out, "eventually");
    let out = a.tandem(&[
        "replicate",
        "vs",
        "--to",
        "beta",
        "--replica-address",
        "1.2.3",
    ]);
    assert_fails_with(&out, "address");

    assert_success(&a.tandem(&["replicate", "vs", "--to", "beta"]), "replicate");
    // The same settings again change nothing (a different peer would be
    // refused: tandem/tests/it/replicate_options.rs).
    assert_success(&a.tandem(&["replicate", "vs", "--to", "beta"]), "again");
    let logs = || format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    let v = wait_state(&a, "vs", "refused", &logs);
    let err = v["replication"]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("active here"), "{v}");
    // The other site's own vserver is untouched.
    let vb = vserver_status(&b, "vs").expect("vs at beta");
    assert_eq!(vb["state"], "active", "{vb}");
}

#[test]
fn lost_journal_start_takes_a_baseline_then_streams() {
    const VS_ADDR: &str = "127.79.3.11";
    const REPLICA_ADDR: &str = "127.79.3.12";
    let (a, a_addr) = site("alpha", "127.79.3.1");
    let (b, b_addr) = site("beta", "127.79.3.2");
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, "vs", VS_ADDR, "data", "/data");
    let rt = runtime();
    let first = pattern(6 << 20, 5);
    let fh_first = rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        write_file(&mut c, "first.bin", &first).await
    });
    assert!(da.stop().success());
    drop_journal_segments(&a, "vs");
    let da = a.start_daemon();
    replicate_to_beta(&a, "vs", REPLICA_ADDR);
    // kill -9 the replica once the baseline has started (or as soon as
    // it is seen): it restarts and the copy completes.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let st = vserver_status(&a, "vs").expect("active");
        if st["replication"]["state"] != "connecting" {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    db.kill9();
    let db = b.start_daemon();
    // Written while the baseline may be running: arrives by streaming.
    let second = pattern(100 << 10, 6);
    let fh_second = rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        write_file(&mut c, "second.bin", &second).await
    });
    let logs = |da: &Daemon, db: &Daemon| format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    wait_converged(&a, &b, "vs", &|| logs(&da, &db));
    let v = vserver_status(&a, "vs").expect("active");
    let total = v["replication"]["baseline_total_bytes"].as_u64();
    assert!(total >= Some(first.len() as u64), "{v}");
    assert_eq!(
        v["replication"]["baseline_done_bytes"].as_u64(),
        total,
        "{v}"
    );
    rt.block_on(async {
        let mut c = mount(&b, REPLICA_ADDR).await;
        assert_eq!(read_all(&mut c, &fh_first).await, first);
        assert_eq!(read_all(&mut c, &fh_second).await, second);
    });

    // The settings are durable: after a clean restart of both, streaming
    // goes on.
    assert!(db.stop().success());
    assert!(da.stop().success());
    let da = a.start_daemon();
    let db = b.start_daemon();
    let third = pattern(10 << 10, 7);
    let fh_third = rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        write_file(&mut c, "third.bin", &third).await
    });
    wait_converged(&a, &b, "vs", &|| logs(&da, &db));
    rt.block_on(async {
        let mut c = mount(&b, REPLICA_ADDR).await;
        assert_eq!(read_all(&mut c, &fh_third).await, third);
    });

    // A replica that holds records but fell behind the journal's start
    // cannot take a baseline: needs-baseline, clearly, no crash loop.
    assert!(db.stop().success());
    rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        write_file(&mut c, "fourth.bin", b"more").await
    });
    assert!(da.stop().success());
    drop_journal_segments(&a, "vs");
    let da = a.start_daemon();
    let db = b.start_daemon();
    let v = wait_state(&a, "vs", "needs-baseline", &|| logs(&da, &db));
    let err = v["replication"]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("baseline"), "{v}");
    assert_eq!(v["replication"]["to"], "beta", "{v}");
}

#[test]
fn peer_that_does_not_trust_us_is_a_clear_error() {
    let (a, _a_addr) = site("alpha", "127.79.4.1");
    let (b, b_addr) = site("beta", "127.79.4.2");
    let da = a.start_daemon();
    let db = b.start_daemon();
    // alpha trusts beta, but beta was never told about alpha.
    let b_id = site_id(&b);
    let out = a.tandem(&["peer", "add", "beta", "--addr", &b_addr, "--id", &b_id]);
    assert_success(&out, "peer add beta");
    create_vserver_and_fs(&a, "vs", "127.79.4.11", "data", "/data");
    assert_success(&a.tandem(&["replicate", "vs", "--to", "beta"]), "replicate");
    let logs = || format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    let v = wait_state(&a, "vs", "disconnected", &logs);
    let err = v["replication"]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("beta"), "{v}");
    assert!(err.contains("is this site paired there"), "{v}");
    // Nothing was created at beta.
    assert!(vserver_status(&b, "vs").is_none(), "{}", logs());
}
