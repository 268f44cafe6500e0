//! A test hook: with the `failpoints` feature, a daemon started with
//! `FAILPOINTS=<point>=return` (the `fail` crate's syntax) aborts (no
//! unwinding, no shutdown code: as a power cut would) when it reaches that
//! point, right after the step's durable mark. Points: `failover-reserved`,
//! `failover-promoted`. Tests use it to prove a rerun resumes from each
//! step. Without the feature (release builds) the hook compiles to nothing
//! and no environment variable is read.

/// Aborts the process if `FAILPOINTS` configured `point`.
#[cfg(feature = "failpoints")]
pub fn reached(point: &str) {
    static FROM_ENV: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    // The scenario's guard is kept for the life of the process: the
    // configuration from the environment is never torn down.
    FROM_ENV.get_or_init(|| std::mem::forget(fail::FailScenario::setup()));
    fail::fail_point!(point, |_| {
        tracing::error!(point, "FAILPOINTS: crashing here, as asked");
        std::process::abort()
    });
}

/// Does nothing: the crash points are compiled in only with `failpoints`.
#[cfg(not(feature = "failpoints"))]
pub fn reached(_point: &str) {}
