//! `tandem failover VS --check`: steps 1 (check) and 2 (report) of a
//! failover (docs/design.md, "Failover, switchover and failback"). Each resource the vserver needs
//! at this site is one line: found, missing or discrepant, and why. Nothing
//! here changes a store, an address or an epoch.

use std::io::ErrorKind as IoKind;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tandem_store::AddressSpec;

use crate::config::resources::{InterfaceSettings, PoolSettings};
use crate::replication::ReplicationState;

/// Where Linux lists network devices.
pub const SYS_CLASS_NET: &str = "/sys/class/net";
/// Least free space a pool must have for a promoted vserver to take writes.
pub const MIN_POOL_FREE_BYTES: u64 = 64 << 20;
/// Most directory entries counted when measuring a store on disk; past it
/// the size is reported as "at least".
pub const MAX_DISK_USAGE_ENTRIES: u64 = 1_000_000;
/// Longest operstate file read (it holds one word).
const MAX_OPERSTATE_BYTES: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Found,
    Missing,
    Discrepant,
    /// Not checked yet (said why); does not block.
    NotChecked,
}

impl Outcome {
    pub fn blocks(self) -> bool {
        matches!(self, Outcome::Missing | Outcome::Discrepant)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Found => "found",
            Outcome::Missing => "missing",
            Outcome::Discrepant => "discrepant",
            Outcome::NotChecked => "not-checked",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckLine {
    /// What was checked, e.g. "address 127.0.0.2/32 interface".
    pub resource: String,
    pub outcome: Outcome,
    pub reason: String,
}

impl CheckLine {
    fn new(resource: impl Into<String>, outcome: Outcome, reason: impl Into<String>) -> Self {
        CheckLine {
            resource: resource.into(),
            outcome,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverCheck {
    pub vserver: String,
    pub site: String,
    /// Whether no line is missing or discrepant.
    pub ready: bool,
    pub lines: Vec<CheckLine>,
}

impl FailoverCheck {
    pub fn new(vserver: &str, site: &str, lines: Vec<CheckLine>) -> Self {
        FailoverCheck {
            vserver: vserver.to_string(),
            site: site.to_string(),
            ready: !lines.iter().any(|l| l.outcome.blocks()),
            lines,
        }
    }
}

/// The interface an address belongs on. An address without `@NAME` takes
/// the site's only interface, if it declares exactly one.
pub fn check_interface<'a>(
    addr: &AddressSpec,
    interfaces: &'a [InterfaceSettings],
) -> (CheckLine, Option<&'a InterfaceSettings>) {
    let resource = format!("address {} interface", bare(addr));
    match &addr.interface {
        Some(name) => match interfaces.iter().find(|i| &i.name == name) {
            Some(i) => (
                CheckLine::new(
                    resource,
                    Outcome::Found,
                    format!("{name} is device {}", i.device),
                ),
                Some(i),
            ),
            None => (
                CheckLine::new(
                    resource,
                    Outcome::Missing,
                    format!("no [[interfaces]] entry named {name} in site.toml"),
                ),
                None,
            ),
        },
        None => match interfaces {
            [only] => (
                CheckLine::new(
                    resource,
                    Outcome::Found,
                    format!(
                        "the address names no interface; assumed {} (the only one declared), device {}",
                        only.name, only.device
                    ),
                ),
                Some(only),
            ),
            _ => (
                CheckLine::new(
                    resource,
                    Outcome::Missing,
                    format!(
                        "the address names no interface and site.toml declares {}; add @NAME to the address",
                        interfaces.len()
                    ),
                ),
                None,
            ),
        },
    }
}

/// The device present under `sys_net` and up. Devices without carrier
/// state (loopback, some tunnels) say "unknown", which counts as up.
pub fn check_device(sys_net: &Path, device: &str) -> CheckLine {
    let resource = format!("device {device}");
    let dir = sys_net.join(device);
    if !dir.exists() {
        return CheckLine::new(
            resource,
            Outcome::Missing,
            format!("no such device ({} absent)", dir.display()),
        );
    }
    let state = match read_small(&dir.join("operstate"), MAX_OPERSTATE_BYTES) {
        Ok(s) => s.trim().to_string(),
        Err(e) => {
            return CheckLine::new(
                resource,
                Outcome::Discrepant,
                format!("present, but its state cannot be read: {e}"),
            )
        }
    };
    match state.as_str() {
        "up" => CheckLine::new(resource, Outcome::Found, "present and up"),
        "unknown" => CheckLine::new(
            resource,
            Outcome::Found,
            "present; operstate unknown (no carrier state, as on lo), taken as up",
        ),
        other => CheckLine::new(
            resource,
            Outcome::Discrepant,
            format!("present but not up (operstate {other})"),
        ),
    }
}

fn read_small(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max_bytes)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// The address not held by another vserver of this site: `held` lists
/// (vserver, IP) of every other vserver's addresses and replica address.
pub fn check_not_held(addr: &AddressSpec, held: &[(String, IpAddr)]) -> CheckLine {
    let resource = format!("address {} at this site", bare(addr));
    match held.iter().find(|(_, ip)| *ip == addr.ip) {
        Some((other, _)) => CheckLine::new(
            resource,
            Outcome::Discrepant,
            format!("held by vserver {other} here"),
        ),
        None => CheckLine::new(resource, Outcome::Found, "held by no other vserver here"),
    }
}

/// Whether another host answers for the address on the interface's
/// device (crate::net::probe, bounded by PROBE_TIMEOUT_MS). Not probed, and
/// said why, when there is no device to ask, on loopback, or without
/// CAP_NET_RAW.
pub fn check_not_on_network(addr: &AddressSpec, iface: Option<&InterfaceSettings>) -> CheckLine {
    let resource = format!("address {} on the network", bare(addr));
    let not_checked = |why: String| CheckLine::new(resource.clone(), Outcome::NotChecked, why);
    let Some(iface) = iface else {
        return not_checked("not probed: no interface to probe on".into());
    };
    if iface.device == "lo" {
        return not_checked("not probed: on loopback no other host can hold it".into());
    }
    let Some(ifindex) = crate::net::addresses::ifindex(&iface.device) else {
        return not_checked(format!("not probed: device {} absent", iface.device));
    };
    let timeout = std::time::Duration::from_millis(crate::net::probe::PROBE_TIMEOUT_MS);
    match crate::net::probe::probe(ifindex, addr.ip, timeout) {
        Ok(crate::net::probe::Probed::Answered { mac }) => CheckLine::new(
            resource,
            Outcome::Missing,
            format!(
                "in use on the network by MAC {mac} (answered a probe on {})",
                iface.device
            ),
        ),
        Ok(crate::net::probe::Probed::Silent) => CheckLine::new(
            resource,
            Outcome::Found,
            format!(
                "no host answered a probe on {} within {} ms",
                iface.device,
                crate::net::probe::PROBE_TIMEOUT_MS
            ),
        ),
        Err(e) if e.kind() == IoKind::PermissionDenied => {
            not_checked(format!("not probed: {e}; probing needs CAP_NET_RAW"))
        }
        Err(e) => not_checked(format!("not probed on {}: {e}", iface.device)),
    }
}

/// One service port free on the address. An address this host does not
/// have yet is fine: the failover claims it before it binds.
pub fn check_port(ip: IpAddr, service: &str, port: u16) -> CheckLine {
    let resource = format!("{service} port {}", SocketAddr::new(ip, port));
    port_line(
        resource,
        TcpListener::bind(SocketAddr::new(ip, port)).map(drop),
    )
}

/// The report line for a trial bind's outcome.
fn port_line(resource: String, bound: std::io::Result<()>) -> CheckLine {
    match bound {
        Ok(()) => CheckLine::new(resource, Outcome::Found, "free"),
        Err(e) if e.kind() == IoKind::AddrNotAvailable => CheckLine::new(
            resource,
            Outcome::Found,
            "the address is not on this host yet; will be claimed",
        ),
        Err(e) if e.kind() == IoKind::AddrInUse => {
            CheckLine::new(resource, Outcome::Discrepant, "in use by another process")
        }
        Err(e) if e.kind() == IoKind::PermissionDenied => CheckLine::new(
            resource,
            Outcome::Discrepant,
            format!("cannot bind it ({e}); ports below 1024 need root"),
        ),
        Err(e) => CheckLine::new(
            resource,
            Outcome::Discrepant,
            format!("cannot bind it: {e}"),
        ),
    }
}

/// What the replica's state says about its completeness.
pub fn check_replica_complete(
    in_baseline: bool,
    replication_state: Option<ReplicationState>,
) -> CheckLine {
    let resource = "replica completeness";
    if in_baseline {
        return CheckLine::new(
            resource,
            Outcome::Missing,
            format!(
                "a baseline or catch-up is unfinished ({}); the copy is not whole",
                replication_state.unwrap_or(ReplicationState::Baseline)
            ),
        );
    }
    CheckLine::new(
        resource,
        Outcome::Found,
        "complete (no baseline or catch-up in progress)",
    )
}

/// The replica's LSN and the lag as last known here.
pub fn replica_lsn_line(
    last_lsn: u64,
    lag_records: u64,
    state: Option<ReplicationState>,
) -> CheckLine {
    CheckLine::new(
        "replica LSN",
        Outcome::Found,
        format!(
            "at LSN {last_lsn}; replication {}; lag as last known here: {lag_records} records (the active site's status has the exact figure)",
            state.map_or("not running", ReplicationState::as_str)
        ),
    )
}

/// The pool a store directory lives in: the declared pool whose path holds
/// it (the longest), else the site's data directory.
pub fn pool_for(
    store_dir: &Path,
    pools: &[PoolSettings],
    data_dir: &Path,
) -> (String, PathBuf, Option<u64>) {
    pools
        .iter()
        .filter(|p| store_dir.starts_with(&p.path))
        .max_by_key(|p| p.path.len())
        .map(|p| {
            (
                format!("pool {}", p.name),
                PathBuf::from(&p.path),
                p.capacity_bytes,
            )
        })
        .unwrap_or_else(|| {
            (
                "site data directory".to_string(),
                data_dir.to_path_buf(),
                None,
            )
        })
}

/// Room in the pool: at least MIN_POOL_FREE_BYTES free, and the store
/// within the pool's declared capacity.
pub fn check_pool_room(
    pool: &str,
    path: &Path,
    capacity_bytes: Option<u64>,
    store_bytes: u64,
) -> CheckLine {
    let resource = format!("room in {pool} ({})", path.display());
    let free = match free_bytes(path) {
        Ok(f) => f,
        Err(e) => {
            return CheckLine::new(resource, Outcome::Missing, format!("cannot statvfs: {e}"))
        }
    };
    if let Some(cap) = capacity_bytes {
        if store_bytes > cap {
            return CheckLine::new(
                resource,
                Outcome::Discrepant,
                format!("the store takes {store_bytes} bytes, above capacity_bytes {cap}"),
            );
        }
    }
    if free < MIN_POOL_FREE_BYTES {
        return CheckLine::new(
            resource,
            Outcome::Discrepant,
            format!(
                "{free} bytes free, below {MIN_POOL_FREE_BYTES}; the store takes {store_bytes}"
            ),
        );
    }
    CheckLine::new(
        resource,
        Outcome::Found,
        format!("{free} bytes free; the store takes {store_bytes}"),
    )
}

/// Bytes available to an unprivileged writer on the file system of `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    // The field types are the C library's (u64 on Linux x86-64, narrower
    // elsewhere); the conversions keep this portable.
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (
        u64::from(st.blocks_available()),
        u64::from(st.fragment_size()),
    );
    Ok(blocks.saturating_mul(size))
}

/// Bytes a directory tree takes on disk (allocated blocks), counting at
/// most MAX_DISK_USAGE_ENTRIES entries.
pub fn disk_usage(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut seen = 0u64;
    let mut todo = vec![dir.to_path_buf()];
    // A running replica removes journal segments at checkpoints: what
    // vanished while we walked takes no room any more.
    let gone = |e: &std::io::Error| e.kind() == IoKind::NotFound;
    while let Some(d) = todo.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if gone(&e) && d != dir => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            seen += 1;
            if seen > MAX_DISK_USAGE_ENTRIES {
                return Ok(total);
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                todo.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// Everything the checks need, gathered by the daemon under its lock so
/// the checks themselves (which bind ports and walk directories) run
/// without it.
#[derive(Debug, Clone)]
pub struct CheckInputs {
    pub vserver: String,
    pub site: String,
    /// The vserver's addresses; none while its baseline is unfinished (the
    /// store holding them is not open).
    pub addresses: Option<Vec<AddressSpec>>,
    /// (vserver, IP) of every address other vservers of this site hold.
    pub held: Vec<(String, IpAddr)>,
    pub in_baseline: bool,
    pub replication_state: Option<ReplicationState>,
    pub last_lsn: u64,
    pub lag_records: u64,
    pub interfaces: Vec<InterfaceSettings>,
    pub pools: Vec<PoolSettings>,
    pub data_dir: PathBuf,
    pub store_dir: PathBuf,
    /// (service, port) pairs the vserver will be served on.
    pub ports: Vec<(String, u16)>,
}

/// Runs every check, in report order: per address, then the replica.
pub fn run_checks(inp: &CheckInputs, sys_net: &Path) -> FailoverCheck {
    let mut lines = Vec::new();
    match &inp.addresses {
        Some(addresses) => {
            for addr in addresses {
                lines.extend(check_address(addr, inp, sys_net));
            }
        }
        None => lines.push(CheckLine::new(
            "addresses",
            Outcome::Missing,
            "unknown until the replica's baseline finishes",
        )),
    }
    let state = inp.replication_state;
    lines.push(check_replica_complete(inp.in_baseline, state));
    if !inp.in_baseline {
        lines.push(replica_lsn_line(inp.last_lsn, inp.lag_records, state));
        let (pool, path, cap) = pool_for(&inp.store_dir, &inp.pools, &inp.data_dir);
        match disk_usage(&inp.store_dir) {
            Ok(used) => lines.push(check_pool_room(&pool, &path, cap, used)),
            Err(e) => lines.push(CheckLine::new(
                format!("room in {pool} ({})", path.display()),
                Outcome::Missing,
                format!(
                    "cannot measure the store at {}: {e}",
                    inp.store_dir.display()
                ),
            )),
        }
    }
    FailoverCheck::new(&inp.vserver, &inp.site, lines)
}

/// The lines of one address: its interface and device, who holds it, the
/// network probe, and its service ports (on the interface's substitute
/// address when the site declares one).
fn check_address(addr: &AddressSpec, inp: &CheckInputs, sys_net: &Path) -> Vec<CheckLine> {
    let (line, iface) = check_interface(addr, &inp.interfaces);
    let mut lines = vec![line];
    let mut ip = addr.ip;
    if let Some(iface) = iface {
        lines.push(check_device(sys_net, &iface.device));
        if let Some(sub) = &iface.substitute {
            ip = sub.ip;
            lines.push(CheckLine::new(
                format!("address {} substitute", bare(addr)),
                Outcome::Found,
                format!("served here as {sub} (interface {})", iface.name),
            ));
        }
    }
    lines.push(check_not_held(addr, &inp.held));
    lines.push(check_not_on_network(addr, iface));
    for (service, port) in &inp.ports {
        lines.push(check_port(ip, service, *port));
    }
    lines
}

fn bare(addr: &AddressSpec) -> String {
    format!("{}/{}", addr.ip, addr.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> AddressSpec {
        crate::config::names::parse_address(text).unwrap()
    }

    fn iface(name: &str, device: &str) -> InterfaceSettings {
        InterfaceSettings {
            name: name.into(),
            device: device.into(),
            substitute: None,
        }
    }

    #[test]
    fn interface_by_name_assumed_or_missing() {
        let ifs = [iface("front", "lo"), iface("back", "eth9")];
        let (l, i) = check_interface(&addr("127.0.0.2/32@front"), &ifs);
        assert_eq!(
            (l.outcome, i.map(|i| i.device.as_str())),
            (Outcome::Found, Some("lo"))
        );
        let (l, i) = check_interface(&addr("127.0.0.2/32@side"), &ifs);
        assert_eq!(l.outcome, Outcome::Missing);
        assert!(l.reason.contains("named side"), "{}", l.reason);
        assert!(i.is_none());
        let (l, _) = check_interface(&addr("127.0.0.2/32"), &ifs);
        assert_eq!(l.outcome, Outcome::Missing);
        assert!(l.reason.contains("declares 2"), "{}", l.reason);
        let (l, i) = check_interface(&addr("127.0.0.2/32"), &ifs[..1]);
        assert_eq!(l.outcome, Outcome::Found);
        assert!(l.reason.contains("assumed front"), "{}", l.reason);
        assert!(i.is_some());
        let (l, _) = check_interface(&addr("127.0.0.2/32"), &[]);
        assert_eq!(l.outcome, Outcome::Missing);
    }

    #[test]
    fn device_present_missing_down() {
        let l = check_device(Path::new(SYS_CLASS_NET), "lo");
        assert_eq!(l.outcome, Outcome::Found, "{l:?}");
        let l = check_device(Path::new(SYS_CLASS_NET), "tandemnodev0");
        assert_eq!(l.outcome, Outcome::Missing, "{l:?}");
        // A made-up sysfs: up, unknown, down, unreadable.
        let tmp = tempfile::tempdir().unwrap();
        for (dev, state) in [("up0", "up\n"), ("unk0", "unknown\n"), ("down0", "down\n")] {
            std::fs::create_dir(tmp.path().join(dev)).unwrap();
            std::fs::write(tmp.path().join(dev).join("operstate"), state).unwrap();
        }
        std::fs::create_dir(tmp.path().join("odd0")).unwrap();
        assert_eq!(check_device(tmp.path(), "up0").outcome, Outcome::Found);
        let l = check_device(tmp.path(), "unk0");
        assert_eq!(l.outcome, Outcome::Found);
        assert!(l.reason.contains("unknown"), "{}", l.reason);
        let l = check_device(tmp.path(), "down0");
        assert_eq!(l.outcome, Outcome::Discrepant);
        assert!(l.reason.contains("operstate down"), "{}", l.reason);
        assert_eq!(
            check_device(tmp.path(), "odd0").outcome,
            Outcome::Discrepant
        );
    }

    #[test]
    fn held_by_another_vserver() {
        let held = vec![("other".to_string(), "127.0.0.9".parse().unwrap())];
        let l = check_not_held(&addr("127.0.0.9/32"), &held);
        assert_eq!(l.outcome, Outcome::Discrepant);
        assert!(l.reason.contains("other"), "{}", l.reason);
        assert_eq!(
            check_not_held(&addr("127.0.0.8/32"), &held).outcome,
            Outcome::Found
        );
        for ifs in [
            None,
            Some(&iface("front", "lo")),
            Some(&iface("front", "tandemnodev0")),
        ] {
            let l = check_not_on_network(&addr("127.0.0.8/32"), ifs);
            assert_eq!(l.outcome, Outcome::NotChecked, "{l:?}");
            assert!(l.reason.starts_with("not probed"), "{l:?}");
        }
    }

    #[test]
    fn ports_free_busy_and_absent_address() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = held.local_addr().unwrap().port();
        let l = check_port("127.0.0.1".parse().unwrap(), "NFS", busy);
        assert_eq!(l.outcome, Outcome::Discrepant, "{l:?}");
        drop(held);
        let l = check_port("127.0.0.1".parse().unwrap(), "NFS", busy);
        assert_eq!(l.outcome, Outcome::Found, "{l:?}");
        // An address the host lacks (tests use loopback only, where every
        // address is the host's, so the bind's answer is made up here).
        let absent = std::io::Error::from(IoKind::AddrNotAvailable);
        let l = port_line("MOUNT port x".into(), Err(absent));
        assert_eq!(l.outcome, Outcome::Found, "{l:?}");
        assert!(l.reason.contains("will be claimed"), "{}", l.reason);
        let denied = std::io::Error::from(IoKind::PermissionDenied);
        let l = port_line("NFS port x".into(), Err(denied));
        assert_eq!(l.outcome, Outcome::Discrepant, "{l:?}");
    }

    #[test]
    fn replica_completeness_and_lsn() {
        let l = check_replica_complete(true, Some(ReplicationState::BaselineUnfinished));
        assert_eq!(l.outcome, Outcome::Missing);
        assert!(l.reason.contains("baseline-unfinished"), "{}", l.reason);
        assert_eq!(
            check_replica_complete(false, Some(ReplicationState::Replica)).outcome,
            Outcome::Found
        );
        let l = replica_lsn_line(42, 3, Some(ReplicationState::Receiving));
        assert!(
            l.reason.contains("LSN 42") && l.reason.contains("3 records"),
            "{}",
            l.reason
        );
    }

    #[test]
    fn pool_room_and_usage() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("pool/vs");
        std::fs::create_dir_all(store.join("journal")).unwrap();
        std::fs::write(store.join("journal/a"), vec![7u8; 64 << 10]).unwrap();
        let used = disk_usage(&store).unwrap();
        assert!(used >= 64 << 10, "{used}");
        let pools = [PoolSettings {
            name: "main".into(),
            path: tmp.path().join("pool").display().to_string(),
            capacity_bytes: Some(1024),
        }];
        let (name, path, cap) = pool_for(&store, &pools, Path::new("/data"));
        assert_eq!((name.as_str(), cap), ("pool main", Some(1024)));
        let l = check_pool_room(&name, &path, cap, used);
        assert_eq!(l.outcome, Outcome::Discrepant, "{l:?}");
        assert!(l.reason.contains("capacity_bytes"), "{}", l.reason);
        let (name, path, cap) = pool_for(Path::new("/elsewhere/vs"), &pools, tmp.path());
        assert_eq!(name, "site data directory");
        assert!(check_pool_room(&name, &path, cap, used)
            .reason
            .contains("bytes free"));
        let l = check_pool_room("pool x", &tmp.path().join("absent"), None, 0);
        assert_eq!(l.outcome, Outcome::Missing);
        assert!(disk_usage(&tmp.path().join("absent")).is_err());
    }

    #[test]
    fn ready_only_without_blocking_lines() {
        let ok = CheckLine::new("a", Outcome::Found, "");
        let skip = CheckLine::new("b", Outcome::NotChecked, "");
        assert!(FailoverCheck::new("vs", "s", vec![ok.clone(), skip]).ready);
        let bad = CheckLine::new("c", Outcome::Missing, "");
        assert!(!FailoverCheck::new("vs", "s", vec![ok, bad]).ready);
    }

    fn inputs(sys_ifaces: Vec<InterfaceSettings>, store_dir: PathBuf) -> CheckInputs {
        CheckInputs {
            vserver: "vs".into(),
            site: "beta".into(),
            addresses: Some(vec![addr("127.0.0.2/32@front")]),
            held: vec![("other".into(), "127.0.0.3".parse().unwrap())],
            in_baseline: false,
            replication_state: Some(ReplicationState::Replica),
            last_lsn: 9,
            lag_records: 0,
            interfaces: sys_ifaces,
            pools: Vec::new(),
            data_dir: store_dir.clone(),
            store_dir,
            ports: vec![("NFS".into(), 0)],
        }
    }

    #[test]
    fn run_checks_uses_substitute_and_reports_baseline() {
        let tmp = tempfile::tempdir().unwrap();
        let mut front = iface("front", "lo");
        front.substitute = Some(crate::config::names::parse_address("127.91.9.5/8").unwrap());
        let report = run_checks(
            &inputs(vec![front], tmp.path().to_path_buf()),
            Path::new(SYS_CLASS_NET),
        );
        assert!(report.ready, "{report:#?}");
        let sub = report
            .lines
            .iter()
            .find(|l| l.resource.ends_with("substitute"))
            .unwrap();
        assert!(sub.reason.contains("127.91.9.5/8"), "{sub:?}");
        // Ports are tried on the substitute.
        let port = report
            .lines
            .iter()
            .find(|l| l.resource.starts_with("NFS"))
            .unwrap();
        assert!(port.resource.contains("127.91.9.5"), "{port:?}");
        assert_eq!(port.outcome, Outcome::Found, "{port:?}");

        let mut inp = inputs(
            vec![iface("front", "tandemnodev0")],
            tmp.path().to_path_buf(),
        );
        inp.addresses = Some(vec![addr("127.0.0.3/32@front")]);
        let report = run_checks(&inp, Path::new(SYS_CLASS_NET));
        assert!(!report.ready);
        let blocking: Vec<_> = report
            .lines
            .iter()
            .filter(|l| l.outcome.blocks())
            .map(|l| l.resource.as_str())
            .collect();
        assert_eq!(
            blocking,
            ["device tandemnodev0", "address 127.0.0.3/32 at this site"]
        );

        inp.addresses = None;
        inp.in_baseline = true;
        inp.replication_state = Some(ReplicationState::BaselineUnfinished);
        let report = run_checks(&inp, Path::new(SYS_CLASS_NET));
        let resources: Vec<_> = report.lines.iter().map(|l| l.resource.as_str()).collect();
        assert_eq!(resources, ["addresses", "replica completeness"]);
        assert!(report.lines.iter().all(|l| l.outcome == Outcome::Missing));
    }
}
