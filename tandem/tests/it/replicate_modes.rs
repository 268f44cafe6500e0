//! Replication modes through the real binary (docs/design.md,
//! "Replication modes"): in commit-sync, a COMMIT waits for the replica's
//! durable ack (blocking, or degrading to async after `sync_timeout_ms`),
//! and after a `kill -9` of the active site every committed byte is at the
//! replica; in sync, even an UNSTABLE write waits.
//!
//! The replica withholds its acks by being SIGSTOPped (its process is
//! frozen, its sockets stay open), which is what a hung peer looks like.

use std::time::{Duration, Instant};

use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;

use crate::common::nfs::*;
use crate::common::replication::*;

/// How long the tests let a reply that must wait go unanswered before
/// concluding it waits: far past a loopback round trip, well under the
/// client's patience.
const HELD_MS: u64 = 1_500;

/// Freezes or thaws a daemon (SIGSTOP/SIGCONT): a frozen replica keeps
/// its connections but acknowledges nothing.
fn signal(d: &Daemon, sig: i32) {
    let pid = i32::try_from(d.pid()).expect("pid fits");
    // SAFETY: plain kill(2) on our own child.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Thaws the daemon when dropped, so a failing assertion never leaves a
/// stopped process behind (and its Drop can then reap it).
struct Thaw<'a>(&'a Daemon);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        let pid = i32::try_from(self.0.pid()).unwrap_or(0);
        if pid > 0 {
            // SAFETY: plain kill(2) on our own child.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
            }
        }
    }
}

/// Two paired sites, a vserver with /data at the first, replicated in
/// `mode` with `extra` arguments to `tandem replicate`, converged.
fn setup(
    net: u8,
    mode: &str,
    extra: &[&str],
) -> (TestSite, Daemon, TestSite, Daemon, String, String) {
    let vs_addr = format!("127.81.{net}.11");
    let replica_addr = format!("127.81.{net}.12");
    let (a, a_addr) = site("alpha", &format!("127.81.{net}.1"));
    let (b, b_addr) = site("beta", &format!("127.81.{net}.2"));
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, "vs", &vs_addr, "data", "/data");
    let replica = format!("{replica_addr}/32");
    let mut args = vec![
        "replicate",
        "vs",
        "--to",
        "beta",
        "--mode",
        mode,
        "--replica-address",
        &replica,
    ];
    args.extend_from_slice(extra);
    let out = a.tandem(&args);
    assert_success(&out, "replicate");
    assert!(
        stdout(&out).contains(&format!("({mode} mode)")),
        "{}",
        stdout(&out)
    );
    wait_converged(&a, &b, "vs", &|| {
        format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text())
    });
    (a, da, b, db, vs_addr, replica_addr)
}

fn commit_args(fh: &nfs_fh3) -> COMMIT3args {
    COMMIT3args {
        file: fh.clone(),
        offset: 0,
        count: 0,
    }
}

fn replication(a: &TestSite) -> serde_json::Value {
    vserver_status(a, "vs").expect("vserver")["replication"].clone()
}

