//! Prometheus metrics: `/metrics` on the address site.toml names, with the
//! figures of `tandem status`; anything else gets a clear HTTP error and the
//! daemon carries on.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::common::*;

fn http(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.77.80.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(request).expect("send");
    let mut out = String::new();
    // The server closes after one answer; a refused request may close
    // without one.
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn metrics_show_status_figures_and_refuse_the_rest() {
    let site = TestSite::init("metrics-site", "127.77.80.1:7447");
    let port = free_port();
    site.edit_toml(|t| {
        let mut m = toml::Table::new();
        m.insert("listen".into(), format!("127.77.80.1:{port}").into());
        t.insert("metrics".into(), m.into());
    });
    let daemon = site.start_daemon();
    create_vserver_and_fs(&site, "vs", "127.77.80.2", "data", "/data");
    let st = site.status_json();
    let last = st["vservers"][0]["last_lsn"].as_u64().expect("last_lsn");

    let got = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert!(
        got.contains("# TYPE tandem_vserver_last_lsn gauge"),
        "{got}"
    );
    assert!(
        got.contains(&format!("tandem_vserver_last_lsn{{vserver=\"vs\"}} {last}")),
        "{got}"
    );
    assert!(got.contains("tandem_vserver_up{vserver=\"vs\"} 1"), "{got}");
    assert!(
        got.contains("tandem_refused_peer_connections_total{site=\"metrics-site\"} 0"),
        "{got}"
    );

    assert!(http(port, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(port, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    // An endless request head is cut off, not buffered.
    let huge = vec![b'a'; 64 * 1024];
    let _ = http(port, &huge);
    // And the daemon still answers.
    let again = http(port, b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(again.starts_with("HTTP/1.1 200 OK"), "{again}");
    daemon.stop();
}

#[test]
fn a_bad_metrics_address_is_a_clear_config_error() {
    let site = TestSite::init("metrics-bad", "127.77.80.5:7447");
    site.edit_toml(|t| {
        let mut m = toml::Table::new();
        m.insert("listen".into(), "not an address".into());
        t.insert("metrics".into(), m.into());
    });
    let out = site.tandem(&["daemon"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("metrics.listen"), "{}", stderr(&out));
}
