//! The C client (libnfs command-line tools) against the server: a second
//! independent implementation of the protocol. Skipped where the tools are
//! not installed.

use crate::common::*;
use tokio::process::Command;

fn url(srv: &Server, path: &str) -> String {
    format!(
        "nfs://127.0.0.1/data{path}?version=3&nfsport={}&mountport={}",
        srv.ep.nfs_port, srv.ep.mount_port
    )
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

async fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().await.expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libnfs_copy_list_and_read_back() {
    if !(have("nfs-cp") && have("nfs-ls") && have("nfs-cat")) {
        eprintln!("libnfs-utils not installed; skipping");
        return;
    }
    let srv = start().await;
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src.bin");
    // Larger than one WRITE so the client has to split it.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();

    run(Command::new("nfs-cp")
        .arg(&src)
        .arg(url(&srv, "/copied.bin")))
    .await;
    let ls = run(Command::new("nfs-ls").arg(url(&srv, "/"))).await;
    assert!(String::from_utf8_lossy(&ls.stdout).contains("copied.bin"));

    let back = local.path().join("back.bin");
    run(Command::new("nfs-cp")
        .arg(url(&srv, "/copied.bin"))
        .arg(&back))
    .await;
    assert!(
        std::fs::read(&back).unwrap() == data,
        "content survives the round trip"
    );
    let cat = run(Command::new("nfs-cat").arg(url(&srv, "/copied.bin"))).await;
    assert_eq!(cat.stdout.len(), data.len());
    srv.stop().await;
}
