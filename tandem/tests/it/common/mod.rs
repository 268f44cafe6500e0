//! Helpers for tests that drive the real `tandem` binary: sites in temp
//! directories with free ports, daemons that are killed when the test ends,
//! and polling with deadlines instead of sleeps.
#![allow(dead_code)]

pub mod drc;
pub mod failover;
pub mod guests;
pub mod netns;
pub mod netns_sites;
pub mod nfs;
pub mod replication;
pub mod rpc;
pub mod switchover;
pub mod tree;
pub mod writer;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tandem");
/// Generous: CI machines are shared and debug builds are slow.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 (see `tandem_testkit::free_port`).
pub fn free_port() -> u16 {
    tandem_testkit::free_port(Ipv4Addr::LOCALHOST.into()).expect("a free port on 127.0.0.1")
}

pub struct TestSite {
    /// Holds the daemons' logs (and, from `init`, the site), removed at
    /// the end.
    tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub nfs_port: u16,
    pub mount_port: u16,
}

impl TestSite {
    /// `tandem init` with free NFS ports and portmap off (tests run in
    /// parallel and port 111 can be held only once).
    pub fn init(name: &str, listen: &str) -> TestSite {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("site");
        TestSite::init_in(tmp, dir, name, listen)
    }

    /// `init` with the site in `dir` (which must not exist yet), e.g. on
    /// a file system the test mounted; daemon logs go to `tmp`.
    pub fn init_in(tmp: tempfile::TempDir, dir: PathBuf, name: &str, listen: &str) -> TestSite {
        let out = run(&dir, &["init", "--site", name, "--listen", listen]);
        assert_success(&out, "init");
        let site = TestSite {
            tmp,
            dir,
            nfs_port: free_port(),
            mount_port: free_port(),
        };
        site.edit_toml(|t| {
            let nfs = t["nfs"].as_table_mut().expect("nfs table");
            nfs.insert("nfs_port".into(), i64::from(site.nfs_port).into());
            nfs.insert("mount_port".into(), i64::from(site.mount_port).into());
            nfs.insert("portmap".into(), false.into());
        });
        site
    }

    pub fn toml_path(&self) -> PathBuf {
        self.dir.join("site.toml")
    }

    pub fn edit_toml(&self, f: impl FnOnce(&mut toml::Table)) {
        let text = std::fs::read_to_string(self.toml_path()).expect("read site.toml");
        let mut t: toml::Table = text.parse().expect("parse site.toml");
        f(&mut t);
        std::fs::write(self.toml_path(), toml::to_string(&t).expect("toml")).expect("write");
    }

    pub fn tandem(&self, args: &[&str]) -> Output {
        run(&self.dir, args)
    }

    /// Starts the daemon and waits until it answers.
    pub fn start_daemon(&self) -> Daemon {
        let d = self.spawn_daemon();
        d.wait_ready(self);
        d
    }

    pub fn spawn_daemon(&self) -> Daemon {
        self.spawn_daemon_via(&[])
    }

    /// `start_daemon` with the daemon run by `wrapper` (e.g. `ip netns
    /// exec NS`, which execs it: the child is the daemon itself).
    pub fn start_daemon_via(&self, wrapper: &[&str]) -> Daemon {
        let d = self.spawn_daemon_via(wrapper);
        d.wait_ready(self);
        d
    }

    pub fn spawn_daemon_via(&self, wrapper: &[&str]) -> Daemon {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let log = self.tmp.path().join(format!("daemon-{n}.log"));
        let log_file = std::fs::File::create(&log).expect("daemon log");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(["daemon", "--data"])
            .arg(&self.dir)
            .env_remove("TANDEM_DATA")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn daemon");
        Daemon {
            child: Some(child),
            log,
        }
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = self.tandem(&["status", "--json"]);
        assert_success(&out, "status --json");
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }
}

