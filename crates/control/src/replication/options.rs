//! The words `tandem replicate` takes and replication.toml keeps: the
//! replication mode, what a reply does when the replica is lost, and the
//! batch compression (docs/design.md, "Replication modes").

use tandem_store::{OnReplicaLoss, SyncMode};

use crate::config::words::word_enum;

word_enum! {
    /// Which client replies wait for the replica.
    pub enum Mode ("replication mode") {
        /// Replies wait for the local journal only.
        Async = "async",
        /// COMMIT, FILE_SYNC writes and namespace changes also wait for
        /// the replica's durable ack.
        CommitSync = "commit-sync",
        /// Every write waits for the replica's durable ack.
        Sync = "sync",
    }
}

impl Mode {
    /// commit-sync and sync: replies wait for the replica.
    pub fn is_synchronous(self) -> bool {
        self != Mode::Async
    }
}

impl From<Mode> for SyncMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Async => SyncMode::Async,
            Mode::CommitSync => SyncMode::CommitSync,
            Mode::Sync => SyncMode::Sync,
        }
    }
}

word_enum! {
    /// What a commit-sync or sync reply does when the replica's ack is late.
    #[derive(Default)]
    pub enum OnLoss ("on-replica-loss") {
        /// Reply without it, raise the degraded alert.
        #[default]
        Degrade = "degrade",
        /// Keep waiting.
        Block = "block",
    }
}

impl From<OnLoss> for OnReplicaLoss {
    fn from(o: OnLoss) -> Self {
        match o {
            OnLoss::Degrade => OnReplicaLoss::Degrade,
            OnLoss::Block => OnReplicaLoss::Block,
        }
    }
}

impl From<OnReplicaLoss> for OnLoss {
    fn from(o: OnReplicaLoss) -> Self {
        match o {
            OnReplicaLoss::Degrade => OnLoss::Degrade,
            OnReplicaLoss::Block => OnLoss::Block,
        }
    }
}

word_enum! {
    /// How journal batches go on the wire.
    #[derive(Default)]
    pub enum Compress ("compress") {
        #[default]
        Zstd = "zstd",
        None = "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words are part of replication.toml, the control API and the
    /// CLI: each reads back as itself in every form, in the order shown.
    #[test]
    fn words_are_the_formats_words() {
        let words = |all: &[&str]| all.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Mode::ALL
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            words(&["async", "commit-sync", "sync"])
        );
        assert_eq!(
            OnLoss::ALL
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            words(&["degrade", "block"])
        );
        assert_eq!(
            Compress::ALL
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            words(&["zstd", "none"])
        );
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(*m));
            let json = serde_json::to_string(m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<Mode>(&json).unwrap(), *m);
        }
        assert_eq!(OnLoss::default(), OnLoss::Degrade);
        assert_eq!(Compress::default(), Compress::Zstd);
        assert_eq!(format!("[{:<8}]", Mode::Sync), "[sync    ]");
    }

    #[test]
    fn unknown_words_name_the_option_and_the_choices() {
        let e = "eventually".parse::<Mode>().unwrap_err().to_string();
        assert_eq!(
            e,
            "replication mode \"eventually\" is not one of async, commit-sync, sync"
        );
        for bad in ["", "Async", "async ", "commit_sync"] {
            assert!(bad.parse::<Mode>().is_err(), "{bad:?}");
        }
        let e = serde_json::from_str::<Compress>("\"lz4\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("compress \"lz4\" is not one of zstd, none"),
            "{e}"
        );
        assert!(serde_json::from_str::<OnLoss>("1").is_err());
        let long = "x".repeat(10_000);
        let e = long.parse::<OnLoss>().unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn modes_map_to_the_stores_policy() {
        assert_eq!(SyncMode::from(Mode::Async), SyncMode::Async);
        assert_eq!(SyncMode::from(Mode::CommitSync), SyncMode::CommitSync);
        assert_eq!(SyncMode::from(Mode::Sync), SyncMode::Sync);
        assert!(!Mode::Async.is_synchronous());
        assert!(Mode::CommitSync.is_synchronous() && Mode::Sync.is_synchronous());
        for o in OnLoss::ALL {
            assert_eq!(OnLoss::from(OnReplicaLoss::from(*o)), *o);
        }
    }
}
