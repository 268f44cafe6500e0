//! Validation of the names and values an operator types: vserver, file
//! system and user names, addresses, export paths. Everything that reaches
//! the daemon is checked here again, because the control socket is input.

use std::net::IpAddr;

use tandem_store::config::{MAX_EXPORT_PATH_BYTES, MAX_VSERVER_NAME_BYTES};
use tandem_store::validate::shorten;
use tandem_store::AddressSpec;

use crate::error::{ControlError, Result};

/// Longest name of a vserver, file system, site or user, in bytes.
pub const MAX_NAME_BYTES: usize = MAX_VSERVER_NAME_BYTES;
/// Longest network interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_INTERFACE_BYTES: usize = 15;

/// The store's one naming rule (`tandem_store::validate::name_problem`),
/// as a control error that says which kind of name was wrong.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    match tandem_store::validate::name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(ControlError::invalid(what, problem)),
    }
}

/// Parses `IP/PREFIX[@INTERFACE]`, e.g. `10.0.0.5/24@eth0` or `127.0.0.2/32`.
pub fn parse_address(text: &str) -> Result<AddressSpec> {
    let what = "address";
    let (net, interface) = match text.split_once('@') {
        Some((net, iface)) => (net, Some(iface)),
        None => (text, None),
    };
    let Some((ip_text, prefix_text)) = net.split_once('/') else {
        return Err(ControlError::invalid(
            what,
            format!("{text:?} is not IP/PREFIX[@INTERFACE] (e.g. 127.0.0.2/32)"),
        ));
    };
    let ip: IpAddr = ip_text
        .parse()
        .map_err(|_| ControlError::invalid(what, format!("{ip_text:?} is not an IP address")))?;
    let prefix: u8 = prefix_text.parse().map_err(|_| {
        ControlError::invalid(what, format!("{prefix_text:?} is not a prefix length"))
    })?;
    let spec = AddressSpec {
        ip,
        prefix,
        interface: interface.map(str::to_string),
    };
    validate_address(&spec)?;
    Ok(spec)
}

/// Checks an address however it arrived (CLI or control socket).
pub fn validate_address(spec: &AddressSpec) -> Result<()> {
    let what = "address";
    let max_prefix = if spec.ip.is_ipv4() { 32 } else { 128 };
    if spec.prefix > max_prefix {
        return Err(ControlError::invalid(
            what,
            format!("prefix /{} is longer than {max_prefix} bits", spec.prefix),
        ));
    }
    if spec.ip.is_unspecified() || spec.ip.is_multicast() {
        return Err(ControlError::invalid(
            what,
            format!("{} cannot be a server address", spec.ip),
        ));
    }
    if let IpAddr::V4(v4) = spec.ip {
        if v4.is_broadcast() {
            return Err(ControlError::invalid(
                what,
                format!("{v4} cannot be a server address"),
            ));
        }
    }
    if let Some(iface) = &spec.interface {
        validate_interface(iface)?;
    }
    Ok(())
}

pub fn validate_interface(iface: &str) -> Result<()> {
    let what = "interface";
    if iface.is_empty() || iface.len() > MAX_INTERFACE_BYTES {
        return Err(ControlError::invalid(
            what,
            format!("{iface:?} must be 1..={MAX_INTERFACE_BYTES} bytes"),
        ));
    }
    // Linux refuses '/', ':' (alias syntax) and whitespace in device names.
    if iface
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(ControlError::invalid(
            what,
            format!("{iface:?} is not a valid interface name"),
        ));
    }
    Ok(())
}

/// Parses a comma-separated CIDR list ("10.0.0.0/8,192.168.1.7/32"). A bare
/// IP means that one host.
pub fn parse_clients(text: &str) -> Result<Vec<ipnet::IpNet>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net = match part.parse::<ipnet::IpNet>() {
            Ok(net) => net,
            Err(_) => match part.parse::<IpAddr>() {
                Ok(ip) => ipnet::IpNet::from(ip),
                Err(_) => {
                    return Err(ControlError::invalid(
                        "client network",
                        format!("{part:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address"),
                    ))
                }
            },
        };
        out.push(net);
    }
    Ok(out)
}

/// Export paths are what clients mount: absolute, no "." or ".."
/// components, no NUL, bounded length.
pub fn validate_export_path(path: &str) -> Result<()> {
    let what = "export path";
    if !path.starts_with('/') {
        return Err(ControlError::invalid(
            what,
            format!("{:?} must start with '/'", shorten(path)),
        ));
    }
    if path.len() > MAX_EXPORT_PATH_BYTES {
        return Err(ControlError::invalid(
            what,
            format!("longer than {MAX_EXPORT_PATH_BYTES} bytes"),
        ));
    }
    if path.contains('\0') {
        return Err(ControlError::invalid(what, "contains a NUL byte"));
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        return Err(ControlError::invalid(
            what,
            format!("{path:?} has a '.' or '..' component"),
        ));
    }
    Ok(())
}

/// Parses "1,2,3" into group ids.
pub fn parse_groups(text: &str) -> Result<Vec<u32>> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>()
                .map_err(|_| ControlError::invalid("group list", format!("{p:?} is not a gid")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("vserver", "vs-1.a_b").is_ok());
        assert!(validate_name("vserver", "").is_err());
        assert!(validate_name("vserver", "..").is_err());
        assert!(validate_name("vserver", "9a").is_ok());
        assert!(validate_name("user", "_apt").is_ok());
        for hidden_or_option in [".", ".hidden", "-rf"] {
            let e = validate_name("vserver", hidden_or_option).unwrap_err();
            assert!(e.to_string().contains("must start with a letter"), "{e}");
        }
        assert!(validate_name("vserver", "a/b").is_err());
        assert!(validate_name("vserver", "é").is_err());
        assert!(validate_name("vserver", &"a".repeat(64)).is_ok());
        assert!(validate_name("vserver", &"a".repeat(65)).is_err());
    }

    #[test]
    fn addresses() {
        let a = parse_address("127.0.0.2/32").unwrap();
        assert_eq!(a.prefix, 32);
        assert_eq!(a.interface, None);
        let a = parse_address("10.1.2.3/24@eth0").unwrap();
        assert_eq!(a.interface.as_deref(), Some("eth0"));
        assert!(parse_address("fd00::5/64@br-x").is_ok());
        for bad in [
            "127.0.0.2",
            "127.0.0.2/33",
            "300.0.0.1/32",
            "1.2.3.4/x",
            "0.0.0.0/0",
            "1.2.3.4/32@",
            "1.2.3.4/32@a:b",
            "1.2.3.4/32@waytoolonginterfacename",
            "::/128",
        ] {
            assert!(parse_address(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn clients_and_paths() {
        assert_eq!(parse_clients("10.0.0.0/8, 1.2.3.4").unwrap().len(), 2);
        assert!(parse_clients("10.0.0.0/33").is_err());
        assert!(parse_clients("bogus").is_err());
        assert!(validate_export_path("/data").is_ok());
        assert!(validate_export_path("data").is_err());
        assert!(validate_export_path("/a/../b").is_err());
        assert_eq!(parse_groups("1, 2,3").unwrap(), vec![1, 2, 3]);
        assert!(parse_groups("1,x").is_err());
    }
}
