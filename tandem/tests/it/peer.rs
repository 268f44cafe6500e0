//! Pairing sites and the mutual-TLS peer channel, through the real binary:
//! two sites on distinct loopback addresses with free listen ports.

use std::time::{Duration, Instant};

use crate::common::replication::site_id;
use crate::common::*;

/// A site whose peer listener is on `ip` and a free port.
fn site(name: &str, ip: &str) -> (TestSite, String) {
    let addr = format!("{ip}:{}", free_port());
    (TestSite::init(name, &addr), addr)
}

fn pair(from: &TestSite, name: &str, addr: &str, id: &str) {
    let out = from.tandem(&["peer", "add", name, "--addr", addr, "--id", id]);
    assert_success(&out, "peer add");
    assert!(stdout(&out).contains("Added peer"), "{}", stdout(&out));
}

fn check_ok(from: &TestSite, name: &str) {
    let out = from.tandem(&["peer", "check", name]);
    assert_success(&out, "peer check");
    let text = stdout(&out);
    assert!(text.contains("round trip"), "{text}");
}

#[test]
fn paired_both_ways_check_succeeds_in_both_directions() {
    let (a, a_addr) = site("alpha", "127.78.1.1");
    let (b, b_addr) = site("beta", "127.78.1.2");
    let _da = a.start_daemon();
    let _db = b.start_daemon();
    let (a_id, b_id) = (site_id(&a), site_id(&b));
    pair(&a, "beta", &b_addr, &b_id);
    pair(&b, "alpha", &a_addr, &a_id);
    check_ok(&a, "beta");
    check_ok(&b, "alpha");

    let out = a.tandem(&["peer", "list", "--json"]);
    assert_success(&out, "peer list --json");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list[0]["name"], "beta");
    assert_eq!(list[0]["addr"], b_addr.as_str());
    assert_eq!(list[0]["id"], b_id.as_str());
    let out = a.tandem(&["peer", "list"]);
    assert_success(&out, "peer list");
    assert!(stdout(&out).contains(&b_id), "{}", stdout(&out));

    let st = a.status_json();
    assert_eq!(st["site"]["peers"], 1);
    assert_eq!(st["site"]["refused_peer_connections"], 0);
}

#[test]
fn one_way_pairing_is_refused_and_counted() {
    let (a, _a_addr) = site("alpha", "127.78.2.1");
    let (b, b_addr) = site("beta", "127.78.2.2");
    let _da = a.start_daemon();
    let db = b.start_daemon();
    let (a_id, b_id) = (site_id(&a), site_id(&b));
    // alpha trusts beta, but beta was never told about alpha.
    pair(&a, "beta", &b_addr, &b_id);
    let out = a.tandem(&["peer", "check", "beta"]);
    assert_fails_with(&out, "refused this site");
    assert_fails_with(&out, "peer add");

    let start = Instant::now();
    loop {
        let st = b.status_json();
        let refused = st["site"]["refused_peer_connections"]
            .as_u64()
            .expect("counter");
        if refused >= 1 {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "refusal not counted: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = db.log_text();
    assert!(
        log.contains("refused peer connection") && log.contains(&a_id),
        "beta's log does not name the refused id:\n{log}"
    );
}

#[test]
fn wrong_id_is_a_clear_failure() {
    let (a, _a_addr) = site("alpha", "127.78.3.1");
    let (b, b_addr) = site("beta", "127.78.3.2");
    let (c, _c_addr) = site("gamma", "127.78.3.3");
    let _da = a.start_daemon();
    let _db = b.start_daemon();
    let a_id = site_id(&a);
    let b_id = site_id(&b);
    // gamma's id, but beta's address: beta's certificate does not match.
    let c_id = {
        let _dc = c.start_daemon();
        site_id(&c)
    };
    pair(&a, "beta", &b_addr, &c_id);
    pair(&b, "alpha", "127.78.3.1:1", &a_id);
    let out = a.tandem(&["peer", "check", "beta"]);
    assert_fails_with(&out, &format!("presented site id {b_id}"));
    assert_fails_with(&out, &c_id);
}

#[test]
fn bad_peer_add_inputs_are_clear_errors() {
    let (a, _a_addr) = site("alpha", "127.78.4.1");
    let _da = a.start_daemon();
    let own = site_id(&a);
    let other = "ab".repeat(32);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["bad/name", "--addr", "127.0.0.9:7000", "--id", &other],
            "peer name",
        ),
        (
            vec!["b", "--addr", "127.0.0.9:notaport", "--id", &other],
            "peer address",
        ),
        (
            vec!["b", "--addr", "bad host:1", "--id", &other],
            "peer address",
        ),
        (
            vec!["b", "--addr", "127.0.0.9:0", "--id", &other],
            "port must not be 0",
        ),
        (
            vec!["b", "--addr", "0.0.0.0:7000", "--id", &other],
            "cannot be connected to",
        ),
        (
            vec!["b", "--addr", "127.0.0.9:7000", "--id", "1234"],
            "not a site id",
        ),
        (
            vec!["b", "--addr", "127.0.0.9:7000", "--id", &own],
            "own id",
        ),
    ];
    for (args, needle) in &cases {
        let mut full = vec!["peer", "add"];
        full.extend(args.iter().copied());
        assert_fails_with(&a.tandem(&full), needle);
    }
    pair(&a, "b", "127.0.0.9:7000", &other);
    let dup_name = a.tandem(&[
        "peer",
        "add",
        "b",
        "--addr",
        "127.0.0.10:7000",
        "--id",
        &"cd".repeat(32),
    ]);
    assert_fails_with(&dup_name, "already exists");
    let dup_id = a.tandem(&[
        "peer",
        "add",
        "c",
        "--addr",
        "127.0.0.10:7000",
        "--id",
        &other,
    ]);
    assert_fails_with(&dup_id, "already exists");
    assert_fails_with(&a.tandem(&["peer", "remove", "nope"]), "no peer named nope");
    assert_fails_with(&a.tandem(&["peer", "check", "nope"]), "no peer named nope");
    // Nothing was added by the failures.
    assert_eq!(a.status_json()["site"]["peers"], 1);
}

