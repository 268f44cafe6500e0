//! Replies of recent lock-changing calls, so a retransmission (same
//! client, same xid, same procedure) gets the reply the first call got
//! rather than a second run: a LOCK retransmitted after the client's own
//! UNLOCK must not take the lock again. In memory and bounded; after a
//! restart or failover the calls' idempotence covers most retransmissions.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};

use crate::dispatch::Call;
use crate::nfs3::common::client_identity;

type Key = (String, u32, u32);
/// Replies by call, and the calls oldest first.
type Entries = (HashMap<Key, Vec<u8>>, VecDeque<Key>);

pub(crate) struct ReplyCache {
    max_entries: usize,
    inner: Mutex<Entries>,
}

fn key(call: &Call) -> Key {
    (client_identity(call), call.xid, call.proc_num)
}

impl ReplyCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        ReplyCache {
            max_entries,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    pub(crate) fn recall(&self, call: &Call) -> Option<Vec<u8>> {
        let inner = self.inner.lock();
        inner.0.get(&key(call)).cloned()
    }

    pub(crate) fn remember(&self, call: &Call, reply: Vec<u8>) {
        let mut inner = self.inner.lock();
        let (map, order) = &mut *inner;
        let k = key(call);
        if map.insert(k.clone(), reply).is_none() {
            order.push_back(k);
        }
        while order.len() > self.max_entries {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}
