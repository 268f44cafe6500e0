//! Who may hold the service's connections and request slots. Each client
//! host has a share of both, the NFS port and the other ports (MOUNT,
//! portmap, the lock manager) have separate connection budgets, and when a
//! budget is full the connection idle the longest makes room for a new
//! one, as knfsd does. So silent connections, a flood on one port or a
//! client that never reads its replies cost their own host, not everyone.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Service;
use crate::Shares;

/// The shares of one service: every port of its addresses (the daemon runs
/// one service per vserver address).
pub(crate) struct Budget {
    shares: Shares,
    nfs: ConnTable,
    other: ConnTable,
    hosts: Mutex<HashMap<IpAddr, HostShare>>,
    /// One permit per request in progress, shared by every connection.
    request_slots: Arc<Semaphore>,
    next_id: AtomicU64,
    /// Activity times are milliseconds since this instant.
    clock: Instant,
}

struct HostShare {
    connections: usize,
    requests: Arc<Semaphore>,
}

/// The admitted connections of one budget, by admission order.
struct ConnTable {
    max: usize,
    conns: Mutex<BTreeMap<u64, Arc<Activity>>>,
}

/// What a connection is doing, read by the idle watch and by eviction.
pub(crate) struct Activity {
    /// Records started and not yet answered (or dropped).
    busy: AtomicUsize,
    /// When `busy` last changed, in ms of the budget's clock.
    last_ms: AtomicU64,
    /// Cancelled to close the connection (evicted).
    close: CancellationToken,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    HostFull,
    /// The port's budget is full and every connection in it is busy.
    AllBusy,
}

/// An admitted connection's place in the budget; dropping it gives the
/// place back.
pub(crate) struct Ticket {
    budget: Arc<Budget>,
    service: Service,
    id: u64,
    host: IpAddr,
    activity: Arc<Activity>,
    host_requests: Arc<Semaphore>,
}

/// A request in progress: its permits and its mark on the connection's
/// activity, all given back when it is dropped (its reply written).
pub(crate) struct InProgress {
    host_permit: Option<OwnedSemaphorePermit>,
    service_permit: Option<OwnedSemaphorePermit>,
    activity: Arc<Activity>,
    clock: Instant,
}

