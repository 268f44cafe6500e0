//! `tandem demo`: the whole story (two `tandem daemon` processes, a client
//! writing and committing, SIGKILL of the active site, failover, the client
//! carrying on with its handles) runs to the end, says what happened at
//! each step with its time, and leaves two consistent sites behind; with
//! `--stay` the vserver stays served at the DR site until SIGTERM.

use std::process::{Command, Stdio};

use crate::common::*;

fn demo(data: &std::path::Path, net: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data")
        .arg(data)
        .arg("demo")
        .args([
            "--ip",
            &format!("{net}.2"),
            "--active-ip",
            &format!("{net}.1"),
        ])
        .args(["--dr-ip", &format!("{net}.3")])
        .args(extra)
        .env_remove("TANDEM_DATA");
    cmd
}

#[test]
fn demo_tells_the_whole_failover_story() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let out = run_with_deadline(&mut demo(&data, "127.77.30", &[]), DEADLINE);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    for needle in [
        "Vserver `demo` at 127.77.30.2",
        "file-2.bin: 2097152 bytes written, COMMIT returned",
        "SIGKILL to the active site's daemon",
        "demo is active at site dr: epoch 2",
        "serving 127.77.30.2/32@front read-write",
        "first GETATTR (old handle, new connection) answered",
        "file-0.bin: all 2097152 committed bytes read back, identical",
        "file-2.bin: all 2097152 committed bytes read back, identical",
        "COMMIT answers a new write verifier",
        "unstable.bin: resent, committed and read back",
        "more bytes appended and committed at the new active site",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    let summary: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("What it took"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(summary.len(), 6, "{text}");
    assert!(summary.iter().all(|l| l.ends_with(" ms")), "{text}");
    assert!(summary[3].contains("failover, command to first NFS reply"));

    // Both sites are kept under --data; the DR site holds everything the
    // old one had and what the client wrote after (root and four files).
    for site in ["dr", "active"] {
        let out = run(&data.join(site), &["fsck", "demo"]);
        assert_success(&out, "fsck");
        assert!(stdout(&out).contains("and 5 inodes"), "{}", stdout(&out));
    }
}

#[test]
fn demo_stays_served_at_the_dr_site_until_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let mut child = demo(&data, "127.77.31", &["--stay"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let lines = wait_for_line(&mut child, "Press Ctrl-C");
    let text = lines.join("\n");
    assert!(
        text.contains("served by site `dr` at 127.77.31.2"),
        "{text}"
    );
    let out = run(&data.join("dr"), &["status", "--json"]);
    assert_success(&out, "DR status");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["vservers"][0]["state"], "active", "{st}");
    assert_eq!(
        st["vservers"][0]["endpoints"][0]["ip"], "127.77.31.2",
        "{st}"
    );
    terminate(&child);
    let status = wait_with_deadline(&mut child, "demo");
    assert!(status.success(), "demo exit: {status}");
}

#[test]
fn demo_refuses_addresses_off_this_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--ip", "192.0.2.1"])
        .arg("--data")
        .arg(tmp.path().join("demo"))
        .env_remove("TANDEM_DATA");
    let out = run_with_deadline(&mut cmd, DEADLINE);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a loopback address"),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.path().join("demo").exists(), "nothing was created");
}
