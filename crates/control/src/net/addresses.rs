//! Claiming a vserver's address on this host: before a service binds an
//! address that belongs on a real device (`IP/PREFIX@NAME`, NAME an
//! `[[interfaces]]` entry of site.toml), the address is added to that
//! device through netlink unless the device has it already. A `Claim`
//! remembers exactly what was added, so releasing it never removes an
//! address the operator (or another program) put there.
//!
//! Loopback needs nothing: every 127/8 address is local already, and an
//! address naming no interface is the operator's to configure.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use tandem_store::AddressSpec;

use crate::config::resources::InterfaceSettings;

/// Longest a netlink request (connect, list, add, delete) may take.
pub const NETLINK_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("address {address}: device {device} not found on this host")]
    NoDevice { address: String, device: String },
    #[error("address {address}: cannot {what} on device {device}: {reason}")]
    Netlink {
        address: String,
        device: String,
        what: &'static str,
        reason: String,
    },
}

/// Where an address goes on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub device: String,
    pub ip: IpAddr,
    pub prefix: u8,
}

/// The device an address must be on, or None when nothing is to claim:
/// no `@NAME`, a loopback IP on `lo`, or a NAME this site does not declare
/// (served as before, if the host has the address: `failover --check`
/// reports the missing interface, and refusing to serve would turn a
/// config gap into an outage).
pub fn target(addr: &AddressSpec, interfaces: &[InterfaceSettings]) -> Option<Target> {
    let name = addr.interface.as_ref()?;
    let Some(iface) = interfaces.iter().find(|i| &i.name == name) else {
        tracing::warn!(address = %addr, interface = %name, "no [[interfaces]] entry of that name in site.toml; the address is not claimed");
        return None;
    };
    if iface.device == "lo" && addr.ip.is_loopback() {
        return None;
    }
    Some(Target {
        device: iface.device.clone(),
        ip: addr.ip,
        prefix: addr.prefix,
    })
}

/// An address this process added to a device; `release` deletes it.
#[derive(Debug)]
pub struct Claim {
    target: Target,
    ifindex: u32,
    released: bool,
}

impl Claim {
    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Deletes the address this claim added. Already gone (the device
    /// vanished, an operator removed it) is not an error.
    pub async fn release(mut self) -> Result<(), AddressError> {
        self.released = true;
        delete(&self.target, self.ifindex).await
    }
}

impl Drop for Claim {
    /// A claim dropped without `release` (a service torn down by a panic)
    /// still gives its address back, when a runtime is there to do it.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (target, ifindex) = (self.target.clone(), self.ifindex);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = delete(&target, ifindex).await {
                        tracing::warn!(error = %e, "cannot release a dropped address claim");
                    }
                });
            }
            Err(_) => tracing::warn!(
                device = %self.target.device,
                ip = %self.target.ip,
                "address claim dropped outside a runtime; left on the device"
            ),
        }
    }
}

/// The device's interface index; 0 from the kernel means no such device.
pub fn ifindex(device: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(device)
        .ok()
        .filter(|&index| index != 0)
}

/// Adds the address to its device unless it is there already. Returns the
/// claim when this call added it, None when nothing was added.
pub async fn claim(
    addr: &AddressSpec,
    interfaces: &[InterfaceSettings],
) -> Result<Option<Claim>, AddressError> {
    let Some(target) = target(addr, interfaces) else {
        return Ok(None);
    };
    let ifindex = ifindex(&target.device).ok_or_else(|| AddressError::NoDevice {
        address: addr.to_string(),
        device: target.device.clone(),
    })?;
    let fail = |what: &'static str, reason: String| AddressError::Netlink {
        address: addr.to_string(),
        device: target.device.clone(),
        what,
        reason,
    };
    let handle = connect().map_err(|e| fail("open netlink", e))?;
    let listed = bounded(async {
        handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .set_address_filter(target.ip)
            .execute()
            .try_next()
            .await
    })
    .await
    .map_err(|e| fail("list addresses", e.text))?;
    if listed.is_some() {
        tracing::info!(device = %target.device, ip = %target.ip, "address already on the device; not claimed");
        return Ok(None);
    }
    let mut add = handle.address().add(ifindex, target.ip, target.prefix);
    if target.ip.is_ipv6() {
        // A new IPv6 address is tentative (unbindable) until duplicate
        // address detection ends; the failover check probed already.
        let msg = add.message_mut();
        msg.header.flags |= AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match bounded(add.execute()).await {
        Ok(()) => {}
        // Added meanwhile by someone else: theirs, not ours to delete.
        Err(e) if e.errno == Some(libc::EEXIST) => return Ok(None),
        Err(e) => return Err(fail("add the address", e.text)),
    }
    tracing::info!(device = %target.device, ip = %target.ip, prefix = target.prefix, "address claimed");
    Ok(Some(Claim {
        target,
        ifindex,
        released: false,
    }))
}

