//! One QEMU guest: its tap device on the test's bridge, the QEMU process
//! (run inside the bridge's network namespace, where the tap is), its
//! console log, and the job channel to its init.

use std::net::Ipv4Addr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::agent::{self, Output, ReadError, Replies};
use crate::{Error, Host, Image};

/// How long QEMU may take to start and connect its job channel.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time the host waits past a job's own timeout (which the guest
/// enforces) before it gives the guest up.
const JOB_GRACE: Duration = Duration::from_secs(15);
/// How much of the console log an error quotes.
const CONSOLE_TAIL_BYTES: usize = 6000;

/// A bridge that guests plug into: `device` in network namespace `netns`.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub netns: String,
    pub device: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The guest's host name (its NFS lock manager's caller name).
    pub name: String,
    /// The guest's IPv4 address on eth0, as "IP/PREFIX".
    pub address: String,
    pub memory_mib: u32,
    /// From QEMU's start to the init's job loop listening.
    pub boot_timeout: Duration,
}

impl Options {
    pub fn new(name: &str, address: &str) -> Options {
        Options {
            name: name.into(),
            address: address.into(),
            memory_mib: 256,
            // Some 5-10 s on an idle 2-core machine; generous for a
            // loaded CI machine where several guests boot at once.
            boot_timeout: Duration::from_secs(180),
        }
    }
}

/// A running guest; dropping it kills QEMU and removes its tap device.
pub struct Guest {
    name: String,
    qemu: Option<Child>,
    dir: tempfile::TempDir,
    jobs: Replies<UnixStream>,
    tap: (String, String),
    started: Instant,
    boot_timeout: Duration,
    boot_time: Option<Duration>,
    next_job: u64,
    /// Set when a job overran: the guest's state is unknown from then on.
    broken: Option<String>,
}

impl Guest {
    /// `start` and `wait_ready`.
    pub fn boot(
        host: &Host,
        image: &Image,
        bridge: &Bridge,
        opts: &Options,
    ) -> Result<Guest, Error> {
        let mut g = Guest::start(host, image, bridge, opts)?;
        g.wait_ready()?;
        Ok(g)
    }

