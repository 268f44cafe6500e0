//! Runs a small workload against Tandem's in-process NFS service, so the
//! bench's Tandem path (store + NFS service + workload) cannot rot. Never
//! asserts on time.

use crate::common;

use tandem_bench::{BenchOptions, ServerKind};

#[test]
fn small_workload_against_tandem() {
    common::init_tracing();
    let opts = BenchOptions {
        servers: vec![ServerKind::Tandem],
        seq_bytes: 16 << 20,
        random_file_bytes: 16 << 20,
        random_writes: 500,
        meta_files: 200,
        readdir_entries: 300,
        readdir_rounds: 2,
        repeats: 2,
        warmup: true,
        in_flight: 4,
        ..BenchOptions::quick()
    };
    let report = tandem_bench::run(opts).expect("bench ran");
    println!("{report}");
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.rows.len(), 5);
    for row in &report.rows {
        let v = row
            .value(ServerKind::Tandem)
            .unwrap_or_else(|| panic!("no Tandem value for {}", row.workload));
        assert!(v.is_finite() && v > 0.0, "{}: {v}", row.workload);
        let samples = row
            .samples
            .iter()
            .find(|(k, _)| *k == ServerKind::Tandem)
            .map(|(_, v)| v.len());
        assert_eq!(samples, Some(2), "{}", row.workload);
    }
}
