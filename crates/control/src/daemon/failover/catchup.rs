//! Forced failover of a replica in the middle of a catch-up. The catch-up stages into `catchup/` and switches
//! in behind the `CATCHUP` mark, so until the switch the directory holds
//! the whole replica at its old LSN: a forced failover ends the incoming
//! session and brings that copy up; the catch-up's changes are lost. A
//! first baseline has no whole copy yet and stays refused.

use std::path::Path;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::dr::failover::check::CheckLine;
use crate::error::{ControlError, Result};

/// Longest a forced failover waits for the catch-up it interrupts to let
/// go of the replica: longer than the transfer's message timeout (30 s),
/// after which a silent sender ends the catch-up anyway.
const FORCED_CATCHUP_STOP_TIMEOUT: Duration = Duration::from_secs(45);
/// Pause between attempts to reopen a store a stopping install still locks.
const REOPEN_RETRY: Duration = Duration::from_millis(50);

impl Daemon {
    /// Before a forced failover: if `vserver` is closed for a catch-up,
    /// stops its incoming session, waits (at most
    /// FORCED_CATCHUP_STOP_TIMEOUT) for the session to end and reopens the
    /// replica as it was. The LSN of the copy brought up, or None when the
    /// vserver was not closed for a catch-up.
    pub(super) async fn end_catchup_for_failover(&self, vserver: &str) -> Result<Option<u64>> {
        let lock = {
            let table = self.vservers.lock().await;
            let vs = table
                .get(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            if !vs.in_baseline() {
                return Ok(None);
            }
            vs.session_lock()
        };
        let dir = self.site.paths.vserver(vserver);
        let whole = tokio::task::spawn_blocking(move || holds_whole_store(&dir))
            .await
            .unwrap_or(false);
        let (Some(lock), true) = (lock, whole) else {
            return Err(ControlError::Unavailable {
                vserver: vserver.to_string(),
                reason: "replica baseline in progress: there is no whole copy here to bring up"
                    .into(),
            });
        };
        tracing::warn!(
            vserver,
            "forced failover: ending the catch-up in progress; the replica comes up as it was before it"
        );
        self.set_session_stop(vserver, true);
        let deadline = tokio::time::Instant::now() + FORCED_CATCHUP_STOP_TIMEOUT;
        let Ok(_session) = tokio::time::timeout_at(deadline, lock.lock_owned()).await else {
            return Err(ControlError::Unavailable {
                vserver: vserver.to_string(),
                reason: format!(
                    "the catch-up in progress did not end within {} s; rerun the failover",
                    FORCED_CATCHUP_STOP_TIMEOUT.as_secs()
                ),
            });
        };
        // The ended session normally reopened the replica itself; if an
        // interrupted install still held the directory then, reopen here.
        loop {
            let closed = {
                let table = self.vservers.lock().await;
                table.get(vserver).is_some_and(|v| v.in_baseline())
            };
            if !closed {
                break;
            }
            match self.finish_catchup(vserver, None).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(vserver, error = %e, "replica not reopened yet; retrying");
                    tokio::time::sleep(REOPEN_RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
        let lsn = self.store(vserver).await?.last_lsn();
        tracing::warn!(
            vserver,
            lsn,
            "forced failover: catch-up ended; bringing up the replica at this LSN"
        );
        Ok(Some(lsn))
    }
}

/// Whether a replica directory closed for a transfer holds a whole store
/// (a catch-up's), not a first baseline's partial copy.
fn holds_whole_store(dir: &Path) -> bool {
    matches!(tandem_store::baseline::baseline_in_progress(dir), Ok(None))
        && tandem_store::catchup::closed_store_lsn(dir).is_ok_and(|lsn| lsn > 0)
}

/// The report says which copy came up: the completeness line left out
/// names the LSN, and that the catch-up's changes are lost.
pub(crate) fn note_copy_brought_up(left_out: &mut [CheckLine], lsn: u64) {
    for l in left_out
        .iter_mut()
        .filter(|l| l.resource == "replica completeness")
    {
        l.reason = format!(
            "{}; brought up the copy at LSN {lsn}: the catch-up's changes are lost",
            l.reason
        );
    }
}