#[test]
fn peers_survive_restart_and_remove_takes_effect() {
    let (a, a_addr) = site("alpha", "127.78.5.1");
    let (b, b_addr) = site("beta", "127.78.5.2");
    let da = a.start_daemon();
    let _db = b.start_daemon();
    let (a_id, b_id) = (site_id(&a), site_id(&b));
    pair(&a, "beta", &b_addr, &b_id);
    pair(&b, "alpha", &a_addr, &a_id);
    assert!(da.stop().success());
    let _da = a.start_daemon();
    let out = a.tandem(&["peer", "list", "--json"]);
    assert_success(&out, "peer list");
    assert!(stdout(&out).contains(&b_id), "{}", stdout(&out));
    check_ok(&a, "beta");
    check_ok(&b, "alpha");

    // Unpairing at alpha: beta's connections are refused from now on.
    assert_success(&a.tandem(&["peer", "remove", "beta"]), "peer remove");
    assert_fails_with(&b.tandem(&["peer", "check", "alpha"]), "refused this site");
    assert_eq!(a.status_json()["site"]["peers"], 0);
}

#[test]
fn garbage_on_the_peer_port_is_refused_and_the_daemon_carries_on() {
    use std::io::{Read, Write};
    let (a, a_addr) = site("alpha", "127.78.6.1");
    let d = a.start_daemon();
    for junk in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff][..],
        &[0u8; 4096][..],
    ] {
        let mut s = std::net::TcpStream::connect(&a_addr).expect("connect to peer port");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        // The daemon may close before reading everything; that is fine.
        let _ = s.write_all(junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let start = Instant::now();
    loop {
        let refused = a.status_json()["site"]["refused_peer_connections"]
            .as_u64()
            .expect("counter");
        if refused >= 3 {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "refusals not counted: {refused}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
    assert!(d.stop().success());
}

/// More silent TCP connections than the listener has places for, from
/// many addresses and past one address's share: a paired site still gets
/// through, and the listener keeps accepting.
#[test]
fn silent_connections_do_not_keep_a_paired_site_out() {
    let (a, a_addr) = site("alpha", "127.78.5.1");
    let (b, b_addr) = site("beta", "127.78.5.2");
    let _da = a.start_daemon();
    let _db = b.start_daemon();
    let (a_id, b_id) = (site_id(&a), site_id(&b));
    pair(&a, "beta", &b_addr, &b_id);
    pair(&b, "alpha", &a_addr, &a_id);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let connect = |source: String| {
        rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(format!("{source}:0").parse().expect("source"))
                .expect("bind");
            socket
                .connect(a_addr.parse().expect("listen address"))
                .await
                .expect("connect")
        })
    };
    // 18 addresses x 4: past the 64 connections the listener once
    // accepted in all, each holding its place for the handshake timeout.
    let mut silent = Vec::new();
    for host in 10..28 {
        for _ in 0..4 {
            silent.push(connect(format!("127.78.5.{host}")));
        }
    }
    let started = Instant::now();
    check_ok(&b, "alpha");
    eprintln!(
        "peer check through {} silent connections in {:?}",
        silent.len(),
        started.elapsed()
    );
    // A fifth connection from one address is closed at once.
    let mut fifth = connect("127.78.5.10".into());
    let closed = rt.block_on(async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 16];
        tokio::time::timeout(Duration::from_secs(10), fifth.read(&mut buf)).await
    });
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    drop(silent);
}
