//! What `tandem failover VS` (without `--check`) answers: the check it ran
//! (none when it resumed an interrupted failover), whether it went on, and
//! how long each step took.

use serde::{Deserialize, Serialize};

use crate::dr::failover::check::{CheckLine, FailoverCheck};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTime {
    /// check, reserve, promote or serve.
    pub step: String,
    pub micros: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverReport {
    pub vserver: String,
    pub site: String,
    /// The check, unless this run resumed an interrupted failover.
    pub check: Option<FailoverCheck>,
    /// The step an interrupted failover had reached, when resumed.
    pub resumed_from: Option<String>,
    /// False: stopped after the check (something missing, not forced).
    pub done: bool,
    /// Resources missing or discrepant that a forced failover went without.
    pub left_out: Vec<CheckLine>,
    /// The vserver's epoch now (0 when it stopped after the check).
    pub epoch: u64,
    /// Last LSN of the promoted store (0 when it stopped after the check).
    pub lsn: u64,
    /// Addresses now served read-write here.
    pub serving: Vec<String>,
    /// Addresses that could not be served, with why.
    pub not_serving: Vec<String>,
    pub steps: Vec<StepTime>,
}

impl FailoverReport {
    pub fn total_micros(&self) -> u64 {
        self.steps.iter().map(|s| s.micros).sum()
    }
}

/// Times one step into `steps`.
pub struct StepClock {
    started: std::time::Instant,
}

impl StepClock {
    pub fn start() -> Self {
        StepClock {
            started: std::time::Instant::now(),
        }
    }

    pub fn stop(self, step: &str, steps: &mut Vec<StepTime>) {
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        steps.push(StepTime {
            step: step.to_string(),
            micros,
        });
    }
}
