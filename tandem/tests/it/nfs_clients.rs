//! A real NFS client (libnfs's command-line tools) against a vserver set up
//! entirely through the CLI, across a daemon restart.

use std::process::Command;

use crate::common::*;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn tool(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run libnfs tool")
}

#[test]
fn libnfs_tools_read_and_write_through_a_cli_made_vserver() {
    if !(have("nfs-cp") && have("nfs-cat") && have("nfs-ls")) {
        eprintln!("SKIP: libnfs-utils not installed (.ci/run installs it)");
        return;
    }
    let s = TestSite::init("alpha", "127.77.40.1");
    let d = s.start_daemon();
    assert_success(
        &s.tandem(&["vserver", "create", "vs", "--address", "127.77.40.11/32"]),
        "vserver create",
    );
    assert_success(
        &s.tandem(&[
            "fs",
            "create",
            "vs",
            "data",
            "--export",
            "/data",
            "--no-root-squash",
            "--clients",
            "127.0.0.0/8",
        ]),
        "fs create",
    );
    let q = format!("?nfsport={}&mountport={}", s.nfs_port, s.mount_port);
    let url = |p: &str| format!("nfs://127.77.40.11/data{p}{q}");

    let local = s.dir.with_file_name("hello.txt");
    std::fs::write(&local, b"hello through tandem\n").expect("write local");
    let out = tool(&[
        "nfs-cp",
        local.to_str().expect("utf-8 path"),
        &url("/hello.txt"),
    ]);
    assert_success(&out, "nfs-cp in");
    let out = tool(&["nfs-ls", &url("")]);
    assert_success(&out, "nfs-ls");
    assert!(stdout(&out).contains("hello.txt"), "{}", stdout(&out));

    // Config and data survive a restart.
    assert!(d.stop().success());
    let _d = s.start_daemon();
    let out = tool(&["nfs-cat", &url("/hello.txt")]);
    assert_success(&out, "nfs-cat after restart");
    assert_eq!(stdout(&out), "hello through tandem\n");
}
