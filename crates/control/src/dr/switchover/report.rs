//! What `tandem switchover VS --to PEER` answers: where the vserver went,
//! at which LSN and epoch, each step's time and the pause clients saw.

use serde::{Deserialize, Serialize};

use crate::dr::failover::report::StepTime;

/// Default bound on the pause (`--timeout-ms`): past it the switchover
/// gives up, unpauses and moves nothing (if the peer was not asked yet).
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Largest `--timeout-ms`: clients retry JUKEBOX for this long at most.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Replication lag above which a switchover is refused: what is left is
/// shipped during the pause, so it must be small.
pub const MAX_LAG_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverReport {
    pub vserver: String,
    /// This site (the former active one, a replica now).
    pub site: String,
    /// The peer now active.
    pub to: String,
    /// The LSN both sites held when the peer promoted.
    pub lsn: u64,
    /// The vserver's epoch at the peer now.
    pub epoch: u64,
    /// From the first change answered JUKEBOX to the peer serving.
    pub pause_micros: u64,
    /// check, pause, demote, ship-tail, promote-peer, reverse.
    pub steps: Vec<StepTime>,
    /// Whether the peer's replication back to this site was running
    /// before the report was made (it retries on its own otherwise).
    pub reverse_streaming: bool,
    /// What the peer could not serve, and anything else worth knowing.
    pub notes: Vec<String>,
}
