//! Runs `tandem bench failover` at a tiny size (two runs, 1 MiB each) so
//! the bench cannot rot: the table has its rows (failover, switchover,
//! resync), each with a sample per
//! run and a verdict where there is a goal. Never asserts on time.

use crate::common::*;

#[test]
fn tiny_failover_bench_prints_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["bench", "failover", "--runs", "2", "--write-mib", "1"])
        .args(["--vs-ip", "127.87.2.11", "--active-ip", "127.87.2.1"])
        .args(["--dr-ip", "127.87.2.2", "--dir"])
        .arg(dir.path())
        .env_remove("TANDEM_DATA");
    let out = run_with_deadline(&mut cmd, DEADLINE * 4);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    for row in [
        "failover: command to first NFS reply",
        "failover: daemon's steps (check..serve)",
        "switchover: command to done",
        "switchover: pause (daemon's figure)",
        "switchover: pause seen by a client",
        "resync: divergent bytes",
        "resync: fetched bytes",
        "resync: fetched / divergent",
        "resync: command to done",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("| {row}")))
            .unwrap_or_else(|| panic!("no row {row:?} in\n{text}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells[2], "2", "two samples in {line}");
        let p50: f64 = cells[3].parse().unwrap_or(-1.0);
        assert!(p50 >= 0.0, "a p50 in {line}");
    }
    for goal in ["< 2 s", "< 1 s", "<= 1.1 x"] {
        let shown = text
            .lines()
            .any(|l| l.split('|').map(str::trim).any(|cell| cell == goal));
        assert!(shown, "the goal {goal} is shown:\n{text}");
    }
    assert!(!text.contains("FAILED"), "{text}");
    // The runs' sites are removed without --keep.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_bench_options_are_refused() {
    let out = run_args(&["bench", "failover", "--runs", "0"]);
    assert!(!out.status.success());
    let out = run_args(&["bench", "failover", "--runs", "1", "--vs-ip", "10.1.2.3"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a loopback address"),
        "{}",
        stderr(&out)
    );
}

fn run_args(args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args).env_remove("TANDEM_DATA");
    run_with_deadline(&mut cmd, DEADLINE)
}
