//! The lock operations of a vserver's store. Each checks its arguments and
//! limits, decides the outcome under the state lock, and journals a record
//! only for a change; a conflict or a refusal writes nothing. None of them
//! waits for another lock.

use super::*;
use crate::record::Op;
use crate::store::Store;
use crate::types::Lsn;

/// What a LOCK came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// Held now; the LSN of the record, `None` if the owner held exactly
    /// that already (nothing written).
    Granted(Option<Lsn>),
    /// Another owner's lock stands in the way.
    Denied(Holder),
}

/// What a SHARE came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareOutcome {
    Granted(Option<Lsn>),
    Denied,
}

fn check_host(host: &str) -> Result<()> {
    if host.is_empty() {
        return Err(StoreError::Inval("empty host name".into()));
    }
    if host.len() > MAX_LOCK_HOST_BYTES {
        return Err(StoreError::NameTooLong {
            max_bytes: MAX_LOCK_HOST_BYTES,
        });
    }
    Ok(())
}

fn check_handle(oh: &[u8]) -> Result<()> {
    if oh.len() > MAX_OWNER_HANDLE_BYTES {
        return Err(StoreError::Inval(format!(
            "owner handle of {} bytes (at most {MAX_OWNER_HANDLE_BYTES})",
            oh.len()
        )));
    }
    Ok(())
}

fn check_owner(owner: &LockOwner) -> Result<()> {
    check_host(&owner.host)?;
    check_handle(&owner.oh)
}

fn check_range(range: ByteRange) -> Result<()> {
    if !range.is_valid() {
        return Err(StoreError::Inval(format!(
            "byte range {}..={} is empty",
            range.start, range.end
        )));
    }
    Ok(())
}

fn too_many(what: &'static str, max: usize) -> StoreError {
    StoreError::TooManyLocks { what, max }
}

impl Store {
    /// LOCK: grants `range` of `ino` to `owner` (shared or exclusive) or
    /// names the holder in the way. The owner's own locks never conflict:
    /// they are replaced (upgrade, downgrade, split) and merged.
    pub fn lock(
        &self,
        ino: Ino,
        owner: &LockOwner,
        range: ByteRange,
        exclusive: bool,
    ) -> Result<LockOutcome> {
        check_owner(owner)?;
        check_range(range)?;
        let mut st = self.write_state();
        st.inode(ino)?;
        if let Some(holder) = st.locks.conflict(ino, owner, range, exclusive) {
            return Ok(LockOutcome::Denied(holder));
        }
        let after = st.locks.pieces_after_lock(ino, owner, range, exclusive);
        let before = st
            .locks
            .locks_of_file(ino)
            .and_then(|o| o.get(owner))
            .map_or(&[][..], Vec::as_slice);
        if after == before {
            return Ok(LockOutcome::Granted(None));
        }
        let growth = after.len().saturating_sub(before.len());
        if st.locks.lock_count() + growth > MAX_LOCKS_PER_VSERVER {
            return Err(too_many("locks in this vserver", MAX_LOCKS_PER_VSERVER));
        }
        if st.locks.host_lock_count(&owner.host) + growth > MAX_LOCKS_PER_HOST {
            return Err(too_many("locks of one client host", MAX_LOCKS_PER_HOST));
        }
        let op = Op::LockGranted {
            ino,
            owner: owner.clone(),
            range,
            exclusive,
        };
        self.commit(&mut st, None, op)
            .map(|lsn| LockOutcome::Granted(Some(lsn)))
    }

    /// TEST: the lock in the way of such a LOCK, if any. Writes nothing.
    pub fn test_lock(
        &self,
        ino: Ino,
        owner: &LockOwner,
        range: ByteRange,
        exclusive: bool,
    ) -> Result<Option<Holder>> {
        check_owner(owner)?;
        check_range(range)?;
        let st = self.read_state();
        st.inode(ino)?;
        Ok(st.locks.conflict(ino, owner, range, exclusive))
    }

    /// UNLOCK: releases `range` of `owner`'s locks on `ino` (a part of a
    /// lock splits it). `None` if the owner held nothing there. A file that
    /// is gone holds no locks, so unlocking it is no error.
    pub fn unlock(&self, ino: Ino, owner: &LockOwner, range: ByteRange) -> Result<Option<Lsn>> {
        check_owner(owner)?;
        check_range(range)?;
        let mut st = self.write_state();
        let before = st
            .locks
            .locks_of_file(ino)
            .and_then(|o| o.get(owner))
            .map_or(&[][..], Vec::as_slice);
        if st.locks.pieces_after_unlock(ino, owner, range) == before {
            return Ok(None);
        }
        let op = Op::LockReleased {
            ino,
            owner: owner.clone(),
            range,
        };
        self.commit(&mut st, None, op).map(Some)
    }

