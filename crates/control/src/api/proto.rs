//! Messages of the control API. Every request names the operation in `op`;
//! every response is either `{"result":"ok","reply":...}` or
//! `{"result":"error","kind":...,"message":...}`.

use serde::{Deserialize, Serialize};
use tandem_store::{AddressSpec, Export, Lsn, User};

use crate::config::peers::Peer;
use crate::error::{ControlError, ErrorKind};
use crate::replication::link::PeerCheck;
use crate::replication::ReplicationStatus;
use crate::vserver::status::{FsStatus, StatusReport, VserverStatus};

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
        mode: String,
        #[serde(default)]
        replica_address: Option<String>,
        /// commit-sync and sync: ms a reply waits for the replica's ack.
        #[serde(default)]
        sync_timeout_ms: Option<u64>,
        /// commit-sync and sync: "degrade" or "block".
        #[serde(default)]
        on_replica_loss: Option<String>,
        /// async: the lag above which change replies wait (ms).
        #[serde(default)]
        max_lag_ms: Option<u64>,
        /// Sender's bandwidth limit, Mbit/s.
        #[serde(default)]
        bandwidth_mbps: Option<u32>,
        /// "zstd" (default) or "none".
        #[serde(default)]
        compress: Option<String>,
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
        #[serde(default)]
        replica_address: Option<String>,
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
            (compress.as_deref(), max_lag_ms, bandwidth_mbps),
            (Some("none"), None, None)
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
        let resp: Response = Err(ControlError::NoVserver("vs".into())).into();
        let text = serde_json::to_string(&resp).unwrap();
        assert_eq!(
            text,
            r#"{"result":"error","kind":"not_found","message":"no vserver named vs"}"#
        );
    }
}
