//! The Linux kernel's NFS client against Tandem: a QEMU guest
//! (common/guests.rs) on the bridge of common/netns.rs mounts the
//! vserver served by site A in its namespace, with `mount -t nfs`.
//!
//! * Files written through the kernel client (`dd conv=fsync`) are on
//!   the server: read back after a fresh mount, and by a user-space
//!   client; owners are those of the writing processes (root, uid 1000).
//! * A kernel client writing synced records keeps going across `kill -9`
//!   of the active site and `tandem failover` at the DR site: every
//!   record it was told is durable is there afterwards. The longest gap
//!   between two synced records is printed (not asserted).
//!
//! These guests run no status monitor, so they mount with `nolock`
//! (kernel_locks.rs covers locking).
//! Needs root, network namespaces, QEMU and the kernel image that
//! `.ci/run` installs: skipped without them, failed in CI.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::guests::{self, mount_line, run, run_within};
use crate::common::netns::*;
use crate::common::netns_sites::*;
use crate::common::nfs::*;
use crate::common::replication::{replicate, wait_converged};
use crate::common::*;
use sha2::{Digest, Sha256};
use tandem_guest::Guest;

const VS_IP: &str = "10.200.1.11";
const VS_CIDR: &str = "10.200.1.11/32";
const REPLICA_CIDR: &str = "10.200.1.12/32";
/// Where the guest mounts the vserver's /data.
const MNT: &str = "/mnt/vs";
/// Progress the writer must make before and after the failover.
const RECORDS_EACH_SIDE: usize = 20;
/// How long the writer may take to make that progress: before, and
/// after the failover (the kernel client backs off its reconnects to a
/// dead server, a few seconds more each time).
const PROGRESS_BEFORE: Duration = Duration::from_secs(90);
const PROGRESS_AFTER: Duration = Duration::from_secs(240);

#[test]
fn kernel_client_writes_reads_back_and_owners_are_kept() {
    let Some((s, _replica, mut g)) = sites_and_guest(false) else {
        return;
    };
    let ports = (s.a.mount_port, s.a.nfs_port);
    let mount = mount_line(VS_IP, "/data", ports, MNT, "nolock");
    let expected: String = (1..=20000).map(|i| format!("{i}\n")).collect();

    let script = format!(
        "set -e\n{mount}\
         seq 1 20000 >/tmp/seq.txt\n\
         dd if=/tmp/seq.txt of={MNT}/seq.txt bs=8k conv=fsync status=none\n\
         mkdir {MNT}/pub\n\
         chmod 1777 {MNT}/pub\n\
         su user -c 'echo user-data >{MNT}/pub/user.txt'\n\
         umount {MNT}\n\
         {mount}\
         sha256sum {MNT}/seq.txt\n\
         stat -c '%u %g %s %a' {MNT}/seq.txt {MNT}/pub/user.txt\n\
         stat -c '%u %g %a' {MNT}/pub\n\
         cat {MNT}/pub/user.txt\n\
         umount {MNT}\n"
    );
    let out = run(&mut g, &script);
    let hash: String = Sha256::digest(expected.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let want = format!(
        "{hash}  {MNT}/seq.txt\n0 0 {} 644\n1000 1000 10 644\n0 0 1777\nuser-data\n",
        expected.len()
    );
    assert_eq!(out, want, "guest's view after a fresh mount");

    // The bytes are on the server, as a user-space client reads them.
    let on_server = client_task(&s.net, move || async move {
        let mut c = mount_at(VS_IP, "/data", ports, DEADLINE).await;
        read_named(&mut c, "seq.txt").await
    })
    .join()
    .expect("client thread");
    assert_eq!(on_server.as_deref(), Some(expected.as_bytes()));
}

/// Appends `record-NNNNNN` lines to records.txt, each fsynced (`dd
/// conv=fsync`); after each returns, notes its number and the guest's
/// uptime in /tmp/synced. Stops at /tmp/stop (or 100000 records).
const WRITER: &str = r#"i=0
while [ ! -e /tmp/stop ] && [ $i -lt 100000 ]; do
    i=$((i + 1))
    if printf 'record-%06d\n' $i | dd of=/mnt/vs/records.txt oflag=append conv=notrunc,fsync status=none; then
        read -r up _ </proc/uptime
        echo "$i $up" >>/tmp/synced
    else
        echo "record $i: dd failed" >>/tmp/writer.errors
    fi
done
touch /tmp/writer.done
"#;

#[test]
fn kernel_client_keeps_synced_records_across_kill_and_failover() {
    let Some((s, _replica, mut g)) = sites_and_guest(true) else {
        return;
    };
    let ports = (s.a.mount_port, s.a.nfs_port);
    let mount = mount_line(VS_IP, "/data", ports, MNT, "nolock,hard");
    run(
        &mut g,
        &format!(
            "set -e\n{mount}cat >/tmp/writer.sh <<'END'\n{WRITER}END\n\
             setsid sh /tmp/writer.sh >/tmp/writer.log 2>&1 </dev/null &\n"
        ),
    );
    let logs = |s: &Sites| s.logs();
    let at_kill = wait_synced(&mut g, RECORDS_EACH_SIDE, PROGRESS_BEFORE, &|| logs(&s));

    // A's host dies: its daemon is killed, then it leaves the network.
    let Sites { net, a, da, b, db } = s;
    da.kill9();
    net.ip_in(&net.a, &["link", "del", DEV]);
    let out = b.tandem(&["failover", "vs", "--yes"]);
    assert_success(&out, "failover");
    let failed_over = Instant::now();
    net.wait_address(&net.b, VS_CIDR, true);
    let at_failover = synced(&mut g).len();
    eprintln!("records synced: {at_kill} at the kill, {at_failover} when failover returned");
    let after = wait_synced(
        &mut g,
        at_failover + RECORDS_EACH_SIDE,
        PROGRESS_AFTER,
        &|| db.log_text(),
    );
    eprintln!(
        "{} more records synced at beta within {:?} of the failover",
        after - at_failover,
        failed_over.elapsed()
    );

    run(
        &mut g,
        "touch /tmp/stop\n\
         i=0; while [ ! -e /tmp/writer.done ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done\n\
         [ -e /tmp/writer.done ] && ! [ -e /tmp/writer.errors ]\n",
    );
    let synced = synced(&mut g);
    // A fresh mount reads what beta serves, not the guest's cache.
    let records = run(
        &mut g,
        &format!("umount {MNT}\n{mount}cat {MNT}/records.txt\n"),
    );
    let mut present = Vec::new();
    for line in records.lines() {
        let n: usize = line
            .strip_prefix("record-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a record line: {line:?}"));
        present.push(n);
    }
    assert!(
        present.windows(2).all(|w| w[0] < w[1]),
        "records out of order or repeated: {present:?}"
    );
    let present: BTreeSet<usize> = present.into_iter().collect();
    let lost: Vec<usize> = synced
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !present.contains(n))
        .collect();
    assert!(lost.is_empty(), "synced records lost: {lost:?}");
    let gap = synced
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .fold(0.0f64, f64::max);
    eprintln!(
        "{} records synced, all present at beta; longest gap between two: {gap:.2} s",
        synced.len()
    );
    drop(a);
}

