//! `tandem failover` on a real (virtual) network: each test builds its own
//! namespaces (common/netns.rs) — a client host, site A and site B on one
//! bridge — and runs the daemons in them. The vserver's address
//! 10.200.1.11/32@front (front = eth0 at both sites) is claimed on A's
//! eth0; its replica's read-only address 10.200.1.12/32@front on B's.
//!
//! * A client writes through the vserver's address; A is killed
//!   (`kill -9`): its kernel still answers for the address, which the
//!   check at B names (A's MAC); A is cut off; `failover` at B moves the
//!   address to B's eth0 (announced: the client sees B's gratuitous ARP),
//!   releases the replica address, and the client carries on with its
//!   handles; every committed byte is there. B's clean stop gives the
//!   address back.
//! * `--check` names a device absent at B, an address held by another
//!   host (the client), an unfinished replica; exit 3; `--force` goes on
//!   and lists what it left out (not for the unfinished replica, which
//!   has no store to promote). An address the daemon did not add stays.
//!
//! Needs root and iproute2: skipped without them, failed in CI.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::netns::*;
use crate::common::netns_sites::*;
use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;

const VS_IP: &str = "10.200.1.11";
const VS_CIDR: &str = "10.200.1.11/32";
const REPLICA_CIDR: &str = "10.200.1.12/32";
/// Exit code of `tandem failover` when something is missing and it did
/// not go on (tandem/src/cli/failover.rs).
const EXIT_NOT_READY: i32 = 3;
const EXIT_ERROR: i32 = 2;

/// The namespaces and sites (common/netns_sites.rs), vserver at
/// VS_CIDR, its replica address REPLICA_CIDR.
fn start(b_device: &str, before: impl FnOnce(&Net)) -> Option<(Sites, String)> {
    start_sites(VS_CIDR, REPLICA_CIDR, b_device, before)
}

/// `start`, then commit-sync replication to beta, converged.
fn setup(b_device: &str, before: impl FnOnce(&Net)) -> Option<Sites> {
    setup_sites(VS_CIDR, REPLICA_CIDR, b_device, before)
}

impl Sites {
    /// Site A's host dies: its daemon is killed, then the host leaves the
    /// network (its eth0 goes, and the addresses on it).
    fn kill_a(self) -> (Net, TestSite, TestSite, Daemon) {
        self.da.kill9();
        self.net.ip_in(&self.net.a, &["link", "del", DEV]);
        (self.net, self.a, self.b, self.db)
    }
}

fn check_json(site: &TestSite) -> (i32, serde_json::Value) {
    let out = site.tandem(&["failover", "vs", "--check", "--json"]);
    let report = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap_or(-1), report)
}

