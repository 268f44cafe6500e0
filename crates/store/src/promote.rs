//! Promotion (failover step "promote"): a replica becomes the vserver's
//! active copy. Everything it received is applied already (a replica
//! applies each batch before acknowledging it), so promotion checks that,
//! stops taking replicated frames, raises the epoch with a journal record
//! (it replicates onwards and survives a restart), drops the replica mark
//! durably and starts a new write verifier, so clients resend what they
//! had not committed.
//!
//! Each part is idempotent: a failover that crashed half-way reruns it
//! with the same target epoch and finishes what is missing.

use std::sync::atomic::Ordering;

use crate::data::sync_dir;
use crate::error::{Result, StoreError};
use crate::record::Op;
use crate::replica::ROLE_FILE;
use crate::store::Store;
use crate::types::Lsn;

/// What a promotion found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promoted {
    /// The store's epoch now (the target).
    pub epoch: u64,
    /// Last LSN: every record received is applied up to here.
    pub lsn: Lsn,
    /// Whether this call wrote the epoch record (false: an earlier,
    /// interrupted run had).
    pub raised: bool,
}

impl Store {
    /// Makes this replica the active copy at `target_epoch`, which must be
    /// its epoch + 1, or its epoch already: that is taken as a rerun whose
    /// epoch record is in (the caller keeps the target in its FAILOVER
    /// mark, so a rerun asks for the same one). Blocks (journal sync and
    /// fsyncs): call from a blocking context.
    pub fn promote(&self, target_epoch: u64) -> Result<Promoted> {
        if let Some(theirs) = self.fence.epoch() {
            return Err(StoreError::Fenced {
                ours: self.epoch(),
                theirs,
            });
        }
        // No batch runs while this does, and none starts after (it finds
        // the store no longer a replica).
        let _one = self.replication.applying.lock();
        if let Some(why) = self.replication.failed.lock().as_ref() {
            return Err(StoreError::Replication(format!(
                "cannot promote: the replica stopped after a batch failed to apply: {why}"
            )));
        }
        let (raised, lsn) = {
            let mut st = self.write_state();
            let durable = self.durable_lsn();
            // A replica makes each batch durable before applying it; an
            // already promoted store (a rerun) may hold newer client writes.
            if self.is_replica() && durable < st.lsn {
                return Err(StoreError::Replication(format!(
                    "cannot promote: records up to LSN {} applied but only {durable} durable",
                    st.lsn
                )));
            }
            if st.epoch > target_epoch {
                return Err(StoreError::Inval(format!(
                    "cannot promote to epoch {target_epoch}: the store is at epoch {} already",
                    st.epoch
                )));
            }
            if st.epoch == target_epoch {
                (false, st.lsn)
            } else if st.epoch + 1 != target_epoch {
                return Err(StoreError::Inval(format!(
                    "cannot promote to epoch {target_epoch}: the store is at epoch {}; a promotion raises it by one",
                    st.epoch
                )));
            } else {
                // Before the record: a resync of the old active site
                // needs where this epoch began and what changed since.
                self.begin_epoch(target_epoch, st.lsn)?;
                let old = st.epoch;
                self.replication.replica.store(false, Ordering::Release);
                st.epoch = target_epoch;
                match self.commit(
                    &mut st,
                    None,
                    Op::EpochRaised {
                        epoch: target_epoch,
                    },
                ) {
                    Ok(lsn) => (true, lsn),
                    Err(e) => {
                        st.epoch = old;
                        self.replication.replica.store(true, Ordering::Release);
                        return Err(e);
                    }
                }
            }
        };
        self.replication.replica.store(false, Ordering::Release);
        self.wait_durable_blocking(lsn)?;
        // After the epoch record is durable: a crash in between leaves a
        // replica at the new epoch, which a rerun promotes without a
        // second record.
        let role = self.dir.join(ROLE_FILE);
        match std::fs::remove_file(&role) {
            Ok(()) => sync_dir(&self.dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&role, e)),
        }
        self.verifier.store(rand::random(), Ordering::Release);
        tracing::info!(dir = %self.dir.display(), epoch = target_epoch, lsn, raised, "store promoted: active, writable");
        Ok(Promoted {
            epoch: target_epoch,
            lsn,
            raised,
        })
    }
}
