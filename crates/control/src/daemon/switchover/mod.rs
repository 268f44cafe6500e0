//! `tandem switchover VS --to PEER` at the active site (a child module of
//! `daemon`): check, pause, demote, ship the tail and have the peer
//! promote (crate::replication's session, tandem_repl::switchover), then
//! let the peer replicate back. Nothing moves unless the peer was asked to
//! promote: every failure before that takes the demotion back and
//! unpauses; a failure after it cannot know whether the peer promoted, so
//! this site stays a replica and says how to find out.

pub(crate) mod peer;
pub(super) mod resume;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_repl::switchover::{HandedOver, Stage, SwitchoverAsk, SwitchoverError};
use tokio::sync::oneshot;

use super::Daemon;
use crate::config::names::validate_name;
use crate::dr::failover::report::{StepClock, StepTime};
use crate::dr::switchover::report::{
    SwitchoverReport, DEFAULT_TIMEOUT_MS, MAX_LAG_BYTES, MAX_TIMEOUT_MS,
};
use crate::error::{ControlError, Result};
use crate::replication::{self, ReplicationState};

/// Once the request went out, how much past the timeout to wait for the
/// peer's answer (its promotion is a few fsyncs).
const ANSWER_GRACE: Duration = Duration::from_secs(10);
/// How long the report waits for the peer's replication back to reach
/// this site (after the pause; it retries on its own if slower).
const REVERSE_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// How a hand-over ended when it did not succeed.
enum Failed {
    /// The peer is untouched: take the demotion back.
    NothingMoved(String),
    /// The request went out unanswered: the peer may be active.
    Unknown(String),
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn unavailable(vserver: &str, reason: String) -> ControlError {
    ControlError::Unavailable {
        vserver: vserver.to_string(),
        reason,
    }
}

impl Daemon {
    pub async fn switchover(
        &self,
        vserver: &str,
        to: &str,
        timeout_ms: Option<u64>,
    ) -> Result<SwitchoverReport> {
        validate_name("vserver name", vserver)?;
        validate_name("peer name", to)?;
        let timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(ControlError::invalid(
                "switchover timeout",
                format!("{timeout_ms} ms is not within 1..={MAX_TIMEOUT_MS} ms"),
            ));
        }
        let Ok(_one) = self.failover_running.try_lock() else {
            return Err(unavailable(
                vserver,
                "a failover or switchover is running at this site; rerun when it is done".into(),
            ));
        };
        let peer = self
            .peers
            .lock()
            .await
            .iter()
            .find(|p| p.name == to)
            .cloned()
            .ok_or_else(|| ControlError::NoPeer(to.to_string()))?;
        let mut steps: Vec<StepTime> = Vec::new();

