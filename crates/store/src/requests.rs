//! Which client requests produced the most recent records, kept in the
//! state itself so it is checkpointed, replayed and (later) replicated like
//! everything else. A client that never got its reply (connection lost, or
//! the server restarted or failed over) resends the same request with the
//! same xid; if it was already carried out, re-running a non-idempotent
//! operation would fail it falsely (REMOVE says "no such file", CREATE
//! GUARDED says "exists"). Instead the store answers it from what it did.
//!
//! A request matches only if the client identity, the xid and a
//! fingerprint of the operation's target all match, so an xid reused for a
//! different request is never mistaken for a retransmission. The identity
//! is what a client keeps when it resends: its address and AUTH_SYS
//! machine name, never the source port (a client reconnecting after a
//! failover comes from a new port, see nfs3/common.rs `client_identity`).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::record::Op;
use crate::types::{Ino, Lsn, ReqId};

/// Requests remembered; the oldest is forgotten first (deterministically,
/// so every site forgets the same ones).
pub const MAX_REMEMBERED_REQUESTS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    pub lsn: Lsn,
    pub fingerprint: u32,
    /// The inode the request created or linked, if any.
    pub ino: Option<Ino>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestLog {
    by_request: BTreeMap<(String, u32), Remembered>,
    order: VecDeque<(String, u32)>,
}

impl RequestLog {
    pub fn remember(&mut self, req: &ReqId, lsn: Lsn, op: &Op) {
        let Some(fingerprint) = fingerprint_of(op) else {
            return;
        };
        let key = (req.client.clone(), req.xid);
        let ino = match op {
            Op::Create { inode, .. } => Some(inode.attr.ino),
            Op::Link { ino, .. } => Some(*ino),
            _ => None,
        };
        let entry = Remembered {
            lsn,
            fingerprint,
            ino,
        };
        if self.by_request.insert(key.clone(), entry).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > MAX_REMEMBERED_REQUESTS {
            if let Some(old) = self.order.pop_front() {
                self.by_request.remove(&old);
            }
        }
    }

    /// What was done for this request, if it is a retransmission of one
    /// with the same fingerprint.
    pub fn recall(&self, req: &ReqId, fingerprint: u32) -> Option<Remembered> {
        self.by_request
            .get(&(req.client.clone(), req.xid))
            .filter(|r| r.fingerprint == fingerprint)
            .copied()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The operations whose retransmission must not run twice, and what
/// identifies their target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create = 1,
    Unlink = 2,
    Rename = 3,
    Link = 4,
}

pub fn fingerprint(kind: Kind, a: Ino, a_name: &[u8], b: Ino, b_name: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(&[kind as u8]);
    for part in [&a.to_le_bytes()[..], a_name, &b.to_le_bytes()[..], b_name] {
        crc = crc32c::crc32c_append(crc, &(part.len() as u32).to_le_bytes());
        crc = crc32c::crc32c_append(crc, part);
    }
    crc
}

fn fingerprint_of(op: &Op) -> Option<u32> {
    Some(match op {
        Op::Create { dir, name, .. } => fingerprint(Kind::Create, *dir, name, 0, b""),
        Op::Unlink { dir, name, .. } => fingerprint(Kind::Unlink, *dir, name, 0, b""),
        Op::Rename {
            from_dir,
            from_name,
            to_dir,
            to_name,
            ..
        } => fingerprint(Kind::Rename, *from_dir, from_name, *to_dir, to_name),
        Op::Link { ino, dir, name, .. } => fingerprint(Kind::Link, *dir, name, *ino, b""),
        _ => return None,
    })
}
