//! Vservers, file systems and users through the CLI and a running daemon.

use crate::common::*;

#[test]
fn create_vserver_fs_and_users_then_status() {
    let s = TestSite::init("alpha", "127.77.10.1");
    let _d = s.start_daemon();
    let out = s.tandem(&["vserver", "create", "vs1", "--address", "127.77.10.11/32"]);
    assert_success(&out, "vserver create");
    assert!(
        stdout(&out).contains("Created vserver vs1"),
        "{}",
        stdout(&out)
    );
    let out = s.tandem(&[
        "fs",
        "create",
        "vs1",
        "data",
        "--export",
        "/data",
        "--clients",
        "127.0.0.0/8,10.1.2.3",
    ]);
    assert_success(&out, "fs create");
    let out = s.tandem(&[
        "fs",
        "create",
        "vs1",
        "pub",
        "--export",
        "/pub",
        "--ro",
        "--no-root-squash",
        "--anon-uid",
        "99",
        "--anon-gid",
        "98",
    ]);
    assert_success(&out, "fs create --ro");
    let out = s.tandem(&[
        "user", "add", "vs1", "alice", "--uid", "1000", "--gid", "100", "--groups", "10,20",
    ]);
    assert_success(&out, "user add");
    assert!(stdout(&out).contains("alice"), "{}", stdout(&out));

    let st = s.status_json();
    let vs = &st["vservers"][0];
    assert_eq!(vs["name"], "vs1");
    assert_eq!(vs["state"], "active");
    assert_eq!(vs["addresses"][0], "127.77.10.11/32");
    assert_eq!(vs["endpoints"][0]["ip"], "127.77.10.11");
    assert_eq!(vs["endpoints"][0]["nfs_port"], s.nfs_port);
    assert_eq!(vs["endpoints"][0]["mount_port"], s.mount_port);
    let fss = vs["filesystems"].as_array().expect("filesystems");
    assert_eq!(fss.len(), 2);
    let data = fss.iter().find(|f| f["name"] == "data").expect("data fs");
    assert_eq!(data["export"], "/data");
    assert_eq!(data["root_squash"], true);
    assert_eq!(data["read_only"], false);
    assert_eq!(data["anon_uid"], 65534);
    assert_eq!(data["clients"][0], "127.0.0.0/8");
    assert_eq!(data["clients"][1], "10.1.2.3/32");
    let pubfs = fss.iter().find(|f| f["name"] == "pub").expect("pub fs");
    assert_eq!(pubfs["read_only"], true);
    assert_eq!(pubfs["root_squash"], false);
    assert_eq!(pubfs["anon_gid"], 98);
    assert_ne!(data["fsid"], pubfs["fsid"]);
    assert_eq!(vs["users"][0]["name"], "alice");
    assert_eq!(vs["users"][0]["groups"][1], 20);
    let last = vs["last_lsn"].as_u64().expect("last_lsn");
    assert!(last >= 4, "four config records at least: {last}");
    assert_eq!(vs["durable_lsn"], vs["last_lsn"]);

    // One vserver by name, and the human table.
    let out = s.tandem(&["status", "vs1"]);
    assert_success(&out, "status vs1");
    let text = stdout(&out);
    for needle in ["VSERVER", "vs1", "active", "/data", "alice", "127.77.10.11"] {
        assert!(text.contains(needle), "status lacks {needle}:\n{text}");
    }
    assert_fails_with(&s.tandem(&["status", "nope"]), "no vserver named nope");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let s = TestSite::init("alpha", "127.77.11.1");
    let _d = s.start_daemon();
    assert_success(
        &s.tandem(&["vserver", "create", "vs1", "--address", "127.77.11.11/32"]),
        "vserver create",
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["vserver", "create", "vs2", "--address", "127.77.11.12"],
            "not IP/PREFIX",
        ),
        (
            &["vserver", "create", "vs2", "--address", "127.77.11.300/32"],
            "not an IP address",
        ),
        (
            &["vserver", "create", "vs2", "--address", "127.77.11.12/40"],
            "longer than 32 bits",
        ),
        (
            &[
                "vserver",
                "create",
                "vs2",
                "--address",
                "127.77.11.12/32@bad:if",
            ],
            "interface",
        ),
        (&["vserver", "create", "vs2"], "--address"),
        (
            &["vserver", "create", "vs1", "--address", "127.77.11.13/32"],
            "vserver vs1 already exists",
        ),
        (
            &["vserver", "create", "vs2", "--address", "127.77.11.11/32"],
            "held by vserver vs1",
        ),
        (
            &[
                "vserver",
                "create",
                "bad/name",
                "--address",
                "127.77.11.14/32",
            ],
            "vserver name",
        ),
        (
            &[
                "fs",
                "create",
                "vs1",
                "f",
                "--export",
                "/f",
                "--clients",
                "10.0.0.0/33",
            ],
            "not a CIDR",
        ),
        (
            &[
                "fs",
                "create",
                "vs1",
                "f",
                "--export",
                "/f",
                "--clients",
                "nonsense",
            ],
            "not a CIDR",
        ),
        (
            &["fs", "create", "vs1", "f", "--export", "relative"],
            "must start with '/'",
        ),
        (&["fs", "create", "vs1", "f", "--export", "/a/../b"], "'..'"),
        (
            &["fs", "create", "nope", "f", "--export", "/f"],
            "no vserver named nope",
        ),
        (
            &[
                "fs",
                "create",
                "vs1",
                "f",
                "--export",
                "/f",
                "--anon-uid=-1",
            ],
            "anon-uid",
        ),
        (
            &["user", "add", "vs1", "bob", "--uid", "x", "--gid", "1"],
            "uid",
        ),
        (
            &[
                "user", "add", "vs1", "bob", "--uid", "1", "--gid", "1", "--groups", "1,x",
            ],
            "not a gid",
        ),
        (
            &["user", "add", "nope", "bob", "--uid", "1", "--gid", "1"],
            "no vserver named nope",
        ),
    ];
    for (args, needle) in cases {
        let out = s.tandem(args);
        assert_fails_with(&out, needle);
    }
    // Duplicates after a first success.
    assert_success(
        &s.tandem(&["fs", "create", "vs1", "f", "--export", "/f"]),
        "fs create",
    );
    assert_fails_with(
        &s.tandem(&["fs", "create", "vs1", "f", "--export", "/g"]),
        "file system already exists",
    );
    assert_fails_with(
        &s.tandem(&["fs", "create", "vs1", "g", "--export", "/f/"]),
        "already exported",
    );
    assert_success(
        &s.tandem(&["user", "add", "vs1", "bob", "--uid", "1", "--gid", "1"]),
        "user add",
    );
    assert_fails_with(
        &s.tandem(&["user", "add", "vs1", "bob", "--uid", "2", "--gid", "2"]),
        "user already exists",
    );
    // Nothing above changed the vserver beyond the two successes.
    let vs = &s.status_json()["vservers"];
    assert_eq!(vs.as_array().map(Vec::len), Some(1));
    assert_eq!(vs[0]["filesystems"].as_array().map(Vec::len), Some(1));
    assert_eq!(vs[0]["users"].as_array().map(Vec::len), Some(1));
}