        let clock = StepClock::start();
        let (gates, asks, settings) = {
            let table = self.vservers.lock().await;
            let vs = table
                .get(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            if vs.is_replica() || vs.in_baseline() {
                return Err(ControlError::invalid(
                    "switchover",
                    format!("{vserver} is a replica here; run switchover at its active site"),
                ));
            }
            let store = vs.store()?.clone();
            if let Some(theirs) = store.fenced_by() {
                return Err(ControlError::invalid(
                    "switchover",
                    format!("{vserver} is fenced here (another site holds epoch {theirs})"),
                ));
            }
            let senders = self.senders.lock().await;
            let Some(sender) = senders.get(vserver).filter(|s| s.settings.to == to) else {
                return Err(ControlError::invalid(
                    "switchover",
                    format!("{vserver} is not replicated to {to} (see `tandem replicate`)"),
                ));
            };
            let st = sender.status(&store);
            if st.state != ReplicationState::Streaming {
                return Err(ControlError::invalid(
                    "switchover",
                    format!(
                        "the replica at {to} is not streaming (state {}{}); nothing changed",
                        st.state,
                        st.last_error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                ));
            }
            if st.lag_bytes > MAX_LAG_BYTES {
                return Err(ControlError::invalid(
                    "switchover",
                    format!(
                        "the replica at {to} is {} bytes behind (at most {MAX_LAG_BYTES}); \
                         retry when it has caught up; nothing changed",
                        st.lag_bytes
                    ),
                ));
            }
            let settings = toml::to_string(&sender.settings)
                .map_err(|e| ControlError::Internal(format!("replication settings: {e}")))?;
            (vs.pause_gates(), sender.switchover_asks(), settings)
        };
        clock.stop("check", &mut steps);

        // Pause: from here clients get JUKEBOX for changes.
        let paused_at = Instant::now();
        let deadline = paused_at + Duration::from_millis(timeout_ms);
        let clock = StepClock::start();
        for g in &gates {
            g.pause();
        }
        let resume = || {
            for g in &gates {
                g.resume();
            }
        };
        for g in &gates {
            let left = deadline.saturating_duration_since(Instant::now());
            if !g.drained(left).await {
                resume();
                return Err(unavailable(
                    vserver,
                    format!(
                        "changing NFS calls were still running after the {timeout_ms} ms \
                         switchover timeout; unpaused, nothing moved"
                    ),
                ));
            }
        }
        clock.stop("pause", &mut steps);
        tracing::warn!(vserver, to, "switchover: paused");

        let clock = StepClock::start();
        let demoted = {
            let mut table = self.vservers.lock().await;
            let vs = table
                .get_mut(vserver)
                .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
            match vs.demote(&peer.id).await {
                Ok(d) => d,
                Err(e) => {
                    resume();
                    return Err(e);
                }
            }
        };
        clock.stop("demote", &mut steps);
        tracing::warn!(
            vserver,
            to,
            lsn = demoted.lsn,
            epoch = demoted.epoch,
            "switchover: demoted"
        );

        let asked_at = Instant::now();
        let handed = self
            .hand_over(&asks, demoted.lsn, demoted.epoch + 1, settings, deadline)
            .await;
        let handed = match handed {
            Ok(h) => h,
            Err(Failed::NothingMoved(why)) => {
                let mut table = self.vservers.lock().await;
                let vs = table
                    .get_mut(vserver)
                    .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
                vs.undo_demote(&self.service_cfg).await?;
                tracing::warn!(vserver, to, reason = %why, "switchover abandoned: active here again");
                return Err(unavailable(
                    vserver,
                    format!("switchover to {to} abandoned, nothing moved ({why}); {vserver} is active here again"),
                ));
            }
            Err(Failed::Unknown(why)) => {
                // The outgoing settings stay: they mark the switchover as
                // unfinished, so a restart asks the peer and settles it
                // (switchover_resume); the sender makes no attempt while
                // the store is a replica.
                tracing::error!(vserver, to, reason = %why, "switchover: outcome unknown");
                return Err(unavailable(
                    vserver,
                    format!(
                        "switchover to {to}: the request to promote went out but no answer came \
                         ({why}). {vserver} is a replica here at LSN {}; see `tandem status {vserver}` \
                         at {to}: if it is not active there, restart this site's daemon (it asks {to} \
                         and takes the switchover back), or `tandem failover {vserver}` here if {to} \
                         is gone",
                        demoted.lsn
                    ),
                ));
            }
        };
        steps.push(StepTime {
            step: "ship-tail".into(),
            micros: micros(handed.acked_at.saturating_duration_since(asked_at)),
        });
        steps.push(StepTime {
            step: "promote-peer".into(),
            micros: micros(handed.done_at.saturating_duration_since(handed.acked_at)),
        });
        let pause_micros = micros(handed.done_at.saturating_duration_since(paused_at));
        tracing::warn!(
            vserver,
            to,
            lsn = handed.lsn,
            epoch = handed.epoch,
            pause_us = pause_micros,
            "switchover: the peer is active"
        );

        self.stop_sending(vserver).await;
        let clock = StepClock::start();
        let reverse_streaming = self.wait_receiving(vserver).await;
        clock.stop("reverse", &mut steps);
        let mut notes: Vec<String> = handed
            .notes
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if !reverse_streaming {
            notes.push(format!(
                "{to} has not started replicating {vserver} back here yet; it retries on its own \
                 (see `tandem status {vserver}` at {to})"
            ));
        }
        Ok(SwitchoverReport {
            vserver: vserver.to_string(),
            site: self.site.config.name.clone(),
            to: to.to_string(),
            lsn: handed.lsn,
            epoch: handed.epoch,
            pause_micros,
            steps,
            reverse_streaming,
            notes,
        })
    }

    /// Asks the running session to ship up to `lsn` and have the peer
    /// promote there, within `deadline` (plus a grace once sent).
    async fn hand_over(
        &self,
        asks: &tokio::sync::mpsc::Sender<SwitchoverAsk>,
        lsn: u64,
        epoch: u64,
        settings: String,
        deadline: Instant,
    ) -> std::result::Result<HandedOver, Failed> {
        let stage = Arc::new(Stage::default());
        let (reply, mut answer) = oneshot::channel();
        let ask = SwitchoverAsk {
            lsn,
            epoch,
            settings,
            stage: stage.clone(),
            reply,
        };
        if asks.try_send(ask).is_err() {
            return Err(Failed::NothingMoved(
                "the replication session takes no more asks".into(),
            ));
        }
        let answered = |a: std::result::Result<
            std::result::Result<HandedOver, SwitchoverError>,
            oneshot::error::RecvError,
        >,
                        stage: &Stage| match a {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(e)) => Err(Failed::NothingMoved(e.to_string())),
            Err(_) if stage.sent() => Err(Failed::Unknown(
                "the replication session ended after the request was sent".into(),
            )),
            Err(_) => Err(Failed::NothingMoved(
                "the replication session ended before the request was sent".into(),
            )),
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, &mut answer).await {
            Ok(a) => answered(a, &stage),
            Err(_) if stage.cancel() => Err(Failed::NothingMoved(
                "the replica had not acknowledged the tail within the switchover timeout".into(),
            )),
            Err(_) => match tokio::time::timeout(ANSWER_GRACE, &mut answer).await {
                Ok(a) => answered(a, &stage),
                Err(_) => Err(Failed::Unknown(format!(
                    "no answer within the timeout and {} s more",
                    ANSWER_GRACE.as_secs()
                ))),
            },
        }
    }

    /// This site no longer sends `vserver`: the sender stops and its
    /// settings go (the peer replicates it back now).
    pub(super) async fn stop_sending(&self, vserver: &str) {
        let mut senders = self.senders.lock().await;
        let mut settings = self.replication.lock().await;
        if settings.outgoing.contains_key(vserver) {
            let mut next = settings.clone();
            next.outgoing.remove(vserver);
            match replication::save(&self.site.paths, &next) {
                Ok(()) => *settings = next,
                Err(e) => {
                    tracing::error!(vserver, error = %e, "switchover: could not drop the outgoing replication settings")
                }
            }
        }
        if let Some(s) = senders.remove(vserver) {
            s.stop().await;
        }
    }

    /// Waits (bounded) until the peer's session into this replica runs.
    async fn wait_receiving(&self, vserver: &str) -> bool {
        let until = Instant::now() + REVERSE_WAIT;
        loop {
            let receiving = {
                let table = self.vservers.lock().await;
                table.get(vserver).is_some_and(|vs| {
                    vs.status()
                        .replication
                        .is_some_and(|r| r.state == ReplicationState::Receiving)
                })
            };
            if receiving {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
