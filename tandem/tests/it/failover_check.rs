//! `tandem failover VS --check` through the real binary: two paired sites
//! on loopback addresses, a vserver replicated from alpha to beta. The
//! check at beta reports each resource; it names what site.toml lacks, an
//! address another vserver holds and an unfinished replica; it is refused
//! at the active site; without `--check` it stops before changing anything.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::replication::*;
use crate::common::*;

const VS_ADDR: &str = "127.91.1.11";
const REPLICA_ADDR: &str = "127.91.1.12";

/// Exit codes of `tandem failover` (tandem/src/cli/failover.rs).
const EXIT_ERROR: i32 = 2;
const EXIT_NOT_READY: i32 = 3;

fn check_json(site: &TestSite) -> (Output, serde_json::Value) {
    let out = site.tandem(&["failover", "vs", "--check", "--json"]);
    let report = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    (out, report)
}

fn lines(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["lines"].as_array().expect("lines").clone()
}

fn line<'a>(lines: &'a [serde_json::Value], resource: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["resource"] == resource)
        .unwrap_or_else(|| panic!("no line {resource:?} in {lines:#?}"))
}

#[test]
fn check_at_replica_site_names_missing_interface_then_passes() {
    let (a, a_addr) = site("alpha", "127.91.1.1");
    let (b, b_addr) = site("beta", "127.91.1.2");
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vs_on_front(&a, VS_ADDR);
    replicate_to_beta(&a, "vs", REPLICA_ADDR);
    let logs = |db: &Daemon| format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    let lsn = wait_converged(&a, &b, "vs", &|| logs(&db));

    // beta's site.toml declares no interface: the address's is missing.
    let (out, report) = check_json(&b);
    assert_eq!(out.status.code(), Some(EXIT_NOT_READY), "{report:#}");
    assert_eq!(report["ready"], false);
    let all = lines(&report);
    let iface = line(&all, &format!("address {VS_ADDR}/32 interface"));
    assert_eq!(iface["outcome"], "missing", "{iface}");
    assert!(
        iface["reason"].as_str().unwrap().contains("named front"),
        "{iface}"
    );
    // The rest is still checked and found.
    assert_eq!(line(&all, "replica completeness")["outcome"], "found");
    let text = b.tandem(&["failover", "vs", "--check"]);
    assert_eq!(text.status.code(), Some(EXIT_NOT_READY));
    assert!(stdout(&text).contains("missing"), "{}", stdout(&text));
    assert!(stdout(&text).contains("front"), "{}", stdout(&text));

    // Declared on lo (site.toml is read at start): every line found.
    db.stop();
    declare_front_on_lo(&b);
    // A replica whose baseline stopped before its first mark: an empty
    // directory, which the daemon opens as an unfinished baseline.
    std::fs::create_dir(b.dir.join("vservers/ghost")).unwrap();
    let db = b.start_daemon();
    let (out, report) = check_json(&b);
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", logs(&db));
    assert_eq!(report["ready"], true);
    let all = lines(&report);
    for l in &all {
        let outcome = l["outcome"].as_str().unwrap();
        assert!(
            outcome == "found"
                || (outcome == "not_checked"
                    && l["resource"].as_str().unwrap().ends_with("on the network")),
            "{l}"
        );
    }
    assert_eq!(line(&all, "device lo")["outcome"], "found");
    assert_eq!(
        line(&all, &format!("address {VS_ADDR}/32 at this site"))["outcome"],
        "found"
    );
    let nfs = line(&all, &format!("NFS port {VS_ADDR}:{}", b.nfs_port));
    assert_eq!(nfs["reason"], "free", "{nfs}");
    let mount = line(&all, &format!("MOUNT port {VS_ADDR}:{}", b.mount_port));
    assert_eq!(mount["reason"], "free", "{mount}");
    let at = line(&all, "replica LSN");
    assert!(
        at["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("at LSN {lsn}")),
        "{at}"
    );
    assert!(all.iter().any(|l| l["resource"]
        .as_str()
        .unwrap()
        .starts_with("room in site data directory")));

    // Another vserver replicated to beta with its replica address on this
    // IP: the IP is held here and beta's ports on it are busy.
    create_vserver_and_fs(&a, "other", "127.91.1.21", "data", "/data");
    replicate_to_beta(&a, "other", VS_ADDR);
    wait_converged(&a, &b, "other", &|| logs(&db));
    let start = Instant::now();
    while vserver_status(&b, "other").expect("other at beta")["endpoints"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(start.elapsed() < DEADLINE, "other never served at beta");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (out, report) = check_json(&b);
    assert_eq!(out.status.code(), Some(EXIT_NOT_READY), "{report:#}");
    let all = lines(&report);
    let held = line(&all, &format!("address {VS_ADDR}/32 at this site"));
    assert_eq!(held["outcome"], "discrepant", "{held}");
    assert!(
        held["reason"].as_str().unwrap().contains("vserver other"),
        "{held}"
    );
    let nfs = line(&all, &format!("NFS port {VS_ADDR}:{}", b.nfs_port));
    assert_eq!(nfs["outcome"], "discrepant", "{nfs}");

    // The unfinished replica: incomplete, its addresses unknown.
    let out = b.tandem(&["failover", "ghost", "--check", "--json"]);
    assert_eq!(out.status.code(), Some(EXIT_NOT_READY), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let all = lines(&report);
    let complete = line(&all, "replica completeness");
    assert_eq!(complete["outcome"], "missing", "{complete}");
    assert!(
        complete["reason"]
            .as_str()
            .unwrap()
            .contains("baseline-unfinished"),
        "{complete}"
    );
    assert_eq!(line(&all, "addresses")["outcome"], "missing");

    // Refused at the active site, and without --check.
    let out = a.tandem(&["failover", "vs", "--check"]);
    assert_eq!(out.status.code(), Some(EXIT_ERROR));
    assert!(
        stderr(&out).contains("vs is active here"),
        "{}",
        stderr(&out)
    );
    // Without --check and without a terminal, a missing resource stops
    // the failover before it changes anything (tandem/tests/it/failover.rs
    // covers the rest).
    let out = b.tandem(&["failover", "vs"]);
    assert_eq!(out.status.code(), Some(EXIT_NOT_READY), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing changed"), "{}", stdout(&out));
    assert_eq!(vserver_status(&b, "vs").unwrap()["state"], "replica");
    let out = b.tandem(&["failover", "nosuch", "--check"]);
    assert_eq!(out.status.code(), Some(EXIT_ERROR));
    assert!(
        stderr(&out).contains("no vserver named nosuch"),
        "{}",
        stderr(&out)
    );
    drop(db);
}