    /// Plugs a tap device into `bridge` and starts QEMU on it; returns
    /// while the guest boots (tests start their servers meanwhile).
    pub fn start(
        host: &Host,
        image: &Image,
        bridge: &Bridge,
        opts: &Options,
    ) -> Result<Guest, Error> {
        let (addr, _prefix) = parse_cidr(&opts.address)?;
        if opts.name.is_empty()
            || opts.name.len() > 63
            || !opts
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::Options(format!("host name {:?}", opts.name)));
        }
        if !(64..=4096).contains(&opts.memory_mib) {
            return Err(Error::Options(format!("memory {} MiB", opts.memory_mib)));
        }
        static TAPS: AtomicUsize = AtomicUsize::new(0);
        let tap = format!("tgtap{}", TAPS.fetch_add(1, Ordering::Relaxed));
        ip(&[
            "-n",
            &bridge.netns,
            "tuntap",
            "add",
            "dev",
            &tap,
            "mode",
            "tap",
        ])?;
        // From here on the tap is removed even if starting fails.
        let cleanup = TapGuard(Some((bridge.netns.clone(), tap.clone())));
        ip(&[
            "-n",
            &bridge.netns,
            "link",
            "set",
            &tap,
            "master",
            &bridge.device,
            "up",
        ])?;

        let dir = tempfile::Builder::new()
            .prefix("tandem-guest-")
            .tempdir()
            .map_err(Error::os("guest temp dir"))?;
        let sock = dir.path().join("jobs.sock");
        let listener = UnixListener::bind(&sock).map_err(Error::io(&sock))?;
        listener.set_nonblocking(true).map_err(Error::io(&sock))?;
        let log = dir.path().join("qemu.log");
        let log_file = std::fs::File::create(&log).map_err(Error::io(&log))?;
        let log_err = log_file.try_clone().map_err(Error::io(&log))?;
        let console = dir.path().join("console.log");
        let [a, b, c, d] = addr.octets();
        // Unique on the bridge as long as the addresses are.
        let mac = format!("52:54:{a:02x}:{b:02x}:{c:02x}:{d:02x}");
        let append = format!(
            "console=ttyS0 quiet panic=-1 tandem.ip={} tandem.name={}",
            opts.address, opts.name
        );
        let started = Instant::now();
        let mut qemu = Command::new("ip")
            .args(["netns", "exec", &bridge.netns])
            .arg(&host.qemu)
            .args(["-accel", "tcg", "-smp", "1", "-m"])
            .arg(format!("{}M", opts.memory_mib))
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ])
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initramfs)
            .args(["-append", &append])
            .arg("-chardev")
            .arg(format!("file,id=console,path={}", console.display()))
            .args(["-serial", "chardev:console"])
            .arg("-chardev")
            .arg(format!("socket,id=jobs,path={}", sock.display()))
            .args(["-serial", "chardev:jobs"])
            .arg("-netdev")
            .arg(format!("tap,id=net0,ifname={tap},script=no,downscript=no"))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=net0,mac={mac}"))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(Error::os(format!("start {}", host.qemu.display())))?;
        // QEMU connects to the job socket before it runs the guest.
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    let _ = qemu.kill();
                    let _ = qemu.wait();
                    return Err(Error::Io {
                        path: sock,
                        source: e,
                    });
                }
            }
            let exited = qemu.try_wait().ok().flatten();
            if exited.is_some() || started.elapsed() > CONNECT_TIMEOUT {
                let _ = qemu.kill();
                let _ = qemu.wait();
                return Err(Error::Guest {
                    guest: opts.name.clone(),
                    what: format!(
                        "QEMU did not connect its job channel ({}): {}",
                        exited.map_or("still running".to_string(), |s| s.to_string()),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ),
                    console: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        stream.set_nonblocking(false).map_err(Error::io(&sock))?;
        let mut cleanup = cleanup;
        Ok(Guest {
            name: opts.name.clone(),
            qemu: Some(qemu),
            dir,
            jobs: Replies::new(stream),
            tap: cleanup.0.take().expect("set above"),
            started,
            boot_timeout: opts.boot_timeout,
            boot_time: None,
            next_job: 0,
            broken: None,
        })
    }

    /// Waits until the guest's init takes jobs; returns the boot time
    /// (QEMU's start to then).
    pub fn wait_ready(&mut self) -> Result<Duration, Error> {
        if let Some(t) = self.boot_time {
            return Ok(t);
        }
        let deadline = self.started + self.boot_timeout;
        match self.jobs.ready(deadline) {
            Ok(_uptime) => {
                let t = self.started.elapsed();
                self.boot_time = Some(t);
                Ok(t)
            }
            Err(e) => Err(self.fail("boot", self.boot_timeout, e)),
        }
    }

    /// Runs `script` with `sh` in the guest (as root, in /); the guest
    /// kills it after `timeout`. Its stdin is empty. Waits for the boot
    /// first if needed. An error (the guest died, stopped answering or
    /// broke the protocol) leaves the guest unusable.
    pub fn run(&mut self, script: &str, timeout: Duration) -> Result<Output, Error> {
        self.wait_ready()?;
        if let Some(why) = &self.broken {
            return Err(self.error(format!("unusable since an earlier job: {why}")));
        }
        self.next_job += 1;
        let tag = format!("j{}", self.next_job);
        let req = agent::request(&tag, timeout, script).map_err(Error::Options)?;
        if let Err(e) = self.jobs.send(&req) {
            return Err(self.fail("sending a job", timeout, ReadError::Closed(e.to_string())));
        }
        let deadline = Instant::now() + timeout + JOB_GRACE;
        match self.jobs.reply(&tag, deadline) {
            Ok(out) => Ok(out),
            Err(e) => Err(self.fail(&format!("job {tag}"), timeout + JOB_GRACE, e)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The boot time, once the guest has booted.
    pub fn boot_time(&self) -> Option<Duration> {
        self.boot_time
    }

    /// The kernel's console output so far (its last few KiB).
    pub fn console(&self) -> String {
        let text = std::fs::read(self.dir.path().join("console.log")).unwrap_or_default();
        let from = text.len().saturating_sub(CONSOLE_TAIL_BYTES);
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    /// Where the guest's console log and QEMU's own log are.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn fail(&mut self, what: &str, timeout: Duration, e: ReadError) -> Error {
        let why = match &e {
            ReadError::Timeout => format!("{what} timed out"),
            ReadError::Closed(m) | ReadError::Protocol(m) => format!("{what}: {m}"),
        };
        self.broken = Some(why.clone());
        if let ReadError::Timeout = e {
            return Error::Timeout {
                guest: self.name.clone(),
                what: what.into(),
                timeout_ms: timeout.as_millis(),
                console: self.console(),
            };
        }
        let qemu_log =
            std::fs::read_to_string(self.dir.path().join("qemu.log")).unwrap_or_default();
        self.error(format!("{why}\n--- qemu ---\n{qemu_log}"))
    }

    fn error(&self, what: String) -> Error {
        Error::Guest {
            guest: self.name.clone(),
            what,
            console: self.console(),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut q) = self.qemu.take() {
            let _ = q.kill();
            let _ = q.wait();
        }
        drop(TapGuard(Some(std::mem::take(&mut self.tap))));
    }
}

/// Removes a tap device when dropped (its namespace may already be gone).
struct TapGuard(Option<(String, String)>);

impl Drop for TapGuard {
    fn drop(&mut self) {
        if let Some((ns, tap)) = self.0.take() {
            if !ns.is_empty() {
                let _ = ip(&["-n", &ns, "link", "del", &tap]);
            }
        }
    }
}

fn ip(args: &[&str]) -> Result<(), Error> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(Error::os(format!("ip {args:?}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Os {
            what: format!("ip {}", args.join(" ")),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        })
    }
}

fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8), Error> {
    let bad = || Error::Options(format!("address {cidr:?} is not IPv4 \"IP/PREFIX\""));
    let (ip, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix == 0 || prefix > 32 {
        return Err(bad());
    }
    Ok((ip, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsed_and_bad_ones_refused() {
        assert_eq!(
            parse_cidr("10.200.0.21/16").unwrap(),
            (Ipv4Addr::new(10, 200, 0, 21), 16)
        );
        for bad in [
            "10.200.0.21",
            "10.200.0.21/33",
            "10.200.0.21/0",
            "fd00::1/64",
            "x/16",
            "",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
