//! Waiting for the last users of a closed store to let it go, so an
//! install can lock its directory (a catch-up, a resync).

use std::sync::Arc;
use std::time::Duration;

/// Between two looks at the count. Polled: a store's users are in-flight
/// NFS requests holding plain `Arc` clones, which tell no one when they
/// drop.
const POLL: Duration = Duration::from_millis(20);

/// Waits, at most `timeout`, until `handle` is the only one left on what
/// it points to, then drops it (a store closes). On timeout the handle
/// comes back: someone else still holds it.
pub async fn wait_sole_holder<T>(
    handle: Arc<T>,
    timeout: Duration,
) -> std::result::Result<(), Arc<T>> {
    let deadline = tokio::time::Instant::now() + timeout;
    while Arc::strong_count(&handle) > 1 {
        if tokio::time::Instant::now() >= deadline {
            return Err(handle);
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_other_holders_let_go() {
        let mine = Arc::new(());
        let theirs = mine.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let holder = tokio::spawn(async move {
            let _ = rx.await;
            drop(theirs);
        });
        let waiting = tokio::spawn(wait_sole_holder(mine, Duration::from_secs(60)));
        tx.send(()).unwrap();
        holder.await.unwrap();
        assert!(waiting.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn gives_the_handle_back_when_still_held() {
        let mine = Arc::new(());
        let _theirs = mine.clone();
        let back = wait_sole_holder(mine, Duration::ZERO).await.unwrap_err();
        assert_eq!(Arc::strong_count(&back), 2);
    }
}
