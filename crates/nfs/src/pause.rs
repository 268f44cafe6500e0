//! The switchover pause: while set, NFS procedures that change state are
//! answered NFS3ERR_JUKEBOX (the client waits and retries the same call,
//! it does not fail it); reads go on. `pause` then waits until the
//! changing calls already past the gate have finished, so nothing changes
//! the store afterwards.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// NFS3ERR_JUKEBOX (RFC 1813): "retry later".
const NFS3ERR_JUKEBOX: u32 = 10008;

#[derive(Debug, Default)]
pub struct PauseGate {
    paused: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// A changing call past the gate; the count drops with it.
pub(crate) struct Passed<'a>(&'a PauseGate);

impl Drop for Passed<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl PauseGate {
    /// Lets a changing call through, or `None` while paused. Counted
    /// before the flag is read (both SeqCst), so `pause` either sees the
    /// call counted or the call sees the flag.
    pub(crate) fn enter(&self) -> Option<Passed<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let passed = Passed(self);
        if self.paused.load(Ordering::SeqCst) {
            return None;
        }
        Some(passed)
    }

    /// Answers changing calls JUKEBOX from now on.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Waits until no changing call is past the gate, `timeout` at most;
    /// false if some still were.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

/// Whether an NFSv3 procedure changes state (SETATTR, WRITE, CREATE,
/// MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, RENAME, LINK). COMMIT changes
/// nothing a replica lacks: it is answered as usual.
pub(crate) fn changes_state(proc_num: u32) -> bool {
    proc_num == 2 || (7..=15).contains(&proc_num)
}

/// The JUKEBOX failure body of a changing procedure: the status, then its
/// resfail arm with every optional attribute absent (each wcc_data is two
/// FALSE discriminants; LINK adds a post_op_attr before its wcc_data;
/// RENAME has two wcc_data).
pub(crate) fn jukebox_body(proc_num: u32) -> Vec<u8> {
    let absent_words = match proc_num {
        14 => 4,
        15 => 3,
        _ => 2,
    };
    let mut out = Vec::with_capacity(4 + 4 * absent_words);
    out.extend_from_slice(&NFS3ERR_JUKEBOX.to_be_bytes());
    out.resize(4 + 4 * absent_words, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pause_refuses_new_calls_and_waits_for_those_inside() {
        let gate = std::sync::Arc::new(PauseGate::default());
        let inside = gate.enter().expect("not paused yet");
        gate.pause();
        assert!(gate.enter().is_none(), "a call after pause must be refused");
        assert!(!gate.drained(Duration::from_millis(20)).await);
        drop(inside);
        assert!(gate.drained(Duration::from_secs(5)).await);
        gate.resume();
        assert!(gate.enter().is_some());
    }

    #[test]
    fn jukebox_bodies_fit_each_resfail() {
        assert_eq!(jukebox_body(7).len(), 12);
        assert_eq!(jukebox_body(14).len(), 20);
        assert_eq!(jukebox_body(15).len(), 16);
        assert_eq!(&jukebox_body(2)[..4], &10008u32.to_be_bytes());
        assert!(changes_state(7) && changes_state(2) && changes_state(15));
        assert!(!changes_state(6) && !changes_state(21) && !changes_state(1));
    }
}
