//! The rsync side of the catch-up row: an rsync daemon on 127.0.0.1
//! serving the destination tree as a writable module, and one
//! `rsync -a --inplace --stats` from the source tree to it over loopback
//! TCP. Debian's rsync: `apt-get install -y rsync`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long the rsync daemon may take to accept connections.
const DAEMON_START: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// What one rsync run cost.
#[derive(Debug, Clone, Copy)]
pub struct RsyncRun {
    pub elapsed: Duration,
    /// "Total bytes sent" plus "Total bytes received" of `--stats`.
    pub sent: u64,
    pub received: u64,
}

/// The rsync daemon; killed on drop.
struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn missing(binary: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot run {} ({e}); install Debian's rsync (apt-get install -y rsync) or pass --no-rsync",
        binary.display()
    )
}

fn running_as_root() -> bool {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn start_daemon(binary: &Path, work: &Path, dest: &Path) -> anyhow::Result<(Daemon, u16)> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .context("finding a free port for rsync")?
        .port();
    let conf = work.join("rsyncd.conf");
    let text =
        format!(
        "port = {port}\naddress = 127.0.0.1\nuse chroot = no\npid file = {pid}\nlog file = {log}\n\
         [dest]\npath = {dest}\nread only = false\n{ids}",
        pid = work.join("rsyncd.pid").display(),
        log = work.join("rsyncd.log").display(),
        dest = dest.display(),
        // As root the daemon would write as "nobody" by default; as
        // anyone else it writes as itself.
        ids = if running_as_root() { "uid = 0\ngid = 0\n" } else { "" },
    );
    std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    let child = Command::new(binary)
        .arg("--daemon")
        .arg("--no-detach")
        .arg(format!("--config={}", conf.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| missing(binary, e))?;
    let mut daemon = Daemon { child };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, POLL).is_err() {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            bail!(
                "the rsync daemon exited ({status}); see {}",
                work.join("rsyncd.log").display()
            );
        }
        if started.elapsed() > DAEMON_START {
            bail!("the rsync daemon did not listen on {addr} within {DAEMON_START:?}");
        }
        std::thread::sleep(POLL);
    }
    Ok((daemon, port))
}

/// `rsync -a --inplace` of `src` onto `dest` through an rsync daemon on
/// loopback; `work` holds the daemon's config and log.
pub fn sync(binary: &Path, work: &Path, src: &Path, dest: &Path) -> anyhow::Result<RsyncRun> {
    let (_daemon, port) = start_daemon(binary, work, dest)?;
    let started = Instant::now();
    let out = Command::new(binary)
        .args(["-a", "--inplace", "--stats"])
        .arg(format!("{}/", src.display()))
        .arg(format!("rsync://127.0.0.1:{port}/dest/"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing(binary, e))?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "rsync failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sent = stat(&stdout, "Total bytes sent:")?;
    let received = stat(&stdout, "Total bytes received:")?;
    Ok(RsyncRun {
        elapsed,
        sent,
        received,
    })
}

/// A number from rsync's `--stats` ("Total bytes sent: 1,234,567").
fn stat(out: &str, label: &str) -> anyhow::Result<u64> {
    let line = out
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .with_context(|| format!("rsync --stats printed no {label:?}:\n{out}"))?;
    let digits: String = line
        .trim()
        .chars()
        .filter(|c| *c != ',' && *c != '.')
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .parse()
        .with_context(|| format!("rsync --stats: {label} {line:?} is not a number"))
}

/// `cp -a`: the destination starts as an exact copy, timestamps included,
/// so rsync skips the unchanged files as it would between two real sites.
pub fn copy_tree(src: &Path, dest: &Path) -> anyhow::Result<()> {
    let status = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dest)
        .status()
        .context("running cp -a")?;
    if !status.success() {
        bail!(
            "cp -a {} {} failed: {status}",
            src.display(),
            dest.display()
        );
    }
    Ok(())
}

/// Sets every file's mtime in `dir` back by `by`.
pub fn age_files(dir: &Path, by: Duration) -> anyhow::Result<()> {
    let when = std::time::SystemTime::now()
        .checked_sub(by)
        .context("a time before the epoch")?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry.context("a directory entry")?.path();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(when))
            .with_context(|| format!("setting the mtime of {}", path.display()))?;
    }
    Ok(())
}

/// Checks that rsync left `dest` equal to `src` (names and contents), so
/// a fast wrong copy cannot score.
pub fn same_trees(src: &Path, dest: &Path) -> anyhow::Result<()> {
    let names = |d: &Path| -> anyhow::Result<Vec<std::ffi::OsString>> {
        let mut v = std::fs::read_dir(d)
            .with_context(|| format!("listing {}", d.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("listing {}", d.display()))?;
        v.sort();
        Ok(v)
    };
    let (a, b) = (names(src)?, names(dest)?);
    if a != b {
        bail!(
            "after rsync, {} and {} hold different names",
            src.display(),
            dest.display()
        );
    }
    for n in a {
        let (x, y) = (src.join(&n), dest.join(&n));
        let same = std::fs::read(&x).with_context(|| format!("reading {}", x.display()))?
            == std::fs::read(&y).with_context(|| format!("reading {}", y.display()))?;
        if !same {
            bail!("after rsync, {} differs from {}", y.display(), x.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::stat;

    #[test]
    fn stats_numbers_with_separators() {
        let out = "Number of files: 3\nTotal bytes sent: 1,234,567\nTotal bytes received: 89\n";
        assert_eq!(stat(out, "Total bytes sent:").unwrap(), 1_234_567);
        assert_eq!(stat(out, "Total bytes received:").unwrap(), 89);
        assert!(stat(out, "Total file size:").is_err());
        assert!(stat("Total bytes sent: lots\n", "Total bytes sent:").is_err());
    }
}
