//! `tandem failover VS` at the DR site: the check (dr::failover::check
//! decides from inputs gathered here), then reserve, promote, serve, each
//! step durable in a FAILOVER mark (dr::failover::mark) so an interrupted
//! failover resumes where it stopped; `catchup.rs` brings up a replica
//! whose catch-up a forced failover interrupts.

mod catchup;

use crate::config::names::validate_name;
use crate::daemon::Daemon;
use crate::dr::crash_point;
use crate::dr::failover::check::{self as failover, CheckInputs, CheckLine, FailoverCheck};
use crate::dr::failover::mark::{self as failover_mark, Mark, Step};
use crate::dr::failover::report::{FailoverReport, StepClock, StepTime};
use crate::error::{ControlError, Result};
use crate::vserver::status::{VserverState, VserverStatus};
use crate::vserver::Vserver;

impl Daemon {
    /// `tandem failover VS --check`: gathers what the checks need under
    /// the table lock, then runs them (port binds, a directory walk) on
    /// the blocking pool without it.
    pub async fn failover_check(&self, vserver: &str) -> Result<FailoverCheck> {
        validate_name("vserver name", vserver)?;
        let inputs = {
            let table = self.vservers.lock().await;
            let vs = table
                .get(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            let status = vs.status();
            if status.state != VserverState::Replica {
                let why = match status.state {
                    VserverState::Active => format!(
                        "{vserver} is active here; run failover at the DR site that holds its replica"
                    ),
                    _ => format!(
                        "{vserver} is {} here: {}",
                        status.state,
                        status.error.as_deref().unwrap_or("no reason recorded")
                    ),
                };
                return Err(ControlError::invalid("failover", why));
            }
            let addresses = vs.store().ok().map(|s| s.config().addresses);
            let held = table
                .values()
                .filter(|other| other.name() != vserver)
                .flat_map(|other| held_ips(&other.status()))
                .collect();
            let replication = status.replication.as_deref();
            let nfs = &self.site.config.nfs;
            let mut ports = vec![
                ("NFS".to_string(), nfs.nfs_port),
                ("MOUNT".to_string(), nfs.mount_port),
            ];
            if nfs.portmap {
                ports.push(("portmapper".to_string(), nfs.portmap_port));
            }
            CheckInputs {
                vserver: vserver.to_string(),
                site: self.site.config.name.clone(),
                addresses,
                held,
                in_baseline: vs.in_baseline(),
                replication_state: replication.map(|r| r.state),
                last_lsn: status.last_lsn,
                lag_records: replication.map_or(0, |r| r.lag_records),
                interfaces: self.site.config.interfaces.clone(),
                pools: self.site.config.pools.clone(),
                data_dir: self.site.paths.root.clone(),
                store_dir: self.site.paths.vserver(vserver),
                ports,
            }
        };
        tokio::task::spawn_blocking(move || {
            failover::run_checks(&inputs, std::path::Path::new(failover::SYS_CLASS_NET))
        })
        .await
        .map_err(|e| ControlError::Internal(format!("failover check failed: {e}")))
    }

    /// `tandem failover VS`: check; then, when every resource is present
    /// or `force`, reserve (the FAILOVER mark), promote the store and serve
    /// the vserver's addresses read-write here. An interrupted failover
    /// (its mark left) resumes from the step the mark names, without a
    /// new check. Each step is timed.
    pub async fn failover(&self, vserver: &str, force: bool) -> Result<FailoverReport> {
        validate_name("vserver name", vserver)?;
        let Ok(_one) = self.failover_running.try_lock() else {
            return Err(ControlError::Unavailable {
                vserver: vserver.to_string(),
                reason: "another failover is running at this site; rerun when it is done".into(),
            });
        };
        let root = self.site.paths.root.clone();
        let mut report = FailoverReport {
            vserver: vserver.to_string(),
            site: self.site.config.name.clone(),
            check: None,
            resumed_from: None,
            done: false,
            left_out: Vec::new(),
            epoch: 0,
            lsn: 0,
            serving: Vec::new(),
            not_serving: Vec::new(),
            steps: Vec::new(),
        };
        let mut mark = match failover_mark::load(&root, vserver)? {
            Some(m) => {
                tracing::warn!(vserver, step = %m.step, epoch = m.epoch, "resuming an interrupted failover");
                report.resumed_from = Some(m.step.to_string());
                m
            }
            None => match self.check_and_reserve(vserver, force, &mut report).await? {
                Some(mark) => mark,
                // Not ready and not forced: the report says what is missing.
                None => return Ok(report),
            },
        };
        // Held from the promotion until the vserver is served, so nothing
        // sees it promoted and unserved.
        let mut table = self.vservers.lock().await;
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        if mark.step < Step::Promoted {
            self.promote_replica(vs, &mut mark, &mut report.steps)
                .await?;
        }
        self.serve_promoted(vs, &mut report).await?;
        Ok(report)
    }

    /// Check; unless every resource is present or `force`, stop there
    /// (None). Else end a catch-up in progress and reserve: the FAILOVER
    /// mark with the next epoch.
    async fn check_and_reserve(
        &self,
        vserver: &str,
        force: bool,
        report: &mut FailoverReport,
    ) -> Result<Option<Mark>> {
        let clock = StepClock::start();
        let check = self.failover_check(vserver).await?;
        clock.stop("check", &mut report.steps);
        let ready = check.ready;
        report.left_out = check
            .lines
            .iter()
            .filter(|l| l.outcome.blocks())
            .cloned()
            .collect::<Vec<CheckLine>>();
        report.check = Some(check);
        if !ready && !force {
            return Ok(None);
        }
        if let Some(lsn) = self.end_catchup_for_failover(vserver).await? {
            catchup::note_copy_brought_up(&mut report.left_out, lsn);
        }
        let clock = StepClock::start();
        let table = self.vservers.lock().await;
        let vs = table
            .get(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        let mark = Mark {
            vserver: vserver.to_string(),
            epoch: vs.store()?.epoch() + 1,
            step: Step::Reserved,
            forced: !ready,
        };
        failover_mark::save(&self.site.paths.root, &mark)?;
        crash_point::reached("failover-reserved");
        drop(table);
        clock.stop("reserve", &mut report.steps);
        tracing::warn!(
            vserver,
            epoch = mark.epoch,
            forced = mark.forced,
            "failover: reserved"
        );
        Ok(Some(mark))
    }

    /// Ends the incoming session, promotes the store at the reserved
    /// epoch and forgets the incoming settings; the mark says so.
    async fn promote_replica(
        &self,
        vs: &mut Vserver,
        mark: &mut Mark,
        steps: &mut Vec<StepTime>,
    ) -> Result<()> {
        let vserver = mark.vserver.as_str();
        let clock = StepClock::start();
        // The incoming session ends now; promote waits for a batch it
        // may be applying.
        self.set_session_stop(vserver, true);
        vs.promote(mark.epoch).await?;
        self.forget_incoming(vserver).await?;
        mark.step = Step::Promoted;
        failover_mark::save(&self.site.paths.root, mark)?;
        crash_point::reached("failover-promoted");
        clock.stop("promote", steps);
        tracing::warn!(vserver, epoch = mark.epoch, "failover: promoted");
        Ok(())
    }

    /// Serves the promoted vserver read-write, removes the mark, and fills
    /// the report in with what is served.
    async fn serve_promoted(&self, vs: &mut Vserver, report: &mut FailoverReport) -> Result<()> {
        let vserver = report.vserver.as_str();
        let clock = StepClock::start();
        vs.serve_active(&self.service_cfg).await?;
        failover_mark::remove(&self.site.paths.root, vserver)?;
        clock.stop("serve", &mut report.steps);
        let status = vs.status();
        let store = vs.store()?;
        report.epoch = store.epoch();
        report.lsn = store.last_lsn();
        report.serving = status.addresses.iter().map(ToString::to_string).collect();
        // A portmapper-only failure ("IP/P portmap port N") still serves
        // NFS and MOUNT on the address.
        report
            .serving
            .retain(|a| !status.bind_failures.iter().any(|f| &f.address == a));
        report.not_serving = status
            .bind_failures
            .iter()
            .map(|f| format!("{}: {}", f.address, f.error))
            .collect();
        report.done = true;
        tracing::warn!(
            vserver,
            epoch = report.epoch,
            lsn = report.lsn,
            total_us = report.total_micros(),
            "failover done: active here"
        );
        Ok(())
    }
}

/// The IPs a vserver holds at this site: its own addresses and, for a
/// replica, the address it is served on read-only.
fn held_ips(status: &VserverStatus) -> Vec<(String, std::net::IpAddr)> {
    let replica = status
        .replication
        .as_ref()
        .and_then(|r| r.replica_address.as_ref());
    status
        .addresses
        .iter()
        .chain(replica)
        .map(|a| (status.name.clone(), a.ip))
        .collect()
}
