//! A resync's outcome and the folder it keeps: what the diverged site wrote
//! after the shared LSN (the daemon runs the exchange, daemon/resync/).

use serde::{Deserialize, Serialize};
use tandem_store::Lsn;

pub mod report;

/// What `tandem resync` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncReport {
    pub vserver: String,
    pub peer: String,
    pub shared_lsn: Lsn,
    /// The promoted site's LSN this site now holds, as its replica.
    pub lsn: Lsn,
    pub epoch: u64,
    /// Records this site wrote after the shared LSN, now only in the folder.
    pub divergent_records: u64,
    /// Where the report and the affected files are.
    pub folder: String,
    /// File data bytes fetched from the promoted site.
    pub fetched_bytes: u64,
    /// Bytes of the encoded state fetched.
    pub state_bytes: u64,
    /// Bytes this site's divergent records touched (clipped at `lsn`).
    pub divergent_bytes: u64,
    /// Bytes the promoted site changed since the shared LSN.
    pub peer_changed_bytes: u64,
}
