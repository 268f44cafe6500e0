//! `tandem verify` through the real binary: two paired sites, a vserver
//! written through NFS (files, a hard link, a rename, a truncation, a user,
//! a second file system) matches at its replica; a byte changed on disk at
//! the replica is found and named.

use std::time::{Duration, Instant};

use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;

use crate::common::nfs::*;
use crate::common::replication::*;

/// The inode number in a Tandem file handle (bytes 12..20, big-endian).
fn ino_of(fh: &nfs_fh3) -> u64 {
    let b: &[u8] = fh.data.as_ref();
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[12..20]);
    u64::from_be_bytes(a)
}

#[test]
fn verify_matches_then_names_a_file_changed_at_the_replica() {
    const VS_ADDR: &str = "127.79.5.11";
    let (a, a_addr) = site("alpha", "127.79.5.1");
    let (b, b_addr) = site("beta", "127.79.5.2");
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, "vs", VS_ADDR, "data", "/data");

    // Errors before replication: distinct exit code 2, clear words.
    let out = a.tandem(&["verify", "vs"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not replicated"), "{}", stderr(&out));
    let out = a.tandem(&["verify", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    assert_success(&a.tandem(&["replicate", "vs", "--to", "beta"]), "replicate");
    let rt = runtime();
    let fh_changed = rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        let root = c.root_nfs_fh3();
        let mut handles = Vec::new();
        for i in 0..5 {
            let data = pattern(20_000 + i * 3000, i as u64);
            handles.push(write_file(&mut c, &format!("f{i}"), &data).await);
        }
        must(
            "LINK",
            c.link(&LINK3args {
                file: handles[0].clone(),
                link: dirop(&root, "f0-link"),
            }),
        )
        .await;
        must(
            "RENAME",
            c.rename(&RENAME3args {
                from: dirop(&root, "f1"),
                to: dirop(&root, "renamed"),
            }),
        )
        .await;
        must(
            "SETATTR size",
            c.setattr(&SETATTR3args {
                object: handles[2].clone(),
                new_attributes: sattr3 {
                    size: Nfs3Option::Some(100),
                    ..Default::default()
                },
                guard: Nfs3Option::None,
            }),
        )
        .await;
        handles[3].clone()
    });
    assert_success(
        &a.tandem(&[
            "user", "add", "vs", "alice", "--uid", "1000", "--gid", "1000",
        ]),
        "user add",
    );
    assert_success(
        &a.tandem(&["fs", "create", "vs", "second", "--export", "/second"]),
        "second fs",
    );
    let logs = |da: &Daemon, db: &Daemon| format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    wait_converged(&a, &b, "vs", &|| logs(&da, &db));

    let out = verify(&a, &["vs"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("vs: match at LSN "),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("5 files"), "{}", stdout(&out));
    let out = verify(&a, &["vs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(report["matches"], true, "{report}");
    assert_eq!(
        report["active_digest"], report["replica_digest"],
        "{report}"
    );

    // At the replica site: refused, with the place to run it.
    let out = b.tandem(&["verify", "vs"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run verify at the active site"),
        "{}",
        stderr(&out)
    );

    // Change one byte of f3 at the replica, on disk, with its daemon down
    // (a clean stop checkpoints, so nothing replays over the change).
    db.stop();
    // Meanwhile, with no replica to stream to: exit 2, saying why.
    let start = Instant::now();
    loop {
        let out = a.tandem(&["verify", "vs"]);
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        if stderr(&out).contains("not streaming") {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(50));
    }
    let ino = ino_of(&fh_changed);
    let path = b
        .dir
        .join("vservers/vs/data")
        .join(format!("{:02x}", ino & 0xff))
        .join(format!("{ino:016x}"));
    let mut bytes = std::fs::read(&path).expect("replica data file");
    bytes[1234] ^= 0x5a;
    std::fs::write(&path, bytes).expect("change a byte");
    let db = b.start_daemon();
    wait_converged(&a, &b, "vs", &|| logs(&da, &db));
    let out = verify(&a, &["vs"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("first difference: data:/f3"),
        "{}",
        stdout(&out)
    );
    drop(da);
}
