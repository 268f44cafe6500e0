//! `tandem failover VS` through the real binary, on loopback (every
//! 127.0.0.0/8 address is local, so the DR site can bind the vserver's own
//! address once the active site is gone). Two paired sites declare the
//! interface `front` on `lo`; the vserver is replicated in commit-sync.
//!
//! * The active site is killed (`kill -9`); failover at the DR site; the
//!   same client, keeping its file handles (a new TCP connection to the
//!   same address and port, no MOUNT, no LOOKUP), reads back every byte
//!   whose COMMIT returned, sees a new write verifier and writes on. The
//!   old active site, restarted, learns the higher epoch and is fenced.
//! * With the old active site still up, its session ends at the failover
//!   and it is fenced.
//! * A missing interface stops the failover (exit 3, nothing changed);
//!   `--force` goes on and reports what it left out.
//! * A failover interrupted after reserving (its mark left, the daemon
//!   restarted) completes when rerun.

use std::time::{Duration, Instant};

use crate::common::failover::*;
use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;

/// Exit code of `tandem failover` when something is missing and the
/// failover did not go on (tandem/src/cli/failover.rs).
const EXIT_NOT_READY: i32 = 3;

/// The two sites on 127.80.NET (common/failover.rs).
fn setup(net: u8, front_at_b: bool, same_ports: bool) -> Sites {
    failover_sites(&format!("127.80.{net}"), front_at_b, same_ports)
}

fn assert_steps_timed(text: &str, steps: &[&str]) {
    for step in steps.iter().chain(&["total"]) {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(step) && l.trim_end().ends_with("ms")),
            "no time for step {step} in:\n{text}"
        );
    }
}

/// Polls until `site`'s store of vs is fenced at epoch 2.
fn wait_fenced(site: &TestSite, d: &Daemon) {
    let fenced = site.dir.join("vservers").join("vs").join("FENCED");
    let start = Instant::now();
    while !fenced.exists() {
        assert!(
            start.elapsed() < DEADLINE,
            "{} not fenced; its log:\n{}",
            site.dir.display(),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&fenced).unwrap(), "2\n");
}

#[test]
fn failover_after_kill9_keeps_committed_bytes_and_the_clients_handles() {
    let s = setup(41, true, true);
    let rt = runtime();
    let (files, old_verf) = rt.block_on(async {
        let mut c = mount(&s.a, &s.vs_addr).await;
        let mut files = Vec::new();
        let mut verf = None;
        for i in 0..5u64 {
            let data = pattern((64 << 10) + (i as usize) * 777, 300 + i);
            let fh = create_file(&mut c, &format!("f{i}.bin")).await;
            write_at(&mut c, &fh, 0, &data, stable_how::UNSTABLE).await;
            let done = must("COMMIT", c.commit(&commit_args(&fh))).await;
            verf = Some(done.verf);
            files.push((fh, data));
        }
        (files, verf.expect("a COMMIT returned"))
    });
    s.da.kill9();
    assert_eq!(state_at(&s.b), "replica");
    let text = failover(&s.b, &["--yes"]);
    assert!(
        text.contains("vs is active at site beta: epoch 2"),
        "{text}"
    );
    assert!(
        text.contains(&format!("serving {}/32@front read-write", s.vs_addr)),
        "{text}"
    );
    assert_steps_timed(&text, &["check", "reserve", "promote", "serve"]);
    assert_eq!(state_at(&s.b), "active");
    assert!(!s.b.dir.join("failover").join("vs.toml").exists());

    rt.block_on(async {
        let mut c = reconnect(&s.vs_addr, s.a.nfs_port).await;
        assert_files(&mut c, &files, "after failover").await;
        let (fh, data) = &files[0];
        let more = pattern(10_000, 77);
        let w = write_once(&mut c, fh, data.len() as u64, &more, stable_how::UNSTABLE).await;
        assert_ne!(
            w.verf, old_verf,
            "a promoted store has a new write verifier"
        );
        let commit = must("COMMIT", c.commit(&commit_args(fh))).await;
        assert_eq!(commit.verf, w.verf);
        let mut expect = data.clone();
        expect.extend_from_slice(&more);
        assert_eq!(read_whole(&mut c, fh).await, expect);
    });

    // The old active site comes back: its sender learns epoch 2 from beta
    // and fences its own store (durably), so it never takes a write again.
    let da = s.a.start_daemon();
    wait_fenced(&s.a, &da);
    assert_eq!(state_at(&s.b), "active");
    drop(da);
    drop(s.db);
}

