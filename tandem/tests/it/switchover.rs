//! `tandem switchover VS --to PEER` through the real binary, on loopback
//! (both sites use the same NFS and MOUNT ports, so the vserver's address
//! moves between them and a client finds it at the same address and port).
//!
//! * A client writes (UNSTABLE + COMMIT, and FILE_SYNC) through the
//!   vserver's address while the vserver is switched from alpha to beta
//!   and back: it sees only successes and NFS3ERR_JUKEBOX (retried), keeps
//!   its file handles (reconnecting to the same address when the address
//!   moves), and every acknowledged byte is there at the end; `verify`
//!   matches after each move and status shows the roles swapped.
//! * Bad inputs change nothing: an unknown peer, a vserver not replicated
//!   to that peer, a bad timeout, the command at the replica site, and a
//!   replica that is not streaming.
//! * After a switchover, each site killed (`kill -9`) and restarted keeps
//!   its new role: one active site, replication back on, nothing lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::failover::state_at;
use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::switchover::*;
use crate::common::writer::*;
use crate::common::*;

/// Exit code of `tandem switchover` when nothing moved.
const EXIT_ERROR: i32 = 2;

/// Alpha and beta with their daemons (`None` while killed).
struct Sites {
    a: TestSite,
    b: TestSite,
    daemons: [Option<Daemon>; 2],
    vs_addr: String,
}

impl Sites {
    fn logs(&self) -> String {
        let log = |d: &Option<Daemon>| d.as_ref().map(Daemon::log_text).unwrap_or_default();
        format!(
            "alpha:\n{}\nbeta:\n{}",
            log(&self.daemons[0]),
            log(&self.daemons[1])
        )
    }

    /// `kill -9` of site `i` (0 alpha, 1 beta).
    fn kill9(&mut self, i: usize) {
        if let Some(d) = self.daemons[i].take() {
            d.kill9();
        }
    }

    fn restart(&mut self, i: usize) {
        let site = if i == 0 { &self.a } else { &self.b };
        self.daemons[i] = Some(site.start_daemon());
    }
}

/// Alpha holds `vs` at 127.86.NET.11/32@front with /data, replicated to
/// beta in `mode`; beta has alpha's NFS and MOUNT ports.
fn setup(net: u8, mode: &str) -> Sites {
    let vs_addr = format!("127.86.{net}.11");
    let (a, a_addr) = site("alpha", &format!("127.86.{net}.1"));
    let (mut b, b_addr) = site("beta", &format!("127.86.{net}.2"));
    share_nfs_ports(&a, &mut b);
    declare_front_on_lo(&a);
    declare_front_on_lo(&b);
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vs_on_front(&a, &vs_addr);
    assert_success(
        &a.tandem(&["replicate", "vs", "--to", "beta", "--mode", mode]),
        "replicate",
    );
    let s = Sites {
        a,
        b,
        daemons: [Some(da), Some(db)],
        vs_addr,
    };
    wait_converged(&s.a, &s.b, "vs", &|| s.logs());
    s
}

