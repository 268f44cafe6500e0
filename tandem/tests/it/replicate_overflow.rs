//! Journal overflow through the real binary: the replica site is stopped
//! while the active site writes several times `journal_max_bytes`; the
//! active site's journal stays bounded, status says "overflow", and when the
//! replica returns it gets a catch-up of about the changed bytes (not the
//! whole store), then streams; the replica serves the same files, sizes and
//! handles as the active site.

use std::time::Instant;

use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;

const JOURNAL_MAX_BYTES: u64 = 4 << 20;
const MIB: u64 = 1 << 20;

/// Bytes of the journal segments of `vs` at `site`.
fn journal_bytes(site: &TestSite, vs: &str) -> u64 {
    let dir = site.dir.join(format!("vservers/{vs}/journal"));
    std::fs::read_dir(&dir)
        .expect("journal dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn set_journal_max(site: &TestSite) {
    site.edit_toml(|t| {
        let mut store = toml::Table::new();
        store.insert(
            "journal_max_bytes".into(),
            (JOURNAL_MAX_BYTES as i64).into(),
        );
        t.insert("store".into(), store.into());
    });
}

fn wait_for(
    what: &str,
    logs: &dyn Fn() -> String,
    mut f: impl FnMut() -> Option<serde_json::Value>,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what} never happened\nlogs:\n{}",
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_long_outage_ends_in_a_catchup_of_the_changed_bytes() {
    const VS_ADDR: &str = "127.79.47.11";
    const REPLICA_ADDR: &str = "127.79.47.12";
    let (a, da, b, db) = paired_sites("127.79.47", set_journal_max);
    create_vserver_and_fs(&a, "vs", VS_ADDR, "data", "/data");
    replicate_to_beta(&a, "vs", REPLICA_ADDR);
    let rt = runtime();
    let names = ["f0", "f1", "f2", "f3", "f4"];
    let initial = 3 * MIB as usize;
    rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        for (i, n) in names.iter().enumerate() {
            let fh = create_file(&mut c, n).await;
            write_at(
                &mut c,
                &fh,
                0,
                &pattern(initial, i as u64),
                stable_how::FILE_SYNC,
            )
            .await;
        }
    });
    let logs = |da: &Daemon, db: Option<&Daemon>| {
        format!(
            "A:\n{}\nB:\n{}",
            da.log_text(),
            db.map(|d| d.log_text()).unwrap_or_default()
        )
    };
    wait_converged(&a, &b, "vs", &|| logs(&da, Some(&db)));
    db.stop();

    // Away: the same MiB of f0 rewritten 12 times (12 MiB of journal, 1 MiB
    // changed), half a MiB of f1, a new file, a truncation, a removal, a
    // rename.
    let mut written = 0u64;
    rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        let f0 = lookup(&mut c, "f0").await.expect("f0");
        for round in 0..12u64 {
            write_at(
                &mut c,
                &f0,
                MIB,
                &pattern(MIB as usize, 100 + round),
                stable_how::FILE_SYNC,
            )
            .await;
        }
        written += MIB;
        let f1 = lookup(&mut c, "f1").await.expect("f1");
        write_at(
            &mut c,
            &f1,
            2 * MIB + 4096,
            &pattern(MIB as usize / 2, 7),
            stable_how::FILE_SYNC,
        )
        .await;
        written += MIB / 2;
        let new = create_file(&mut c, "new").await;
        write_at(
            &mut c,
            &new,
            0,
            &pattern(MIB as usize, 8),
            stable_how::FILE_SYNC,
        )
        .await;
        written += MIB;
        let f2 = lookup(&mut c, "f2").await.expect("f2");
        must(
            "SETATTR",
            c.setattr(&SETATTR3args {
                object: f2,
                new_attributes: sattr3 {
                    size: Nfs3Option::Some(100_000),
                    ..Default::default()
                },
                guard: Nfs3Option::None,
            }),
        )
        .await;
        let root = c.root_nfs_fh3();
        must(
            "REMOVE",
            c.remove(&REMOVE3args {
                object: dirop(&root, "f3"),
            }),
        )
        .await;
        must(
            "RENAME",
            c.rename(&RENAME3args {
                from: dirop(&root, "f4"),
                to: dirop(&root, "f4-renamed"),
            }),
        )
        .await;
    });
    let va = wait_for("overflow state", &|| logs(&da, None), || {
        let v = vserver_status(&a, "vs")?;
        (v["replication"]["state"] == "overflow").then_some(v)
    });
    assert!(va["replication"]["overflow_since_lsn"].is_u64(), "{va}");
    let journal = journal_bytes(&a, "vs");
    // The limit, plus what accrues between two checkpoints (half the
    // limit) and the segment being written (a quarter).
    assert!(
        journal <= JOURNAL_MAX_BYTES * 2,
        "journal of {journal} bytes for a limit of {JOURNAL_MAX_BYTES}"
    );
    assert!(a.dir.join("vservers/vs/OVERFLOW").exists());
    // The active site restarts meanwhile: the tracked changes survive it.
    da.stop();
    let da = a.start_daemon();
    let again = wait_for("overflow after a restart", &|| logs(&da, None), || {
        let v = vserver_status(&a, "vs")?;
        (v["replication"]["state"] == "overflow").then_some(v)
    });
    assert_eq!(
        again["replication"]["overflow_since_lsn"], va["replication"]["overflow_since_lsn"],
        "{again}"
    );

    let db = b.start_daemon();
    wait_converged(&a, &b, "vs", &|| logs(&da, Some(&db)));
    let va = vserver_status(&a, "vs").expect("active");
    let sent = va["replication"]["catchup_sent_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no catch-up in status: {va}"));
    let store_bytes = 5 * initial as u64;
    assert!(
        sent <= written * 5 / 4 + MIB && sent < store_bytes / 2,
        "catch-up sent {sent} bytes for {written} written (store {store_bytes})"
    );
    assert!(va["replication"]["overflow_since_lsn"].is_null(), "{va}");
    assert!(!a.dir.join("vservers/vs/OVERFLOW").exists());

    // Everything the same through the replica's read-only address.
    rt.block_on(async {
        let mut ca = mount(&a, VS_ADDR).await;
        let mut cb = mount(&b, REPLICA_ADDR).await;
        for n in ["f0", "f1", "f2", "f3", "f4", "f4-renamed", "new"] {
            let (ha, hb) = (lookup(&mut ca, n).await, lookup(&mut cb, n).await);
            assert_eq!(ha, hb, "{n}: handle or presence differs");
            let Some(fh) = ha else { continue };
            let (da, db) = (read_all(&mut ca, &fh).await, read_all(&mut cb, &fh).await);
            assert_eq!(da.len(), db.len(), "{n}: size differs");
            assert!(da == db, "{n}: contents differ");
        }
        assert!(lookup(&mut cb, "f3").await.is_none());
        assert!(lookup(&mut cb, "f4-renamed").await.is_some());
    });
    // And it streams on: a write after the catch-up arrives.
    rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        let f1 = lookup(&mut c, "f1").await.expect("f1");
        write_at(&mut c, &f1, 0, b"after the catch-up", stable_how::FILE_SYNC).await;
    });
    wait_converged(&a, &b, "vs", &|| logs(&da, Some(&db)));
    drop(db);
    drop(da);
}

