//! `tandem replicate`'s options through the real binary: compression,
//! bandwidth and max lag shown in status and /metrics with the throughput
//! figures; running it again changes the settings (or does nothing when
//! they are the same); `--stop` ends replication for good; `--wait`
//! returns once the replica streams; bad values are refused by the CLI and,
//! sent straight to the control socket, by the daemon.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::*;

fn ask(sock: &std::path::Path, line: &str) -> String {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(line.as_bytes()).expect("send");
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).expect("read");
    answer
}

fn metrics(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn replication_toml(s: &TestSite) -> toml::Table {
    let text = std::fs::read_to_string(s.dir.join("replication.toml")).expect("replication.toml");
    text.parse().expect("valid toml")
}

/// Polls `status` until `f` holds for the vserver's entry.
fn wait_until(
    s: &TestSite,
    vs: &str,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = vserver_status(s, vs).expect("vserver");
        if f(&v) {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "never {what}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn options_show_in_status_and_metrics_change_and_stop() {
    let (a, a_addr) = site("alpha", "127.83.1.1");
    let (b, b_addr) = site("beta", "127.83.1.2");
    let metrics_addr = format!("127.83.1.1:{}", free_port());
    a.edit_toml(|t| {
        let mut m = toml::Table::new();
        m.insert("listen".into(), metrics_addr.clone().into());
        t.insert("metrics".into(), m.into());
    });
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, "vs", "127.83.1.11", "data", "/data");
    let logs = || format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());

    let opts = [
        "replicate",
        "vs",
        "--to",
        "beta",
        "--compress",
        "zstd",
        "--bandwidth-mbps",
        "1000",
        "--max-lag-ms",
        "60000",
        "--wait",
    ];
    let out = a.tandem(&opts);
    assert_success(&out, "replicate --wait");
    assert!(
        stdout(&out).contains("vs is streaming to beta"),
        "{}",
        stdout(&out)
    );
    wait_converged(&a, &b, "vs", &logs);
    let r = vserver_status(&a, "vs").expect("vs")["replication"].clone();
    assert_eq!(r["compress"], "zstd", "{r}");
    assert_eq!(r["bandwidth_mbps"], 1000, "{r}");
    assert_eq!(r["max_lag_ms"], 60000, "{r}");
    assert!(r["estimated_rpo_ms"].is_u64(), "{r}");
    let journal = r["acked_journal_bytes"].as_u64().expect("acked bytes");
    assert!(journal > 0, "{r}");
    assert_eq!(r["sent_journal_bytes"].as_u64(), Some(journal), "{r}");
    assert!(
        r["sent_wire_bytes"].as_u64().expect("wire bytes") > 0,
        "{r}"
    );
    let text = stdout(&a.tandem(&["status", "vs"]));
    assert!(text.contains("estimated RPO"), "{text}");
    assert!(
        text.contains("compress zstd, bandwidth 1000 Mbit/s, max lag 60000 ms"),
        "{text}"
    );

    let m = metrics(&metrics_addr);
    let labels = "vserver=\"vs\",peer=\"beta\",mode=\"async\"";
    assert!(
        m.contains(&format!(
            "tandem_replication_sent_wire_bytes_total{{{labels}}} "
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "tandem_replication_acked_journal_bytes_total{{{labels}}} {journal}"
        )),
        "{m}"
    );
    assert!(
        m.contains("# TYPE tandem_replication_throughput_bytes_per_second gauge"),
        "{m}"
    );
    assert!(
        m.contains("tandem_replication_estimated_rpo_seconds{"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "tandem_replication_state{{{labels},state=\"streaming\"}} 1"
        )),
        "{m}"
    );

    // The same options again: nothing changes.
    let before = replication_toml(&a);
    assert_success(&a.tandem(&opts), "same options again");
    assert_eq!(replication_toml(&a), before);

    // Another mode: the file, the status and the store's policy follow.
    let out = a.tandem(&["replicate", "vs", "--to", "beta", "--mode", "commit-sync"]);
    assert_success(&out, "change to commit-sync");
    let toml = replication_toml(&a);
    let entry = &toml["outgoing"]["vs"];
    assert_eq!(entry["mode"].as_str(), Some("commit-sync"), "{toml}");
    assert!(entry.get("max_lag_ms").is_none(), "{toml}");
    let v = wait_until(&a, "vs", "streaming in commit-sync", |v| {
        v["replication"]["mode"] == "commit-sync" && v["replication"]["state"] == "streaming"
    });
    assert_eq!(v["replication"]["estimated_rpo_ms"], 0, "{v}");
    assert_eq!(v["replication"]["sync_timeout_ms"], 5000, "{v}");
    wait_converged(&a, &b, "vs", &logs);

    // Another peer: refused until replication to beta is stopped.
    let out = a.tandem(&[
        "peer",
        "add",
        "gamma",
        "--addr",
        "127.83.1.3:7447",
        "--id",
        &"ab".repeat(32),
    ]);
    assert_success(&out, "peer add gamma");
    let out = a.tandem(&["replicate", "vs", "--to", "gamma"]);
    assert_fails_with(&out, "--stop");
    assert_eq!(replication_toml(&a), toml);

    // Stop: no replication here, the vserver serves on, beta keeps its
    // replica, and a restart does not bring replication back.
    let out = a.tandem(&["replicate", "vs", "--stop"]);
    assert_success(&out, "replicate --stop");
    assert!(
        stdout(&out).contains("stays there as a replica"),
        "{}",
        stdout(&out)
    );
    let v = vserver_status(&a, "vs").expect("vs");
    assert!(v["replication"].is_null(), "{v}");
    assert_eq!(v["state"], "active", "{v}");
    let toml = replication_toml(&a);
    assert!(
        toml.get("outgoing").and_then(|o| o.get("vs")).is_none(),
        "{toml}"
    );
    let vb = vserver_status(&b, "vs").expect("vs at beta");
    assert_eq!(vb["state"], "replica", "{vb}");
    assert_fails_with(&a.tandem(&["replicate", "vs", "--stop"]), "not replicated");
    da.stop();
    let da = a.start_daemon();
    let v = vserver_status(&a, "vs").expect("vs after restart");
    assert!(v["replication"].is_null(), "{v}\n{}", da.log_text());
    assert_eq!(v["state"], "active", "{v}");
}

