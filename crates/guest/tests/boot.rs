//! Boots two guests on a bridge in a network namespace made here and
//! drives them: output, exit status and timeouts of jobs, the network
//! between them, the client modules. Needs root, QEMU and the extracted
//! kernel (`.ci/run` installs them): skipped without, failed in CI.

use std::process::Command;
use std::time::{Duration, Instant};

use tandem_guest::{Bridge, Error, Guest, Host, Image, Options};

const JOB: Duration = Duration::from_secs(60);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The host and image, or None (skipped) when the machine lacks them.
fn prerequisites() -> Option<(Host, Image)> {
    match Host::find() {
        Ok(host) => {
            let image = Image::prepare(&host).unwrap_or_else(|e| panic!("{e}"));
            Some((host, image))
        }
        Err(Error::Missing(what)) => {
            assert!(!in_ci(), "CI=true and this test needs {what}");
            eprintln!("SKIP: this test needs {what}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace holding a bridge, deleted (with the bridge) when dropped.
struct Lan(String);

impl Lan {
    fn new() -> Lan {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ns = format!("tg{}x{n}lan", std::process::id());
        ip(&["netns", "add", &ns]);
        let lan = Lan(ns);
        ip(&["-n", &lan.0, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan.0, "link", "set", "br0", "up"]);
        lan
    }

    fn bridge(&self) -> Bridge {
        Bridge {
            netns: self.0.clone(),
            device: "br0".into(),
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn two_guests_run_jobs_and_reach_each_other() {
    let Some((host, image)) = prerequisites() else {
        return;
    };
    let lan = Lan::new();
    let start = Instant::now();
    let mut one = Guest::start(
        &host,
        &image,
        &lan.bridge(),
        &Options::new("one", "10.210.0.11/24"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut two = Guest::start(
        &host,
        &image,
        &lan.bridge(),
        &Options::new("two", "10.210.0.12/24"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t1 = one.wait_ready().unwrap_or_else(|e| panic!("{e}"));
    let t2 = two.wait_ready().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "boot: one {t1:?}, two {t2:?} (both started together; {:?} in all)",
        start.elapsed()
    );

    let out = one
        .run("hostname; uname -r; echo oops >&2; exit 3", JOB)
        .unwrap();
    assert_eq!(out.stdout, format!("one\n{}\n", host.kernel_version));
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.status, 3);

    // The NFS client and its lock manager are loaded at boot; the SMB
    // client on demand.
    let out = two
        .run(
            "tandem-load cifs && cut -d' ' -f1 /proc/modules | sort",
            JOB,
        )
        .unwrap();
    assert!(out.success(), "{out:?}");
    for m in ["nfsv3", "nfs", "lockd", "sunrpc", "cifs", "virtio_net"] {
        assert!(
            out.stdout.lines().any(|l| l == m),
            "{m} not loaded: {out:?}"
        );
    }
    let out = two.run("tandem-load nosuch", JOB).unwrap();
    assert_eq!(out.status, 2, "{out:?}");

    let out = one.run("ping -c 1 -W 10 10.210.0.12", JOB).unwrap();
    assert!(out.success(), "{out:?}\n{}", one.console());

    // Output of any size and bytes comes back whole.
    let out = two
        .run(
            "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done",
            JOB,
        )
        .unwrap();
    let expect: String = (0..2000).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(out.stdout, expect);

    // A job past its timeout is killed; the guest goes on.
    let out = one
        .run("echo before; sleep 30; echo after", Duration::from_secs(1))
        .unwrap();
    assert_eq!(out.status, 137, "{out:?}");
    assert_eq!(out.stdout, "before\n");
    assert!(one.run("true", JOB).unwrap().success());

    // The mount helper refuses what is not HOST:/PATH.
    let out = one.run("mount.nfs nohost /mnt -o vers=3", JOB).unwrap();
    assert_eq!(out.status, 2, "{out:?}");
    assert!(out.stderr.contains("not HOST:/PATH"), "{out:?}");
}

#[test]
fn bad_options_are_refused() {
    let Some((host, image)) = prerequisites() else {
        return;
    };
    let lan = Lan::new();
    for (name, addr) in [
        ("ok", "10.210.0.1"),
        ("ok", "fd00::1/64"),
        ("bad name", "10.210.0.1/24"),
        ("", "10.210.0.1/24"),
    ] {
        let r = Guest::start(&host, &image, &lan.bridge(), &Options::new(name, addr));
        assert!(matches!(r, Err(Error::Options(_))), "{name:?} {addr:?}");
    }
    let mut opts = Options::new("ok", "10.210.0.1/24");
    opts.memory_mib = 1;
    assert!(matches!(
        Guest::start(&host, &image, &lan.bridge(), &opts),
        Err(Error::Options(_))
    ));
}