    /// FREE_ALL: drops every lock and share reservation of `host`; `None`
    /// if it held none.
    pub fn free_host_locks(&self, host: &str) -> Result<Option<Lsn>> {
        check_host(host)?;
        let mut st = self.write_state();
        if !st.locks.holds_anything(host) {
            return Ok(None);
        }
        let op = Op::HostLocksFreed {
            host: host.to_owned(),
        };
        self.commit(&mut st, None, op).map(Some)
    }

    /// SM_NOTIFY: `host` restarted with NSM state `state`; its locks and
    /// reservations are gone. `None` if that changed nothing.
    pub fn host_rebooted(&self, host: &str, state: u32) -> Result<Option<Lsn>> {
        check_host(host)?;
        let mut st = self.write_state();
        let known = st.locks.monitored().get(host).map(|m| m.state);
        if !st.locks.holds_anything(host) && known.is_none_or(|s| s == state) {
            return Ok(None);
        }
        let op = Op::HostRebooted {
            host: host.to_owned(),
            state,
        };
        self.commit(&mut st, None, op).map(Some)
    }

    /// SHARE: reserves `mode` on `ino` for `owner` (replacing the owner's
    /// previous reservation there), or `Denied` if another owner's
    /// reservation conflicts.
    pub fn share(&self, ino: Ino, owner: &ShareOwner, mode: ShareMode) -> Result<ShareOutcome> {
        check_host(&owner.host)?;
        check_handle(&owner.oh)?;
        if !mode.is_valid() {
            return Err(StoreError::Inval(format!("share mode {mode:?}")));
        }
        let mut st = self.write_state();
        st.inode(ino)?;
        if st.locks.share_conflict(ino, owner, mode) {
            return Ok(ShareOutcome::Denied);
        }
        match st.locks.share_of(ino, owner) {
            Some(m) if m == mode => return Ok(ShareOutcome::Granted(None)),
            Some(_) => {}
            None if st.locks.share_count() >= MAX_SHARES_PER_VSERVER => {
                return Err(too_many(
                    "share reservations in this vserver",
                    MAX_SHARES_PER_VSERVER,
                ))
            }
            None => {}
        }
        let op = Op::ShareGranted {
            ino,
            owner: owner.clone(),
            mode,
        };
        self.commit(&mut st, None, op)
            .map(|lsn| ShareOutcome::Granted(Some(lsn)))
    }

    /// UNSHARE: `None` if the owner held no reservation on `ino`.
    pub fn unshare(&self, ino: Ino, owner: &ShareOwner) -> Result<Option<Lsn>> {
        check_host(&owner.host)?;
        check_handle(&owner.oh)?;
        let mut st = self.write_state();
        if st.locks.share_of(ino, owner).is_none() {
            return Ok(None);
        }
        let op = Op::ShareReleased {
            ino,
            owner: owner.clone(),
        };
        self.commit(&mut st, None, op).map(Some)
    }

    /// SM_MON: `id` wants to hear when `host` reboots.
    pub fn monitor(&self, host: &str, id: &MonitorId, private: [u8; 16]) -> Result<Option<Lsn>> {
        check_host(host)?;
        check_host(&id.my_name)?;
        let mut st = self.write_state();
        let existing = st.locks.monitored().get(host);
        if existing.and_then(|m| m.regs.get(id)) == Some(&private) {
            return Ok(None);
        }
        match existing {
            None if st.locks.monitored().len() >= MAX_MONITORED_HOSTS => {
                return Err(too_many("monitored hosts", MAX_MONITORED_HOSTS))
            }
            Some(m) if !m.regs.contains_key(id) && m.regs.len() >= MAX_MONITORS_PER_HOST => {
                return Err(too_many(
                    "monitor registrations of one host",
                    MAX_MONITORS_PER_HOST,
                ))
            }
            _ => {}
        }
        let op = Op::HostMonitored {
            host: host.to_owned(),
            id: id.clone(),
            private,
        };
        self.commit(&mut st, None, op).map(Some)
    }

    /// SM_UNMON (`Some(host)`) or SM_UNMON_ALL (`None`); `None` back if no
    /// such registration existed.
    pub fn unmonitor(&self, host: Option<&str>, id: &MonitorId) -> Result<Option<Lsn>> {
        if let Some(h) = host {
            check_host(h)?;
        }
        check_host(&id.my_name)?;
        let mut st = self.write_state();
        let registered = st
            .locks
            .monitored()
            .iter()
            .any(|(name, m)| host.is_none_or(|h| h == name) && m.regs.contains_key(id));
        if !registered {
            return Ok(None);
        }
        let op = Op::HostUnmonitored {
            host: host.map(str::to_owned),
            id: id.clone(),
        };
        self.commit(&mut st, None, op).map(Some)
    }

    /// A copy of the lock state (tests, status, the protocol layer's
    /// waiters).
    pub fn lock_state(&self) -> LockState {
        self.read_state().locks.clone()
    }

    /// Runs `f` on the lock state under the read lock, without a copy.
    pub fn with_lock_state<T>(&self, f: impl FnOnce(&LockState) -> T) -> T {
        f(&self.read_state().locks)
    }
}
