//! The control socket's requests, each to the method that answers it.

use super::Daemon;
use crate::api::proto::{Reply, Request, Response};
use crate::error::Result;
use crate::replication::Outgoing;
use crate::vserver::status::StatusReport;

impl crate::api::Handler for Daemon {
    async fn handle(&self, req: Request) -> Response {
        self.dispatch(req).await
    }

    async fn status(&self) -> Result<StatusReport> {
        Daemon::status(self, None).await
    }
}

impl Daemon {
    pub(super) async fn dispatch(&self, req: Request) -> Response {
        let result = match req {
            Request::Status { vserver } => self.status(vserver.as_deref()).await.map(Reply::Status),
            Request::VserverCreate { name, addresses } => self
                .create_vserver(&name, addresses)
                .await
                .map(Reply::VserverCreated),
            Request::FsCreate {
                vserver,
                name,
                export,
            } => self
                .create_fs(&vserver, &name, export)
                .await
                .map(|(fs, lsn)| Reply::FsCreated { vserver, fs, lsn }),
            Request::UserAdd { vserver, user } => {
                let added = self.add_user(&vserver, user.clone()).await;
                added.map(|lsn| Reply::UserAdded { vserver, user, lsn })
            }
            Request::PeerAdd { peer } => self.add_peer(peer).await.map(Reply::PeerAdded),
            Request::PeerList => Ok(Reply::Peers(self.peers().await)),
            Request::PeerRemove { name } => self.remove_peer(&name).await.map(Reply::PeerRemoved),
            Request::PeerCheck { name } => self.check_peer(&name).await.map(Reply::PeerChecked),
            Request::Replicate {
                vserver,
                to,
                mode,
                replica_address,
                sync_timeout_ms,
                on_replica_loss,
                max_lag_ms,
                bandwidth_mbps,
                compress,
            } => {
                let out = Outgoing {
                    to,
                    mode,
                    replica_address,
                    sync_timeout_ms,
                    on_replica_loss,
                    max_lag_ms,
                    bandwidth_mbps,
                    compress,
                };
                self.replicate(&vserver, out)
                    .await
                    .map(|replication| Reply::Replicating {
                        vserver,
                        replication: Box::new(replication),
                    })
            }
            Request::ReplicateStop { vserver } => {
                self.stop_replication(&vserver)
                    .await
                    .map(|out| Reply::ReplicationStopped {
                        vserver,
                        to: out.to,
                    })
            }
            Request::Verify { vserver } => self.verify(&vserver).await.map(Reply::Verified),
            Request::FailoverCheck { vserver } => self
                .failover_check(&vserver)
                .await
                .map(Reply::FailoverChecked),
            Request::Failover { vserver, force } => self
                .failover(&vserver, force)
                .await
                .map(|r| Reply::FailedOver(Box::new(r))),
            Request::Resync {
                vserver,
                replica_address,
            } => self
                .resync(&vserver, replica_address)
                .await
                .map(|r| Reply::Resynced(Box::new(r))),
            Request::Switchover {
                vserver,
                to,
                timeout_ms,
            } => self
                .switchover(&vserver, &to, timeout_ms)
                .await
                .map(|r| Reply::SwitchedOver(Box::new(r))),
        };
        if let Err(e) = &result {
            tracing::info!(error = %e, "control request refused");
        }
        result.into()
    }
}
