//! Two paired sites set up for a failover on loopback (every 127.0.0.0/8
//! address is local, so the DR site can bind the vserver's own address once
//! the active site is gone). What a client does across one (reconnect with
//! the handles it has, read files back) is in nfs.rs.

use nfs3_client::nfs3_types::nfs3::*;

use super::replication::{
    create_vs_on_front, declare_front_on_lo, pair_both, replicate, share_nfs_ports, site,
    vserver_status, wait_converged,
};
use super::{assert_success, stdout, Daemon, TestSite};

pub struct Sites {
    pub a: TestSite,
    pub da: Daemon,
    pub b: TestSite,
    pub db: Daemon,
    pub vs_addr: String,
}

/// Alpha holds `vs` at PREFIX.11/32@front with /data, replicated in
/// commit-sync to beta (read-only at PREFIX.12). Beta uses alpha's NFS and
/// MOUNT ports, so after a failover a client finds the vserver at the very
/// same address and port (`same_ports`; without it both sites can serve
/// the address at once). `front_at_b`: whether beta declares the interface.
/// `prefix` is a "127.A.B" the calling test file owns.
pub fn failover_sites(prefix: &str, front_at_b: bool, same_ports: bool) -> Sites {
    let vs_addr = format!("{prefix}.11");
    let (a, a_addr) = site("alpha", &format!("{prefix}.1"));
    let (mut b, b_addr) = site("beta", &format!("{prefix}.2"));
    if same_ports {
        share_nfs_ports(&a, &mut b);
    }
    declare_front_on_lo(&a);
    if front_at_b {
        declare_front_on_lo(&b);
    }
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vs_on_front(&a, &vs_addr);
    let replica = format!("{prefix}.12/32");
    replicate(&a, &replica, &[]);
    wait_converged(&a, &b, "vs", &|| {
        format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text())
    });
    Sites {
        a,
        da,
        b,
        db,
        vs_addr,
    }
}

pub fn state_at(site: &TestSite) -> serde_json::Value {
    vserver_status(site, "vs").expect("vserver at the site")["state"].clone()
}

pub fn commit_args(fh: &nfs_fh3) -> COMMIT3args {
    COMMIT3args {
        file: fh.clone(),
        offset: 0,
        count: 0,
    }
}

/// Runs `tandem failover vs ARGS` at `site`; returns its stdout.
pub fn failover(site: &TestSite, args: &[&str]) -> String {
    let mut all = vec!["failover", "vs"];
    all.extend_from_slice(args);
    let out = site.tandem(&all);
    assert_success(&out, "failover");
    let text = stdout(&out);
    // The measured step times, for whoever reads the test's output.
    eprintln!("{text}");
    text
}

/// Reads back each file `f<i>.bin` of `files` (its handle and the bytes
/// committed to it) on `c`, `when` naming the moment in the message.
pub async fn assert_files(
    c: &mut nfs3_client::Nfs3Client<super::nfs::Tcp>,
    files: &[(nfs_fh3, Vec<u8>)],
    when: &str,
) {
    for (i, (fh, data)) in files.iter().enumerate() {
        assert_eq!(
            &super::nfs::read_whole(c, fh).await,
            data,
            "f{i}.bin {when}"
        );
    }
}
