//! Linux kernel NFS clients for tests: QEMU guests (crate tandem-guest)
//! plugged into the bridge of common/netns.rs, guest `i` at
//! 10.200.0.(21+i)/16 beside the client host and the sites. They mount
//! with the kernel's own NFS client; a test drives them with shell
//! scripts (`run`).

use std::time::Duration;

use tandem_guest::{Bridge, Error, Guest, Host, Image, Options};

use super::netns::Net;
use super::require;

/// How long one guest job may take unless a test says otherwise.
pub const JOB: Duration = Duration::from_secs(120);

/// What booting guests takes: found on this machine, image built.
pub struct Kit {
    pub host: Host,
    pub image: Image,
}

/// Network namespaces, QEMU and the kernel: None (skipped, failed in CI)
/// when this machine lacks one; `.ci/run` installs them.
pub fn available() -> Option<Kit> {
    if !super::netns::available() {
        return None;
    }
    match Host::find() {
        Ok(host) => {
            let image = Image::prepare(&host).unwrap_or_else(|e| panic!("{e}"));
            Some(Kit { host, image })
        }
        Err(Error::Missing(what)) => {
            require(false, &what);
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// The address of guest `i` on the hosts' /16.
pub fn guest_cidr(i: u8) -> String {
    format!("10.200.0.{}/16", 21 + i)
}

/// Starts guest `i` ("guest{i}") on `net`'s bridge; it boots while the
/// test goes on (its first `run` waits for it).
pub fn start(net: &Net, kit: &Kit, i: u8) -> Guest {
    let bridge = Bridge {
        netns: net.bridge.clone(),
        device: "br0".into(),
    };
    let opts = Options::new(&format!("guest{i}"), &guest_cidr(i));
    Guest::start(&kit.host, &kit.image, &bridge, &opts).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `script` in `g` within `timeout`; it must exit 0. Returns stdout.
pub fn run_within(g: &mut Guest, script: &str, timeout: Duration) -> String {
    let out = g.run(script, timeout).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.success(),
        "guest {} script failed (status {}):\n{script}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- console ---\n{}",
        g.name(),
        out.status,
        out.stdout,
        out.stderr,
        g.console()
    );
    out.stdout
}

/// `run_within` the default JOB time.
pub fn run(g: &mut Guest, script: &str) -> String {
    run_within(g, script, JOB)
}

/// A script line that mounts `ip:export` on `dir` with the kernel client,
/// NFSv3 over TCP at the given (mount, nfs) ports (the test sites run no
/// portmapper), plus `options`.
pub fn mount_line(ip: &str, export: &str, ports: (u16, u16), dir: &str, options: &str) -> String {
    let (mount_port, nfs_port) = ports;
    format!(
        "mkdir -p {dir} && mount -t nfs -o vers=3,proto=tcp,port={nfs_port},\
         mountport={mount_port},mountproto=tcp,{options} {ip}:{export} {dir}\n"
    )
}
