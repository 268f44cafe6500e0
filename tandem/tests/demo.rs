//! `tandem demo`: starts, creates the demo vserver, prints the client
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
        .args(["demo", "--ip", "127.77.30.2"])
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

    let st = s.status_json();
    let vs = &st["vservers"][0];
    assert_eq!(vs["name"], "demo");
    assert_eq!(vs["filesystems"][0]["export"], "/data");
    assert_eq!(vs["filesystems"][0]["root_squash"], false);
    assert_eq!(vs["endpoints"][0]["ip"], "127.77.30.2");

    terminate(&child);
    let status = wait_with_deadline(&mut child, "demo");
    assert!(status.success(), "demo exit: {status}");

    // The README went into the store: fsck sees a file besides the root.
    let out = s.tandem(&["fsck", "demo"]);
    assert_success(&out, "fsck demo");
    assert!(stdout(&out).contains("and 2 inodes"), "{}", stdout(&out));
}
