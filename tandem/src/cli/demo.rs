//! `tandem demo`: the whole disaster-recovery story on this machine, in a
//! few seconds. Two sites, each a `tandem daemon` process; the vserver
//! `demo` on a loopback address, replicated in commit-sync; an NFS client
//! (in this process) writes and commits files; the active site is killed
//! with SIGKILL; `failover` at the other site; the same client, with the
//! same file handles and no new MOUNT, reads back every committed byte,
//! resends the writes it had not committed (the write verifier changed)
//! and writes on. Each step is printed with how long it took.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nfs3_client::nfs3_types::nfs3::nfs_fh3;
use tandem_testkit::client::{Client, Mounted};
use tandem_testkit::failover_sites::{FailoverSites, SitesOptions};
use tandem_testkit::scratch::ScratchDir;
use tandem_testkit::transfer::{first_reply, read_whole, write_chunks};
use tandem_testkit::{pattern, within};

use super::failover::print_failover;
use super::signal::Terminate;

const VSERVER: &str = "demo";
/// Files the client writes and commits before the crash, and their size.
const COMMITTED_FILES: usize = 3;
const FILE_BYTES: usize = 2 << 20;
/// Bound on every step (a site starting, the replica converging, a call).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Loopback address of the virtual server (it moves between sites).
    #[arg(long, default_value = "127.0.0.2")]
    ip: IpAddr,
    /// Loopback address where the active site listens for its peer.
    #[arg(long, default_value = "127.0.0.1")]
    active_ip: IpAddr,
    /// Loopback address of the disaster-recovery site (its peer listener
    /// and, before the failover, its read-only copy).
    #[arg(long, default_value = "127.0.0.3")]
    dr_ip: IpAddr,
    /// After the story, keep the vserver served at the DR site until
    /// Ctrl-C, and print client commands to try.
    #[arg(long)]
    stay: bool,
}

