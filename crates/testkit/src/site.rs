//! A site created in-process, as `tandem init` would, for helpers that set
//! up sites on loopback.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::Context;
use tandem_control::config::site::Site;

use crate::net::free_port;

/// `tandem init` for one site: peer listener on `ip`, NFS on free ports
/// of the same address, no portmapper; then `configure` has its say.
pub fn init_site(
    dir: &Path,
    name: &str,
    ip: IpAddr,
    configure: impl FnOnce(&mut Site),
) -> anyhow::Result<SocketAddr> {
    let listen = SocketAddr::new(ip, free_port(ip)?);
    let mut site = Site::init(dir, name, &listen.to_string(), false)
        .with_context(|| format!("creating site {name} in {}", dir.display()))?;
    site.config.nfs.portmap = false;
    site.config.nfs.nfs_port = free_port(ip)?;
    site.config.nfs.mount_port = free_port(ip)?;
    configure(&mut site);
    site.save()
        .with_context(|| format!("configuring site {name}"))?;
    Ok(listen)
}
