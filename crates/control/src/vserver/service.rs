//! The seam between control and the NFS layer. The daemon starts one NFS
//! service per vserver address, so that an address that cannot be bound
//! fails alone while the others serve.

use std::net::IpAddr;
use std::sync::Arc;

use tandem_nfs::VserverService;
use tandem_store::Store;

use crate::config::site::ServiceConfig;
use crate::net::addresses::Claim;

// Where clients reach one address's services (also in status replies).
pub use tandem_nfs::Endpoint;

pub struct Service {
    inner: VserverService,
    /// The address this service's start added to a device, given back
    /// when it stops.
    claim: Option<Claim>,
}

impl Service {
    /// Starts NFS, MOUNT (and portmap if configured) on one address. The
    /// error is text because it is shown in status, not matched on.
    pub async fn start(
        store: Arc<Store>,
        ip: IpAddr,
        cfg: &ServiceConfig,
    ) -> std::result::Result<Service, String> {
        VserverService::start(store, vec![ip], cfg.nfs.clone())
            .await
            .map(|inner| Service { inner, claim: None })
            .map_err(|e| e.to_string())
    }

    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.inner.endpoints()
    }

    /// The switchover pause of this address's NFS calls.
    pub fn pause_gate(&self) -> Arc<tandem_nfs::pause::PauseGate> {
        self.inner.pause_gate()
    }

    /// Hands the service the claim of its address, released at shutdown.
    pub fn hold(&mut self, claim: Claim) {
        self.claim = Some(claim);
    }

    /// Stops serving, then releases the address it claimed (never one it
    /// found on the device).
    pub async fn shutdown(self) {
        self.inner.shutdown().await;
        if let Some(claim) = self.claim {
            if let Err(e) = claim.release().await {
                tracing::error!(error = %e, "cannot release the address");
            }
        }
    }
}
