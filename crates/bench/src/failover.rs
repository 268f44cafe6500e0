//! `tandem bench failover`: how long a client waits when the active site
//! dies. Each run builds two fresh sites (failover_sites.rs), has a client
//! write and commit a file, kills the active site with SIGKILL, gives the
//! failover command at the DR site and, at the same moment, starts polling
//! the vserver's address with GETATTR of a handle it already had. The row
//! is the time from the command to the first successful reply; the client
//! then reads back every committed byte. Nothing here asserts on time: the
//! table judges each figure against the goal.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tandem_testkit::client::Mounted;
use tandem_testkit::failover_sites::{FailoverSites, SitesOptions};
use tandem_testkit::transfer::{first_reply, read_whole, write_chunks, FIRST_REPLY_POLL_GAP};
use tandem_testkit::{pattern, within};

use crate::failover_report::{FailoverBenchReport, MeasureRow};

/// Most runs one bench makes.
pub const MAX_RUNS: u32 = 50;
/// Largest file the client writes before each kill.
pub const MAX_WRITE_BYTES: u64 = 1 << 30;
/// The goal: serving again within 2 s of the command.
const FAILOVER_GOAL_MS: f64 = 2000.0;

pub const ROW_FIRST_REPLY: &str = "failover: command to first NFS reply";
pub const ROW_STEPS: &str = "failover: daemon's steps (check..serve)";

#[derive(Debug, Clone)]
pub struct FailoverOptions {
    /// The `tandem` binary that runs each site's daemon.
    pub tandem_bin: PathBuf,
    /// Parent of every run's sites; `None`: a temporary directory under
    /// /var/tmp, removed at the end.
    pub dir: Option<PathBuf>,
    pub keep: bool,
    pub runs: u32,
    /// Bytes the client writes and commits before each kill.
    pub write_bytes: u64,
    pub vs_ip: IpAddr,
    pub active_ip: IpAddr,
    pub dr_ip: IpAddr,
    /// Bound on every wait of a run (site start, convergence, failover).
    pub timeout: Duration,
}

impl FailoverOptions {
    pub fn new(tandem_bin: PathBuf) -> FailoverOptions {
        FailoverOptions {
            tandem_bin,
            dir: None,
            keep: false,
            runs: 5,
            write_bytes: 4 << 20,
            vs_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 61)),
            active_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 62)),
            dr_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 63)),
            timeout: Duration::from_secs(60),
        }
    }

    /// The two sites of one run, in `dir`.
    pub(crate) fn sites(&self, dir: PathBuf) -> SitesOptions {
        SitesOptions {
            tandem_bin: self.tandem_bin.clone(),
            dir,
            vserver: "bench".into(),
            vs_ip: self.vs_ip,
            active_ip: self.active_ip,
            dr_ip: self.dr_ip,
            timeout: self.timeout,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.runs == 0 || self.runs > MAX_RUNS {
            bail!("runs must be 1..={MAX_RUNS}, not {}", self.runs);
        }
        if self.write_bytes == 0 || self.write_bytes > MAX_WRITE_BYTES {
            bail!(
                "the client writes 1..={MAX_WRITE_BYTES} bytes, not {}",
                self.write_bytes
            );
        }
        for ip in [self.vs_ip, self.active_ip, self.dr_ip] {
            if !ip.is_loopback() {
                bail!("{ip} is not a loopback address: the bench runs on this machine only");
            }
        }
        Ok(())
    }
}

/// What one run measured.
struct Run {
    first_reply: Duration,
    steps_micros: u64,
}

