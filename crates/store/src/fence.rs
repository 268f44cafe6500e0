//! Fencing ("One writer per epoch", docs/design.md). A site that learns that
//! another holds a higher epoch for this vserver (it was promoted) stops
//! taking changes at once, and durably: the mark survives a restart, so a
//! restarted old active site cannot take writes again before it talks to
//! anyone. Only failback/resync (a later issue) clears it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, StoreError};
use crate::store::Store;

pub const FENCE_FILE: &str = "FENCED";

/// The higher epoch this store was fenced by, if any (0 = not fenced).
#[derive(Debug, Default)]
pub(crate) struct Fence(AtomicU64);

impl Fence {
    pub(crate) fn load(dir: &Path) -> Result<Fence> {
        let path = dir.join(FENCE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let epoch = text.trim().parse::<u64>().map_err(|_| {
                    StoreError::Corrupt(format!("{}: not an epoch: {text:?}", path.display()))
                })?;
                Ok(Fence(AtomicU64::new(epoch)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Fence::default()),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// At open, once the state is known: a fence the store's own epoch
    /// has reached fences nothing (a fenced store cannot raise its epoch;
    /// only a resync's install gives it the promoted site's), so it is
    /// removed. This finishes a resync interrupted after its install.
    pub(crate) fn outgrown(self, dir: &Path, epoch: u64) -> Result<Fence> {
        match self.epoch() {
            Some(theirs) if theirs <= epoch => {
                crate::resync::clear_fence(dir)?;
                tracing::info!(dir = %dir.display(), theirs, epoch, "fence outgrown (a resync installed the promoted state): removed");
                Ok(Fence::default())
            }
            _ => Ok(self),
        }
    }

    pub(crate) fn epoch(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            e => Some(e),
        }
    }
}

impl Store {
    /// Stops this store from taking changes because `theirs` > our epoch
    /// is held elsewhere. Durable before it returns.
    pub fn fence(&self, theirs: u64) -> Result<()> {
        let ours = self.epoch();
        if theirs <= ours {
            return Err(StoreError::Inval(format!(
                "epoch {theirs} does not fence a store at epoch {ours}"
            )));
        }
        if self.fence.epoch().is_some_and(|e| e >= theirs) {
            return Ok(());
        }
        crate::data::write_atomically(&self.dir, FENCE_FILE, format!("{theirs}\n").as_bytes())?;
        self.fence.0.store(theirs, Ordering::Release);
        tracing::error!(ours, theirs, dir = %self.dir.display(), "store fenced: another site holds a higher epoch; changes refused");
        Ok(())
    }

    /// The epoch that fenced this store, if it is fenced.
    pub fn fenced_by(&self) -> Option<u64> {
        self.fence.epoch()
    }
}
