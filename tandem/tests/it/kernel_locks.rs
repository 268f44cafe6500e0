//! NFS locking with the Linux kernel's lock manager (lockd) against
//! Tandem's NLM: two QEMU guests (common/guests.rs) on one bridge mount
//! the vserver served by site A, without `nolock`. Each guest runs
//! `tandem-rpc` (its portmapper and status monitor, from the guest
//! crate); the sites serve the portmapper on port 111, where the guests'
//! kernels find the server's lock manager.
//!
//! * A byte range one guest holds (`tandem-lock`, fcntl) is seen by the
//!   other (F_GETLK), refused to it (F_SETLK, on the range and on the
//!   whole file; a free range is not), and a blocked F_SETLKW is granted
//!   when the holder unlocks,
//!   through the server's GRANTED callback (sooner than the kernel's own
//!   30-second re-poll).
//! * A lock held across `kill -9` of the active site and `tandem failover`
//!   (commit-sync, so no grace period) still conflicts at the DR site, and
//!   is given to the other guest once its holder unlocks there.
//!
//! Needs root, network namespaces, QEMU and the kernel image that
//! `.ci/run` installs: skipped without them, failed in CI.

use std::time::{Duration, Instant};

use crate::common::guests::{self, mount_line, run, run_within};
use crate::common::netns::*;
use crate::common::netns_sites::*;
use crate::common::replication::{replicate, wait_converged};
use crate::common::*;
use tandem_guest::Guest;

const VS_IP: &str = "10.200.1.31";
const VS_CIDR: &str = "10.200.1.31/32";
const REPLICA_CIDR: &str = "10.200.1.32/32";
const MNT: &str = "/mnt/vs";
const FILE: &str = "/mnt/vs/locked.dat";
/// The kernel client re-sends a blocked lock request every 30 s on its
/// own; a grant sooner than this came from the server's callback.
const GRANT_WITHIN: Duration = Duration::from_secs(20);

#[test]
fn kernel_clients_conflict_and_a_blocked_lock_is_granted() {
    let Some((s, _replica, mut g0, mut g1)) = sites_and_guests(false) else {
        return;
    };
    let mount = mount(&s);
    run(&mut g0, &format!("set -e\n{mount}: >{FILE}\n"));
    hold(&mut g0, "hold", "0 100", "/tmp/h");
    wait_file(&mut g0, "/tmp/h/locked", Duration::from_secs(60));

    let seen = run(
        &mut g1,
        &format!(
            "set -e\n{mount}\
             tandem-lock test {FILE} 50 10\n\
             st=0; tandem-lock try {FILE} 50 10 || st=$?; echo try-held $st\n\
             st=0; tandem-lock try {FILE} 200 10 || st=$?; echo try-free $st\n\
             st=0; tandem-lock try {FILE} 0 0 || st=$?; echo try-whole $st\n"
        ),
    );
    let lines: Vec<&str> = seen.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("locked ")),
        "F_GETLK from guest1 should see guest0's lock: {seen}"
    );
    assert!(lines.contains(&"try-held 1"), "{seen}");
    assert!(lines.contains(&"try-free 0"), "{seen}");
    assert!(lines.contains(&"try-whole 1"), "{seen}");

    // guest1 blocks on the range: the server has queued its request and
    // the guest still waits.
    hold(&mut g1, "wait", "50 10", "/tmp/w");
    wait_until(
        || s.da.log_text().contains("blocked lock request waits"),
        || s.logs(),
    );
    run(&mut g1, "[ ! -e /tmp/w/locked ]");
    let released = Instant::now();
    run(
        &mut g0,
        "touch /tmp/h/release\n\
         i=0; while [ ! -e /tmp/h/unlocked ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done\n\
         [ -e /tmp/h/unlocked ]\n",
    );
    wait_file(&mut g1, "/tmp/w/locked", Duration::from_secs(90));
    let granted = released.elapsed();
    eprintln!("blocked lock granted {granted:?} after the holder unlocked");
    assert!(
        granted < GRANT_WITHIN,
        "granted after {granted:?}: the kernel's re-poll, not the server's GRANTED callback\n{}",
        s.logs()
    );
    assert!(
        s.da.log_text()
            .contains("blocked lock handed to its client"),
        "{}",
        s.logs()
    );

    // Now guest0 is the one refused, until guest1 lets go.
    let out = run(
        &mut g0,
        &format!("st=0; tandem-lock try {FILE} 0 100 || st=$?; echo $st\n"),
    );
    assert_eq!(out.trim(), "1");
    run(
        &mut g1,
        "touch /tmp/w/release\n\
         i=0; while [ ! -e /tmp/w/unlocked ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done\n\
         [ -e /tmp/w/unlocked ]\n",
    );
    run(&mut g0, &format!("tandem-lock try {FILE} 0 100\n"));
}

