//! Demotion (switchover, at the active site): the store stops taking local
//! changes at once and becomes, durably, a replica of the site it hands
//! the vserver to. The flag is set under the state lock, so the LSN it
//! returns is the last one this site will ever write at this epoch; that
//! LSN is made durable before the ROLE mark is written, so the peer can be
//! told to promote at exactly it.
//!
//! Until the peer is asked to promote, the demotion can be undone
//! (`undo_demote`): nothing was written but the mark.

use std::sync::atomic::Ordering;

use crate::data::sync_dir;
use crate::error::{Result, StoreError};
use crate::replica::{ROLE_FILE, ROLE_REPLICA};
use crate::store::Store;
use crate::types::Lsn;

/// What a demotion left: the epoch and the last LSN, durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demoted {
    pub epoch: u64,
    pub lsn: Lsn,
}

impl Store {
    /// Makes this active store a replica: local changes are refused from
    /// the moment this takes the state lock; the last LSN is made durable
    /// and the ROLE mark written (a restart opens it as a replica). Blocks
    /// (journal sync, fsyncs): call from a blocking context.
    pub fn demote(&self) -> Result<Demoted> {
        if let Some(theirs) = self.fence.epoch() {
            return Err(StoreError::Fenced {
                ours: self.epoch(),
                theirs,
            });
        }
        let (epoch, lsn) = {
            let st = self.write_state();
            if self.is_replica() {
                return Err(StoreError::Inval(
                    "cannot demote: the store is a replica already".into(),
                ));
            }
            self.replication.replica.store(true, Ordering::Release);
            (st.epoch, st.lsn)
        };
        if let Err(e) = self
            .wait_durable_blocking(lsn)
            .and_then(|()| self.write_role_mark())
        {
            self.replication.replica.store(false, Ordering::Release);
            return Err(e);
        }
        tracing::warn!(dir = %self.dir.display(), epoch, lsn, "store demoted: a replica now, local changes refused");
        Ok(Demoted { epoch, lsn })
    }

    /// Takes back a demotion whose peer was never asked to promote: the
    /// mark goes (durably), then local changes are taken again.
    pub fn undo_demote(&self) -> Result<()> {
        let role = self.dir.join(ROLE_FILE);
        match std::fs::remove_file(&role) {
            Ok(()) => sync_dir(&self.dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&role, e)),
        }
        self.replication.replica.store(false, Ordering::Release);
        tracing::warn!(dir = %self.dir.display(), "store demotion undone: active again");
        Ok(())
    }

    fn write_role_mark(&self) -> Result<()> {
        crate::data::write_atomically(&self.dir, ROLE_FILE, ROLE_REPLICA.as_bytes())
    }
}