/// A daemon process, killed if the test ends without stopping it.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn wait_ready(&self, site: &TestSite) {
        let start = Instant::now();
        loop {
            let out = site.tandem(&["status", "--json"]);
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "daemon not ready within {DEADLINE:?}: {}\nlog:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        terminate(&child);
        wait_with_deadline(&mut child, "daemon")
    }

    /// Waits for the daemon to exit by itself (start-up errors).
    pub fn wait_exit(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        wait_with_deadline(&mut child, "daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn terminate(child: &Child) {
    let pid = i32::try_from(child.id()).expect("pid fits");
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

pub fn wait_with_deadline(child: &mut Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("{what} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data")
        .arg(dir)
        .args(args)
        .env_remove("TANDEM_DATA")
        .stdin(Stdio::null())
        .output()
        .expect("run tandem")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Asserts a failure whose stderr mentions `needle`, and no panic.
pub fn assert_fails_with(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure mentioning {needle:?}, got success:\n{}",
        stdout(out)
    );
    assert!(
        err.contains(needle),
        "stderr does not mention {needle:?}:\n{err}"
    );
    assert!(!err.contains("panicked"), "panic:\n{err}");
}

/// Reads a child's stdout lines on a thread until one contains `needle`.
pub fn wait_for_line(child: &mut Child, needle: &str) -> Vec<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!(
                "no line with {needle:?} within {DEADLINE:?}; saw:\n{}",
                seen.join("\n")
            ),
        }
    }
}

impl Daemon {
    /// SIGKILL: a crash, no clean shutdown.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- requirements, external tools, SIGKILL ----

/// True when the suite runs in CI (`CI=true`), where a missing
/// requirement is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether a test can run: true when `ok`; otherwise skips with a note,
/// or fails in CI.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    assert!(!in_ci(), "CI=true and this test needs {what}");
    eprintln!("SKIP: this test needs {what}");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether every one of `tools` is an executable on PATH.
pub fn have_tools(tools: &[&str]) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    tools
        .iter()
        .all(|t| std::env::split_paths(&path).any(|d| d.join(t).is_file()))
}

/// Runs a command to completion with a deadline, its output going through
/// files (no pipe to fill up), and kills it if it takes longer.
pub fn run_with_deadline(cmd: &mut Command, limit: Duration) -> Output {
    let out = tempfile::tempfile().expect("stdout file");
    let err = tempfile::tempfile().expect("stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.rewind().expect("rewind");
        f.read_to_end(&mut v).expect("read output");
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

impl Daemon {
    /// `kill -9`: no chance to flush or clean up. Returns once reaped.
    pub fn kill9(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = i32::try_from(child.id()).expect("pid fits");
        // SAFETY: plain kill(2) on our own, not yet reaped, child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        wait_with_deadline(&mut child, "killed daemon")
    }
}

/// Creates vserver `vs` at `address` (a /32) with file system `fs` exported
/// at `export`, root not squashed, open to all of 127.0.0.0/8.
pub fn create_vserver_and_fs(site: &TestSite, vs: &str, address: &str, fs: &str, export: &str) {
    let cidr = format!("{address}/32");
    assert_success(
        &site.tandem(&["vserver", "create", vs, "--address", &cidr]),
        "vserver create",
    );
    create_fs(site, vs, fs, export);
}

/// Creates file system `fs` of `vs` exported at `export`, root not
/// squashed, open to all of 127.0.0.0/8.
pub fn create_fs(site: &TestSite, vs: &str, fs: &str, export: &str) {
    create_fs_for(site, vs, fs, export, "127.0.0.0/8");
}

/// `create_fs` open to the networks `clients` (comma-separated CIDRs).
pub fn create_fs_for(site: &TestSite, vs: &str, fs: &str, export: &str, clients: &str) {
    assert_success(
        &site.tandem(&[
            "fs",
            "create",
            vs,
            fs,
            "--export",
            export,
            "--no-root-squash",
            "--clients",
            clients,
        ]),
        "fs create",
    );
}

/// Polls `done` every 50 ms until it holds; after DEADLINE, panics with
/// `why()`.
pub fn wait_until(done: impl FnMut() -> bool, why: impl Fn() -> String) {
    let polled = tandem_testkit::wait::poll_until(DEADLINE, Duration::from_millis(50), done);
    assert!(polled, "within {DEADLINE:?}: {}", why());
}

/// `tandem fsck VS` with the daemon stopped: must exit 0 and report clean.
pub fn assert_fsck_clean(site: &TestSite, vs: &str) {
    let out = site.tandem(&["fsck", vs]);
    assert_success(&out, "fsck");
    assert!(
        stdout(&out).contains("no problems found"),
        "fsck does not report a clean store:\n{}",
        stdout(&out)
    );
}
