//! As a user would: the C client tools of libnfs-utils (`nfs-cp`, `nfs-ls`,
//! `nfs-cat`) against a vserver made through the CLI. A 256 MiB random file
//! goes in and comes back with the same SHA-256 and `nfs-ls` lists it, once
//! with explicit ports in the URL and once through the portmapper on port
//! 111. Both need root: libnfs sends the caller's uid (the export's root
//! directory belongs to root) and port 111 is privileged.

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

const TOOLS: &[&str] = &["nfs-cp", "nfs-ls", "nfs-cat"];
/// A generous bound for one tool run over 256 MiB on a shared CI machine
/// against a debug build.
const TOOL_DEADLINE: Duration = Duration::from_secs(150);

fn tool(args: &[&str]) -> Output {
    let out = run_with_deadline(Command::new(args[0]).args(&args[1..]), TOOL_DEADLINE);
    assert_success(&out, &args.join(" "));
    out
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Writes `len` random bytes (seeded, so a failure can be reproduced) to
/// `path` and returns their SHA-256.
fn write_random(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut f = BufWriter::new(std::fs::File::create(path).expect("create local file"));
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        hash.update(&buf[..n]);
        f.write_all(&buf[..n]).expect("write local file");
        left -= n;
    }
    f.flush().expect("flush");
    hash.finalize().to_vec()
}

fn sha256_file(path: &Path) -> (u64, Vec<u8>) {
    let mut f = std::fs::File::open(path).expect("open copy");
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).expect("read copy");
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        len += n as u64;
    }
    (len, hash.finalize().to_vec())
}

/// Copies `len` random bytes in with `nfs-cp`, lists them with `nfs-ls`,
/// copies them back out and compares checksums. `url(p)` is the URL of the
/// export path `p` ("" for the export's root).
fn round_trip(site: &TestSite, name: &str, len: usize, seed: u64, url: &dyn Fn(&str) -> String) {
    let src = site.dir.with_file_name(format!("{name}.src"));
    let back = site.dir.with_file_name(format!("{name}.back"));
    let t = Instant::now();
    let want = write_random(&src, len, seed);
    eprintln!("generated {len} bytes in {:?}", t.elapsed());

    let remote = url(&format!("/{name}"));
    let t = Instant::now();
    tool(&["nfs-cp", path_str(&src), &remote]);
    eprintln!("nfs-cp in: {:?}", t.elapsed());

    let ls = stdout(&tool(&["nfs-ls", &url("")]));
    let line = ls
        .lines()
        .find(|l| l.split_whitespace().last() == Some(name))
        .unwrap_or_else(|| panic!("nfs-ls does not list {name}:\n{ls}"));
    assert!(
        line.split_whitespace().any(|w| w == len.to_string()),
        "nfs-ls shows the wrong size for {name} (want {len}): {line}"
    );

    let t = Instant::now();
    tool(&["nfs-cp", &remote, path_str(&back)]);
    eprintln!("nfs-cp out: {:?}", t.elapsed());
    let (got_len, got) = sha256_file(&back);
    assert_eq!(got_len, len as u64, "length of the copy read back");
    assert!(got == want, "SHA-256 of the copy read back differs");
    std::fs::remove_file(&src).expect("remove source");
    std::fs::remove_file(&back).expect("remove copy");
}

#[test]
fn libnfs_copies_256_mib_in_and_out_with_explicit_ports() {
    if !require(have_tools(TOOLS), "libnfs-utils (nfs-cp, nfs-ls, nfs-cat)")
        || !require(
            is_root(),
            "root (libnfs sends the caller's uid; the export root belongs to root)",
        )
    {
        return;
    }
    let s = TestSite::init("alpha", "127.77.60.1");
    let d = s.start_daemon();
    create_vserver_and_fs(&s, "vs", "127.77.60.11", "data", "/data");
    let q = format!("?nfsport={}&mountport={}", s.nfs_port, s.mount_port);
    let url = |p: &str| format!("nfs://127.77.60.11/data{p}{q}");

    round_trip(&s, "big.bin", 256 << 20, 0x7a6e_6465_6d01, &url);

    // A small file through nfs-cat too: the third tool.
    let small = s.dir.with_file_name("note.txt");
    std::fs::write(&small, b"tandem by libnfs\n").expect("write note");
    tool(&["nfs-cp", path_str(&small), &url("/note.txt")]);
    assert_eq!(
        stdout(&tool(&["nfs-cat", &url("/note.txt")])),
        "tandem by libnfs\n"
    );
    assert!(d.stop().success(), "clean daemon stop");
    assert_fsck_clean(&s, "vs");
}

#[test]
fn libnfs_finds_the_ports_through_the_portmapper() {
    if !require(have_tools(TOOLS), "libnfs-utils (nfs-cp, nfs-ls, nfs-cat)")
        || !require(is_root(), "root (the portmapper listens on port 111)")
    {
        return;
    }
    // Its own address: port 111 there is free even if something holds it
    // on another loopback address.
    let s = TestSite::init("alpha", "127.77.61.1");
    s.edit_toml(|t| {
        let nfs = t["nfs"].as_table_mut().expect("nfs table");
        nfs.insert("portmap".into(), true.into());
        nfs.insert("portmap_port".into(), 111.into());
    });
    let d = s.start_daemon();
    create_vserver_and_fs(&s, "vs", "127.77.61.11", "data", "/data");
    let ep = &s.status_json()["vservers"][0]["endpoints"][0];
    assert_eq!(ep["ip"], "127.77.61.11", "endpoint: {ep}");
    assert_eq!(ep["portmap_port"], 111, "the portmapper is up: {ep}");
    // No ports in the URL: libnfs asks the portmapper for them.
    let url = |p: &str| format!("nfs://127.77.61.11/data{p}");

    round_trip(&s, "pm.bin", 256 << 20, 0x7a6e_6465_6d02, &url);
    assert!(d.stop().success(), "clean daemon stop");
    assert_fsck_clean(&s, "vs");
}
