//! Network namespaces a test builds for itself: a client host, site A and
//! site B, each with an `eth0` plugged into a bridge that lives in a fourth
//! namespace (the root namespace's links are never touched). Hosts are
//! 10.200.0.1 (client), .2 (A), .3 (B), all /16. Names are unique per
//! test (pid + counter); dropping `Net` deletes the namespaces, which
//! also removes every link in them, even when the test panicked.
//!
//! Daemons run through `ip netns exec NS` (`Net::exec`); the CLI talks to
//! them over the unix socket in their data directory, from anywhere. A
//! client runs on a thread that entered the client namespace (`in_ns`),
//! with its own single-threaded tokio runtime so every socket it opens is
//! in that namespace.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{require, wait_until};

pub const CLIENT_IP: &str = "10.200.0.1";
pub const A_IP: &str = "10.200.0.2";
pub const B_IP: &str = "10.200.0.3";
/// Every host's device on the bridge.
pub const DEV: &str = "eth0";

/// Whether namespace tests can run here: root, and `ip netns` able to
/// make a namespace (a container may forbid it). Skips (or fails in CI)
/// otherwise.
pub fn available() -> bool {
    if !require(super::is_root(), "root (network namespaces)") {
        return false;
    }
    let probe = format!("td{}probe", std::process::id());
    let made = ip(&["netns", "add", &probe]);
    if made.is_ok() {
        if let Err(e) = ip(&["netns", "del", &probe]) {
            eprintln!("cleanup: {e}");
        }
    }
    require(
        made.is_ok(),
        &format!("`ip netns add` to work (iproute2 and CAP_SYS_ADMIN): {made:?}"),
    )
}

/// Runs `ip ARGS`; Err with its stderr when it fails.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn must_ip(args: &[&str]) -> String {
    ip(args).unwrap_or_else(|e| panic!("{e}"))
}

pub struct Net {
    pub client: String,
    pub a: String,
    pub b: String,
    pub bridge: String,
}

impl Net {
    /// Builds the four namespaces and the bridge between them.
    pub fn new() -> Net {
        static N: AtomicUsize = AtomicUsize::new(0);
        let tag = format!(
            "td{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let net = Net {
            client: format!("{tag}c"),
            a: format!("{tag}a"),
            b: format!("{tag}b"),
            bridge: format!("{tag}br"),
        };
        // Made one by one after the guard exists, so a failure half-way
        // still deletes what was made.
        for ns in net.all() {
            must_ip(&["netns", "add", ns]);
            must_ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let br = net.bridge.as_str();
        must_ip(&["-n", br, "link", "add", "br0", "type", "bridge"]);
        must_ip(&["-n", br, "link", "set", "br0", "up"]);
        for (i, (host, addr)) in [(&net.client, CLIENT_IP), (&net.a, A_IP), (&net.b, B_IP)]
            .into_iter()
            .enumerate()
        {
            let port = format!("p{i}");
            must_ip(&[
                "-n", br, "link", "add", &port, "type", "veth", "peer", "name", DEV, "netns", host,
            ]);
            must_ip(&["-n", br, "link", "set", &port, "master", "br0", "up"]);
            must_ip(&["-n", host, "addr", "add", &format!("{addr}/16"), "dev", DEV]);
            must_ip(&["-n", host, "link", "set", DEV, "up"]);
        }
        net
    }

    fn all(&self) -> [&str; 4] {
        [&self.bridge, &self.client, &self.a, &self.b]
    }

    /// The wrapper that runs a command in `ns`.
    pub fn exec(ns: &str) -> [&str; 3] {
        ["netns", "exec", ns]
    }

    /// `ip -n NS ARGS`, which must succeed.
    pub fn ip_in(&self, ns: &str, args: &[&str]) -> String {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        must_ip(&all)
    }

    /// The IPv4 addresses on `ns`'s eth0, as "IP/PREFIX".
    pub fn addresses(&self, ns: &str) -> Vec<String> {
        match ip(&["-n", ns, "-j", "addr", "show", "dev", DEV]) {
            Ok(text) => {
                let v: serde_json::Value = serde_json::from_str(&text).expect("ip -j is JSON");
                v.as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
                    .filter(|a| a["family"] == "inet")
                    .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
                    .collect()
            }
            // The device is gone (a host cut off): no addresses.
            Err(_) => Vec::new(),
        }
    }

    /// eth0's MAC in `ns`.
    pub fn mac(&self, ns: &str) -> String {
        let text = self.ip_in(ns, &["-j", "link", "show", "dev", DEV]);
        let v: serde_json::Value = serde_json::from_str(&text).expect("ip -j is JSON");
        v[0]["address"].as_str().expect("a MAC").to_string()
    }

    /// Polls until `ns`'s eth0 holds (or, `held` false, no longer holds)
    /// `cidr`.
    pub fn wait_address(&self, ns: &str, cidr: &str, held: bool) {
        wait_until(
            || self.addresses(ns).iter().any(|a| a == cidr) == held,
            || {
                format!(
                    "{cidr} {} on {ns}'s {DEV}: {:?}",
                    if held { "never appeared" } else { "never left" },
                    self.addresses(ns)
                )
            },
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.all() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Runs `f` on a new thread that has entered the network namespace `ns`.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        use std::os::fd::AsRawFd;
        // SAFETY: setns(2) on a namespace file we hold open; it changes
        // only this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// A single-threaded runtime: its sockets are opened on the calling
/// thread, so in that thread's namespace.
pub fn local_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
