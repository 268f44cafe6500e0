//! Messages of the control API. Every request names the operation in `op`;
//! every response is either `{"result":"ok","reply":...}` or
//! `{"result":"error","kind":...,"message":...}`.

use serde::{Deserialize, Serialize};
use tandem_store::{AddressSpec, Export, Lsn, User};

use crate::config::peers::Peer;
use crate::error::{ControlError, ErrorKind};
use crate::replication::link::PeerCheck;
use crate::replication::{Compress, Mode, OnLoss, ReplicationStatus};
use crate::vserver::status::{FsStatus, StatusReport, VserverStatus};

/// A byte figure in MiB (2^20 bytes): the unit the CLI and the bench
/// reports show sizes, amounts and rates in.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// Longest response the CLI accepts (a status with a large user map).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status {
        #[serde(default)]
        vserver: Option<String>,
    },
    VserverCreate {
        name: String,
        addresses: Vec<AddressSpec>,
    },
    FsCreate {
        vserver: String,
        name: String,
        export: Export,
    },
    UserAdd {
        vserver: String,
        user: User,
    },
    PeerAdd {
        peer: Peer,
    },
    PeerList,
    PeerRemove {
        name: String,
    },
    PeerCheck {
        name: String,
    },
    Replicate {
        vserver: String,
        /// Peer name.
        to: String,
        mode: Mode,
        #[serde(default, with = "crate::config::address_text::option")]
        replica_address: Option<AddressSpec>,
        /// commit-sync and sync: ms a reply waits for the replica's ack.
        #[serde(default)]
        sync_timeout_ms: Option<u64>,
        /// commit-sync and sync.
        #[serde(default)]
        on_replica_loss: Option<OnLoss>,
        /// async: the lag above which change replies wait (ms).
        #[serde(default)]
        max_lag_ms: Option<u64>,
        /// Sender's bandwidth limit, Mbit/s.
        #[serde(default)]
        bandwidth_mbps: Option<u32>,
        /// zstd (default) or none.
        #[serde(default)]
        compress: Option<Compress>,
    },
    /// Stops sending `vserver`; the replica at the peer stays.
    ReplicateStop {
        vserver: String,
    },
    /// Compare the vserver's content at both sites (run at the active site).
    Verify {
        vserver: String,
    },
    /// `tandem failover VS --check`: check this (DR) site's resources for
    /// the vserver and report; changes nothing.
    FailoverCheck {
        vserver: String,
    },
    /// `tandem failover VS`: check, then (all present, or `force`)
    /// reserve, promote and serve here; resumes an interrupted failover.
    Failover {
        vserver: String,
        #[serde(default)]
        force: bool,
    },
    /// `tandem resync VS` at a diverged former active site.
    Resync {
        vserver: String,
        #[serde(default, with = "crate::config::address_text::option")]
        replica_address: Option<AddressSpec>,
    },
    /// `tandem switchover VS --to PEER` (at the active site): pause, ship
    /// the tail, demote here, promote at the peer, replicate back.
    Switchover {
        vserver: String,
        to: String,
        /// Longest client-visible pause before giving up (unpaused,
        /// nothing moved); default `switchover_report::DEFAULT_TIMEOUT_MS`.
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Status(StatusReport),
    VserverCreated(VserverStatus),
    FsCreated {
        vserver: String,
        fs: FsStatus,
        lsn: Lsn,
    },
    UserAdded {
        vserver: String,
        user: User,
        lsn: Lsn,
    },
    PeerAdded(Peer),
    Peers(Vec<Peer>),
    PeerRemoved(Peer),
    PeerChecked(PeerCheck),
    Replicating {
        vserver: String,
        /// Boxed: much larger than the other replies.
        replication: Box<ReplicationStatus>,
    },
    Verified(crate::replication::verify::VerifyReport),
    FailoverChecked(crate::dr::failover::check::FailoverCheck),
    FailedOver(Box<crate::dr::failover::report::FailoverReport>),
    Resynced(Box<crate::dr::resync::ResyncReport>),
    SwitchedOver(Box<crate::dr::switchover::report::SwitchoverReport>),
    ReplicationStopped {
        vserver: String,
        /// The peer it was sent to.
        to: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok { reply: Reply },
    Error { kind: ErrorKind, message: String },
}

impl From<std::result::Result<Reply, ControlError>> for Response {
    fn from(r: std::result::Result<Reply, ControlError>) -> Self {
        match r {
            Ok(reply) => Response::Ok { reply },
            Err(e) => Response::Error {
                kind: e.kind(),
                message: e.to_string(),
            },
        }
    }
}

impl Response {
    pub fn into_result(self) -> std::result::Result<Reply, ControlError> {
        match self {
            Response::Ok { reply } => Ok(reply),
            Response::Error { kind, message } => Err(ControlError::Remote { kind, message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let req: Request = serde_json::from_str(r#"{"op":"status","vserver":null}"#).unwrap();
        assert_eq!(req, Request::Status { vserver: None });
        let req: Request = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert_eq!(req, Request::Status { vserver: None });
        let req: Request = serde_json::from_str(r#"{"op":"verify","vserver":"vs"}"#).unwrap();
        assert_eq!(
            req,
            Request::Verify {
                vserver: "vs".into()
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"verify"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"status","x":1}"#).is_err());
        let req: Request =
            serde_json::from_str(r#"{"op":"failover_check","vserver":"vs"}"#).unwrap();
        assert_eq!(
            req,
            Request::FailoverCheck {
                vserver: "vs".into()
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"failover_check"}"#).is_err());
        let req: Request = serde_json::from_str(r#"{"op":"failover","vserver":"vs"}"#).unwrap();
        assert_eq!(
            req,
            Request::Failover {
                vserver: "vs".into(),
                force: false
            }
        );
        assert!(serde_json::from_str::<Request>(
            r#"{"op":"failover","vserver":"vs","force":"yes"}"#
        )
        .is_err());
        let req: Request =
            serde_json::from_str(r#"{"op":"replicate_stop","vserver":"vs"}"#).unwrap();
        assert_eq!(
            req,
            Request::ReplicateStop {
                vserver: "vs".into()
            }
        );
        // Options absent from an older client are None; unknown ones refused.
        let req: Request = serde_json::from_str(
            r#"{"op":"replicate","vserver":"vs","to":"b","mode":"async","compress":"none"}"#,
        )
        .unwrap();
        let Request::Replicate {
            compress,
            max_lag_ms,
            bandwidth_mbps,
            ..
        } = req
        else {
            panic!("not a replicate request: {req:?}");
        };
        assert_eq!(
            (compress, max_lag_ms, bandwidth_mbps),
            (Some(Compress::None), None, None)
        );
        assert!(serde_json::from_str::<Request>(
            r#"{"op":"replicate","vserver":"vs","to":"b","mode":"async","level":9}"#
        )
        .is_err());
        // Switchover: the timeout may be left out; the peer may not.
        let req: Request =
            serde_json::from_str(r#"{"op":"switchover","vserver":"vs","to":"b"}"#).unwrap();
        assert_eq!(
            req,
            Request::Switchover {
                vserver: "vs".into(),
                to: "b".into(),
                timeout_ms: None
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"switchover","vserver":"vs"}"#).is_err());
        assert!(serde_json::from_str::<Request>(
            r#"{"op":"switchover","vserver":"vs","to":"b","timeout_ms":-1}"#
        )
        .is_err());
        let e = serde_json::from_str::<Request>(
            r#"{"op":"replicate","vserver":"vs","to":"b","mode":"async","compress":"lz4"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("compress \"lz4\" is not one of zstd, none"),
            "{e}"
        );
        assert!(serde_json::from_str::<Request>(
            r#"{"op":"replicate","vserver":"vs","to":"b","mode":"async","replica_address":"1.2.3"}"#
        )
        .is_err());
        let resp: Response = Err(ControlError::NoVserver("vs".into())).into();
        let text = serde_json::to_string(&resp).unwrap();
        assert_eq!(
            text,
            r#"{"result":"error","kind":"not_found","message":"no vserver named vs"}"#
        );
    }

    /// JSON as clients and daemons wrote it while these values were
    /// strings: read to typed values, and written back byte for byte.
    #[test]
    fn older_json_reads_and_writes_back_the_same() {
        let request = concat!(
            r#"{"op":"replicate","vserver":"vs","to":"beta","mode":"commit-sync","#,
            r#""replica_address":"10.1.2.3/24@eth0","sync_timeout_ms":700,"#,
            r#""on_replica_loss":"block","max_lag_ms":null,"bandwidth_mbps":10,"compress":"none"}"#
        );
        let req: Request = serde_json::from_str(request).unwrap();
        let Request::Replicate {
            mode,
            replica_address,
            on_replica_loss,
            compress,
            ..
        } = &req
        else {
            panic!("not a replicate request: {req:?}");
        };
        assert_eq!(*mode, Mode::CommitSync);
        assert_eq!(*on_replica_loss, Some(OnLoss::Block));
        assert_eq!(*compress, Some(Compress::None));
        assert_eq!(
            replica_address.as_ref().map(|a| a.interface.as_deref()),
            Some(Some("eth0"))
        );
        assert_eq!(serde_json::to_string(&req).unwrap(), request);
        let resync = r#"{"op":"resync","vserver":"vs","replica_address":null}"#;
        let req: Request = serde_json::from_str(resync).unwrap();
        assert_eq!(serde_json::to_string(&req).unwrap(), resync);

        let status = concat!(
            r#"{"result":"ok","reply":{"status":{"site":{"name":"alpha","id":"ab","#,
            r#""listen":"127.0.0.1:7700","data_dir":"/d","daemon_pid":7,"peers":1,"#,
            r#""refused_peer_connections":0},"vservers":["#,
            r#"{"name":"vs","state":"active","addresses":["127.0.0.2/32","10.0.0.5/24@eth0"],"#,
            r#""filesystems":[],"users":[],"last_lsn":9,"durable_lsn":9,"endpoints":[],"#,
            r#""bind_failures":[],"replication":{"to":"beta","mode":"sync","state":"catch-up","#,
            r#""replica_lsn":5,"lag_records":4,"lag_bytes":400,"lag_ms":12,"#,
            r#""replica_address":"127.0.0.9/32","on_replica_loss":"degrade","#,
            r#""sync_timeout_ms":5000,"degraded":false,"degraded_replies":0,"#,
            r#""compress":"zstd","estimated_rpo_ms":0,"sent_wire_bytes":1,"#,
            r#""sent_journal_bytes":2,"acked_journal_bytes":3,"wire_bytes_per_second":0,"#,
            r#""acked_journal_bytes_per_second":0,"catchup_done_bytes":0,"#,
            r#""catchup_total_bytes":100}},"#,
            r#"{"name":"other","state":"replica","addresses":[],"filesystems":[],"users":[],"#,
            r#""last_lsn":3,"durable_lsn":3,"endpoints":[],"bind_failures":[],"#,
            r#""replication":{"from":"cd","mode":"async","state":"baseline-unfinished","#,
            r#""replica_lsn":0,"lag_records":0,"lag_bytes":0,"lag_ms":0,"degraded":false,"#,
            r#""degraded_replies":0,"sent_wire_bytes":0,"sent_journal_bytes":0,"#,
            r#""acked_journal_bytes":0,"wire_bytes_per_second":0,"#,
            r#""acked_journal_bytes_per_second":0}}]}}}"#
        );
        let resp: Response = serde_json::from_str(status).unwrap();
        let Response::Ok {
            reply: Reply::Status(report),
        } = &resp
        else {
            panic!("not a status: {resp:?}");
        };
        let vs = &report.vservers[0];
        assert_eq!(vs.addresses[1].interface.as_deref(), Some("eth0"));
        let r = vs.replication.as_deref().unwrap();
        assert_eq!(
            (r.mode, r.state, r.on_replica_loss, r.figures.compress),
            (
                Mode::Sync,
                crate::replication::ReplicationState::CatchUp,
                Some(OnLoss::Degrade),
                Some(Compress::Zstd)
            )
        );
        let other = report.vservers[1].replication.as_deref().unwrap();
        assert_eq!(
            other.state,
            crate::replication::ReplicationState::BaselineUnfinished
        );
        assert_eq!(serde_json::to_string(&resp).unwrap(), status);
    }
}