#[test]
fn kernel_lock_survives_kill_and_failover() {
    let Some((s, _replica, mut g0, mut g1)) = sites_and_guests(true) else {
        return;
    };
    let mount = mount(&s);
    run(&mut g0, &format!("set -e\n{mount}: >{FILE}\n"));
    run(&mut g1, &mount);
    hold(&mut g0, "hold", "0 100", "/tmp/h");
    wait_file(&mut g0, "/tmp/h/locked", Duration::from_secs(60));
    let out = run(&mut g1, &format!("tandem-lock test {FILE} 0 100\n"));
    assert!(out.starts_with("locked "), "{out}");

    let Sites { net, a, da, b, db } = s;
    da.kill9();
    net.ip_in(&net.a, &["link", "del", DEV]);
    let out = b.tandem(&["failover", "vs", "--yes"]);
    assert_success(&out, "failover");
    net.wait_address(&net.b, VS_CIDR, true);
    let failed_over = Instant::now();

    // The first lock call after the failover waits for the kernel client
    // to reconnect; it must find the lock held, with no grace period.
    let out = run_within(
        &mut g1,
        &format!(
            "tandem-lock test {FILE} 0 100\n\
             st=0; tandem-lock try {FILE} 0 100 || st=$?; echo try $st\n"
        ),
        Duration::from_secs(240),
    );
    eprintln!(
        "guest1 saw the lock at beta {:?} after the failover",
        failed_over.elapsed()
    );
    assert!(
        out.starts_with("locked ") && out.contains("try 1"),
        "guest0's lock should hold at beta: {out}\n{}",
        db.log_text()
    );

    // The holder unlocks at beta; then the range is guest1's.
    run_within(
        &mut g0,
        "touch /tmp/h/release\n\
         i=0; while [ ! -e /tmp/h/unlocked ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done\n\
         [ -e /tmp/h/unlocked ]\n",
        Duration::from_secs(180),
    );
    let out = run(
        &mut g1,
        &format!("tandem-lock try {FILE} 0 100 && tandem-lock test {FILE} 0 100\n"),
    );
    assert_eq!(out.trim(), "unlocked", "{}", db.log_text());
    drop((a, b));
}

fn mount(s: &Sites) -> String {
    mount_line(VS_IP, "/data", (s.a.mount_port, s.a.nfs_port), MNT, "hard")
}

/// Starts `tandem-lock MODE FILE RANGE DIR` in the background of `g`
/// (it signals through files in DIR; see guest/lock_tool.c).
fn hold(g: &mut Guest, mode: &str, range: &str, dir: &str) {
    run(
        g,
        &format!(
            "mkdir -p {dir}\n\
             setsid tandem-lock {mode} {FILE} {range} {dir} >{dir}/log 2>&1 </dev/null &\n"
        ),
    );
}

/// Polls in the guest until `path` exists, for at most `limit`.
fn wait_file(g: &mut Guest, path: &str, limit: Duration) {
    let tenths = limit.as_millis() / 100;
    let script = format!(
        "i=0; while [ ! -e {path} ] && [ $i -lt {tenths} ]; do sleep 0.1; i=$((i + 1)); done\n\
         [ -e {path} ] || {{ cat $(dirname {path})/log; dmesg | tail -20; exit 1; }}\n"
    );
    run_within(g, &script, limit + Duration::from_secs(30));
}

/// The sites (with portmappers; `replicated`: in commit-sync, converged)
/// and two guests that boot while they start. None: skipped.
fn sites_and_guests(replicated: bool) -> Option<(Sites, String, Guest, Guest)> {
    let kit = guests::available()?;
    let mut guests = None;
    let (s, replica) = start_sites_with(VS_CIDR, REPLICA_CIDR, DEV, true, |net| {
        guests = Some((guests::start(net, &kit, 0), guests::start(net, &kit, 1)));
    })?;
    let (mut g0, mut g1) = guests.expect("guests started");
    if replicated {
        replicate(&s.a, &replica, &[]);
        wait_converged(&s.a, &s.b, "vs", &|| s.logs());
    }
    s.net.wait_address(&s.net.a, VS_CIDR, true);
    for g in [&mut g0, &mut g1] {
        let t = g.wait_ready().unwrap_or_else(|e| panic!("{e}"));
        eprintln!("guest {} booted in {t:?}", g.name());
    }
    Some((s, replica, g0, g1))
}