fn ms_since(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Budget {
    pub(crate) fn new(shares: Shares, max_nfs_connections: usize, max_requests: usize) -> Self {
        Budget {
            nfs: ConnTable {
                max: max_nfs_connections,
                conns: Mutex::new(BTreeMap::new()),
            },
            other: ConnTable {
                max: shares.max_other_connections,
                conns: Mutex::new(BTreeMap::new()),
            },
            shares,
            hosts: Mutex::new(HashMap::new()),
            request_slots: Arc::new(Semaphore::new(max_requests)),
            next_id: AtomicU64::new(0),
            clock: Instant::now(),
        }
    }

    fn table(&self, service: Service) -> &ConnTable {
        match service {
            Service::Nfs => &self.nfs,
            Service::Mount | Service::Portmap => &self.other,
        }
    }

    pub(crate) fn record_timeout(&self) -> Duration {
        Duration::from_millis(self.shares.record_timeout_ms)
    }

    /// Admits a connection from `host` to `service`'s port: within the
    /// host's share, and within the port's budget, closing the connection
    /// idle the longest if the budget is full.
    pub(crate) fn admit(
        self: &Arc<Self>,
        service: Service,
        host: IpAddr,
    ) -> Result<Ticket, Refusal> {
        let mut hosts = self.hosts.lock();
        let held = hosts.get(&host).map_or(0, |share| share.connections);
        if held >= self.shares.max_connections_per_host {
            return Err(Refusal::HostFull);
        }
        let table = self.table(service);
        let mut conns = table.conns.lock();
        if conns.len() >= table.max {
            let victim = conns
                .iter()
                .filter(|(_, a)| a.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, a)| a.last_ms.load(Ordering::Acquire))
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                return Err(Refusal::AllBusy);
            };
            if let Some(a) = conns.remove(&victim) {
                tracing::info!(
                    ?service,
                    "closing the connection idle the longest to make room"
                );
                a.close.cancel();
            }
        }
        let activity = Arc::new(Activity {
            busy: AtomicUsize::new(0),
            last_ms: AtomicU64::new(ms_since(self.clock)),
            close: CancellationToken::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        conns.insert(id, activity.clone());
        // Only an admitted connection makes a host's entry: refused hosts
        // leave nothing behind.
        let share = hosts.entry(host).or_insert_with(|| HostShare {
            connections: 0,
            requests: Arc::new(Semaphore::new(self.shares.max_requests_per_host)),
        });
        share.connections += 1;
        Ok(Ticket {
            budget: self.clone(),
            service,
            id,
            host,
            activity,
            host_requests: share.requests.clone(),
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let budget = &self.budget;
        let mut hosts = budget.hosts.lock();
        // Absent when it was evicted: its place went to the newcomer.
        budget.table(self.service).conns.lock().remove(&self.id);
        if let Some(share) = hosts.get_mut(&self.host) {
            share.connections = share.connections.saturating_sub(1);
            if share.connections == 0 {
                hosts.remove(&self.host);
            }
        }
    }
}

impl Ticket {
    /// Resolves when the budget closes this connection (evicted).
    pub(crate) async fn closed(&self) {
        self.activity.close.cancelled().await;
    }

    /// Marks a record started: the connection is busy from here until the
    /// returned mark is dropped.
    pub(crate) fn started(&self) -> InProgress {
        self.activity.busy.fetch_add(1, Ordering::AcqRel);
        self.activity.touch(self.budget.clock);
        InProgress {
            host_permit: None,
            service_permit: None,
            activity: self.activity.clone(),
            clock: self.budget.clock,
        }
    }

    /// Takes the host's and then the service's request permit for a whole
    /// record; false once the service is gone.
    pub(crate) async fn permits(&self, mark: &mut InProgress) -> bool {
        let Ok(host) = self.host_requests.clone().acquire_owned().await else {
            return false;
        };
        let service = self.budget.request_slots.clone().acquire_owned().await;
        let Ok(service) = service else {
            return false;
        };
        mark.host_permit = Some(host);
        mark.service_permit = Some(service);
        true
    }

    /// Resolves once the connection has had nothing in progress and sent
    /// nothing for the idle timeout.
    pub(crate) async fn idle(&self) {
        let timeout_ms = self.budget.shares.idle_timeout_ms;
        let a = &self.activity;
        loop {
            // Busy: nothing to count yet; look again a timeout later.
            let quiet_ms = if a.busy.load(Ordering::Acquire) > 0 {
                0
            } else {
                ms_since(self.budget.clock).saturating_sub(a.last_ms.load(Ordering::Acquire))
            };
            if quiet_ms >= timeout_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis(timeout_ms - quiet_ms)).await;
        }
    }
}

impl Activity {
    fn touch(&self, clock: Instant) {
        self.last_ms.store(ms_since(clock), Ordering::Release);
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.activity.busy.fetch_sub(1, Ordering::AcqRel);
        self.activity.touch(self.clock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(shares: Shares, max_nfs: usize) -> Arc<Budget> {
        Arc::new(Budget::new(shares, max_nfs, 8))
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_host_past_its_share_is_refused_and_others_are_not() {
        let shares = Shares {
            max_connections_per_host: 2,
            ..Shares::default()
        };
        let b = budget(shares, 10);
        let _a1 = b.admit(Service::Nfs, A).unwrap();
        let a2 = b.admit(Service::Mount, A).unwrap();
        assert_eq!(b.admit(Service::Nfs, A).err(), Some(Refusal::HostFull));
        let _b1 = b.admit(Service::Nfs, B).unwrap();
        drop(a2);
        assert!(b.admit(Service::Nfs, A).is_ok());
    }

    #[test]
    fn a_full_port_evicts_the_longest_idle_and_never_a_busy_one() {
        let b = budget(Shares::default(), 2);
        let first = b.admit(Service::Nfs, A).unwrap();
        let second = b.admit(Service::Nfs, B).unwrap();
        let busy = first.started();
        // The other ports have a budget of their own.
        let _mount = b.admit(Service::Mount, A).unwrap();
        let third = b.admit(Service::Nfs, B).unwrap();
        assert!(second.activity.close.is_cancelled(), "the idle one goes");
        assert!(!first.activity.close.is_cancelled(), "the busy one stays");
        // Now both left are busy: a newcomer is refused.
        let _busy_third = third.started();
        assert_eq!(b.admit(Service::Nfs, A).err(), Some(Refusal::AllBusy));
        drop(busy);
        let _fourth = b.admit(Service::Nfs, A).unwrap();
        assert!(first.activity.close.is_cancelled(), "idle now, so it goes");
        // An evicted connection ending gives back nothing it no longer held.
        drop(second);
        drop(first);
        assert_eq!(b.nfs.conns.lock().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_resolves_only_after_the_timeout_with_nothing_in_progress() {
        let shares = Shares {
            idle_timeout_ms: 1000,
            ..Shares::default()
        };
        let b = budget(shares, 4);
        let t = b.admit(Service::Nfs, A).unwrap();
        let mark = t.started();
        let idle = tokio::time::timeout(Duration::from_secs(5), t.idle()).await;
        assert!(idle.is_err(), "busy for 5 s, yet idle");
        drop(mark);
        let idle = tokio::time::timeout(Duration::from_secs(5), t.idle()).await;
        assert!(idle.is_ok(), "quiet past the timeout, yet not idle");
    }
}
