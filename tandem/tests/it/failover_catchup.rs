//! A forced failover while the replica is in the middle of a catch-up
//! brings up the replica's last consistent copy. Alpha replicates to beta;
//! beta is stopped while alpha writes more than `journal_max_bytes`, so
//! alpha goes to overflow and beta, back, gets a catch-up paced to 1 Mbit/s.
//! Alpha hangs during it (SIGSTOP: its connection stays open, as a dead
//! host's does until timeouts, where `kill -9` would end the catch-up at
//! once): `--check` names the unfinished replica, `--force` ends the
//! catch-up and brings up the copy from before it, and a client reads the
//! files written before beta stopped with its handles. The sites keep
//! their own NFS ports: the frozen alpha still holds its listeners.

use std::time::Instant;

use crate::common::failover::*;
use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;

const PREFIX: &str = "127.89.1";
const JOURNAL_MAX_BYTES: i64 = 2 << 20;
/// Exit code of `tandem failover` when something is missing and the
/// failover did not go on (tandem/src/cli/failover.rs).
const EXIT_NOT_READY: i32 = 3;

fn set_journal_max(site: &TestSite) {
    site.edit_toml(|t| {
        let mut store = toml::Table::new();
        store.insert("journal_max_bytes".into(), JOURNAL_MAX_BYTES.into());
        t.insert("store".into(), store.into());
    });
}

/// Polls `f` on beta's status of vs until it is true, with a deadline.
fn wait_status(
    site: &TestSite,
    what: &str,
    logs: &dyn Fn() -> String,
    f: impl Fn(&serde_json::Value) -> bool,
) {
    let start = Instant::now();
    loop {
        if vserver_status(site, "vs").is_some_and(|v| f(&v)) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what} never happened: {:?}\n{}",
            vserver_status(site, "vs"),
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn completeness(lines: &serde_json::Value) -> serde_json::Value {
    lines
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["resource"] == "replica completeness")
        .cloned()
        .unwrap_or_else(|| panic!("no completeness line in {lines:#}"))
}

#[test]
fn forced_failover_during_a_catchup_brings_up_the_last_consistent_copy() {
    let vs_addr = format!("{PREFIX}.11");
    let (a, a_addr) = site("alpha", &format!("{PREFIX}.1"));
    let (b, b_addr) = site("beta", &format!("{PREFIX}.2"));
    for s in [&a, &b] {
        set_journal_max(s);
        declare_front_on_lo(s);
    }
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vs_on_front(&a, &vs_addr);
    replicate_to_beta(&a, "vs", &format!("{PREFIX}.12"));
    let rt = runtime();
    let files = rt.block_on(async {
        let mut c = mount(&a, &vs_addr).await;
        let mut files = Vec::new();
        for i in 0..4u64 {
            let data = pattern((128 << 10) + i as usize * 999, 40 + i);
            let fh = create_file(&mut c, &format!("f{i}.bin")).await;
            write_at(&mut c, &fh, 0, &data, stable_how::FILE_SYNC).await;
            files.push((fh, data));
        }
        files
    });
    wait_converged(&a, &b, "vs", &|| {
        format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text())
    });
    let before = vserver_status(&b, "vs").expect("replica")["last_lsn"]
        .as_u64()
        .expect("replica LSN");
    assert!(db.stop().success());

    // Away: 8 MiB, four times the journal limit; at 1 Mbit/s its catch-up
    // lasts about a minute.
    rt.block_on(async {
        let mut c = mount(&a, &vs_addr).await;
        let fh = create_file(&mut c, "big.bin").await;
        for i in 0..8u64 {
            let piece = pattern(1 << 20, 500 + i);
            write_at(&mut c, &fh, i << 20, &piece, stable_how::FILE_SYNC).await;
        }
    });
    let a_logs = || da.log_text();
    wait_status(&a, "overflow at alpha", &a_logs, |v| {
        v["replication"]["state"] == "overflow"
    });
    assert_success(
        &a.tandem(&["replicate", "vs", "--to", "beta", "--bandwidth-mbps", "1"]),
        "replicate --bandwidth-mbps 1",
    );
    let db = b.start_daemon();
    let logs = || format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    // A catch-up shows as a baseline being copied (the store is closed).
    wait_status(&b, "a catch-up at beta", &logs, |v| {
        v["replication"]["state"] == "baseline"
    });
    let pid = i32::try_from(da.pid()).expect("pid fits");
    // SAFETY: plain kill(2) on our own, not yet reaped, child.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }

    let out = b.tandem(&["failover", "vs", "--check", "--json"]);
    assert_eq!(out.status.code(), Some(EXIT_NOT_READY), "{}", stderr(&out));
    let check: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON check");
    let line = completeness(&check["lines"]);
    assert_eq!(line["outcome"], "missing", "{line}");
    assert_eq!(state_at(&b), "replica");

    let out = b.tandem(&["failover", "vs", "--force", "--json"]);
    assert_success(&out, "failover --force");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON report");
    assert_eq!(report["done"], true, "{report:#}");
    let left = completeness(&report["left_out"]);
    let reason = left["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("copy at LSN {before}")) && reason.contains("lost"),
        "{left}"
    );
    // The promotion's own record follows the copy's last.
    assert_eq!(report["lsn"], before + 1, "{report:#}");
    assert_eq!(state_at(&b), "active");
    assert!(!b.dir.join("vservers/vs/catchup").exists());

    assert!(da.kill9().code().is_none());
    rt.block_on(async {
        let mut c = reconnect(&vs_addr, b.nfs_port).await;
        assert_files(&mut c, &files, "after a forced failover during a catch-up").await;
    });
    drop(db);
}
