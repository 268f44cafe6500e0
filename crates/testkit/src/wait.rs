//! Waiting with a deadline instead of a fixed sleep.

use std::time::Duration;

use anyhow::Context;

/// `fut`, failing with `what` if it takes longer than `timeout`.
pub async fn within<T>(
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("{what}: nothing within {timeout:?}"))?
}

/// Calls `done` every `every` until it holds (true) or `timeout` has
/// passed (false), for callers that are not async.
pub fn poll_until(timeout: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    loop {
        if done() {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_until_sees_a_condition_come_true_and_gives_up_on_one_that_does_not() {
        let mut calls = 0;
        assert!(poll_until(Duration::from_secs(10), Duration::ZERO, || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
        assert!(!poll_until(Duration::ZERO, Duration::ZERO, || false));
    }

    #[tokio::test]
    async fn within_passes_a_result_through_and_names_what_timed_out() {
        let ok = within(Duration::from_secs(10), "quick", async { Ok(5) }).await;
        assert_eq!(ok.ok(), Some(5));
        let late = within(
            Duration::ZERO,
            "never",
            std::future::pending::<anyhow::Result<()>>(),
        )
        .await
        .expect_err("nothing can finish in no time");
        assert!(
            format!("{late:#}").contains("never: nothing within"),
            "{late:#}"
        );
    }
}
