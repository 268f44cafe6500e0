//! The control socket is input: garbage, unknown operations and oversized
//! lines get an error answer and leave the daemon serving.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;

use crate::common::*;

fn ask(sock: &std::path::Path, line: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    // The daemon answers an oversized line early and hangs up, so the
    // rest of our write may hit a closed socket: the answer still counts.
    let _ = s.write_all(line);
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).expect("read");
    answer
}

#[test]
fn garbage_gets_errors_and_the_daemon_survives() {
    let s = TestSite::init("alpha", "127.77.20.1");
    let _d = s.start_daemon();
    let sock = s.dir.join("control.sock");
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let a = ask(&sock, b"this is not json\n");
    assert!(
        a.contains("\"result\":\"error\"") && a.contains("malformed request"),
        "{a}"
    );
    let a = ask(&sock, b"{\"op\":\"format_disk\"}\n");
    assert!(a.contains("\"kind\":\"invalid\""), "{a}");
    let a = ask(
        &sock,
        b"{\"op\":\"vserver_create\",\"name\":\"../../etc\",\"addresses\":[{\"ip\":\"127.77.20.11\",\"prefix\":32,\"interface\":null}]}\n",
    );
    assert!(a.contains("vserver name"), "{a}");
    let a = ask(
        &sock,
        b"{\"op\":\"vserver_create\",\"name\":\"v\",\"addresses\":[{\"ip\":\"127.77.20.11\",\"prefix\":99,\"interface\":null}]}\n",
    );
    assert!(a.contains("prefix"), "{a}");
    let mut huge = vec![b'x'; 1 << 20];
    huge.push(b'\n');
    let a = ask(&sock, &huge);
    assert!(a.contains("longer than"), "{a}");

    // Still serving, nothing was created.
    let st = s.status_json();
    assert_eq!(st["vservers"].as_array().map(Vec::len), Some(0));
}