#[test]
fn bad_option_values_are_refused_by_cli_and_daemon() {
    let (a, a_addr) = site("alpha", "127.83.2.1");
    let (b, b_addr) = site("beta", "127.83.2.2");
    let _da = a.start_daemon();
    let _db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, "vs", "127.83.2.11", "data", "/data");
    let base = ["replicate", "vs", "--to", "beta"];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        a.tandem(&args)
    };
    assert_fails_with(&with(&["--bandwidth-mbps", "0"]), "bandwidth-mbps");
    assert_fails_with(&with(&["--bandwidth-mbps", "100001"]), "bandwidth-mbps");
    assert_fails_with(&with(&["--max-lag-ms", "0"]), "max-lag-ms");
    assert_fails_with(&with(&["--max-lag-ms", "3600001"]), "max-lag-ms");
    assert_fails_with(&with(&["--compress", "lz4"]), "lz4");
    assert_fails_with(
        &with(&["--mode", "sync", "--max-lag-ms", "100"]),
        "async mode only",
    );
    assert_fails_with(&with(&["--wait-timeout-s", "10"]), "--wait");
    assert_fails_with(
        &with(&["--wait", "--wait-timeout-s", "0"]),
        "wait-timeout-s",
    );
    assert_fails_with(
        &a.tandem(&["replicate", "vs", "--stop", "--to", "beta"]),
        "--to",
    );
    assert_fails_with(&a.tandem(&["replicate", "vs"]), "--to");

    // The daemon checks what comes over the socket itself.
    let sock = a.dir.join("control.sock");
    let req = |extra: &str| {
        ask(
            &sock,
            &format!(
                "{{\"op\":\"replicate\",\"vserver\":\"vs\",\"to\":\"beta\",\"mode\":\"async\"{extra}}}\n"
            ),
        )
    };
    for (extra, needle) in [
        (",\"bandwidth_mbps\":0", "bandwidth"),
        (",\"bandwidth_mbps\":100001", "bandwidth"),
        (",\"max_lag_ms\":0", "max lag"),
        (",\"max_lag_ms\":3600001", "max lag"),
        (",\"compress\":\"lz4\"", "compress"),
        (
            ",\"on_replica_loss\":\"block\"",
            "commit-sync and sync only",
        ),
    ] {
        let answer = req(extra);
        assert!(answer.contains("\"result\":\"error\""), "{extra}: {answer}");
        assert!(answer.contains(needle), "{extra}: {answer}");
    }
    let answer = ask(&sock, "{\"op\":\"replicate_stop\",\"vserver\":\"vs\"}\n");
    assert!(answer.contains("not replicated"), "{answer}");
    assert!(!a.dir.join("replication.toml").exists());
}