#[test]
fn commit_sync_block_holds_commit_until_replica_resumes() {
    let (a, da, b, db, vs_addr, replica_addr) =
        setup(21, "commit-sync", &["--on-replica-loss", "block"]);
    // The settings are kept for the next start.
    let toml = std::fs::read_to_string(a.dir.join("replication.toml")).expect("replication.toml");
    assert!(toml.contains("mode = \"commit-sync\""), "{toml}");
    assert!(toml.contains("on_replica_loss = \"block\""), "{toml}");
    let r = replication(&a);
    assert_eq!(r["mode"], "commit-sync", "{r}");
    assert_eq!(r["on_replica_loss"], "block", "{r}");
    assert_eq!(r["degraded"], false, "{r}");

    let rt = runtime();
    let data = pattern(256 << 10, 21);
    let fh = rt.block_on(async {
        let mut c = mount(&a, &vs_addr).await;
        let fh = create_file(&mut c, "held.bin").await;
        let thaw = Thaw(&db);
        signal(&db, libc::SIGSTOP);
        // UNSTABLE writes do not wait for the replica in commit-sync.
        write_at(&mut c, &fh, 0, &data, stable_how::UNSTABLE).await;
        let args = commit_args(&fh);
        let commit = c.commit(&args);
        tokio::pin!(commit);
        let early = tokio::time::timeout(Duration::from_millis(HELD_MS), &mut commit).await;
        assert!(
            early.is_err(),
            "COMMIT returned while the replica was stopped: {early:?}"
        );
        let r = replication(&a);
        assert!(
            r["lag_records"].as_u64().unwrap_or(0) > 0,
            "the replica should lack the held records: {r}"
        );
        // The held data is at least the bytes written, and its age is at
        // least how long the COMMIT has been held.
        assert!(
            r["lag_bytes"].as_u64().unwrap_or(0) >= data.len() as u64,
            "lag in bytes: {r}"
        );
        assert!(
            r["lag_ms"].as_u64().unwrap_or(0) >= HELD_MS,
            "lag in ms: {r}"
        );
        signal(&db, libc::SIGCONT);
        drop(thaw);
        let done = tokio::time::timeout(OP_DEADLINE, commit)
            .await
            .expect("COMMIT returns once the replica resumes")
            .expect("COMMIT transport");
        assert!(matches!(done, Nfs3Result::Ok(_)), "COMMIT: {done:?}");
        fh
    });
    // What the COMMIT covered is at the replica already: no waiting here.
    rt.block_on(async {
        let mut c = mount(&b, &replica_addr).await;
        assert_eq!(read_all(&mut c, &fh).await, data);
    });
    assert_eq!(replication(&a)["degraded"], false);
    drop(da);
}

