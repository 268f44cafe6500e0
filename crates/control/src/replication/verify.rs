//! `tandem verify` at the daemon: asks a running replication sender to
//! compare a digest of the vserver at both sites at one LSN
//! (`tandem_repl::verify`), within a time limit, and reports the result.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tandem_repl::verify::{VerifyAsk, VerifyError, MAX_QUEUED_VERIFY_ASKS};
use tandem_store::Lsn;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ControlError, Result};
use crate::replication::{ReplicationState, SenderState};

/// Longest a verify may take, asked to answered: both sites read every
/// file, so this is generous, but bounded.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(600);

/// What `tandem verify` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub vserver: String,
    pub matches: bool,
    /// The LSN both sites digested.
    pub lsn: Lsn,
    /// Root digests, hex.
    pub active_digest: String,
    pub replica_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<String>,
    pub files: u64,
    pub bytes: u64,
    pub elapsed_ms: u64,
}

/// A handle on one sender's verify channel.
pub struct Verifier {
    pub(crate) asks: mpsc::Sender<VerifyAsk>,
    pub(crate) shared: Arc<Mutex<SenderState>>,
}

/// The channel a sender's sessions take verify asks from.
pub(crate) fn channel() -> (mpsc::Sender<VerifyAsk>, mpsc::Receiver<VerifyAsk>) {
    mpsc::channel(MAX_QUEUED_VERIFY_ASKS)
}

impl Verifier {
    pub async fn verify(&self, vserver: &str, timeout: Duration) -> Result<VerifyReport> {
        let unavailable = |reason: String| ControlError::Unavailable {
            vserver: vserver.to_string(),
            reason,
        };
        let state = self.shared.lock().state;
        if state != ReplicationState::Streaming {
            return Err(unavailable(format!(
                "cannot verify: the replica is not streaming (state {state}); see `tandem status {vserver}`"
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.asks.try_send(VerifyAsk { reply }).map_err(|_| {
            unavailable("cannot verify: other verifies are queued; retry later".into())
        })?;
        let outcome = match tokio::time::timeout(timeout, answer).await {
            Err(_) => {
                return Err(unavailable(format!(
                    "verify did not finish within {} s",
                    timeout.as_secs()
                )))
            }
            Ok(Err(_)) => return Err(unavailable(
                "verify interrupted: the replication session ended; retry once it streams again"
                    .into(),
            )),
            Ok(Ok(Err(VerifyError::Busy))) => {
                return Err(unavailable(
                    "a verify is already running for this vserver; retry when it is done".into(),
                ))
            }
            Ok(Ok(Err(e))) => return Err(unavailable(e.to_string())),
            Ok(Ok(Ok(o))) => o,
        };
        Ok(VerifyReport {
            vserver: vserver.to_string(),
            matches: outcome.matches,
            lsn: outcome.lsn,
            active_digest: hex::encode(outcome.ours_root),
            replica_digest: hex::encode(outcome.theirs_root),
            first_difference: outcome.first_difference,
            files: outcome.files,
            bytes: outcome.bytes,
            elapsed_ms: outcome.elapsed_ms,
        })
    }
}