#[test]
fn wait_gives_up_at_its_timeout_and_replication_goes_on() {
    let (a, a_addr) = site("alpha", "127.83.3.1");
    let (b, b_addr) = site("beta", "127.83.3.2");
    let _da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    db.stop();
    create_vserver_and_fs(&a, "vs", "127.83.3.11", "data", "/data");
    let out = a.tandem(&[
        "replicate",
        "vs",
        "--to",
        "beta",
        "--wait",
        "--wait-timeout-s",
        "1",
    ]);
    assert_fails_with(&out, "not streaming after 1 s");
    assert_fails_with(&out, "replication goes on");
    // Not a terminal: plain progress lines, no bar.
    assert!(stdout(&out).contains("vs: state "), "{}", stdout(&out));
    let v = vserver_status(&a, "vs").expect("vs");
    assert_eq!(v["replication"]["to"], "beta", "{v}");
    // Once beta is back, the same sender streams.
    let _db = b.start_daemon();
    wait_until(&a, "vs", "streaming after beta came back", |v| {
        v["replication"]["state"] == "streaming"
    });
}

/// Incompressible file data (already compressed or encrypted files) costs
/// no more on the wire with compression on than its own size and a few
/// percent of headers: such batches go as plain Batch.
#[test]
fn incompressible_writes_stay_within_five_percent_on_the_wire() {
    let (a, a_addr) = site("alpha", "127.83.4.1");
    let (b, b_addr) = site("beta", "127.83.4.2");
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, "vs", "127.83.4.11", "data", "/data");
    let logs = || format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    assert_success(&a.tandem(&["replicate", "vs", "--to", "beta"]), "replicate");
    wait_converged(&a, &b, "vs", &logs);
    let before = vserver_status(&a, "vs").expect("vs")["replication"]["sent_wire_bytes"]
        .as_u64()
        .expect("wire bytes");
    let data = pattern(4 << 20, 7);
    runtime().block_on(async {
        let mut c = mount(&a, "127.83.4.11").await;
        write_file(&mut c, "random", &data).await;
    });
    wait_converged(&a, &b, "vs", &logs);
    let r = vserver_status(&a, "vs").expect("vs")["replication"].clone();
    let wire = r["sent_wire_bytes"].as_u64().expect("wire bytes") - before;
    let changed = data.len() as u64;
    assert!(
        wire * 100 <= changed * 105,
        "{wire} wire bytes for {changed} bytes written: {r}"
    );
    assert!(
        wire >= changed,
        "{wire} wire bytes for {changed} random bytes: {r}"
    );
}
