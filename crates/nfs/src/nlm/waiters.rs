//! Blocked LOCK requests (block = true, answered LCK_BLOCKED), waiting for
//! the lock to become free. They are not journaled: a client whose server
//! restarted or failed over sends its blocked request again. Bounded in
//! all and per client host; a retransmitted blocked request is queued
//! once. When a lock is released the file's waiters are tried in arrival
//! order, and each one granted is handed to its client by a GRANTED
//! callback.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use tandem_store::locks::LockOutcome;
use tandem_store::Ino;
use tracing::{debug, info, warn};

use super::args::LockArgs;
use super::callback::Route;
use crate::nfs3::common::blocking;
use crate::server::Shared;

#[derive(Debug, Clone)]
pub(crate) struct Waiter {
    pub(crate) id: u64,
    pub(crate) ino: Ino,
    pub(crate) args: LockArgs,
    /// The GRANTED callback's way back to the client.
    pub(crate) route: Route,
}

impl Waiter {
    fn same_request(&self, ino: Ino, args: &LockArgs) -> bool {
        self.ino == ino
            && self.args.exclusive == args.exclusive
            && self.args.lock.owner() == args.lock.owner()
            && self.args.lock.range() == args.lock.range()
    }
}

pub(crate) struct Waiters {
    max_waiters: usize,
    max_per_host: usize,
    queue: Mutex<(VecDeque<Waiter>, u64)>,
    /// One wake-up at a time, so two cannot both hand out one waiter.
    waking: tokio::sync::Mutex<()>,
}

/// Why a blocked request was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

impl Waiters {
    pub(crate) fn new(max_waiters: usize, max_per_host: usize) -> Self {
        Waiters {
            max_waiters,
            max_per_host,
            queue: Mutex::new((VecDeque::new(), 0)),
            waking: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (VecDeque<Waiter>, u64)> {
        self.queue.lock()
    }

    /// Queues a blocked request, with the way back to its client.
    pub(crate) fn add(&self, ino: Ino, args: &LockArgs, route: Route) -> Result<(), Full> {
        let mut q = self.lock();
        if q.0.iter().any(|w| w.same_request(ino, args)) {
            return Ok(());
        }
        let host = &args.lock.caller_name;
        let of_host =
            q.0.iter()
                .filter(|w| &w.args.lock.caller_name == host)
                .count();
        if q.0.len() >= self.max_waiters || of_host >= self.max_per_host {
            return Err(Full);
        }
        q.1 += 1;
        let id = q.1;
        q.0.push_back(Waiter {
            id,
            ino,
            args: args.clone(),
            route,
        });
        info!(host = %host, "blocked lock request waits for its holder");
        Ok(())
    }

    /// CANCEL: whether such a request was waiting.
    pub(crate) fn cancel(&self, ino: Ino, args: &LockArgs) -> bool {
        let mut q = self.lock();
        let before = q.0.len();
        q.0.retain(|w| !w.same_request(ino, args));
        q.0.len() != before
    }

    pub(crate) fn drop_host(&self, host: &str) {
        self.lock().0.retain(|w| w.args.lock.caller_name != host);
    }

    fn waiting_on(&self, ino: Option<Ino>) -> Vec<Waiter> {
        self.lock()
            .0
            .iter()
            .filter(|w| ino.is_none_or(|i| i == w.ino))
            .cloned()
            .collect()
    }

    fn take(&self, id: u64) -> bool {
        let mut q = self.lock();
        let before = q.0.len();
        q.0.retain(|w| w.id != id);
        q.0.len() != before
    }
}

/// Tries the waiters of `ino` (every file for `None`) in arrival order and
/// hands each lock granted to its client. Boxed: a callback that fails
/// releases the lock and wakes the file again.
pub(crate) fn wake(
    shared: Arc<Shared>,
    ino: Option<Ino>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let nlm = &shared.nlm;
        let _one = nlm.waiters.waking.lock().await;
        for w in nlm.waiters.waiting_on(ino) {
            let (file, owner, range, excl) = (
                w.ino,
                w.args.lock.owner(),
                w.args.lock.range(),
                w.args.exclusive,
            );
            let tried = blocking(&shared, move |s| s.lock(file, &owner, range, excl)).await;
            match tried {
                Ok(Ok(LockOutcome::Granted(lsn))) => {
                    if !nlm.waiters.take(w.id) {
                        // Cancelled meanwhile: what we just took goes back.
                        if lsn.is_some() {
                            super::callback::release(&shared, &w).await;
                        }
                        continue;
                    }
                    let stat = super::settle(&shared, lsn).await;
                    debug!(host = %w.args.lock.caller_name, ?stat, "blocked lock granted");
                    super::callback::spawn_grant(shared.clone(), w);
                }
                Ok(Ok(LockOutcome::Denied(_))) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, "a blocked lock cannot be granted; dropped");
                    nlm.waiters.take(w.id);
                }
                Err(_) => {}
            }
        }
    })
}
