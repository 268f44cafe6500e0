//! `tandem switchover` on a real (virtual) network: the namespaces of
//! common/netns.rs (a client host, site A, site B on one bridge), alpha
//! in A holding the vserver at 10.201.1.11/32@front (front = eth0),
//! replicated in commit-sync to beta in B.
//!
//! * A client in its own namespace writes rounds (UNSTABLE + COMMIT, and
//!   FILE_SYNC; common/writer.rs) through the vserver's address while it
//!   is switched over to beta and back: the address leaves A's eth0 and
//!   appears on B's, then back; the client keeps its file handles (a new
//!   connection to the same address and port, JUKEBOX retried), and
//!   every acknowledged byte is there; `verify` matches after each move.
//!
//! Needs root and iproute2: skipped without them, failed in CI.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::netns_sites::*;
use crate::common::switchover::*;
use crate::common::writer::*;

#[test]
fn switchover_moves_the_address_between_namespaces_and_loses_no_byte() {
    let Some(s) = setup_routed() else {
        return;
    };
    s.net.wait_address(&s.net.a, VS_CIDR, true);
    assert!(!s.net.addresses(&s.net.b).iter().any(|a| a == VS_CIDR));

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let ports = (s.a.mount_port, s.a.nfs_port);
    let (stop_c, rounds_c) = (stop.clone(), rounds.clone());
    let client = client_task(&s.net, move || async move {
        let mut w = run_writer(VS_IP.to_string(), ports, stop_c, rounds_c).await;
        w.assert_acked_readable().await;
        (w.jukebox, w.reconnects, w.verifier_changes)
    });
    let logs = || s.logs();
    wait_rounds(&rounds, 0, 6, &logs);

    let text = switchover(&s.a, "beta");
    assert!(
        text.contains("vs switched over from alpha to beta: epoch 2"),
        "{text}"
    );
    s.net.wait_address(&s.net.b, VS_CIDR, true);
    s.net.wait_address(&s.net.a, VS_CIDR, false);
    wait_rounds(&rounds, rounds.load(Ordering::Relaxed), 6, &logs);
    assert_replicated_and_verified(&s.b, &s.a, &logs);

    let text = switchover(&s.b, "alpha");
    assert!(
        text.contains("vs switched over from beta to alpha: epoch 3"),
        "{text}"
    );
    s.net.wait_address(&s.net.a, VS_CIDR, true);
    s.net.wait_address(&s.net.b, VS_CIDR, false);
    wait_rounds(&rounds, rounds.load(Ordering::Relaxed), 6, &logs);
    stop.store(true, Ordering::Relaxed);
    let (jukebox, reconnects, verifier_changes) = match client.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    eprintln!(
        "writer: {} rounds, {jukebox} JUKEBOX answers, {reconnects} reconnects, {verifier_changes} verifier changes",
        rounds.load(Ordering::Relaxed)
    );
    assert!(reconnects >= 2, "the address moved twice");
    assert!(
        verifier_changes <= 2,
        "one new verifier per promotion at most"
    );
    assert_replicated_and_verified(&s.a, &s.b, &logs);
}
