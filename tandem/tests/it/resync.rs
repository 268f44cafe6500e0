//! Fencing a returning old active site and `tandem resync VS`, through the
//! real binary on loopback. Alpha holds `vs` at 127.85.1.11 replicated
//! (async) to beta. Alpha is cut off (its pairing with beta removed, so
//! its sender cannot reach beta), beta fails over, and both sites' clients
//! write. Alpha, restarted with its pairing back, learns the higher epoch
//! before serving and comes up `diverged`, not serving the address; `resync` keeps
//! its divergent files in a folder, fetches about the divergent bytes and
//! makes it beta's replica. Both sites serve the vserver's address on
//! their own ports.

use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;

const VS_IP: &str = "127.85.1.11";
const A_REPLICA_IP: &str = "127.85.1.13";

fn state_at(site: &TestSite) -> String {
    vserver_status(site, "vs").expect("vserver at the site")["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_cut_off_old_active_comes_back_diverged_and_resyncs_as_a_replica() {
    let (a, da, b, db) = paired_sites("127.85.1", declare_front_on_lo);
    create_vs_on_front(&a, VS_IP);
    replicate_to_beta(&a, "vs", "127.85.1.12");
    let rt = runtime();
    let keep = pattern(64 << 10, 1);
    let over = pattern(256 << 10, 2);
    let gone = pattern(128 << 10, 3);
    rt.block_on(async {
        let mut c = mount(&a, VS_IP).await;
        write_file(&mut c, "keep.bin", &keep).await;
        write_file(&mut c, "over.bin", &over).await;
        write_file(&mut c, "gone.bin", &gone).await;
    });
    wait_converged(&a, &b, "vs", &|| da.log_text());

    // Cut alpha off: without the pairing its sender cannot reach beta.
    let peers = a.dir.join("peers.toml");
    let paired = std::fs::read(&peers).unwrap();
    assert_success(&a.tandem(&["peer", "remove", "beta"]), "peer remove");
    assert_success(&b.tandem(&["failover", "vs", "--yes"]), "failover");
    assert_eq!(state_at(&b), "active");

    // Both sides write meanwhile.
    let a_over = pattern(8 << 10, 4);
    let a_new = pattern(32 << 10, 5);
    let b_new = pattern(16 << 10, 6);
    let b_keep = pattern(4 << 10, 7);
    rt.block_on(async {
        let mut c = mount(&a, VS_IP).await;
        let fh = lookup(&mut c, "over.bin").await.unwrap();
        write_at(&mut c, &fh, 4096, &a_over, stable_how::FILE_SYNC).await;
        write_file(&mut c, "new-at-a.bin", &a_new).await;
        remove(&mut c, "gone.bin").await;
        let mut c = mount(&b, VS_IP).await;
        write_file(&mut c, "new-at-b.bin", &b_new).await;
        let fh = lookup(&mut c, "keep.bin").await.unwrap();
        write_at(&mut c, &fh, 0, &b_keep, stable_how::FILE_SYNC).await;
    });
    assert_eq!(
        state_at(&a),
        "active",
        "alpha must not have learnt of the failover"
    );

    // Alpha returns, paired again: diverged before it serves anything.
    da.stop();
    std::fs::write(&peers, paired).unwrap();
    let da = a.start_daemon();
    assert_eq!(state_at(&a), "diverged", "{}", da.log_text());
    // Fenced by the probe before serving, not later by its sender.
    assert!(
        da.log_text()
            .contains("the peer holds this vserver active at a higher epoch"),
        "{}",
        da.log_text()
    );
    // Not served on the vserver's address (the promoted site holds it):
    // no write can reach it.
    let vs = vserver_status(&a, "vs").unwrap();
    assert_eq!(vs["endpoints"], serde_json::json!([]), "{vs}");
    let refused = std::net::TcpStream::connect((VS_IP, a.nfs_port));
    assert!(refused.is_err(), "a diverged site serves NFS");

    // Bad inputs: not diverged (beta), peer unreachable (nothing changes).
    assert_fails_with(&b.tandem(&["resync", "vs"]), "not diverged");
    db.stop();
    let out = a.tandem(&["resync", "vs"]);
    assert!(!out.status.success(), "resync with beta down succeeded");
    assert!(stderr(&out).contains("beta"), "{}", stderr(&out));
    assert_eq!(state_at(&a), "diverged");
    let db = b.start_daemon();

    let replica = format!("{A_REPLICA_IP}/32");
    let out = a.tandem(&["resync", "vs", "--replica-address", &replica, "--json"]);
    assert_success(&out, "resync");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fetched = r["fetched_bytes"].as_u64().unwrap();
    let divergent = r["divergent_bytes"].as_u64().unwrap();
    let changed = r["peer_changed_bytes"].as_u64().unwrap();
    eprintln!("resync: fetched {fetched} bytes; divergent {divergent}, changed at beta {changed}");
    assert!(divergent >= (8 << 10) + (128 << 10), "{r}");
    assert!(
        fetched * 10 <= divergent * 11 + changed * 10 + (64 << 10) * 10,
        "fetched {fetched} bytes for {divergent} divergent and {changed} changed"
    );

    // The folder keeps alpha's divergent files and names them.
    let folder = std::path::PathBuf::from(r["folder"].as_str().unwrap());
    let report = std::fs::read_to_string(folder.join("report.txt")).unwrap();
    for name in ["over.bin", "new-at-a.bin", "gone.bin"] {
        assert!(report.contains(name), "{name} not in:\n{report}");
    }
    let mut want_over = over.clone();
    want_over[4096..4096 + a_over.len()].copy_from_slice(&a_over);
    assert_eq!(
        std::fs::read(folder.join("files/data/over.bin")).unwrap(),
        want_over
    );
    assert_eq!(
        std::fs::read(folder.join("files/data/new-at-a.bin")).unwrap(),
        a_new
    );

    // Alpha is beta's replica now, with beta's content.
    assert_eq!(state_at(&a), "replica");
    wait_converged(&b, &a, "vs", &|| {
        format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text())
    });
    assert_verify_matches(&b, "vs");
    rt.block_on(async {
        let mut c = mount(&a, A_REPLICA_IP).await;
        let mut want_keep = keep.clone();
        want_keep[..b_keep.len()].copy_from_slice(&b_keep);
        assert_eq!(read_named(&mut c, "keep.bin").await.unwrap(), want_keep);
        assert_eq!(read_named(&mut c, "over.bin").await.unwrap(), over);
        assert_eq!(read_named(&mut c, "gone.bin").await.unwrap(), gone);
        assert_eq!(read_named(&mut c, "new-at-b.bin").await.unwrap(), b_new);
        assert!(lookup(&mut c, "new-at-a.bin").await.is_none());
    });
    drop(da);
}

/// A peer that cannot be reached at start does not keep the vserver from
/// being served: the peer may be the site that is gone.
#[test]
fn an_unreachable_peer_at_start_leaves_the_vserver_served() {
    let (a, da, b, db) = paired_sites("127.85.2", declare_front_on_lo);
    create_vs_on_front(&a, "127.85.2.11");
    replicate_to_beta(&a, "vs", "127.85.2.12");
    wait_converged(&a, &b, "vs", &|| da.log_text());
    db.stop();
    da.stop();
    let da = a.start_daemon();
    assert_eq!(state_at(&a), "active", "{}", da.log_text());
    assert!(
        da.log_text().contains("could not learn the peer's epoch"),
        "{}",
        da.log_text()
    );
    runtime().block_on(async {
        let mut c = mount(&a, "127.85.2.11").await;
        write_file(&mut c, "still-served.bin", &pattern(4096, 9)).await;
    });
}
