//! Two paired sites for replication tests: setup, pairing and polling
//! until the replica has converged (with a deadline, never a fixed wait).

use std::time::{Duration, Instant};

use super::{assert_success, create_fs, free_port, Daemon, TestSite, DEADLINE};

pub use tandem_testkit::pattern;

/// Gives `b` the NFS and MOUNT ports of `a`, so a vserver address that
/// moves between them (failover, switchover) is found at the same port.
pub fn share_nfs_ports(a: &TestSite, b: &mut TestSite) {
    b.nfs_port = a.nfs_port;
    b.mount_port = a.mount_port;
    let ports = (a.nfs_port, a.mount_port);
    b.edit_toml(|t| {
        let nfs = t["nfs"].as_table_mut().expect("nfs table");
        nfs.insert("nfs_port".into(), i64::from(ports.0).into());
        nfs.insert("mount_port".into(), i64::from(ports.1).into());
    });
}

/// A site whose peer listener is on `ip` and a free port.
pub fn site(name: &str, ip: &str) -> (TestSite, String) {
    let addr = format!("{ip}:{}", free_port());
    (TestSite::init(name, &addr), addr)
}

pub fn site_id(s: &TestSite) -> String {
    s.status_json()["site"]["id"]
        .as_str()
        .expect("site id")
        .to_string()
}

pub fn pair_both(a: &TestSite, a_addr: &str, b: &TestSite, b_addr: &str) {
    let (a_id, b_id) = (site_id(a), site_id(b));
    let out = a.tandem(&["peer", "add", "beta", "--addr", b_addr, "--id", &b_id]);
    assert_success(&out, "peer add beta");
    let out = b.tandem(&["peer", "add", "alpha", "--addr", a_addr, "--id", &a_id]);
    assert_success(&out, "peer add alpha");
}

/// Sites "alpha" at `{net}.1` and "beta" at `{net}.2` (`net`: the first
/// three octets of a 127.x address), each changed by `configure` before
/// its daemon starts, then paired both ways.
pub fn paired_sites(
    net: &str,
    configure: impl Fn(&TestSite),
) -> (TestSite, Daemon, TestSite, Daemon) {
    let (a, a_addr) = site("alpha", &format!("{net}.1"));
    let (b, b_addr) = site("beta", &format!("{net}.2"));
    configure(&a);
    configure(&b);
    let (da, db) = (a.start_daemon(), b.start_daemon());
    pair_both(&a, &a_addr, &b, &b_addr);
    (a, da, b, db)
}

/// `tandem replicate VS --to beta --replica-address IP/32` at `a`.
pub fn replicate_to_beta(a: &TestSite, vs: &str, replica_ip: &str) {
    let replica = format!("{replica_ip}/32");
    let out = a.tandem(&[
        "replicate",
        vs,
        "--to",
        "beta",
        "--replica-address",
        &replica,
    ]);
    assert_success(&out, "replicate");
}

/// The named vserver's entry in `status --json`.
pub fn vserver_status(s: &TestSite, vs: &str) -> Option<serde_json::Value> {
    s.status_json()["vservers"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["name"] == vs).cloned())
}

/// A vserver's file systems or users from `status --json`, by name.
pub fn by_name(vs: &serde_json::Value, key: &str) -> Vec<serde_json::Value> {
    let mut v = vs[key].as_array().cloned().unwrap_or_default();
    v.sort_by_key(|x| x["name"].as_str().unwrap_or_default().to_string());
    v
}

/// Asserts `status --json` shows the same file systems and users of `vs`
/// at both sites; returns how many of each.
pub fn assert_same_config(a: &TestSite, b: &TestSite, vs: &str) -> (usize, usize) {
    let va = vserver_status(a, vs).expect("vserver at the active site");
    let vb = vserver_status(b, vs).expect("vserver at the replica");
    let fss = by_name(&va, "filesystems");
    assert_eq!(fss, by_name(&vb, "filesystems"), "file systems differ");
    let users = by_name(&va, "users");
    assert_eq!(users, by_name(&vb, "users"), "user maps differ");
    (fss.len(), users.len())
}

/// Polls until the replica at `b` has applied everything `a` holds and
/// `a` has seen the ack; returns that LSN.
pub fn wait_converged(a: &TestSite, b: &TestSite, vs: &str, logs: &dyn Fn() -> String) -> u64 {
    wait_converged_within(a, b, vs, DEADLINE, logs)
}

