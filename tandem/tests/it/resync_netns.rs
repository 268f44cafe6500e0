//! A partition, a failover, the old active site's return and `tandem
//! resync`, on a real (virtual) network: the namespaces of common/netns.rs
//! (a client host, site A, site B on one bridge), alpha in A holding the
//! vserver at 10.201.1.11/32@front (front = eth0), replicated (async) to
//! beta in B.
//!
//! The sites are partitioned from each other (blackhole routes), the
//! client still reaching A: its writes there are divergent (B never gets
//! them). Then A is cut off (its eth0 down) and the partition removed;
//! `failover --check` at B finds every resource (no host answers for the
//! address), and `failover` claims the address on B's eth0; the client writes at
//! B through the same address. A's link comes back: its sender learns the
//! higher epoch, fences the store, and A stops serving the vserver and
//! releases its address (the address is on B only). `resync` at A keeps
//! A's divergent files in its folder, fetches about the divergent bytes,
//! and A becomes beta's replica; `verify` matches.
//!
//! Needs root and iproute2: skipped without them, failed in CI.

use crate::common::failover::state_at;
use crate::common::netns::*;
use crate::common::netns_sites::*;
use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;

const A_REPLICA_CIDR: &str = "10.201.1.13/32";

/// Runs `f` with a fresh mount of the vserver's /data from the client
/// host, through VS_IP; returns what it returns.
fn at_client<T: Send + 'static>(
    net: &Net,
    ports: (u16, u16),
    f: impl FnOnce(Conn) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    let done = client_task(net, move || async move {
        let c = mount_at(VS_IP, "/data", ports, DEADLINE).await;
        f(c).await
    });
    match done.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Blackhole routes between A and B (`add` true) or their removal.
fn partition_sites(net: &Net, add: bool) {
    let verb = if add { "add" } else { "del" };
    net.ip_in(&net.a, &["route", verb, "blackhole", &format!("{B_IP}/32")]);
    net.ip_in(&net.b, &["route", verb, "blackhole", &format!("{A_IP}/32")]);
}

