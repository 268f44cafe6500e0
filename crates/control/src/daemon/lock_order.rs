//! A debug-build check of the lock order in the module doc: each of the
//! daemon's tokio locks has a rank, and a task that takes one while it
//! holds one of the same or a later rank panics. Only tasks run inside
//! `checked` are checked (the control requests, peer connections and
//! the daemon's own background tasks); release builds check nothing.

use std::cell::Cell;
use std::future::Future;
use std::ops::{Deref, DerefMut};

use tokio::sync::{Mutex, MutexGuard, TryLockError};

tokio::task_local! {
    /// Bit n set: this task holds the lock of rank n.
    static HELD: Cell<u8>;
}

/// The ranks, in the order locks may be taken (module doc).
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub(super) enum Rank {
    FailoverRunning = 0,
    Vservers = 1,
    Senders = 2,
    Replication = 3,
}

/// Runs `f` with the order checked (debug builds).
pub(super) async fn checked<F: Future>(f: F) -> F::Output {
    if cfg!(debug_assertions) {
        HELD.scope(Cell::new(0), f).await
    } else {
        f.await
    }
}

/// A tokio mutex with its rank.
pub(super) struct Ranked<T> {
    rank: Rank,
    inner: Mutex<T>,
}

pub(super) struct RankedGuard<'a, T> {
    rank: Rank,
    guard: MutexGuard<'a, T>,
}

impl<T> Ranked<T> {
    pub(super) fn new(rank: Rank, value: T) -> Ranked<T> {
        Ranked {
            rank,
            inner: Mutex::new(value),
        }
    }

    pub(super) async fn lock(&self) -> RankedGuard<'_, T> {
        // Checked before waiting: a wrong order is a bug even when it
        // happens not to deadlock this time.
        enter(self.rank);
        RankedGuard {
            rank: self.rank,
            guard: self.inner.lock().await,
        }
    }

    pub(super) fn try_lock(&self) -> Result<RankedGuard<'_, T>, TryLockError> {
        let guard = self.inner.try_lock()?;
        enter(self.rank);
        Ok(RankedGuard {
            rank: self.rank,
            guard,
        })
    }
}

fn enter(rank: Rank) {
    if !cfg!(debug_assertions) {
        return;
    }
    let bit = 1u8 << rank as u8;
    // Outside `checked` there is nothing to check against.
    let _ = HELD.try_with(|held| {
        let later_or_same = held.get() & !(bit - 1);
        assert!(
            later_or_same == 0,
            "daemon lock order: {rank:?} taken while holding {:#06b} (bits: lock ranks)",
            held.get()
        );
        held.set(held.get() | bit);
    });
}

impl<T> Drop for RankedGuard<'_, T> {
    fn drop(&mut self) {
        if cfg!(debug_assertions) {
            let bit = 1u8 << self.rank as u8;
            let _ = HELD.try_with(|held| held.set(held.get() & !bit));
        }
    }
}

impl<T> Deref for RankedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for RankedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_order_passes_and_guards_release_their_rank() {
        let vservers = Ranked::new(Rank::Vservers, ());
        let senders = Ranked::new(Rank::Senders, ());
        checked(async {
            let t = vservers.lock().await;
            let s = senders.lock().await;
            drop(s);
            drop(t);
            // Released: taking them again, in order, is fine.
            let _t = vservers.lock().await;
            let _s = senders.try_lock().unwrap();
        })
        .await;
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    #[should_panic(expected = "daemon lock order")]
    async fn out_of_order_panics_in_debug_builds() {
        let vservers = Ranked::new(Rank::Vservers, ());
        let replication = Ranked::new(Rank::Replication, ());
        checked(async {
            let _r = replication.lock().await;
            let _t = vservers.lock().await;
        })
        .await;
    }
}