/// `wait_converged` with a deadline of `limit`.
pub fn wait_converged_within(
    a: &TestSite,
    b: &TestSite,
    vs: &str,
    limit: Duration,
    logs: &dyn Fn() -> String,
) -> u64 {
    let start = Instant::now();
    loop {
        let va = vserver_status(a, vs).expect("vserver at the active site");
        let last = va["last_lsn"].as_u64().expect("last_lsn");
        let acked = va["replication"]["replica_lsn"].as_u64().unwrap_or(0);
        let at_b = vserver_status(b, vs);
        let applied = at_b
            .as_ref()
            .and_then(|v| v["last_lsn"].as_u64())
            .unwrap_or(0);
        // Streaming too: right after a peer restarts, the LSNs can already
        // match (acked before it died) while the sender is reconnecting.
        let streaming = va["replication"]["state"] == "streaming";
        if last > 0 && applied == last && acked == last && streaming {
            let vb = at_b.expect("replica status");
            assert_eq!(vb["state"], "replica", "{vb}");
            assert_eq!(vb["replication"]["replica_lsn"], last, "{vb}");
            assert_eq!(va["replication"]["lag_records"], 0, "{va}");
            return last;
        }
        assert!(
            start.elapsed() < limit,
            "replica not converged within {limit:?}: active {va}\nreplica {at_b:?}\nlogs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes the journal segments of `vs` at a stopped site, as a checkpoint
/// does once the journal has moved past them (2 GiB of records later), so
/// the journal no longer holds its start.
pub fn drop_journal_segments(site: &TestSite, vs: &str) {
    let journal = site.dir.join(format!("vservers/{vs}/journal"));
    let mut removed = 0;
    for e in std::fs::read_dir(&journal).expect("journal dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "seg") {
            std::fs::remove_file(&p).expect("remove segment");
            removed += 1;
        }
    }
    assert!(removed > 0, "no journal segment in {}", journal.display());
}

/// `tandem verify`, retried while the sender is (re)connecting: the one
/// answer that is not yet the real one.
pub fn verify(site: &TestSite, args: &[&str]) -> std::process::Output {
    let start = Instant::now();
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    loop {
        let out = site.tandem(&all);
        if !super::stderr(&out).contains("not streaming") {
            return out;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "never streaming: {}",
            super::stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tandem verify VS` at the active site `a`: exit 0, "match".
pub fn assert_verify_matches(a: &TestSite, vs: &str) {
    let out = verify(a, &[vs]);
    let text = format!("{}\n{}", super::stdout(&out), super::stderr(&out));
    assert_eq!(out.status.code(), Some(0), "verify: {text}");
    assert!(
        super::stdout(&out).starts_with(&format!("{vs}: match at LSN ")),
        "verify: {text}"
    );
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Declares the interface `front` on device `lo` in the site's site.toml.
pub fn declare_front_on_lo(site: &TestSite) {
    declare_front_on(site, "lo");
}

/// Declares the interface `front` on `device` in the site's site.toml.
pub fn declare_front_on(site: &TestSite, device: &str) {
    site.edit_toml(|t| {
        let mut front = toml::Table::new();
        front.insert("name".into(), "front".into());
        front.insert("device".into(), device.into());
        t.insert(
            "interfaces".into(),
            toml::Value::Array(vec![toml::Value::Table(front)]),
        );
    });
}

/// Creates vserver `vs` at `ip`/32 on interface `front`, with /data.
pub fn create_vs_on_front(site: &TestSite, ip: &str) {
    let cidr = format!("{ip}/32@front");
    assert_success(
        &site.tandem(&["vserver", "create", "vs", "--address", &cidr]),
        "vserver create",
    );
    create_fs(site, "vs", "data", "/data");
}

/// `tandem replicate vs --to beta` in commit-sync, blocking on replica
/// loss, with the replica's read-only address; `extra` options appended.
pub fn replicate(a: &TestSite, replica: &str, extra: &[&str]) {
    let mut args = vec![
        "replicate",
        "vs",
        "--to",
        "beta",
        "--mode",
        "commit-sync",
        "--on-replica-loss",
        "block",
        "--replica-address",
        replica,
    ];
    args.extend_from_slice(extra);
    assert_success(&a.tandem(&args), "replicate");
}
