//! `tandem demo`: starts, creates the demo vserver, replicates it to a
//! disaster-recovery site that serves the copy read-only, prints the client
//! commands, and stops cleanly on SIGTERM.

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn demo_serves_and_prints_client_commands() {
    // A prepared site so the demo uses free ports, not 2049/20048.
    let s = TestSite::init("demo-site", "127.0.0.1");
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&s.dir)
        .args(["demo", "--ip", "127.77.30.2", "--dr-ip", "127.77.30.3"])
        .env_remove("TANDEM_DATA")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let lines = wait_for_line(&mut child, "Press Ctrl-C");
    let text = lines.join("\n");
    let url = format!(
        "nfs://127.77.30.2/data?nfsport={}&mountport={}",
        s.nfs_port, s.mount_port
    );
    assert!(text.contains(&format!("nfs-ls \"{url}\"")), "{text}");
    assert!(text.contains("nfs-cp"), "{text}");
    let dr_url = format!(
        "nfs://127.77.30.3/data/README?nfsport={}&mountport={}",
        s.nfs_port, s.mount_port
    );
    assert!(text.contains(&format!("nfs-cat \"{dr_url}\"")), "{text}");

    let st = s.status_json();
    let vs = &st["vservers"][0];
    assert_eq!(vs["name"], "demo");
    assert_eq!(vs["filesystems"][0]["export"], "/data");
    assert_eq!(vs["filesystems"][0]["root_squash"], false);
    assert_eq!(vs["endpoints"][0]["ip"], "127.77.30.2");
    assert_eq!(vs["replication"]["to"], "dr", "{st}");

    // The DR site holds the replica, caught up (the demo waits for that
    // before printing), and serves it on its own address.
    let dr_dir = s.dir.with_file_name("site-dr");
    let out = run(&dr_dir, &["status", "--json"]);
    assert_success(&out, "DR status");
    let dr: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rvs = &dr["vservers"][0];
    assert_eq!(rvs["name"], "demo", "{dr}");
    assert_eq!(rvs["state"], "replica", "{dr}");
    assert_eq!(rvs["last_lsn"], vs["last_lsn"], "{dr}");
    assert_eq!(rvs["endpoints"][0]["ip"], "127.77.30.3", "{dr}");

    terminate(&child);
    let status = wait_with_deadline(&mut child, "demo");
    assert!(status.success(), "demo exit: {status}");

    // The README went into the store: fsck sees a file besides the root.
    let out = s.tandem(&["fsck", "demo"]);
    assert_success(&out, "fsck demo");
    assert!(stdout(&out).contains("and 2 inodes"), "{}", stdout(&out));
}
