//! `tandem switchover` as the switchover tests run it: the report's
//! timed steps checked, and the roles and content checked after a move.

use super::failover::state_at;
use super::replication::{assert_verify_matches, wait_converged};
use super::{assert_success, stdout, TestSite};

/// Runs `tandem switchover vs --to PEER` at `site`; returns its stdout.
pub fn switchover(site: &TestSite, to: &str) -> String {
    let out = site.tandem(&["switchover", "vs", "--to", to]);
    assert_success(&out, "switchover");
    let text = stdout(&out);
    // The measured steps and pause, for whoever reads the test's output.
    eprintln!("{text}");
    for step in [
        "check",
        "pause",
        "demote",
        "ship-tail",
        "promote-peer",
        "reverse",
        "client pause",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(step) && l.trim_end().ends_with("ms")),
            "no time for {step} in:\n{text}"
        );
    }
    text
}

/// Polls until `active` replicates vs to `replica` and both hold the
/// same LSN, then checks the content with `tandem verify`.
pub fn assert_replicated_and_verified(
    active: &TestSite,
    replica: &TestSite,
    logs: &dyn Fn() -> String,
) {
    wait_converged(active, replica, "vs", logs);
    assert_eq!(state_at(active), "active");
    assert_eq!(state_at(replica), "replica");
    assert_verify_matches(active, "vs");
}
