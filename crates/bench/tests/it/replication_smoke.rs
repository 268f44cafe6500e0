//! Runs `tandem bench replication`'s machinery at a tiny size (two sites,
//! the counting proxy, the paced writers, the change sets, rsync if it is
//! installed) so the bench cannot rot. Checks the table's rows and that
//! the byte counts are sane; never asserts on time.

use crate::common;

use std::path::Path;
use std::time::Duration;

use tandem_bench::{Rate, ReplOptions};

#[test]
fn tiny_replication_bench() {
    common::init_tracing();
    let defaults = ReplOptions::default();
    let rsync = Path::new(&defaults.rsync_binary).exists();
    let opts = ReplOptions {
        rates: vec![Rate::MegabytesPerSecond(4.0), Rate::Max],
        phase: Duration::from_secs(1),
        lag_file_bytes: 2 << 20,
        writers: 2,
        mixed_files: 16,
        mixed_bytes: 2 << 20,
        tree_files: 8,
        tree_bytes: 2 << 20,
        tree_new_files: 2,
        rsync,
        converge_timeout: Duration::from_secs(60),
        // Not the bench's own addresses, so a bench run elsewhere on the
        // machine does not collide with this one.
        active_ip: "127.0.0.43".parse().unwrap(),
        replica_ip: "127.0.0.44".parse().unwrap(),
        ..defaults
    };
    let report = tandem_bench::run_replication(opts).expect("bench ran");
    println!("{report}");
    assert!(report.is_complete(), "{report}");
    let mut names = vec![
        "steady writes, 4 MB/s",
        "steady writes, max",
        "mixed change set",
        "catch-up: Tandem from journal",
        "catch-up: Tandem, replica restart",
    ];
    if rsync {
        names.push("catch-up: rsync");
    } else {
        eprintln!("rsync is not installed: its row is not checked");
    }
    assert_eq!(report.rows.len(), names.len(), "{report}");
    for name in names {
        let row = report
            .row(name)
            .unwrap_or_else(|| panic!("no row {name:?} in\n{report}"));
        let changed = row.changed_bytes.unwrap_or(0);
        let wire = row.wire_bytes.unwrap_or(0);
        assert!(changed > 0 && wire > 0, "{name}: {changed} / {wire}");
        // Every changed byte crosses the wire at least once (rsync too:
        // the new data matches nothing at the destination).
        let ratio = row.ratio().unwrap_or(0.0);
        assert!(ratio > 0.9, "{name}: wire/changed {ratio}\n{report}");
        let t = row.seconds.unwrap_or(-1.0);
        assert!(t.is_finite() && t >= 0.0, "{name}: {t}");
    }
    let steady = report.row("steady writes, 4 MB/s").unwrap();
    assert!(steady.client_mb_s.unwrap_or(0.0) > 0.0, "{report}");
    assert!(steady.replicated_mb_s.unwrap_or(0.0) > 0.0, "{report}");
    assert!(steady.lag_p99_ms.is_some(), "{report}");
    // The 4 MB/s row writes exactly its schedule: 4 MB over 1 s in 1 MiB
    // WRITEs.
    assert_eq!(steady.changed_bytes, Some(4 << 20), "{report}");
    let mixed = report.row("mixed change set").unwrap();
    assert!(mixed.verdict.is_some(), "the wire goal is judged: {report}");
}
