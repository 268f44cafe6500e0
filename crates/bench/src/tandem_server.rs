//! Tandem's NFS service, started in-process on a runtime of its own so the
//! client workload and the server do not share worker threads.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tandem_nfs::{ServerConfig, VserverService};
use tandem_store::{Export, Store, StoreOptions};
use tracing::{info, warn};

use tandem_testkit::target::Target;

/// The file system's export path.
pub const EXPORT_PATH: &str = "/data";
/// How long the server runtime gets to wind down its tasks.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(10);

pub struct TandemServer {
    runtime: Option<tokio::runtime::Runtime>,
    service: Option<VserverService>,
    store: Arc<Store>,
    target: Target,
}

impl TandemServer {
    /// Creates a fresh store in `dir` with one file system exported at
    /// [`EXPORT_PATH`] (no root squash) and serves it on `ip`. Must not be
    /// called from inside an async runtime.
    pub fn start(
        dir: &Path,
        ip: IpAddr,
        nfs_port: u16,
        mount_port: u16,
    ) -> anyhow::Result<TandemServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("tandem-server")
            .build()
            .context("building the Tandem server runtime")?;
        let store = Store::init(dir, "bench", StoreOptions::default())
            .with_context(|| format!("creating a Tandem store in {}", dir.display()))?;
        let m = store
            .create_fs(
                "data",
                Export {
                    path: EXPORT_PATH.into(),
                    clients: vec![],
                    read_only: false,
                    root_squash: false,
                    anon_uid: 65534,
                    anon_gid: 65534,
                },
            )
            .context("creating the Tandem file system")?;
        store
            .wait_durable_blocking(m.lsn)
            .context("waiting for the file system record")?;
        let store = Arc::new(store);
        let cfg = ServerConfig {
            nfs_port,
            mount_port,
            portmap_port: None,
            ..ServerConfig::default()
        };
        let service = runtime
            .block_on(VserverService::start(store.clone(), vec![ip], cfg))
            .with_context(|| format!("starting Tandem's NFS service on {ip}"))?;
        let endpoint = service
            .endpoints()
            .into_iter()
            .find(|e| e.ip == ip)
            .with_context(|| format!("Tandem's NFS service reports no endpoint on {ip}"))?;
        info!(?endpoint, store = %dir.display(), "Tandem ready");
        Ok(TandemServer {
            runtime: Some(runtime),
            service: Some(service),
            store,
            target: Target {
                server: "Tandem",
                ip,
                nfs_port: endpoint.nfs_port,
                mount_port: endpoint.mount_port,
                export: EXPORT_PATH.into(),
            },
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Stops the service, closes the store and the runtime. Must not be
    /// called from inside an async runtime.
    pub fn stop(&mut self) {
        if let (Some(rt), Some(service)) = (self.runtime.as_ref(), self.service.take()) {
            rt.block_on(service.shutdown());
        }
        if let Err(e) = self.store.close() {
            warn!(error = %e, "closing the Tandem store");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(RUNTIME_SHUTDOWN);
        }
        info!("Tandem stopped");
    }
}

impl Drop for TandemServer {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            self.stop();
        }
    }
}
