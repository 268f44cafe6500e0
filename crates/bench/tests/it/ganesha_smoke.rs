//! Runs the quick preset against NFS-Ganesha alone, when it is installed,
//! to prove the workload and the Ganesha launcher. Never asserts on time.

use crate::common;

use std::path::Path;

use tandem_bench::{BenchOptions, ServerKind};

const GANESHA: &str = "/usr/bin/ganesha.nfsd";

#[test]
fn quick_workload_against_ganesha() {
    common::init_tracing();
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !Path::new(GANESHA).exists() {
        assert!(
            !in_ci,
            "{GANESHA} is missing in CI: install nfs-ganesha and nfs-ganesha-vfs"
        );
        eprintln!("skipping: {GANESHA} not installed");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(!in_ci, "the Ganesha smoke test needs root in CI");
        eprintln!("skipping: running Ganesha needs root");
        return;
    }
    let opts = BenchOptions {
        servers: vec![ServerKind::Ganesha],
        ganesha_binary: GANESHA.into(),
        seq_bytes: 32 << 20,
        random_file_bytes: 32 << 20,
        random_writes: 1_000,
        meta_files: 500,
        readdir_entries: 500,
        readdir_rounds: 2,
        ..BenchOptions::quick()
    };
    let report = tandem_bench::run(opts).expect("bench ran");
    println!("{report}");
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.rows.len(), 5);
    for row in &report.rows {
        let v = row
            .value(ServerKind::Ganesha)
            .unwrap_or_else(|| panic!("no Ganesha value for {}", row.workload));
        assert!(v.is_finite() && v > 0.0, "{}: {v}", row.workload);
    }
}
