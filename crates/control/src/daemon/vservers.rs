//! The site's vservers as the control socket sees them: creating a
//! vserver, a file system, a user; status.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tandem_store::config::normalize_export_path;
use tandem_store::config::{MAX_ADDRESSES, MAX_CLIENT_RULES, MAX_FILESYSTEMS, MAX_GROUPS_PER_USER};
use tandem_store::{AddressSpec, Export, Lsn, Store, User};

use super::Daemon;
use crate::config::names::{validate_address, validate_export_path, validate_name};
use crate::error::{ControlError, Result};
use crate::vserver::status::{FsStatus, SiteStatus, StatusReport, VserverStatus};
use crate::vserver::Vserver;

impl Daemon {
    pub async fn status(&self, only: Option<&str>) -> Result<StatusReport> {
        let table = self.vservers.lock().await;
        let mut vservers = match only {
            Some(name) => vec![table
                .get(name)
                .ok_or_else(|| ControlError::NoVserver(name.to_string()))?
                .status()],
            None => table.values().map(Vserver::status).collect(),
        };
        let senders = self.senders.lock().await;
        for v in &mut vservers {
            let (Some(sender), Some(vs)) = (senders.get(&v.name), table.get(&v.name)) else {
                continue;
            };
            if let Ok(store) = vs.store() {
                v.replication = Some(Box::new(sender.status(store)));
            }
        }
        drop(senders);
        Ok(StatusReport {
            site: SiteStatus {
                name: self.site.config.name.clone(),
                id: self.site.identity.id.clone(),
                listen: self.site.config.listen.clone(),
                data_dir: self.site.paths.root.display().to_string(),
                daemon_pid: std::process::id(),
                peers: self.peers.lock().len(),
                refused_peer_connections: self.peer_tls.refused.load(Ordering::Relaxed),
                peer_listener_error: self.peer_listener_error.clone(),
            },
            vservers,
        })
    }

    pub async fn create_vserver(
        &self,
        name: &str,
        addresses: Vec<AddressSpec>,
    ) -> Result<VserverStatus> {
        validate_name("vserver name", name)?;
        if addresses.is_empty() {
            return Err(ControlError::invalid(
                "vserver",
                "needs at least one --address",
            ));
        }
        if addresses.len() > MAX_ADDRESSES {
            return Err(ControlError::invalid(
                "vserver",
                format!("more than {MAX_ADDRESSES} addresses"),
            ));
        }
        for (i, a) in addresses.iter().enumerate() {
            validate_address(a)?;
            if addresses[..i].iter().any(|b| b.ip == a.ip) {
                return Err(ControlError::invalid(
                    "address",
                    format!("{} is given twice", a.ip),
                ));
            }
        }
        let mut table = self.vservers.lock().await;
        if table.contains_key(name) {
            return Err(ControlError::VserverExists(name.to_string()));
        }
        self.room_for_another(table.len())?;
        for (other, vs) in table.iter() {
            let Ok(store) = vs.store() else { continue };
            let held = store.config().addresses;
            if let Some(a) = addresses.iter().find(|a| held.iter().any(|h| h.ip == a.ip)) {
                return Err(ControlError::Exists {
                    what: "address".into(),
                    detail: format!("{} is held by vserver {other}", a.ip),
                });
            }
        }
        let dir = self.site.paths.vserver(name);
        if dir.exists() {
            return Err(ControlError::Exists {
                what: "vserver directory".into(),
                detail: dir.display().to_string(),
            });
        }
        let vs = Vserver::create(
            &dir,
            name,
            addresses,
            &self.service_cfg,
            self.store_options(),
        )
        .await?;
        tracing::info!(vserver = name, "vserver created");
        let status = vs.status();
        table.insert(name.to_string(), vs);
        Ok(status)
    }

    pub async fn create_fs(
        &self,
        vserver: &str,
        name: &str,
        export: Export,
    ) -> Result<(FsStatus, Lsn)> {
        validate_name("file system name", name)?;
        validate_export_path(&export.path)?;
        if export.clients.len() > MAX_CLIENT_RULES {
            return Err(ControlError::invalid(
                "client networks",
                format!("more than {MAX_CLIENT_RULES}"),
            ));
        }
        let table = self.vservers.lock().await;
        let vs = table
            .get(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        let cfg = vs.store()?.config();
        if cfg.filesystems.contains_key(name) {
            return Err(ControlError::Exists {
                what: "file system".into(),
                detail: format!("{name} in vserver {vserver}"),
            });
        }
        if let Some(other) = cfg.fs_by_export_path(&export.path) {
            return Err(ControlError::Exists {
                what: "export path".into(),
                detail: format!(
                    "{} is already exported by file system {}",
                    normalize_export_path(&export.path),
                    other.name
                ),
            });
        }
        if cfg.filesystems.len() >= MAX_FILESYSTEMS {
            return Err(ControlError::invalid(
                "file system",
                format!("vserver {vserver} already has {MAX_FILESYSTEMS} file systems"),
            ));
        }
        let (fs, lsn) = vs.create_fs(name, export).await?;
        tracing::info!(vserver, fs = name, fsid = fs.fsid, "file system created");
        Ok((FsStatus::from_config(&fs), lsn))
    }

    pub async fn add_user(&self, vserver: &str, user: User) -> Result<Lsn> {
        validate_name("user name", &user.name)?;
        if user.groups.len() > MAX_GROUPS_PER_USER {
            return Err(ControlError::invalid(
                "groups",
                format!("more than {MAX_GROUPS_PER_USER} supplementary groups"),
            ));
        }
        let table = self.vservers.lock().await;
        let vs = table
            .get(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        if vs.store()?.config().users.contains_key(&user.name) {
            return Err(ControlError::Exists {
                what: "user".into(),
                detail: format!("{} in vserver {vserver}", user.name),
            });
        }
        let name = user.name.clone();
        let lsn = vs.add_user(user).await?;
        tracing::info!(vserver, user = %name, "user added");
        Ok(lsn)
    }

    /// The open store of a vserver, for in-process users (the demo).
    pub async fn store(&self, vserver: &str) -> Result<Arc<Store>> {
        let table = self.vservers.lock().await;
        let vs = table
            .get(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        Ok(vs.store()?.clone())
    }

    /// Refuses a new vserver when the site holds `held`, the most
    /// `control.max_vservers` allows.
    pub(super) fn room_for_another(&self, held: usize) -> Result<()> {
        let max = self.site.config.control.max_vservers;
        if held >= max {
            return Err(ControlError::invalid(
                "vserver",
                format!("the site already holds control.max_vservers = {max} vservers"),
            ));
        }
        Ok(())
    }
}
