//! What fsck checks in the lock state: every lock and reservation names a
//! file that exists, no two owners hold conflicting locks or reservations,
//! each owner's pieces are as the lock arithmetic leaves them, and the
//! derived counts agree with the table.

use std::collections::BTreeMap;

use super::{range, LockState};
use crate::state::Inode;
use crate::types::Ino;

impl LockState {
    pub fn problems(&self, inodes: &BTreeMap<Ino, Inode>) -> Vec<String> {
        let mut out = Vec::new();
        for (&ino, owners) in &self.files {
            if !inodes.contains_key(&ino) {
                out.push(format!("locks held on missing inode {ino}"));
            }
            if owners.is_empty() {
                out.push(format!("inode {ino}: empty lock list kept"));
            }
            for (owner, pieces) in owners {
                if pieces.is_empty() || !range::is_canonical(pieces) {
                    out.push(format!(
                        "inode {ino}: locks of {:?} (svid {}) overlap or are not merged",
                        owner.host, owner.svid
                    ));
                }
                for p in pieces {
                    if let Some(h) = self.conflict(ino, owner, p.range, p.exclusive) {
                        out.push(format!(
                            "inode {ino}: locks of {:?} and {:?} conflict",
                            owner.host, h.owner.host
                        ));
                    }
                }
            }
        }
        for (&ino, shares) in &self.shares {
            if !inodes.contains_key(&ino) {
                out.push(format!("share reservation on missing inode {ino}"));
            }
            for (owner, mode) in shares {
                if !mode.is_valid() || self.share_conflict(ino, owner, *mode) {
                    out.push(format!(
                        "inode {ino}: share reservation of {:?} is invalid or conflicts",
                        owner.host
                    ));
                }
            }
        }
        for (host, m) in &self.monitored {
            if m.regs.is_empty() {
                out.push(format!("monitored host {host:?} has no registration"));
            }
        }
        let mut recounted = self.clone();
        recounted.recount();
        if recounted.pieces != self.pieces
            || recounted.pieces_by_host != self.pieces_by_host
            || recounted.share_count != self.share_count
        {
            out.push("lock counts disagree with the lock table".into());
        }
        out
    }
}
