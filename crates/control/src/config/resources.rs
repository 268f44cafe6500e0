//! A site's declared resources in site.toml: the network interfaces its
//! vserver addresses name, and its storage pools. A failover checks them
//! (failover.rs) before it claims anything.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use tandem_store::AddressSpec;

use crate::config::names::{validate_interface, validate_name};

/// Most `[[interfaces]]` entries one site declares.
pub const MAX_INTERFACES: usize = 64;
/// Most `[[pools]]` entries one site declares.
pub const MAX_POOLS: usize = 64;
/// Longest pool path, in bytes.
pub const MAX_POOL_PATH_BYTES: usize = 4096;

/// One `[[interfaces]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSettings {
    /// What a vserver address names after '@'.
    pub name: String,
    /// The Linux network device it maps to here (e.g. "eth0", "lo").
    pub device: String,
    /// "IP/PREFIX" to use instead of the vserver's own address when this
    /// site is on another subnet (a DR site elsewhere).
    #[serde(
        default,
        with = "crate::config::address_text::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub substitute: Option<AddressSpec>,
}

/// One `[[pools]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    pub name: String,
    /// An absolute directory.
    pub path: String,
    /// Room the operator grants replicas here; none means the file
    /// system's free space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
}

pub fn validate_interfaces(list: &[InterfaceSettings]) -> Result<(), String> {
    if list.len() > MAX_INTERFACES {
        return Err(format!(
            "{} [[interfaces]] entries; at most {MAX_INTERFACES}",
            list.len()
        ));
    }
    let mut names = BTreeSet::new();
    for (i, iface) in list.iter().enumerate() {
        let at = format!("interfaces[{i}] ({:?})", iface.name);
        validate_interface(&iface.name).map_err(|e| format!("{at}: name: {e}"))?;
        validate_interface(&iface.device).map_err(|e| format!("{at}: device: {e}"))?;
        if let Some(sub) = iface.substitute.as_ref().filter(|s| s.interface.is_some()) {
            return Err(format!(
                "{at}: substitute \"{sub}\" must be IP/PREFIX, without @INTERFACE"
            ));
        }
        if !names.insert(iface.name.as_str()) {
            return Err(format!("{at}: declared twice"));
        }
    }
    Ok(())
}

pub fn validate_pools(list: &[PoolSettings]) -> Result<(), String> {
    if list.len() > MAX_POOLS {
        return Err(format!(
            "{} [[pools]] entries; at most {MAX_POOLS}",
            list.len()
        ));
    }
    let mut names = BTreeSet::new();
    for (i, pool) in list.iter().enumerate() {
        let at = format!("pools[{i}] ({:?})", pool.name);
        validate_name("pool name", &pool.name).map_err(|e| format!("{at}: {e}"))?;
        if !pool.path.starts_with('/')
            || pool.path.len() > MAX_POOL_PATH_BYTES
            || pool.path.contains('\0')
        {
            return Err(format!(
                "{at}: path {:?} must be absolute, at most {MAX_POOL_PATH_BYTES} bytes",
                pool.path
            ));
        }
        if pool.capacity_bytes == Some(0) {
            return Err(format!("{at}: capacity_bytes must not be 0"));
        }
        if !names.insert(pool.name.as_str()) {
            return Err(format!("{at}: declared twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, device: &str, substitute: Option<&str>) -> InterfaceSettings {
        InterfaceSettings {
            name: name.into(),
            device: device.into(),
            substitute: substitute.map(|s| crate::config::names::parse_address(s).unwrap()),
        }
    }

    fn pool(name: &str, path: &str, capacity_bytes: Option<u64>) -> PoolSettings {
        PoolSettings {
            name: name.into(),
            path: path.into(),
            capacity_bytes,
        }
    }

    #[test]
    fn good_interfaces_pass() {
        validate_interfaces(&[
            iface("front", "lo", None),
            iface("back", "eth0.100", Some("10.1.0.5/24")),
        ])
        .unwrap();
    }

    #[test]
    fn bad_interfaces_name_the_entry() {
        let cases = [
            (vec![iface("bad name", "lo", None)], "interfaces[0]"),
            (vec![iface("front", "", None)], "device"),
            (vec![iface("front", "averyveryverylongdev", None)], "device"),
            (
                vec![iface("front", "lo", Some("10.0.0.1/24@eth0"))],
                "without @INTERFACE",
            ),
            (
                vec![iface("front", "lo", None), iface("front", "eth0", None)],
                "interfaces[1] (\"front\"): declared twice",
            ),
        ];
        for (list, want) in cases {
            let err = validate_interfaces(&list).unwrap_err();
            assert!(err.contains(want), "{list:?}: {err}");
        }
        let many: Vec<_> = (0..=MAX_INTERFACES)
            .map(|i| iface(&format!("if{i}"), "lo", None))
            .collect();
        assert!(validate_interfaces(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn substitutes_are_read_as_addresses() {
        let read = |text: &str| toml::from_str::<InterfaceSettings>(text);
        let ok =
            read("name = \"back\"\ndevice = \"eth0\"\nsubstitute = \"10.1.0.5/24\"\n").unwrap();
        assert_eq!(
            ok.substitute.map(|s| s.to_string()).as_deref(),
            Some("10.1.0.5/24")
        );
        let e = read("name = \"back\"\ndevice = \"eth0\"\nsubstitute = \"10.0.0.1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("substitute") && e.contains("not IP/PREFIX"),
            "{e}"
        );
    }

    #[test]
    fn bad_pools_name_the_entry() {
        validate_pools(&[
            pool("p", "/srv/p", Some(1 << 30)),
            pool("q", "/srv/q", None),
        ])
        .unwrap();
        let cases = [
            (vec![pool("..", "/srv", None)], "pools[0]"),
            (vec![pool("p", "relative", None)], "absolute"),
            (vec![pool("p", "/srv", Some(0))], "capacity_bytes"),
            (
                vec![pool("p", "/a", None), pool("p", "/b", None)],
                "pools[1] (\"p\"): declared twice",
            ),
        ];
        for (list, want) in cases {
            let err = validate_pools(&list).unwrap_err();
            assert!(err.contains(want), "{list:?}: {err}");
        }
        let many: Vec<_> = (0..=MAX_POOLS)
            .map(|i| pool(&format!("p{i}"), "/srv", None))
            .collect();
        assert!(validate_pools(&many).unwrap_err().contains("at most"));
    }
}
