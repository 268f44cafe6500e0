//! Two paired sites in the namespaces of common/netns.rs: alpha in A and
//! beta in B (`front` = eth0 at alpha, `b_device` at beta; beta on alpha's
//! NFS and MOUNT ports, so a client finds the vserver at the same address
//! and port wherever it is served). The vserver `vs` is created at alpha
//! on `vs_cidr`@front with /data exported to the hosts' 10.200.0.0/16.

use super::netns::{in_ns, Net, A_IP, B_IP, DEV};
use super::replication::*;
use super::*;

/// The vserver's addresses for tests on 10.201.0.0/16, a prefix beside
/// the hosts' /16 that the client host routes over its eth0.
pub const VS_IP: &str = "10.201.1.11";
pub const VS_CIDR: &str = "10.201.1.11/32";
pub const REPLICA_CIDR: &str = "10.201.1.12/32";
pub const ROUTED_PREFIX: &str = "10.201.0.0/16";

/// `start_sites` on VS_CIDR and REPLICA_CIDR, the client routed to them.
pub fn start_routed() -> Option<(Sites, String)> {
    start_sites(VS_CIDR, REPLICA_CIDR, DEV, |net| {
        route_client_to(net, ROUTED_PREFIX)
    })
}

/// `setup_sites` on VS_CIDR and REPLICA_CIDR, the client routed to them.
pub fn setup_routed() -> Option<Sites> {
    setup_sites(VS_CIDR, REPLICA_CIDR, DEV, |net| {
        route_client_to(net, ROUTED_PREFIX)
    })
}

pub struct Sites {
    pub net: Net,
    pub a: TestSite,
    pub da: Daemon,
    pub b: TestSite,
    pub db: Daemon,
}

impl Sites {
    pub fn logs(&self) -> String {
        format!("A:\n{}\nB:\n{}", self.da.log_text(), self.db.log_text())
    }
}

pub fn netns_exec(ns: &str) -> [&str; 4] {
    ["ip", "netns", "exec", ns]
}

/// The namespaces and both sites, paired, the vserver created at alpha;
/// `before` runs before the daemons start. Returns the replica address
/// (`replica_cidr`@front) for the caller's `replicate`. None: skipped
/// (no root or namespaces; common/netns.rs `available`).
pub fn start_sites(
    vs_cidr: &str,
    replica_cidr: &str,
    b_device: &str,
    before: impl FnOnce(&Net),
) -> Option<(Sites, String)> {
    start_sites_with(vs_cidr, replica_cidr, b_device, false, before)
}

/// `start_sites`, with both sites serving the portmapper on port 111 if
/// `portmap` (each site has its namespace, so the port is free there;
/// the kernel's lock manager finds the server's only through it).
pub fn start_sites_with(
    vs_cidr: &str,
    replica_cidr: &str,
    b_device: &str,
    portmap: bool,
    before: impl FnOnce(&Net),
) -> Option<(Sites, String)> {
    if !super::netns::available() {
        return None;
    }
    let net = Net::new();
    let (a, a_addr) = site("alpha", A_IP);
    let (mut b, b_addr) = site("beta", B_IP);
    share_nfs_ports(&a, &mut b);
    if portmap {
        for s in [&a, &b] {
            s.edit_toml(|t| {
                let nfs = t["nfs"].as_table_mut().expect("nfs table");
                nfs.insert("portmap".into(), true.into());
                nfs.insert("portmap_port".into(), 111i64.into());
            });
        }
    }
    declare_front_on(&a, DEV);
    declare_front_on(&b, b_device);
    before(&net);
    let da = a.start_daemon_via(&netns_exec(&net.a));
    let db = b.start_daemon_via(&netns_exec(&net.b));
    pair_both(&a, &a_addr, &b, &b_addr);
    let cidr = format!("{vs_cidr}@front");
    let out = a.tandem(&["vserver", "create", "vs", "--address", &cidr]);
    assert_success(&out, "vserver create");
    create_fs_for(&a, "vs", "data", "/data", "10.200.0.0/16");
    let sites = Sites { net, a, da, b, db };
    Some((sites, format!("{replica_cidr}@front")))
}

/// `start_sites`, then commit-sync replication to beta, converged.
pub fn setup_sites(
    vs_cidr: &str,
    replica_cidr: &str,
    b_device: &str,
    before: impl FnOnce(&Net),
) -> Option<Sites> {
    let (s, replica) = start_sites(vs_cidr, replica_cidr, b_device, before)?;
    replicate(&s.a, &replica, &[]);
    wait_converged(&s.a, &s.b, "vs", &|| s.logs());
    Some(s)
}

/// Lets the client host reach addresses outside the hosts' /16 (a
/// vserver on another prefix) straight over its eth0.
pub fn route_client_to(net: &Net, prefix: &str) {
    net.ip_in(&net.client, &["route", "add", prefix, "dev", DEV]);
}

/// Runs `f` in the client namespace on its own runtime; returns its
/// thread (join it to see the client's panics).
pub fn client_task<T: Send + 'static, F: std::future::Future<Output = T>>(
    net: &Net,
    f: impl FnOnce() -> F + Send + 'static,
) -> std::thread::JoinHandle<T> {
    in_ns(&net.client, move || {
        super::netns::local_runtime().block_on(f())
    })
}