#[test]
fn commit_sync_degrades_after_timeout_and_recovers() {
    const TIMEOUT_MS: u64 = 700;
    let (a, da, _b, db, vs_addr, _) = setup(
        22,
        "commit-sync",
        &["--sync-timeout-ms", &TIMEOUT_MS.to_string()],
    );
    let r = replication(&a);
    assert_eq!(r["on_replica_loss"], "degrade", "{r}");
    assert_eq!(r["sync_timeout_ms"], TIMEOUT_MS, "{r}");
    let rt = runtime();
    rt.block_on(async {
        let mut c = mount(&a, &vs_addr).await;
        let fh = create_file(&mut c, "late.bin").await;
        let thaw = Thaw(&db);
        signal(&db, libc::SIGSTOP);
        write_at(&mut c, &fh, 0, &pattern(64 << 10, 22), stable_how::UNSTABLE).await;
        let started = Instant::now();
        must("COMMIT", c.commit(&commit_args(&fh))).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(TIMEOUT_MS) && took < Duration::from_secs(10),
            "COMMIT took {took:?}, expected about {TIMEOUT_MS} ms"
        );
        let r = replication(&a);
        assert_eq!(r["degraded"], true, "{r}");
        assert!(r["degraded_replies"].as_u64().unwrap_or(0) >= 1, "{r}");
        let text = stdout(&a.tandem(&["status"]));
        assert!(text.contains("ALERT"), "{text}");
        // Degraded: the next stable reply does not wait out the timeout.
        let started = Instant::now();
        must("COMMIT", c.commit(&commit_args(&fh))).await;
        assert!(
            started.elapsed() < Duration::from_millis(TIMEOUT_MS),
            "a degraded COMMIT waited {:?}",
            started.elapsed()
        );
        signal(&db, libc::SIGCONT);
        drop(thaw);
    });
    // Back to commit-sync by itself once the replica caught up.
    let start = Instant::now();
    loop {
        let r = replication(&a);
        if r["degraded"] == false {
            assert!(r["degraded_replies"].as_u64().unwrap_or(0) >= 2, "{r}");
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "still degraded after the replica resumed: {r}\nA:\n{}",
            da.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn commit_sync_kill9_of_active_keeps_every_committed_byte() {
    let (a, da, b, _db, vs_addr, replica_addr) =
        setup(23, "commit-sync", &["--on-replica-loss", "block"]);
    let rt = runtime();
    let files: Vec<(nfs_fh3, Vec<u8>)> = rt.block_on(async {
        let mut c = mount(&a, &vs_addr).await;
        let mut files = Vec::new();
        for i in 0..6u64 {
            let data = pattern((96 << 10) + (i as usize) * 1000, 100 + i);
            let fh = create_file(&mut c, &format!("f{i}.bin")).await;
            write_at(&mut c, &fh, 0, &data, stable_how::UNSTABLE).await;
            must("COMMIT", c.commit(&commit_args(&fh))).await;
            files.push((fh, data));
        }
        // More, uncommitted, in flight as the active site dies.
        let fh = create_file(&mut c, "uncommitted.bin").await;
        write_at(
            &mut c,
            &fh,
            0,
            &pattern(128 << 10, 999),
            stable_how::UNSTABLE,
        )
        .await;
        files
    });
    // Right after the last COMMIT returned: no time for async catch-up.
    da.kill9();
    rt.block_on(async {
        let mut c = mount(&b, &replica_addr).await;
        for (i, (fh, data)) in files.iter().enumerate() {
            assert_eq!(&read_all(&mut c, fh).await, data, "f{i}.bin at the replica");
        }
    });
}

#[test]
fn sync_mode_holds_unstable_writes_too() {
    let (a, _da, b, db, vs_addr, replica_addr) = setup(24, "sync", &["--on-replica-loss", "block"]);
    assert_eq!(replication(&a)["mode"], "sync");
    let rt = runtime();
    let data = pattern(32 << 10, 24);
    let fh = rt.block_on(async {
        let mut c = mount(&a, &vs_addr).await;
        let fh = create_file(&mut c, "sync.bin").await;
        let thaw = Thaw(&db);
        signal(&db, libc::SIGSTOP);
        let args = WRITE3args {
            file: fh.clone(),
            offset: 0,
            count: data.len() as u32,
            stable: stable_how::UNSTABLE,
            data: Opaque::borrowed(&data),
        };
        let write = c.write(&args);
        tokio::pin!(write);
        let early = tokio::time::timeout(Duration::from_millis(HELD_MS), &mut write).await;
        assert!(
            early.is_err(),
            "UNSTABLE WRITE returned while the replica was stopped"
        );
        signal(&db, libc::SIGCONT);
        drop(thaw);
        let done = tokio::time::timeout(OP_DEADLINE, write)
            .await
            .expect("WRITE returns once the replica resumes")
            .expect("WRITE transport");
        assert!(matches!(done, Nfs3Result::Ok(_)), "WRITE: {done:?}");
        fh
    });
    rt.block_on(async {
        let mut c = mount(&b, &replica_addr).await;
        assert_eq!(read_all(&mut c, &fh).await, data);
    });
}

#[test]
fn mode_options_are_checked() {
    let (a, a_addr) = site("alpha", "127.81.25.1");
    let (b, b_addr) = site("beta", "127.81.25.2");
    let _da = a.start_daemon();
    let _db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, "vs", "127.81.25.11", "data", "/data");
    let out = a.tandem(&[
        "replicate",
        "vs",
        "--to",
        "beta",
        "--on-replica-loss",
        "block",
    ]);
    assert_fails_with(&out, "commit-sync and sync only");
    let out = a.tandem(&[
        "replicate",
        "vs",
        "--to",
        "beta",
        "--mode",
        "commit-sync",
        "--sync-timeout-ms",
        "0",
    ]);
    assert_fails_with(&out, "sync timeout");
    assert!(!a.dir.join("replication.toml").exists());
}
