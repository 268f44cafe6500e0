//! A test hook: `TANDEM_CRASH_AT=<point>` in the daemon's environment makes
//! it abort (no unwinding, no shutdown code: as a power cut would) when it
//! reaches that point, right after the step's durable mark. Points:
//! `failover-reserved`, `failover-promoted`. Without the variable nothing
//! happens; tests use it to prove a rerun resumes from each step.

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const ENV: &str = "TANDEM_CRASH_AT";

/// Aborts the process if `TANDEM_CRASH_AT` names `point`.
pub fn reached(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(ENV).ok());
    if at.as_deref() == Some(point) {
        tracing::error!(point, "{ENV}: crashing here, as asked");
        std::process::abort();
    }
}