/// The sites of common/netns_sites.rs (`replicated`: in commit-sync,
/// converged) and a guest that boots while they start; A serves the
/// vserver's address and the guest is up. Also returns the replica's
/// address. None: skipped.
fn sites_and_guest(replicated: bool) -> Option<(Sites, String, Guest)> {
    let kit = guests::available()?;
    let mut guest = None;
    let (s, replica) = start_sites(VS_CIDR, REPLICA_CIDR, DEV, |net| {
        guest = Some(guests::start(net, &kit, 0));
    })?;
    let mut g = guest.expect("guest started");
    if replicated {
        replicate(&s.a, &replica, &[]);
        wait_converged(&s.a, &s.b, "vs", &|| s.logs());
    }
    s.net.wait_address(&s.net.a, VS_CIDR, true);
    let t = g.wait_ready().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("guest {} booted in {t:?}", g.name());
    Some((s, replica, g))
}

/// The records the writer was told are durable: (number, guest uptime).
fn synced(g: &mut Guest) -> Vec<(usize, f64)> {
    let text = run(g, "cat /tmp/synced 2>/dev/null || true");
    text.lines()
        .map(|l| {
            let (n, up) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad line in /tmp/synced: {l:?}"));
            let n = n
                .parse()
                .unwrap_or_else(|_| panic!("bad record number {l:?}"));
            let up = up.parse().unwrap_or_else(|_| panic!("bad uptime {l:?}"));
            (n, up)
        })
        .collect()
}

/// Polls until at least `n` records are synced; returns how many are.
fn wait_synced(g: &mut Guest, n: usize, limit: Duration, logs: &dyn Fn() -> String) -> usize {
    let start = Instant::now();
    loop {
        let count = run_within(
            g,
            "if [ -e /tmp/synced ]; then wc -l </tmp/synced; else echo 0; fi",
            Duration::from_secs(30),
        );
        let count: usize = count.trim().parse().expect("a count");
        if count >= n {
            return count;
        }
        if start.elapsed() > limit {
            let log = run(
                g,
                "cat /tmp/writer.log /tmp/writer.errors 2>/dev/null; dmesg | tail -20",
            );
            panic!(
                "{count} of {n} records synced within {limit:?}\n--- writer ---\n{log}\n--- daemons ---\n{}",
                logs()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
