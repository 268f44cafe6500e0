//! Ports for servers started side by side on one machine.

use std::net::IpAddr;

use anyhow::Context;

/// A port nobody listens on at `ip` now (bound, then released). Free when
/// asked only: callers also give each server an address of its own, so a
/// later collision is unlikely.
pub fn free_port(ip: IpAddr) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind((ip, 0))
        .with_context(|| format!("finding a free port on {ip}"))?;
    Ok(l.local_addr().context("a bound port")?.port())
}
