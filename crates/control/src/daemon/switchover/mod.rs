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

use tandem_nfs::pause::PauseGate;
use tandem_repl::switchover::{HandedOver, Stage, SwitchoverAsk, SwitchoverError};
use tandem_store::demote::Demoted;
use tokio::sync::oneshot;

use super::Daemon;
use crate::config::names::validate_name;
use crate::dr::failover::report::{StepClock, StepTime};
use crate::dr::switchover::report::{
    SwitchoverReport, DEFAULT_TIMEOUT_MS, MAX_LAG_BYTES, MAX_TIMEOUT_MS,
};
use crate::error::{ControlError, Result};
use crate::replication::ReplicationState;

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

/// What the check hands to the later steps.
struct Ready {
    /// The vserver's pause gates, one per NFS service.
    gates: Vec<Arc<PauseGate>>,
    /// Where the running replication session takes a hand-over ask.
    asks: tokio::sync::mpsc::Sender<SwitchoverAsk>,
    /// The sender's settings, for the peer to replicate back with.
    settings: String,
}

/// Pauses changing NFS calls and waits for those running to end, by
/// `deadline`; on timeout unpauses, nothing moved.
async fn pause(
    vserver: &str,
    gates: &[Arc<PauseGate>],
    deadline: Instant,
    timeout_ms: u64,
) -> Result<()> {
    for g in gates {
        g.pause();
    }
    for g in gates {
        let left = deadline.saturating_duration_since(Instant::now());
        if !g.drained(left).await {
            resume(gates);
            return Err(unavailable(
                vserver,
                format!(
                    "changing NFS calls were still running after the {timeout_ms} ms \
                     switchover timeout; unpaused, nothing moved"
                ),
            ));
        }
    }
    Ok(())
}

fn resume(gates: &[Arc<PauseGate>]) {
    for g in gates {
        g.resume();
    }
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
    /// `tandem switchover VS --to PEER` (module doc): check, pause,
    /// demote, hand over, then stop sending and wait for the peer to
    /// replicate back. Each step is timed.
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
            .peer_named(to)
            .ok_or_else(|| ControlError::NoPeer(to.to_string()))?;
        let mut steps: Vec<StepTime> = Vec::new();

        let clock = StepClock::start();
        let ready = self.switchover_check(vserver, to).await?;
        clock.stop("check", &mut steps);

        // Pause: from here clients get JUKEBOX for changes.
        let paused_at = Instant::now();
        let deadline = paused_at + Duration::from_millis(timeout_ms);
        let clock = StepClock::start();
        pause(vserver, &ready.gates, deadline, timeout_ms).await?;
        clock.stop("pause", &mut steps);
        tracing::warn!(vserver, to, "switchover: paused");

        let clock = StepClock::start();
        let demoted = self.demote(vserver, &peer.id, &ready.gates).await?;
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
            .hand_over(
                &ready.asks,
                demoted.lsn,
                demoted.epoch + 1,
                ready.settings,
                deadline,
            )
            .await;
        let handed = match handed {
            Ok(h) => h,
            Err(failed) => {
                return Err(self
                    .hand_over_failed(vserver, to, demoted.lsn, failed)
                    .await)
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

    /// Whether `vserver` can be handed to `to` now: active and unfenced
    /// here, its replica there streaming and close behind. Nothing changes.
    async fn switchover_check(&self, vserver: &str, to: &str) -> Result<Ready> {
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
        Ok(Ready {
            gates: vs.pause_gates(),
            asks: sender.switchover_asks(),
            settings,
        })
    }

    /// Demotes the paused store: a replica of `peer_id` from now on. On
    /// failure it is unpaused, nothing moved.
    async fn demote(
        &self,
        vserver: &str,
        peer_id: &str,
        gates: &[Arc<PauseGate>],
    ) -> Result<Demoted> {
        let mut table = self.vservers.lock().await;
        let vs = table
            .get_mut(vserver)
            .ok_or_else(|| ControlError::NoVserver(vserver.to_string()))?;
        match vs.demote(peer_id).await {
            Ok(d) => Ok(d),
            Err(e) => {
                resume(gates);
                Err(e)
            }
        }
    }

    /// A hand-over that did not succeed: with nothing moved the demotion
    /// is taken back; with the outcome unknown this site stays a replica.
    /// The error to answer with.
    async fn hand_over_failed(
        &self,
        vserver: &str,
        to: &str,
        lsn: u64,
        failed: Failed,
    ) -> ControlError {
        match failed {
            Failed::NothingMoved(why) => {
                let mut table = self.vservers.lock().await;
                let Some(vs) = table.get_mut(vserver) else {
                    return ControlError::NoVserver(vserver.to_string());
                };
                if let Err(e) = vs.undo_demote(&self.service_cfg).await {
                    return e;
                }
                tracing::warn!(vserver, to, reason = %why, "switchover abandoned: active here again");
                unavailable(
                    vserver,
                    format!("switchover to {to} abandoned, nothing moved ({why}); {vserver} is active here again"),
                )
            }
            Failed::Unknown(why) => {
                // The outgoing settings stay: they mark the switchover as
                // unfinished, so a restart asks the peer and settles it
                // (resume.rs); the sender makes no attempt while the store
                // is a replica.
                tracing::error!(vserver, to, reason = %why, "switchover: outcome unknown");
                unavailable(
                    vserver,
                    format!(
                        "switchover to {to}: the request to promote went out but no answer came \
                         ({why}). {vserver} is a replica here at LSN {lsn}; see `tandem status {vserver}` \
                         at {to}: if it is not active there, restart this site's daemon (it asks {to} \
                         and takes the switchover back), or `tandem failover {vserver}` here if {to} \
                         is gone"
                    ),
                )
            }
        }
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