fn line(report: &serde_json::Value, resource: &str) -> serde_json::Value {
    report["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["resource"] == resource)
        .cloned()
        .unwrap_or_else(|| panic!("no line {resource:?} in {report:#}"))
}

fn reason(l: &serde_json::Value) -> String {
    l["reason"].as_str().unwrap_or_default().to_string()
}

/// `tandem failover vs --force --json` at `site`: done, and the report.
fn force(site: &TestSite) -> serde_json::Value {
    let out = site.tandem(&["failover", "vs", "--force", "--json"]);
    assert_success(&out, "failover --force");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON report");
    assert_eq!(report["done"], true, "{report:#}");
    report
}

fn left_out(report: &serde_json::Value) -> Vec<String> {
    report["left_out"]
        .as_array()
        .expect("left_out")
        .iter()
        .map(|l| l["resource"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Whether the client host sees, within DEADLINE, a gratuitous ARP for
/// the vserver's address from `mac`. Listens from when `ready` is sent.
fn watch_gratuitous_arp(
    net: &Net,
    mac: String,
    ready: mpsc::Sender<()>,
) -> std::thread::JoinHandle<bool> {
    in_ns(&net.client, move || {
        use tandem_control::net::announce::{mac_text, ArpSocket};
        let ifindex = tandem_control::net::addresses::ifindex(DEV).expect("client eth0");
        let sock = ArpSocket::open(ifindex).expect("packet socket");
        ready.send(()).expect("test waits");
        let vs: std::net::Ipv4Addr = VS_IP.parse().unwrap();
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Some(arp) = sock.recv(Duration::from_millis(100)).expect("recv") {
                if arp.sender_ip == vs && arp.target_ip == vs && mac_text(&arp.sender_mac) == mac {
                    return true;
                }
            }
        }
        false
    })
}

#[test]
fn failover_moves_the_address_and_the_client_keeps_its_handles() {
    let Some(s) = setup(DEV, |_| {}) else { return };
    s.net.wait_address(&s.net.a, VS_CIDR, true);
    s.net.wait_address(&s.net.b, REPLICA_CIDR, true);
    assert!(!s.net.addresses(&s.net.b).iter().any(|a| a == VS_CIDR));

    // The client writes through the vserver's address, keeps its handles
    // and waits on the test between the two halves.
    let (written_tx, written) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let ports = (s.a.mount_port, s.a.nfs_port);
    let client = in_ns(&s.net.client, move || {
        let rt = local_runtime();
        rt.block_on(async {
            let mut c = mount_at(VS_IP, "/data", ports, DEADLINE).await;
            let mut files = Vec::new();
            for i in 0..4u64 {
                let data = pattern((64 << 10) + (i as usize) * 999, 500 + i);
                let fh = create_file(&mut c, &format!("f{i}.bin")).await;
                write_at(&mut c, &fh, 0, &data, stable_how::UNSTABLE).await;
                let commit = COMMIT3args {
                    file: fh.clone(),
                    offset: 0,
                    count: 0,
                };
                must("COMMIT", c.commit(&commit)).await;
                files.push((fh, data));
            }
            written_tx.send(()).expect("test waits");
            go_rx.recv_timeout(DEADLINE * 4).expect("failover done");
            // Same handles, a new TCP connection to the same IP and port.
            let mut c = reconnect(VS_IP, ports.1).await;
            for (i, (fh, data)) in files.iter().enumerate() {
                assert_eq!(
                    &read_whole(&mut c, fh).await,
                    data,
                    "f{i}.bin after failover"
                );
            }
            // And writes on.
            let (fh, data) = &files[0];
            let more = pattern(5000, 9);
            let w = write_once(&mut c, fh, data.len() as u64, &more, stable_how::FILE_SYNC).await;
            assert_eq!(w.count as usize, more.len());
            let mut expect = data.clone();
            expect.extend_from_slice(&more);
            assert_eq!(read_whole(&mut c, fh).await, expect);
        })
    });
    written.recv_timeout(DEADLINE * 2).expect("client wrote");

    // A's daemon dies; its kernel still answers for the address.
    let a_mac = s.net.mac(&s.net.a);
    s.da.kill9();
    let (code, report) = check_json(&s.b);
    assert_eq!(code, EXIT_NOT_READY, "{report:#}");
    let probe = line(&report, &format!("address {VS_CIDR} on the network"));
    assert_eq!(probe["outcome"], "missing", "{probe}");
    assert!(reason(&probe).contains(&format!("MAC {a_mac}")), "{probe}");
    // Then the host leaves the network.
    s.net.ip_in(&s.net.a, &["link", "del", DEV]);
    let (code, report) = check_json(&s.b);
    assert_eq!(code, 0, "{report:#}");
    let probe = line(&report, &format!("address {VS_CIDR} on the network"));
    assert_eq!(probe["outcome"], "found", "{probe}");

    let (ready_tx, ready) = mpsc::channel();
    let watcher = watch_gratuitous_arp(&s.net, s.net.mac(&s.net.b), ready_tx);
    ready.recv_timeout(DEADLINE).expect("watcher listening");
    let out = s.b.tandem(&["failover", "vs", "--yes"]);
    assert_success(&out, "failover");
    let text = stdout(&out);
    eprintln!("{text}");
    assert!(text.contains("vs is active at site beta"), "{text}");
    s.net.wait_address(&s.net.b, VS_CIDR, true);
    // The replica's read-only address, claimed by beta, is given back.
    s.net.wait_address(&s.net.b, REPLICA_CIDR, false);
    assert!(s.net.addresses(&s.net.a).is_empty());
    assert!(
        watcher.join().expect("watcher"),
        "no gratuitous ARP from B for {VS_IP}"
    );

    go.send(()).expect("client waits");
    if let Err(panic) = client.join() {
        std::panic::resume_unwind(panic);
    }
    // A clean stop releases what the daemon claimed.
    s.db.stop();
    s.net.wait_address(&s.net.b, VS_CIDR, false);
}

#[test]
fn check_names_a_device_absent_at_b_and_force_goes_on() {
    let Some(s) = setup("nosuch0", |_| {}) else {
        return;
    };
    let (net, _a, b, db) = s.kill_a();
    let (code, report) = check_json(&b);
    assert_eq!(code, EXIT_NOT_READY, "{report:#}");
    let device = line(&report, "device nosuch0");
    assert_eq!(device["outcome"], "missing", "{device}");
    let probe = line(&report, &format!("address {VS_CIDR} on the network"));
    assert_eq!(probe["outcome"], "not_checked", "{probe}");
    assert!(reason(&probe).contains("nosuch0 absent"), "{probe}");

    let report = force(&b);
    assert_eq!(left_out(&report), ["device nosuch0"], "{report:#}");
    let not_serving = report["not_serving"].to_string();
    assert!(
        not_serving.contains("device nosuch0 not found"),
        "{report:#}\n{}",
        db.log_text()
    );
    assert!(net.addresses(&net.b).iter().all(|a| a != VS_CIDR));
}

#[test]
fn check_names_an_address_in_use_and_force_goes_on_leaving_others_addresses() {
    // The replica address is put on B's eth0 by hand: beta serves it but
    // did not add it, so it never removes it.
    let Some(s) = setup(DEV, |net| {
        net.ip_in(&net.b, &["addr", "add", REPLICA_CIDR, "dev", DEV]);
    }) else {
        return;
    };
    let (net, _a, b, db) = s.kill_a();
    net.ip_in(&net.client, &["addr", "add", VS_CIDR, "dev", DEV]);
    let client_mac = net.mac(&net.client);
    let (code, report) = check_json(&b);
    assert_eq!(code, EXIT_NOT_READY, "{report:#}");
    let probe = line(&report, &format!("address {VS_CIDR} on the network"));
    assert_eq!(probe["outcome"], "missing", "{probe}");
    assert!(
        reason(&probe).contains(&format!("in use on the network by MAC {client_mac}")),
        "{probe}"
    );

    let report = force(&b);
    assert_eq!(
        left_out(&report),
        [format!("address {VS_CIDR} on the network")],
        "{report:#}"
    );
    net.wait_address(&net.b, VS_CIDR, true);
    db.stop();
    net.wait_address(&net.b, VS_CIDR, false);
    assert!(
        net.addresses(&net.b).iter().any(|a| a == REPLICA_CIDR),
        "beta removed an address it did not add"
    );
}

#[test]
fn check_names_an_unfinished_replica() {
    let Some((s, replica)) = start(DEV, |_| {}) else {
        return;
    };
    let ports = (s.a.mount_port, s.a.nfs_port);
    let client = in_ns(&s.net.client, move || {
        local_runtime().block_on(async {
            let mut c = mount_at(VS_IP, "/data", ports, DEADLINE).await;
            write_file(&mut c, "big.bin", &pattern(3 << 20, 4)).await;
        })
    });
    if let Err(panic) = client.join() {
        std::panic::resume_unwind(panic);
    }
    // The journal no longer holds its start (as after checkpoints), so
    // the replica needs a baseline copy, which 1 Mbit/s makes last.
    let Sites { net, a, da, b, db } = s;
    assert!(da.stop().success());
    // A clean stop gives the claimed address back.
    net.wait_address(&net.a, VS_CIDR, false);
    drop_journal_segments(&a, "vs");
    let da = a.start_daemon_via(&netns_exec(&net.a));
    replicate(&a, &replica, &["--bandwidth-mbps", "1"]);
    let s = Sites { net, a, da, b, db };
    let state = || vserver_status(&s.b, "vs").map(|v| v["replication"]["state"].clone());
    wait_until(
        || state().is_some_and(|st| st == "baseline"),
        || format!("no baseline at beta: {:?}\n{}", state(), s.logs()),
    );
    let (_net, _a, b, _db) = s.kill_a();
    let (code, report) = check_json(&b);
    assert_eq!(code, EXIT_NOT_READY, "{report:#}");
    let complete = line(&report, "replica completeness");
    assert_eq!(complete["outcome"], "missing", "{complete}");
    assert!(reason(&complete).contains("baseline"), "{complete}");
    assert_eq!(line(&report, "addresses")["outcome"], "missing");
    // Nothing to promote: even forced, the failover is refused.
    let out = b.tandem(&["failover", "vs", "--force"]);
    assert_eq!(out.status.code(), Some(EXIT_ERROR), "{}", stdout(&out));
    assert!(stderr(&out).contains("baseline"), "{}", stderr(&out));
    assert_eq!(vserver_status(&b, "vs").unwrap()["state"], "replica");
}

/// IPv6, through the library on B's host (no daemon): the probe finds a
/// neighbour holding an address (the client, with B's solicitation
/// answered), a claim adds the address to B's eth0 without DAD, its
/// unsolicited neighbour advertisement (override flag) reaches the
/// client, and the release removes it again.
#[test]
fn ipv6_probe_claim_announce_and_release() {
    use tandem_control::net::addresses::{claim, ifindex};
    use tandem_control::net::announce::{
        announce_once, mac_text, parse_advertisement, Icmp6Socket,
    };
    use tandem_control::net::probe::{probe, Probed, PROBE_TIMEOUT_MS};

    if !available() {
        return;
    }
    let net = Net::new();
    let held: std::net::Ipv6Addr = "fd00:200::11".parse().unwrap();
    let ours: std::net::Ipv6Addr = "fd00:200::12".parse().unwrap();
    for (ns, ip) in [(&net.client, "fd00:200::1"), (&net.b, "fd00:200::3")] {
        net.ip_in(
            ns,
            &["addr", "add", &format!("{ip}/64"), "dev", DEV, "nodad"],
        );
    }
    net.ip_in(
        &net.client,
        &["addr", "add", &format!("{held}/64"), "dev", DEV, "nodad"],
    );
    let (client_mac, b_mac) = (net.mac(&net.client), net.mac(&net.b));

    let (ready_tx, ready) = mpsc::channel();
    let watcher = in_ns(&net.client, move || {
        let sock = Icmp6Socket::open(ifindex(DEV).expect("eth0"), None).expect("ICMPv6 socket");
        ready_tx.send(()).expect("test waits");
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Some(p) = sock.recv(Duration::from_millis(100)).expect("recv") {
                if let Some((target, Some(mac))) = parse_advertisement(&p) {
                    if target == ours && p[4] & 0x20 != 0 {
                        return Some(mac_text(&mac));
                    }
                }
            }
        }
        None
    });
    ready.recv_timeout(DEADLINE).expect("watcher listening");

    let front = tandem_control::config::resources::InterfaceSettings {
        name: "front".into(),
        device: DEV.into(),
        substitute: None,
    };
    let at_b = in_ns(&net.b, move || {
        let idx = ifindex(DEV).expect("eth0");
        let timeout = Duration::from_millis(PROBE_TIMEOUT_MS);
        let probed_held = probe(idx, held.into(), timeout).expect("probe");
        let probed_free = probe(idx, ours.into(), timeout).expect("probe");
        let addr = tandem_store::AddressSpec {
            ip: ours.into(),
            prefix: 64,
            interface: Some("front".into()),
        };
        let rt = local_runtime();
        let c = rt
            .block_on(claim(&addr, std::slice::from_ref(&front)))
            .expect("claim")
            .expect("added");
        announce_once(idx, ours.into()).expect("announce");
        (probed_held, probed_free, c, rt)
    });
    let (probed_held, probed_free, c, rt) = at_b.join().expect("B's thread");
    assert_eq!(probed_held, Probed::Answered { mac: client_mac });
    assert_eq!(probed_free, Probed::Silent);
    let has = |net: &Net| {
        net.ip_in(&net.b, &["-6", "addr", "show", "dev", DEV])
            .contains(&format!("{ours}/64"))
    };
    assert!(has(&net), "claimed address not on B's eth0");
    assert_eq!(watcher.join().expect("watcher"), Some(b_mac));
    // Released from B's namespace (the netlink socket is made there).
    in_ns(&net.b, move || rt.block_on(c.release()).expect("release"))
        .join()
        .expect("release thread");
    assert!(!has(&net), "released address still on B's eth0");
}