async fn delete(target: &Target, ifindex: u32) -> Result<(), AddressError> {
    let fail = |what: &'static str, reason: String| AddressError::Netlink {
        address: format!("{}/{}", target.ip, target.prefix),
        device: target.device.clone(),
        what,
        reason,
    };
    let handle = connect().map_err(|e| fail("open netlink", e))?;
    let mut add = handle.address().add(ifindex, target.ip, target.prefix);
    let mut msg = add.message_mut().clone();
    // Deleting matches on the local address and prefix; the broadcast
    // attribute the add request carries is not needed.
    msg.attributes
        .retain(|a| matches!(a, AddressAttribute::Local(_) | AddressAttribute::Address(_)));
    match bounded(handle.address().del(msg).execute()).await {
        Ok(()) => {
            tracing::info!(device = %target.device, ip = %target.ip, "address released");
            Ok(())
        }
        Err(e) if matches!(e.errno, Some(libc::EADDRNOTAVAIL | libc::ENODEV)) => {
            tracing::info!(device = %target.device, ip = %target.ip, "address already gone");
            Ok(())
        }
        Err(e) => Err(fail("delete the address", e.text)),
    }
}

/// A netlink connection whose driver runs on the current runtime until
/// the handle is dropped.
fn connect() -> Result<rtnetlink::Handle, String> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(handle)
}

/// A failed netlink request: the kernel's errno when it gave one.
struct NlFailure {
    errno: Option<i32>,
    text: String,
}

/// A netlink request bounded by NETLINK_TIMEOUT_MS.
async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, rtnetlink::Error>>,
) -> Result<T, NlFailure> {
    match tokio::time::timeout(Duration::from_millis(NETLINK_TIMEOUT_MS), fut).await {
        Err(_) => Err(NlFailure {
            errno: None,
            text: format!("no answer within {NETLINK_TIMEOUT_MS} ms"),
        }),
        Ok(Err(rtnetlink::Error::NetlinkError(m))) => Err(NlFailure {
            errno: Some(-m.raw_code()),
            text: m.to_io().to_string(),
        }),
        Ok(Err(e)) => Err(NlFailure {
            errno: None,
            text: e.to_string(),
        }),
        Ok(Ok(v)) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, device: &str) -> InterfaceSettings {
        InterfaceSettings {
            name: name.into(),
            device: device.into(),
            substitute: None,
        }
    }

    fn addr(text: &str) -> AddressSpec {
        crate::config::names::parse_address(text).unwrap()
    }

    #[test]
    fn loopback_and_bare_addresses_need_no_claim() {
        let ifs = [iface("front", "lo"), iface("net", "eth7")];
        assert_eq!(target(&addr("127.0.0.2/32@front"), &ifs), None);
        assert_eq!(target(&addr("10.1.2.3/24"), &ifs), None);
        assert_eq!(target(&addr("10.1.2.3/24@side"), &ifs), None);
        assert_eq!(
            target(&addr("10.1.2.3/24@net"), &ifs),
            Some(Target {
                device: "eth7".into(),
                ip: "10.1.2.3".parse().unwrap(),
                prefix: 24
            })
        );
        // A non-loopback IP on lo is claimed there.
        assert!(target(&addr("10.1.2.3/32@front"), &ifs).is_some());
    }

    #[test]
    fn absent_device_has_no_index() {
        assert!(ifindex("lo").is_some());
        assert_eq!(ifindex("tandemnodev0"), None);
        assert_eq!(ifindex("bad\0name"), None);
    }

    #[tokio::test]
    async fn claim_on_an_absent_device_is_a_typed_error() {
        let ifs = [iface("net", "tandemnodev0")];
        let err = claim(&addr("10.1.2.3/24@net"), &ifs).await.unwrap_err();
        assert!(matches!(err, AddressError::NoDevice { .. }), "{err}");
        assert!(claim(&addr("127.0.0.5/32@x"), &[iface("x", "lo")])
            .await
            .unwrap()
            .is_none());
    }
}
