//! Who may be in a TLS handshake on the peer listener. Anyone can open a
//! TCP connection to it, and before the handshake proves a paired site
//! nothing says who it is, so unauthenticated connections get a budget of
//! their own: a few per source address, a bounded number in all, and when
//! that is full the oldest is dropped for the newcomer (a real peer's
//! handshake takes milliseconds; a silent connection only ever waits). The
//! accept loop itself never stops, so silent connections cannot starve
//! replication, `peer check` or the start-up epoch probe.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

/// Connections in a TLS handshake at once.
pub const MAX_HANDSHAKES: usize = 32;
/// Connections of one source address in a TLS handshake at once.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 4;

pub(super) struct Handshakes {
    max_total: usize,
    max_per_address: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// By admission order, so the first is the oldest.
    by_age: BTreeMap<u64, (IpAddr, CancellationToken)>,
    per_address: HashMap<IpAddr, usize>,
}

/// A connection's place among the handshakes; dropping it gives it back.
pub(super) struct Handshaking {
    owner: Arc<Handshakes>,
    id: u64,
    /// Cancelled when a newer connection took the place.
    pub(super) dropped: CancellationToken,
}

impl Inner {
    fn forget(&mut self, id: u64) {
        let Some((addr, _)) = self.by_age.remove(&id) else {
            return;
        };
        if let Some(n) = self.per_address.get_mut(&addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_address.remove(&addr);
            }
        }
    }
}

impl Handshakes {
    pub(super) fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Handshakes {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// A place for a connection from `addr`, or `None` when that address
    /// already has its share in handshakes. When all places are taken, the
    /// oldest handshake is dropped for this one.
    pub(super) fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<Handshaking> {
        let mut inner = self.lock();
        if inner.per_address.get(&addr).copied().unwrap_or(0) >= self.max_per_address {
            return None;
        }
        if inner.by_age.len() >= self.max_total {
            if let Some((&oldest, (_, token))) = inner.by_age.iter().next() {
                token.cancel();
                inner.forget(oldest);
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let dropped = CancellationToken::new();
        inner.by_age.insert(id, (addr, dropped.clone()));
        *inner.per_address.entry(addr).or_insert(0) += 1;
        Some(Handshaking {
            owner: self.clone(),
            id,
            dropped,
        })
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.owner.lock().forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn an_address_past_its_share_is_refused_and_others_are_not() {
        let h = Handshakes::new(10, 2);
        let _a1 = h.admit(ip(1)).unwrap();
        let a2 = h.admit(ip(1)).unwrap();
        assert!(h.admit(ip(1)).is_none());
        assert!(h.admit(ip(2)).is_some());
        drop(a2);
        assert!(h.admit(ip(1)).is_some());
    }

    #[test]
    fn when_full_the_oldest_goes_and_its_end_gives_back_nothing_twice() {
        let h = Handshakes::new(2, 2);
        let oldest = h.admit(ip(1)).unwrap();
        let middle = h.admit(ip(2)).unwrap();
        let newest = h.admit(ip(3)).unwrap();
        assert!(oldest.dropped.is_cancelled());
        assert!(!middle.dropped.is_cancelled() && !newest.dropped.is_cancelled());
        drop(oldest);
        assert_eq!(h.lock().by_age.len(), 2);
        // ip(1) has no handshake left, so it has its whole share again.
        let _again = h.admit(ip(1)).unwrap();
        assert!(middle.dropped.is_cancelled());
        assert_eq!(h.lock().per_address.get(&ip(1)), Some(&1));
    }
}
