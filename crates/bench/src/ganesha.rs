//! Starting and stopping NFS-Ganesha (FSAL VFS) for one bench run.
//!
//! Ganesha runs in the foreground (`-F`) with a config, log and pid file in
//! its own directory, inside a private mount namespace whose `/run` is that
//! directory's `run/`, where [`RpcbindStub`] answers its registrations (see
//! `rpcbind_stub.rs` for why).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tandem_testkit::target::Target;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::error::BenchError;
use crate::rpcbind_stub::RpcbindStub;

/// How long Ganesha gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Lines of Ganesha's log quoted in a start-up error.
const LOG_TAIL_LINES: usize = 25;

pub struct GaneshaOptions {
    pub binary: PathBuf,
    pub address: IpAddr,
    pub nfs_port: u16,
    pub mount_port: u16,
    pub start_timeout: Duration,
}

pub struct GaneshaServer {
    child: Child,
    log: PathBuf,
    _stub: RpcbindStub,
    target: Target,
}

/// The config file: one v3-only, TCP-only export of `export`, no NLM, no
/// RQUOTA, no UDP, no Kerberos, no grace period, bound to one address.
pub fn config_text(export: &Path, address: IpAddr, nfs_port: u16, mount_port: u16) -> String {
    format!(
        r#"# Written by tandem-bench.
NFS_CORE_PARAM {{
    NFS_Port = {nfs_port};
    MNT_Port = {mount_port};
    Bind_addr = {address};
    NFS_Protocols = 3;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFSV4 {{
    Graceless = true;
}}
NFS_KRB5 {{
    Active_krb5 = false;
}}
EXPORT {{
    Export_Id = 1;
    Path = "{path}";
    Pseudo = "/bench";
    Protocols = 3;
    Transports = TCP;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL {{
        Name = VFS;
    }}
}}
LOG {{
    Default_Log_Level = EVENT;
}}
"#,
        path = export.display()
    )
}

/// Two distinct free TCP ports on `ip` (0 in `wanted` means pick one).
pub fn free_ports(ip: IpAddr, wanted: [u16; 2]) -> std::io::Result<[u16; 2]> {
    let a = TcpListener::bind(SocketAddr::new(ip, wanted[0]))?;
    let b = TcpListener::bind(SocketAddr::new(ip, wanted[1]))?;
    Ok([a.local_addr()?.port(), b.local_addr()?.port()])
}

impl GaneshaServer {
    /// Writes the config under `dir`, exports `dir/export`, starts Ganesha
    /// and waits until both its ports accept connections.
    pub async fn start(dir: &Path, opts: &GaneshaOptions) -> anyhow::Result<GaneshaServer> {
        if !opts.binary.is_file() {
            return Err(BenchError::GaneshaMissing(format!(
                "{} not found (Debian: apt-get install nfs-ganesha nfs-ganesha-vfs)",
                opts.binary.display()
            ))
            .into());
        }
        // SAFETY: geteuid has no preconditions and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            return Err(BenchError::GaneshaMissing(
                "running NFS-Ganesha needs root (FSAL VFS uses open_by_handle_at, and the bench gives it a private mount namespace)".into(),
            )
            .into());
        }
        let export = dir.join("export");
        let run = dir.join("run");
        for d in [&export, &run] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let [nfs_port, mount_port] = free_ports(opts.address, [opts.nfs_port, opts.mount_port])
            .with_context(|| format!("finding free ports on {}", opts.address))?;
        let conf = dir.join("ganesha.conf");
        std::fs::write(
            &conf,
            config_text(&export, opts.address, nfs_port, mount_port),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let log = dir.join("ganesha.log");
        let pid = dir.join("ganesha.pid");
        let out = dir.join("ganesha.out");
        let out_file =
            std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
        let err_file = out_file
            .try_clone()
            .with_context(|| format!("opening {}", out.display()))?;

        let stub = RpcbindStub::start(&run)
            .with_context(|| format!("starting the rpcbind stub in {}", run.display()))?;

        // unshare → sh → exec ganesha: the child's pid is Ganesha's.
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--"])
            .arg("/bin/sh")
            .arg("-c")
            .arg(r#"mount --bind "$0" /run && exec "$@""#)
            .arg(&run)
            .arg(&opts.binary)
            .arg("-F")
            .arg("-f")
            .arg(&conf)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(&pid)
            .arg("-N")
            .arg("NIV_EVENT")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::from(err_file))
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .context("spawning unshare (util-linux) to start ganesha.nfsd")?;
        let mut server = GaneshaServer {
            child,
            log: log.clone(),
            _stub: stub,
            target: Target {
                server: "Ganesha",
                ip: opts.address,
                nfs_port,
                mount_port,
                export: export.display().to_string(),
            },
        };
        if let Err(e) = server.wait_ready(opts.start_timeout).await {
            let reason = format!("{e:#}");
            server.stop().await;
            let mut tail = tail_lines(&log, LOG_TAIL_LINES);
            let out_tail = tail_lines(&out, LOG_TAIL_LINES);
            if !out_tail.trim().is_empty() {
                tail.push_str("\n--- stdout/stderr ---\n");
                tail.push_str(&out_tail);
            }
            return Err(BenchError::GaneshaStart {
                reason,
                log: log.display().to_string(),
                tail,
            }
            .into());
        }
        info!(nfs_port, mount_port, export = %export.display(), "NFS-Ganesha ready");
        Ok(server)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let ports = [self.target.nfs_port, self.target.mount_port];
        loop {
            if let Some(status) = self.child.try_wait().context("polling ganesha.nfsd")? {
                anyhow::bail!("ganesha.nfsd exited with {status}");
            }
            let mut ready = true;
            for port in ports {
                let addr = SocketAddr::new(self.target.ip, port);
                if tokio::net::TcpStream::connect(addr).await.is_err() {
                    ready = false;
                    break;
                }
            }
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("ports {ports:?} not accepting after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL.
    pub async fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) on the pid of a child we spawned and have not
            // reaped yet, so the pid cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => info!(%status, "NFS-Ganesha stopped"),
            Ok(Err(e)) => warn!(error = %e, "waiting for NFS-Ganesha"),
            Err(_) => {
                warn!("NFS-Ganesha ignored SIGTERM; killing it");
                if let Err(e) = self.child.kill().await {
                    warn!(error = %e, "killing NFS-Ganesha");
                }
            }
        }
    }
}

fn tail_lines(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_ports_address_and_export() {
        let text = config_text(
            Path::new("/var/tmp/x/export"),
            "127.0.0.1".parse().expect("ip"),
            1234,
            5678,
        );
        for needle in [
            "NFS_Port = 1234;",
            "MNT_Port = 5678;",
            "Bind_addr = 127.0.0.1;",
            "Path = \"/var/tmp/x/export\";",
            "Squash = No_Root_Squash;",
            "Enable_NLM = false;",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