#[test]
fn an_address_that_cannot_be_bound_is_reported_not_fatal() {
    let s = TestSite::init("alpha", "127.77.12.1");
    let _d = s.start_daemon();
    // TEST-NET-3 is on no interface here, so the bind fails.
    let out = s.tandem(&[
        "vserver",
        "create",
        "vs1",
        "--address",
        "127.77.12.11/32",
        "--address",
        "203.0.113.77/24",
    ]);
    assert_success(&out, "vserver create");
    assert!(
        stdout(&out).contains("NOT serving 203.0.113.77/24"),
        "{}",
        stdout(&out)
    );
    let vs = &s.status_json()["vservers"][0];
    assert_eq!(vs["endpoints"].as_array().map(Vec::len), Some(1));
    assert_eq!(vs["bind_failures"][0]["address"], "203.0.113.77/24");
}

#[test]
fn daemon_restart_keeps_config_and_fsck_runs_offline() {
    let s = TestSite::init("alpha", "127.77.13.1");
    let d = s.start_daemon();
    assert_success(
        &s.tandem(&["vserver", "create", "vs1", "--address", "127.77.13.11/32"]),
        "vs",
    );
    assert_success(
        &s.tandem(&["fs", "create", "vs1", "data", "--export", "/data"]),
        "fs",
    );
    assert_success(
        &s.tandem(&["user", "add", "vs1", "carol", "--uid", "7", "--gid", "7"]),
        "user",
    );
    let before = s.status_json();
    assert_fails_with(&s.tandem(&["fsck", "vs1"]), "stop the daemon first");
    assert!(d.stop().success(), "daemon exits cleanly on SIGTERM");
    assert!(
        !s.dir.join("control.sock").exists(),
        "socket removed at shutdown"
    );

    let out = s.tandem(&["fsck", "vs1"]);
    assert_success(&out, "fsck");
    assert!(
        stdout(&out).contains("no problems found"),
        "{}",
        stdout(&out)
    );
    assert_fails_with(&s.tandem(&["fsck", "nope"]), "no vserver named nope");

    let _d = s.start_daemon();
    let after = s.status_json();
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        v["site"]["daemon_pid"] = serde_json::Value::Null;
        // Free space is a live figure of the disk, not configuration.
        if let Some(vservers) = v["vservers"].as_array_mut() {
            for vs in vservers {
                vs["space"] = serde_json::Value::Null;
            }
        }
        v
    };
    assert_eq!(strip(&before), strip(&after));
}