pub async fn run_failover(opts: FailoverOptions) -> anyhow::Result<FailoverBenchReport> {
    opts.validate()?;
    let (work, temp) = match &opts.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("tandem-failbench-")
                .tempdir_in("/var/tmp")
                .context("creating a work directory under /var/tmp")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut report = FailoverBenchReport {
        header: vec![format!(
            "tandem bench failover: {} runs of each kind; failover: two sites (tandem daemon \
             processes), commit-sync, a client commits {} bytes, SIGKILL of the active site, \
             failover; switchover and resync: see the notes",
            opts.runs, opts.write_bytes
        )],
        ..FailoverBenchReport::default()
    };
    let mut first = MeasureRow::new(ROW_FIRST_REPLY, "ms").with_goal("< 2 s", FAILOVER_GOAL_MS);
    let mut steps = MeasureRow::new(ROW_STEPS, "ms");
    for n in 0..opts.runs {
        let dir = work.join(format!("run-{n}"));
        match one_run(&opts, dir.clone()).await {
            Ok(run) => {
                first.samples.push(run.first_reply.as_secs_f64() * 1000.0);
                steps.samples.push(run.steps_micros as f64 / 1000.0);
            }
            Err(e) => report.failures.push(format!("run {n}: {e:#}")),
        }
        if !opts.keep {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a run's sites");
            }
        }
    }
    report.push(first);
    report.push(steps);
    let switch_dir = work.join("switchover");
    for row in
        crate::failover_switch::measure(&opts, switch_dir.clone(), &mut report.failures).await
    {
        report.push(row);
    }
    if !opts.keep {
        if let Err(e) = std::fs::remove_dir_all(&switch_dir) {
            tracing::warn!(dir = %switch_dir.display(), error = %e, "cannot remove the switchover sites");
        }
    }
    for row in crate::failover_resync::measure(&opts, &work, &mut report.failures).await {
        report.push(row);
    }
    report.notes.push(format!(
        "switchover: {} switchovers alternating direction on one pair of sites; the client \
         writes 4 KiB in a loop, each write on a new connection, retrying JUKEBOX, refused \
         connections and a write unanswered for {} ms; its pause is the longest gap between \
         two successful writes",
        opts.runs,
        crate::failover_switch::CALL_TIMEOUT.as_millis()
    ));
    report.notes.push(format!(
        "resync: async replication; the cut-off active site rewrites half of a {} byte file and \
         writes a new file of the other half, the DR site fails over and writes nothing; \
         fetched = file data bytes the resync fetched",
        opts.write_bytes
    ));
    report.notes.push(format!(
        "{ROW_FIRST_REPLY}: from the failover request to the first GETATTR answered at the \
         vserver's address, polled every {} ms with a handle from before the kill",
        FIRST_REPLY_POLL_GAP.as_millis()
    ));
    report.notes.push(
        "every run reads back each committed byte after the failover; a mismatch fails the run"
            .into(),
    );
    if opts.keep {
        report
            .notes
            .push(format!("sites kept in {}", work.display()));
        if let Some(t) = temp {
            let _ = t.keep();
        }
    }
    Ok(report)
}

async fn one_run(opts: &FailoverOptions, dir: PathBuf) -> anyhow::Result<Run> {
    let mut sites = FailoverSites::start(opts.sites(dir)).await?;
    let target = sites.target.clone();
    let data = pattern(usize::try_from(opts.write_bytes)?, 7);
    let (root, fh) = within(opts.timeout, "writing before the kill", async {
        let mut m = Mounted::mount(&target, 1).await?;
        let c = m.clients.first_mut().context("no NFS connection")?;
        let fh = c.create(&m.root, "committed.bin", 0o644).await?;
        write_chunks(c, &fh, 0, &data).await?;
        c.commit(&fh).await?;
        anyhow::Ok((m.root.clone(), fh))
    })
    .await?;
    sites.kill_active()?;
    let started = Instant::now();
    let (report, client) = tokio::join!(
        sites.failover(),
        first_reply(&target, &root, started, opts.timeout)
    );
    let report = report?;
    let (first_reply, mut client) = client?;
    within(opts.timeout, "reading back", async {
        let back = read_whole(&mut client, &fh, data.len() as u64).await?;
        if back != data {
            bail!(
                "read back {} bytes that differ from the {} committed",
                back.len(),
                data.len()
            );
        }
        anyhow::Ok(())
    })
    .await?;
    sites.stop();
    Ok(Run {
        first_reply,
        steps_micros: report.total_micros(),
    })
}