/// The steps' names and times, for the summary.
struct Clock {
    steps: Vec<(&'static str, Duration)>,
}

impl Clock {
    fn done(&mut self, step: &'static str, started: Instant) {
        let took = started.elapsed();
        say!("  ({step}: {})", ms(took));
        self.steps.push((step, took));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(data: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    for ip in [args.ip, args.active_ip, args.dr_ip] {
        if !ip.is_loopback() {
            bail!("{ip} is not a loopback address: the demo runs on this machine only");
        }
    }
    // Without --data the demo lives in a temporary directory, removed at
    // exit; with it, both sites stay there for a look afterwards.
    let (dir, temp) = match data {
        Some(d) => (d, None),
        None => {
            let t = ScratchDir::new("tandem-demo-")
                .context("creating a temporary directory for the demo")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let tandem_bin = std::env::current_exe().context("finding the tandem binary")?;
    let mut clock = Clock { steps: Vec::new() };
    let began = Instant::now();

    say!(
        "1. Two sites in {}, each a `tandem daemon` process:",
        dir.display()
    );
    say!(
        "   `active` (peer listener on {}) and `dr` (on {}).",
        args.active_ip,
        args.dr_ip
    );
    say!(
        "   Vserver `{VSERVER}` at {} with export /data, replicated to `dr` in commit-sync.",
        args.ip
    );
    let t = Instant::now();
    let mut sites = FailoverSites::start(SitesOptions {
        tandem_bin,
        dir: dir.clone(),
        vserver: VSERVER.into(),
        vs_ip: args.ip,
        active_ip: args.active_ip,
        dr_ip: args.dr_ip,
        timeout: STEP_TIMEOUT,
    })
    .await?;
    clock.done("set up both sites", t);
    let target = sites.target.clone();

    say!();
    say!(
        "2. An NFS client mounts {}:/data and writes {COMMITTED_FILES} files of {} MiB, \
         each COMMITted,",
        args.ip,
        FILE_BYTES >> 20
    );
    say!("   then one more file with UNSTABLE writes it has not committed yet.");
    let t = Instant::now();
    let before = within(STEP_TIMEOUT, "writing", write_files(&sites)).await?;
    clock.done("client writes and commits", t);
    say!(
        "   committed: {} bytes; write verifier {}",
        before.committed.iter().map(|(_, d)| d.len()).sum::<usize>(),
        hex(&before.verf)
    );

    say!();
    let t = Instant::now();
    let pid = sites.kill_active()?;
    say!("3. SIGKILL to the active site's daemon (pid {pid}): no shutdown, no goodbye.");
    clock.done("kill the active site", t);

    say!();
    say!("4. At the DR site: tandem failover {VSERVER}");
    let t = Instant::now();
    let (report, reached) = tokio::join!(
        sites.failover(),
        first_reply(&target, &before.root, t, STEP_TIMEOUT)
    );
    let report = report?;
    let (first, mut client) = reached?;
    print_failover(&report);
    say!(
        "   The client's first GETATTR (old handle, new connection) answered {} after the command.",
        ms(first)
    );
    clock
        .steps
        .push(("failover, command to first NFS reply", first));

    say!();
    say!("5. The same client carries on with the same file handles, no new MOUNT:");
    let t = Instant::now();
    within(STEP_TIMEOUT, "carrying on", carry_on(&mut client, &before)).await?;
    clock.done("read back, resend, write on", t);

    say!();
    say!("What it took:");
    for (step, took) in &clock.steps {
        say!("  {step:<40} {:>12}", ms(*took));
    }
    say!("  {:<40} {:>12}", "whole demo", ms(began.elapsed()));

    if args.stay {
        say!();
        say!(
            "The vserver is served by site `dr` at {}: nfs-ls \"nfs://{}/data?nfsport={}&mountport={}\"",
            args.ip,
            args.ip,
            target.nfs_port,
            target.mount_port
        );
        say!("  tandem --data {} status", sites.dr_dir.display());
        // Only now: during the story Ctrl-C simply ends the demo (and, from
        // a terminal, the two daemons with it).
        let mut terminate = Terminate::install()?;
        say!("Press Ctrl-C to stop.");
        let sig = terminate.recv().await;
        say!("\n{sig}: stopping the demo");
    }
    sites.stop();
    if temp.is_none() {
        say!("Both sites are kept in {}.", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// What the client holds when the active site dies.
struct Before {
    root: nfs_fh3,
    /// Files whose COMMIT returned, with their bytes.
    committed: Vec<(nfs_fh3, Vec<u8>)>,
    /// The file written UNSTABLE and not committed, and its bytes.
    pending: (nfs_fh3, Vec<u8>),
    verf: [u8; 8],
}

async fn write_files(sites: &FailoverSites) -> anyhow::Result<Before> {
    let mut m = Mounted::mount(&sites.target, 1).await?;
    let root = m.root.clone();
    let c = m.clients.first_mut().context("no NFS connection")?;
    let mut committed = Vec::new();
    let mut verf = [0u8; 8];
    for i in 0..COMMITTED_FILES {
        let name = format!("file-{i}.bin");
        let data = pattern(FILE_BYTES, i as u64);
        let fh = c.create(&root, &name, 0o644).await?;
        write_chunks(c, &fh, 0, &data).await?;
        verf = c.commit(&fh).await?.0;
        say!("   {name}: {} bytes written, COMMIT returned", data.len());
        committed.push((fh, data));
    }
    let data = pattern(FILE_BYTES / 2, 99);
    let fh = c.create(&root, "unstable.bin", 0o644).await?;
    write_chunks(c, &fh, 0, &data).await?;
    say!(
        "   unstable.bin: {} bytes written UNSTABLE, no COMMIT yet",
        data.len()
    );
    Ok(Before {
        root,
        committed,
        pending: (fh, data),
        verf,
    })
}

async fn carry_on(c: &mut Client, before: &Before) -> anyhow::Result<()> {
    for (i, (fh, data)) in before.committed.iter().enumerate() {
        let back = read_whole(c, fh, data.len() as u64).await?;
        if &back != data {
            bail!("file-{i}.bin differs after the failover");
        }
        say!(
            "   file-{i}.bin: all {} committed bytes read back, identical",
            data.len()
        );
    }
    let (fh, data) = &before.pending;
    let verf = c.commit(fh).await?.0;
    if verf == before.verf {
        bail!("the write verifier did not change across the failover");
    }
    say!(
        "   unstable.bin: COMMIT answers a new write verifier {}, so the client resends",
        hex(&verf)
    );
    write_chunks(c, fh, 0, data).await?;
    let resent = c.commit(fh).await?.0;
    let back = read_whole(c, fh, data.len() as u64).await?;
    if &back != data || resent != verf {
        bail!("unstable.bin is not as resent after the failover");
    }
    say!(
        "   unstable.bin: resent, committed and read back ({} bytes)",
        data.len()
    );
    let (fh, data) = &before.committed[0];
    let more = pattern(FILE_BYTES / 4, 7);
    write_chunks(c, fh, data.len() as u64, &more).await?;
    c.commit(fh).await?;
    let back = read_whole(c, fh, (data.len() + more.len()) as u64).await?;
    if back.len() != data.len() + more.len() || back[data.len()..] != more[..] {
        bail!("file-0.bin: the bytes appended after the failover are not there");
    }
    say!(
        "   file-0.bin: {} more bytes appended and committed at the new active site",
        more.len()
    );
    Ok(())
}