#[test]
fn a_taken_portmap_port_does_not_stop_nfs_service() {
    let s = TestSite::init("alpha", "127.77.14.1");
    // Someone else (a system rpcbind, say) holds the portmap port.
    let squatter = std::net::TcpListener::bind("127.77.14.11:0").expect("bind squatter");
    let port = squatter.local_addr().expect("addr").port();
    s.edit_toml(|t| {
        let nfs = t["nfs"].as_table_mut().expect("nfs");
        nfs.insert("portmap".into(), true.into());
        nfs.insert("portmap_port".into(), i64::from(port).into());
    });
    let _d = s.start_daemon();
    let out = s.tandem(&["vserver", "create", "vs1", "--address", "127.77.14.11/32"]);
    assert_success(&out, "vserver create");
    let vs = &s.status_json()["vservers"][0];
    assert_eq!(vs["endpoints"][0]["nfs_port"], s.nfs_port);
    assert_eq!(vs["endpoints"][0]["portmap_port"], serde_json::Value::Null);
    let failure = vs["bind_failures"][0]["address"].as_str().expect("failure");
    assert!(failure.contains("portmap"), "{failure}");
}

#[test]
fn a_corrupt_store_fails_alone_and_fsck_reports_it() {
    let s = TestSite::init("alpha", "127.77.15.1");
    let d = s.start_daemon();
    for (vs, ip) in [("bad", "127.77.15.11/32"), ("good", "127.77.15.12/32")] {
        assert_success(&s.tandem(&["vserver", "create", vs, "--address", ip]), "vs");
        assert_success(
            &s.tandem(&["fs", "create", vs, "data", "--export", "/data"]),
            "fs",
        );
        assert_success(
            &s.tandem(&["user", "add", vs, "u", "--uid", "1", "--gid", "1"]),
            "user",
        );
    }
    // A crash leaves the records in the journal (no checkpoint), then a
    // damaged byte early in the segment, well before its last record.
    d.kill();
    let journal = s.dir.join("vservers/bad/journal");
    let seg = std::fs::read_dir(&journal)
        .expect("journal dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .min()
        .expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read segment");
    let at = bytes.len() / 4;
    for b in &mut bytes[at..at + 4] {
        *b ^= 0xff;
    }
    std::fs::write(&seg, &bytes).expect("write segment");

    let out = s.tandem(&["fsck", "bad"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("corrupt"), "{}", stdout(&out));

    let _d = s.start_daemon();
    let st = s.status_json();
    let by_name = |n: &str| {
        st["vservers"]
            .as_array()
            .and_then(|a| a.iter().find(|v| v["name"] == n))
            .cloned()
            .expect("vserver listed")
    };
    let bad = by_name("bad");
    assert_eq!(bad["state"], "failed");
    assert!(
        bad["error"].as_str().unwrap_or("").contains("corrupt"),
        "{bad}"
    );
    let good = by_name("good");
    assert_eq!(good["state"], "active");
    assert_eq!(good["filesystems"][0]["export"], "/data");
    assert_fails_with(
        &s.tandem(&["fs", "create", "bad", "f", "--export", "/f"]),
        "not open",
    );
}
