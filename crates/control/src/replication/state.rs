//! The replication state `tandem status` shows under a vserver, at the
//! active site (the sender's) and at the replica site.

use crate::config::words::word_enum;

word_enum! {
    pub enum ReplicationState ("replication state") {
        /// Active site: dialling the peer, before the preface is answered.
        Connecting = "connecting",
        /// Active site: sending a baseline. Replica site: receiving one.
        Baseline = "baseline",
        /// Active site: sending a catch-up after a journal overflow.
        CatchUp = "catch-up",
        /// Active site: the session streams journal records.
        Streaming = "streaming",
        /// Active site: streaming, with the lag over `max_lag_ms` (or
        /// `DEFAULT_BEHIND_MS`).
        Behind = "behind",
        /// Active site: no session; retrying with backoff.
        Disconnected = "disconnected",
        /// Active site: the replica needs a baseline it cannot take.
        NeedsBaseline = "needs-baseline",
        /// Active site: the peer refused the session.
        Refused = "refused",
        /// Active site: the replica is away and changes are tracked for a
        /// catch-up (journal overflow).
        Overflow = "overflow",
        /// Active site: a peer holds the vserver at a higher epoch.
        Fenced = "fenced",
        /// Active site: demoted by a switchover; the peer is active now.
        SwitchedOver = "switched-over",
        /// Replica site: a session is running into this replica.
        Receiving = "receiving",
        /// Replica site: no session running.
        Replica = "replica",
        /// Replica site: a baseline started and did not finish.
        BaselineUnfinished = "baseline-unfinished",
        /// Active site: the replica refused a batch for lack of room on
        /// its disk; nothing of it was applied, and it is offered again
        /// (with backoff) until the replica has room.
        Stalled = "stalled",
    }
}

impl ReplicationState {
    /// The replica holds a whole copy and follows the journal.
    pub fn is_streaming(self) -> bool {
        matches!(self, ReplicationState::Streaming | ReplicationState::Behind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tandem status --json`, metrics labels and scripts read these words.
    #[test]
    fn states_keep_their_words() {
        let words: Vec<&str> = ReplicationState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            words,
            [
                "connecting",
                "baseline",
                "catch-up",
                "streaming",
                "behind",
                "disconnected",
                "needs-baseline",
                "refused",
                "overflow",
                "fenced",
                "switched-over",
                "receiving",
                "replica",
                "baseline-unfinished",
                "stalled",
            ]
        );
        for s in ReplicationState::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<ReplicationState>(&json).unwrap(), *s);
        }
        assert!(serde_json::from_str::<ReplicationState>("\"asleep\"").is_err());
        let streaming: Vec<_> = ReplicationState::ALL
            .iter()
            .filter(|s| s.is_streaming())
            .collect();
        assert_eq!(
            streaming,
            [&ReplicationState::Streaming, &ReplicationState::Behind]
        );
    }
}