#[test]
fn switchover_there_and_back_loses_no_byte_and_keeps_the_handles() {
    let s = setup(1, "commit-sync");
    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let writer = rt.spawn(run_writer(
        s.vs_addr.clone(),
        (s.a.mount_port, s.a.nfs_port),
        stop.clone(),
        rounds.clone(),
    ));
    let logs = || s.logs();
    wait_rounds(&rounds, 0, 6, &logs);

    let text = switchover(&s.a, "beta");
    assert!(
        text.contains("vs switched over from alpha to beta: epoch 2"),
        "{text}"
    );
    // Rounds acknowledged from here on were written at beta.
    wait_rounds(&rounds, rounds.load(Ordering::Relaxed), 6, &logs);
    assert_replicated_and_verified(&s.b, &s.a, &logs);
    let at_beta = vserver_status(&s.b, "vs").expect("vs at beta")["last_lsn"]
        .as_u64()
        .expect("last_lsn");

    let text = switchover(&s.b, "alpha");
    assert!(
        text.contains("vs switched over from beta to alpha: epoch 3"),
        "{text}"
    );
    let back_at: u64 = text
        .split("both at LSN ")
        .nth(1)
        .and_then(|t| {
            t.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
        .expect("the LSN in the report");
    assert!(back_at >= at_beta, "{text}");
    wait_rounds(&rounds, rounds.load(Ordering::Relaxed), 6, &logs);
    stop.store(true, Ordering::Relaxed);
    let mut w = rt.block_on(writer).expect("writer task");
    eprintln!(
        "writer: {} rounds, {} JUKEBOX answers, {} reconnects, {} verifier changes",
        rounds.load(Ordering::Relaxed),
        w.jukebox,
        w.reconnects,
        w.verifier_changes
    );
    assert!(
        w.verifier_changes <= 2,
        "one new verifier per promotion at most"
    );
    assert_replicated_and_verified(&s.a, &s.b, &logs);
    let status = vserver_status(&s.a, "vs").expect("vs at alpha");
    assert_eq!(status["replication"]["to"], "beta", "{status}");
    assert_eq!(status["replication"]["mode"], "commit-sync", "{status}");

    rt.block_on(w.assert_acked_readable());
}

#[test]
fn bad_switchovers_change_nothing() {
    let s = setup(2, "async");
    create_vserver_and_fs(&s.a, "vs2", "127.86.2.21", "data", "/data");
    let lsn_before = vserver_status(&s.a, "vs").expect("vs")["last_lsn"].clone();
    let cases: [(&TestSite, &[&str], &str); 6] = [
        (&s.a, &["switchover", "vs", "--to", "nosuch"], "nosuch"),
        (
            &s.a,
            &["switchover", "vs2", "--to", "beta"],
            "not replicated to beta",
        ),
        (&s.a, &["switchover", "nosuch", "--to", "beta"], "nosuch"),
        (
            &s.a,
            &["switchover", "vs", "--to", "beta", "--timeout-ms", "0"],
            "timeout",
        ),
        (
            &s.b,
            &["switchover", "vs", "--to", "alpha"],
            "is a replica here",
        ),
        (&s.a, &["switchover", "vs", "--to", "../x"], "peer name"),
    ];
    for (site, args, needle) in cases {
        let out = site.tandem(args);
        assert_fails_with(&out, needle);
        assert_eq!(out.status.code(), Some(EXIT_ERROR), "{args:?}");
        assert_eq!(state_at(&s.a), "active", "{args:?}");
        assert_eq!(state_at(&s.b), "replica", "{args:?}");
    }
    assert_eq!(
        vserver_status(&s.a, "vs").expect("vs")["last_lsn"],
        lsn_before
    );

    // The replica away: refused before anything is paused.
    let mut s = s;
    s.kill9(1);
    let (a, vs_addr) = (&s.a, &s.vs_addr);
    let start = Instant::now();
    while vserver_status(a, "vs").expect("vs")["replication"]["state"] == "streaming" {
        assert!(start.elapsed() < DEADLINE, "the sender never noticed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_fails_with(
        &a.tandem(&["switchover", "vs", "--to", "beta"]),
        "not streaming",
    );
    assert_eq!(state_at(a), "active");
    // Still writable through NFS: nothing was left paused.
    runtime().block_on(async {
        let mut c = mount(a, vs_addr).await;
        write_file(&mut c, "after-refusal", b"still writable").await;
    });
}

#[test]
fn each_site_killed_after_a_switchover_comes_back_in_its_new_role() {
    let s = setup(3, "commit-sync");
    let files = runtime().block_on(async {
        let mut c = mount(&s.a, &s.vs_addr).await;
        let mut files = Vec::new();
        for i in 0..3u64 {
            let data = pattern(20_000, 500 + i);
            files.push((write_file(&mut c, &format!("k{i}"), &data).await, data));
        }
        files
    });
    let out = s.a.tandem(&["switchover", "vs", "--to", "beta", "--json"]);
    assert_success(&out, "switchover --json");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["to"], "beta", "{report}");
    assert_eq!(report["epoch"], 2, "{report}");
    assert!(report["pause_micros"].as_u64().is_some(), "{report}");
    assert_eq!(
        report["steps"].as_array().map(Vec::len),
        Some(6),
        "{report}"
    );
    let mut s = s;

    // The new active site dies and comes back: still active (its promotion
    // is durable), replicating to alpha again.
    s.kill9(1);
    s.restart(1);
    assert_replicated_and_verified(&s.b, &s.a, &|| s.logs());
    // The old one dies and comes back: still a replica (ROLE is durable).
    s.kill9(0);
    s.restart(0);
    assert_replicated_and_verified(&s.b, &s.a, &|| s.logs());

    runtime().block_on(async {
        let mut c = reconnect(&s.vs_addr, s.b.nfs_port).await;
        for (i, (fh, data)) in files.iter().enumerate() {
            assert_eq!(&read_whole(&mut c, fh).await, data, "k{i} at beta");
        }
    });
}

/// What a `kill -9` of alpha between its demotion and the peer's answer
/// leaves on its disk: the store marked a replica (ROLE), the outgoing
/// replication settings still there. Made by hand, since the window is a
/// few milliseconds.
fn leave_interrupted_switchover(s: &mut Sites, outgoing_toml: &str) {
    s.kill9(0);
    let store = s.a.dir.join("vservers").join("vs");
    std::fs::write(store.join("ROLE"), "replica\n").expect("ROLE");
    std::fs::write(s.a.dir.join("replication.toml"), outgoing_toml).expect("replication.toml");
}

#[test]
fn a_switchover_interrupted_before_the_peer_promoted_is_taken_back() {
    let mut s = setup(4, "async");
    let settings = std::fs::read_to_string(s.a.dir.join("replication.toml")).expect("settings");
    leave_interrupted_switchover(&mut s, &settings);
    s.restart(0);
    // Alpha asks beta, which is still a replica: alpha is active again
    // and replicates to beta as before; beta never was.
    assert_replicated_and_verified(&s.a, &s.b, &|| s.logs());
    assert!(!s.a.dir.join("vservers/vs/ROLE").exists());
    runtime().block_on(async {
        let mut c = mount(&s.a, &s.vs_addr).await;
        write_file(&mut c, "after", b"written after the take-back").await;
    });
    assert_replicated_and_verified(&s.a, &s.b, &|| s.logs());
}

#[test]
fn a_switchover_interrupted_after_the_peer_promoted_completes() {
    let mut s = setup(5, "async");
    let settings = std::fs::read_to_string(s.a.dir.join("replication.toml")).expect("settings");
    switchover(&s.a, "beta");
    // As if alpha died before the answer: its settings still say it sends.
    leave_interrupted_switchover(&mut s, &settings);
    s.restart(0);
    assert_replicated_and_verified(&s.b, &s.a, &|| s.logs());
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(s.a.dir.join("replication.toml")).unwrap_or_default();
        if !text.contains("[outgoing.vs]") {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "alpha kept its outgoing settings:\n{text}\n{}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(state_at(&s.a), "replica");
    assert_eq!(state_at(&s.b), "active");
}

/// Sends `signal` (STOP, CONT) to a daemon.
fn signal(d: &Daemon, signal: &str) {
    let out = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &d.pid().to_string()])
        .output()
        .expect("kill");
    assert_success(&out, "kill");
}

#[test]
fn a_replica_that_never_acknowledges_the_tail_times_out_and_nothing_moves() {
    let s = setup(6, "async");
    let rt = runtime();
    let mut c = rt.block_on(mount(&s.a, &s.vs_addr));
    // Beta frozen: it holds the connection but acknowledges nothing. A
    // write now (async: answered at once) is a tail beta never acks.
    signal(s.daemons[1].as_ref().expect("beta"), "STOP");
    rt.block_on(write_file(&mut c, "tail", b"never acknowledged"));
    let out =
        s.a.tandem(&["switchover", "vs", "--to", "beta", "--timeout-ms", "1000"]);
    signal(s.daemons[1].as_ref().expect("beta"), "CONT");
    let err = stderr(&out);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(EXIT_ERROR), "{err}");
    // Within beta's idle timeout the session still looks alive: the
    // timeout path. On a slow machine the sender may have noticed first
    // and the check refuses; nothing moves either way.
    assert!(
        err.contains("abandoned, nothing moved") || err.contains("not streaming"),
        "{err}"
    );
    assert_eq!(state_at(&s.a), "active");
    assert!(!s.a.dir.join("vservers/vs/ROLE").exists());
    // Writable again at once: unpaused, the same connection or a new one.
    rt.block_on(async {
        let mut c = mount(&s.a, &s.vs_addr).await;
        write_file(&mut c, "after-timeout", b"still writable").await;
    });
    assert_replicated_and_verified(&s.a, &s.b, &|| s.logs());
}

