//! Sites: init, identity, side-by-side daemons, and bad configuration.

use crate::common::*;

#[test]
fn two_sites_run_side_by_side_with_distinct_ids() {
    let a = TestSite::init("alpha", "127.77.1.1:17447");
    let b = TestSite::init("beta", "127.77.1.2:17447");
    let _da = a.start_daemon();
    let _db = b.start_daemon();
    let sa = a.status_json();
    let sb = b.status_json();
    assert_eq!(sa["site"]["name"], "alpha");
    assert_eq!(sb["site"]["name"], "beta");
    let (ida, idb) = (
        sa["site"]["id"].as_str().expect("id"),
        sb["site"]["id"].as_str().expect("id"),
    );
    assert_eq!(ida.len(), 64, "hex SHA-256: {ida}");
    assert!(ida.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(ida, idb);
    // Both serve vservers at once, on their own addresses.
    assert_success(
        &a.tandem(&["vserver", "create", "vs", "--address", "127.77.1.11/32"]),
        "create on alpha",
    );
    assert_success(
        &b.tandem(&["vserver", "create", "vs", "--address", "127.77.1.12/32"]),
        "create on beta",
    );
    assert_eq!(
        a.status_json()["vservers"][0]["endpoints"][0]["ip"],
        "127.77.1.11"
    );
    assert_eq!(
        b.status_json()["vservers"][0]["endpoints"][0]["ip"],
        "127.77.1.12"
    );
}

#[test]
fn init_writes_identity_and_refuses_an_existing_site() {
    use std::os::unix::fs::PermissionsExt;
    let a = TestSite::init("alpha", "127.77.2.1");
    let key = a.dir.join("identity/key.pem");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(a.dir.join("identity/cert.pem").exists());
    let text = std::fs::read_to_string(a.toml_path()).expect("site.toml");
    assert!(text.contains("listen = \"127.77.2.1:7447\""), "{text}");
    let again = a.tandem(&["init", "--site", "other"]);
    assert_fails_with(&again, "a site already exists");
}

#[test]
fn init_rejects_bad_names_and_listen_addresses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    assert_fails_with(&run(&dir, &["init", "--site", "bad/name"]), "site name");
    assert_fails_with(
        &run(&dir, &["init", "--site", ".hidden"]),
        "must start with a letter",
    );
    assert_fails_with(
        &run(&dir, &["init", "--site", "ok", "--listen", "host:notaport"]),
        "listen address",
    );
    assert!(!dir.join("site.toml").exists());
}

#[test]
fn a_second_daemon_on_one_site_is_refused() {
    let a = TestSite::init("alpha", "127.77.3.1");
    let first = a.start_daemon();
    let second = a.spawn_daemon();
    let log_path = second.log.clone();
    let status = second.wait_exit();
    assert!(!status.success());
    let log = std::fs::read_to_string(log_path).unwrap_or_default();
    assert!(log.contains("already running"), "{log}");
    assert!(log.contains(&format!("pid {}", first.pid())), "{log}");
    // The first one is unharmed.
    a.status_json();
}

#[test]
fn corrupt_or_invalid_site_toml_stops_the_daemon_with_a_clear_error() {
    type Corrupt = Box<dyn Fn(&TestSite)>;
    let cases: Vec<(&str, Corrupt, &str)> = vec![
        (
            "not toml",
            Box::new(|s: &TestSite| std::fs::write(s.toml_path(), "name = [\n").expect("write")),
            "site configuration",
        ),
        (
            "port zero",
            Box::new(|s: &TestSite| {
                s.edit_toml(|t| {
                    t["nfs"]
                        .as_table_mut()
                        .expect("nfs")
                        .insert("nfs_port".into(), 0.into());
                })
            }),
            "nfs.nfs_port must not be 0",
        ),
        (
            "port out of range",
            Box::new(|s: &TestSite| {
                s.edit_toml(|t| {
                    t["nfs"]
                        .as_table_mut()
                        .expect("nfs")
                        .insert("mount_port".into(), 70000.into());
                })
            }),
            "mount_port",
        ),
        (
            "limit zero",
            Box::new(|s: &TestSite| {
                s.edit_toml(|t| {
                    t["nfs"]
                        .as_table_mut()
                        .expect("nfs")
                        .insert("max_connections".into(), 0.into());
                })
            }),
            "nfs.max_connections = 0 is outside",
        ),
        (
            "unknown key",
            Box::new(|s: &TestSite| {
                s.edit_toml(|t| {
                    t.insert("nfs_prot".into(), 1.into());
                })
            }),
            "unknown field",
        ),
        (
            "bad name",
            Box::new(|s: &TestSite| {
                s.edit_toml(|t| {
                    t.insert("name".into(), "a b".into());
                })
            }),
            "site name",
        ),
    ];
    for (what, corrupt, needle) in cases {
        let s = TestSite::init("alpha", "127.77.4.1");
        corrupt(&s);
        let d = s.spawn_daemon();
        let log_path = d.log.clone();
        let status = d.wait_exit();
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        assert!(!status.success(), "{what}: daemon started");
        assert!(log.contains(needle), "{what}: log lacks {needle:?}:\n{log}");
        assert!(!log.contains("panicked"), "{what}: panic:\n{log}");
    }
}

#[test]
fn commands_without_a_daemon_or_site_fail_clearly() {
    let a = TestSite::init("alpha", "127.77.5.1");
    assert_fails_with(&a.tandem(&["status"]), "is not running");
    assert_fails_with(
        &a.tandem(&["vserver", "create", "vs", "--address", "127.77.5.11/32"]),
        "is not running",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    assert_fails_with(&run(tmp.path(), &["status"]), "no site in");
    let out = std::process::Command::new(BIN)
        .arg("status")
        .env_remove("TANDEM_DATA")
        .output()
        .expect("run");
    assert_fails_with(&out, "--data DIR or set TANDEM_DATA");
    // TANDEM_DATA is honoured.
    let out = std::process::Command::new(BIN)
        .arg("status")
        .env("TANDEM_DATA", &a.dir)
        .output()
        .expect("run");
    assert_fails_with(&out, &a.dir.display().to_string());
}