#[test]
fn a_partitioned_old_active_returns_releases_its_address_and_resyncs() {
    let Some((s, replica)) = start_routed() else {
        return;
    };
    assert_success(
        &s.a.tandem(&[
            "replicate",
            "vs",
            "--to",
            "beta",
            "--mode",
            "async",
            "--replica-address",
            &replica,
        ]),
        "replicate",
    );
    s.net.wait_address(&s.net.a, VS_CIDR, true);
    let ports = (s.a.mount_port, s.a.nfs_port);
    let keep = pattern(64 << 10, 1);
    let over = pattern(256 << 10, 2);
    let gone = pattern(128 << 10, 3);
    let (k, o, g) = (keep.clone(), over.clone(), gone.clone());
    at_client(&s.net, ports, move |mut c| {
        Box::pin(async move {
            write_file(&mut c, "keep.bin", &k).await;
            write_file(&mut c, "over.bin", &o).await;
            write_file(&mut c, "gone.bin", &g).await;
        })
    });
    wait_converged(&s.a, &s.b, "vs", &|| s.logs());

    // The sites lose each other; the client still reaches A, whose
    // writes from here on never reach B.
    partition_sites(&s.net, true);
    let a_over = pattern(8 << 10, 4);
    let a_new = pattern(32 << 10, 5);
    let (ao, an) = (a_over.clone(), a_new.clone());
    at_client(&s.net, ports, move |mut c| {
        Box::pin(async move {
            let fh = lookup(&mut c, "over.bin").await.expect("over.bin");
            write_at(&mut c, &fh, 4096, &ao, stable_how::FILE_SYNC).await;
            write_file(&mut c, "new-at-a.bin", &an).await;
            remove(&mut c, "gone.bin").await;
        })
    });

    // A's host is cut off; the sites' routes are back for when it returns.
    s.net.ip_in(&s.net.a, &["link", "set", DEV, "down"]);
    partition_sites(&s.net, false);
    // With A's link down nothing answers for the address: the check
    // finds everything (B's replica shows the partition's LSN), and no
    // --force is needed.
    let out = s.b.tandem(&["failover", "vs", "--check"]);
    eprintln!("check at B with A cut off:\n{}", stdout(&out));
    assert_success(&out, "failover --check");
    let out = s.b.tandem(&["failover", "vs", "--yes"]);
    assert_success(&out, "failover");
    eprintln!("{}", stdout(&out));
    assert_eq!(state_at(&s.b), "active");
    s.net.wait_address(&s.net.b, VS_CIDR, true);
    assert_eq!(
        state_at(&s.a),
        "active",
        "A must not know of the failover yet"
    );

    // The client writes at B through the same address.
    let b_new = pattern(16 << 10, 6);
    let b_keep = pattern(4 << 10, 7);
    let (bn, bk) = (b_new.clone(), b_keep.clone());
    at_client(&s.net, ports, move |mut c| {
        Box::pin(async move {
            write_file(&mut c, "new-at-b.bin", &bn).await;
            let fh = lookup(&mut c, "keep.bin").await.expect("keep.bin");
            write_at(&mut c, &fh, 0, &bk, stable_how::FILE_SYNC).await;
        })
    });

    // A returns: fenced by its sender at runtime, it stops serving and
    // gives the address up.
    s.net.ip_in(&s.net.a, &["link", "set", DEV, "up"]);
    s.net.wait_address(&s.net.a, VS_CIDR, false);
    assert_eq!(state_at(&s.a), "diverged", "{}", s.logs());
    assert!(
        s.da.log_text().contains("no longer serving its addresses"),
        "{}",
        s.da.log_text()
    );
    assert!(s.net.addresses(&s.net.b).iter().any(|a| a == VS_CIDR));
    // B's client keeps working through the address.
    let more = pattern(4 << 10, 8);
    let m = more.clone();
    at_client(&s.net, ports, move |mut c| {
        Box::pin(async move {
            write_file(&mut c, "after-return.bin", &m).await;
        })
    });

    let a_replica = format!("{A_REPLICA_CIDR}@front");
    let out =
        s.a.tandem(&["resync", "vs", "--replica-address", &a_replica, "--json"]);
    assert_success(&out, "resync");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let fetched = r["fetched_bytes"].as_u64().expect("fetched_bytes");
    let divergent = r["divergent_bytes"].as_u64().expect("divergent_bytes");
    let changed = r["peer_changed_bytes"]
        .as_u64()
        .expect("peer_changed_bytes");
    eprintln!("resync: fetched {fetched} bytes; divergent {divergent}, changed at beta {changed}");
    assert!(divergent >= (8 << 10) + (128 << 10), "{r}");
    assert!(
        fetched * 10 <= divergent * 11 + changed * 10 + (64 << 10) * 10,
        "fetched {fetched} bytes for {divergent} divergent and {changed} changed"
    );
    let folder = std::path::PathBuf::from(r["folder"].as_str().expect("folder"));
    let report = std::fs::read_to_string(folder.join("report.txt")).expect("report.txt");
    for name in ["over.bin", "new-at-a.bin", "gone.bin"] {
        assert!(report.contains(name), "{name} not in:\n{report}");
    }
    let mut want_over = over.clone();
    want_over[4096..4096 + a_over.len()].copy_from_slice(&a_over);
    assert_eq!(
        std::fs::read(folder.join("files/data/over.bin")).expect("over.bin kept"),
        want_over
    );
    assert_eq!(
        std::fs::read(folder.join("files/data/new-at-a.bin")).expect("new-at-a.bin kept"),
        a_new
    );

    assert_eq!(state_at(&s.a), "replica");
    wait_converged(&s.b, &s.a, "vs", &|| s.logs());
    assert_verify_matches(&s.b, "vs");
    let mut want_keep = keep;
    want_keep[..b_keep.len()].copy_from_slice(&b_keep);
    at_client(&s.net, ports, move |mut c| {
        Box::pin(async move {
            assert_eq!(read_named(&mut c, "keep.bin").await.unwrap(), want_keep);
            assert_eq!(read_named(&mut c, "over.bin").await.unwrap(), over);
            assert_eq!(read_named(&mut c, "gone.bin").await.unwrap(), gone);
            assert_eq!(read_named(&mut c, "new-at-b.bin").await.unwrap(), b_new);
            assert_eq!(read_named(&mut c, "after-return.bin").await.unwrap(), more);
            assert!(lookup(&mut c, "new-at-a.bin").await.is_none());
        })
    });
}