#[test]
fn an_active_restart_during_an_outage_keeps_what_the_replica_lacks() {
    // The retention floor lives in memory: before the fix, the first
    // checkpoint after the active site restarted deleted the journal an
    // absent replica lacked (below the overflow limit, so no change map
    // either), and its return ended in "needs-baseline".
    const VS_ADDR: &str = "127.79.48.11";
    let (a, da, b, db) = paired_sites("127.79.48", set_journal_max);
    create_vserver_and_fs(&a, "vs", VS_ADDR, "data", "/data");
    assert_success(&a.tandem(&["replicate", "vs", "--to", "beta"]), "replicate");
    let logs = |da: &Daemon, db: Option<&Daemon>| {
        format!(
            "A:\n{}\nB:\n{}",
            da.log_text(),
            db.map(|d| d.log_text()).unwrap_or_default()
        )
    };
    let rt = runtime();
    let write = |name: &'static str, bytes: usize, seed: u64| {
        rt.block_on(async {
            let mut c = mount(&a, VS_ADDR).await;
            let fh = create_file(&mut c, name).await;
            write_at(&mut c, &fh, 0, &pattern(bytes, seed), stable_how::FILE_SYNC).await;
        })
    };
    write("first", MIB as usize / 2, 1);
    wait_converged(&a, &b, "vs", &|| logs(&da, Some(&db)));
    db.stop();
    // Below the limit (4 MiB), in segments of a quarter of it.
    write("while-away", 3 * MIB as usize / 2, 2);
    da.stop();
    let da = a.start_daemon();
    // Past the checkpoint interval (half the limit) after the restart, and
    // still below the limit in all.
    write("after-restart", 2 * MIB as usize + 4096, 3);
    let db = b.start_daemon();
    wait_converged(&a, &b, "vs", &|| logs(&da, Some(&db)));
    let va = vserver_status(&a, "vs").expect("active");
    assert_ne!(va["replication"]["state"], "needs-baseline", "{va}");
    assert_verify_matches(&a, "vs");
}