#[test]
fn a_frozen_peer_leaves_the_outcome_unknown_and_a_restart_settles_it() {
    let mut s = setup(7, "async");
    // Nothing to ship: the request goes out at once, into a frozen peer.
    signal(s.daemons[1].as_ref().expect("beta"), "STOP");
    let out =
        s.a.tandem(&["switchover", "vs", "--to", "beta", "--timeout-ms", "500"]);
    signal(s.daemons[1].as_ref().expect("beta"), "CONT");
    let err = stderr(&out);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(EXIT_ERROR), "{err}");
    if !err.contains("no answer came") {
        // The sender had already noticed the silence: refused, unchanged.
        assert!(err.contains("not streaming"), "{err}");
        assert_eq!(state_at(&s.a), "active");
        return;
    }
    // Never two writers meanwhile: alpha holds it as a replica.
    assert_eq!(state_at(&s.a), "replica");
    // Alpha dies and comes back: it asks beta and either completes the
    // switchover (beta promoted once thawed) or takes it back.
    s.kill9(0);
    s.restart(0);
    let start = Instant::now();
    let (active, replica) = loop {
        let (at_a, at_b) = (state_at(&s.a), state_at(&s.b));
        if at_a == "active" && at_b == "replica" {
            break (&s.a, &s.b);
        }
        if at_b == "active" && at_a == "replica" {
            break (&s.b, &s.a);
        }
        assert!(
            start.elapsed() < DEADLINE,
            "alpha {at_a}, beta {at_b}; logs:\n{}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "settled: {} active",
        if std::ptr::eq(active, &s.a) {
            "alpha"
        } else {
            "beta"
        }
    );
    assert_replicated_and_verified(active, replica, &|| s.logs());
}