#[test]
fn missing_interface_stops_the_failover_and_force_goes_on() {
    let s = setup(42, false, true);
    s.da.kill9();
    let out = s.b.tandem(&["failover", "vs"]);
    assert_eq!(out.status.code(), Some(EXIT_NOT_READY), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("no [[interfaces]] entry named front"),
        "{text}"
    );
    assert!(text.contains("nothing changed"), "{text}");
    assert_eq!(
        state_at(&s.b),
        "replica",
        "a stopped failover changes nothing"
    );
    assert!(!s.b.dir.join("failover").exists());

    let out = s.b.tandem(&["failover", "vs", "--json"]);
    assert_eq!(out.status.code(), Some(EXIT_NOT_READY));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["done"], false);
    assert_eq!(state_at(&s.b), "replica");

    let text = failover(&s.b, &["--force"]);
    assert!(text.contains("left out: address"), "{text}");
    assert_steps_timed(&text, &["check", "reserve", "promote", "serve"]);
    assert_eq!(state_at(&s.b), "active");
    drop(s.db);
}

#[test]
fn failover_interrupted_after_reserve_completes_when_rerun() {
    let s = setup(43, true, true);
    s.da.kill9();
    let lsn = vserver_status(&s.b, "vs").unwrap()["last_lsn"]
        .as_u64()
        .unwrap();
    s.db.stop();
    // What a crash right after the reserve step leaves.
    let marks = s.b.dir.join("failover");
    std::fs::create_dir_all(&marks).unwrap();
    std::fs::write(
        marks.join("vs.toml"),
        "vserver = \"vs\"\nepoch = 2\nstep = \"reserved\"\nforced = false\n",
    )
    .unwrap();
    let db = s.b.start_daemon();
    assert_eq!(state_at(&s.b), "replica");
    let text = failover(&s.b, &[]);
    assert!(
        text.contains("Resumed an interrupted failover from step reserved"),
        "{text}"
    );
    assert!(text.contains("epoch 2"), "{text}");
    assert_steps_timed(&text, &["promote", "serve"]);
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("check")),
        "{text}"
    );
    assert_eq!(state_at(&s.b), "active");
    let after = vserver_status(&s.b, "vs").unwrap()["last_lsn"]
        .as_u64()
        .unwrap();
    assert_eq!(
        after,
        lsn + 1,
        "one epoch record on top of what was received"
    );
    assert!(!marks.join("vs.toml").exists());
    // Nothing left to resume: a second run is refused (active here).
    let out = s.b.tandem(&["failover", "vs"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("vs is active here"),
        "{}",
        stderr(&out)
    );
    drop(db);
}

/// The old active site still up (a partition healed, or an operator's
/// mistake): the failover ends its replication session at once, and its
/// sender, reconnecting, learns epoch 2 and fences its store; the site
/// then stops serving the vserver (two hosts must not answer for one
/// address): nothing listens at its address any more.
#[test]
fn failover_while_the_old_active_is_up_fences_it() {
    let s = setup(44, true, false);
    let text = failover(&s.b, &["--yes"]);
    assert!(
        text.contains("vs is active at site beta: epoch 2"),
        "{text}"
    );
    assert_eq!(state_at(&s.b), "active");
    wait_fenced(&s.a, &s.da);
    let start = Instant::now();
    while std::net::TcpStream::connect((s.vs_addr.as_str(), s.a.nfs_port)).is_ok() {
        assert!(
            start.elapsed() < DEADLINE,
            "the fenced site still serves NFS at {}:{}; its log:\n{}",
            s.vs_addr,
            s.a.nfs_port,
            s.da.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(state_at(&s.a), "diverged");
    assert!(
        s.da.log_text().contains("no longer serving its addresses"),
        "{}",
        s.da.log_text()
    );
    assert!(
        s.db.log_text()
            .contains("the vserver was failed over to this site"),
        "the incoming session did not end at the failover:\n{}",
        s.db.log_text()
    );
}
