//! Resync: a former active site that was cut off while another site was
//! promoted (it is `diverged`: fenced, with records the other site never
//! received) is rewound to the promoted site's state without a full copy.
//!
//! * **Shared LSN.** A promotion writes, before its `EpochRaised` record,
//!   the entry (new epoch, first LSN of it) to `EPOCHS` (formats.md). The
//!   old active site at epoch e shared every LSN up to S = first LSN of
//!   e + 1, minus one: the promoted site had received up to S and nothing
//!   of what the old site wrote after it.
//! * **What the promoted site changed since S.** The same promotion starts
//!   the overflow change map (overflow.rs) from S, as if the old active
//!   site were a replica in journal overflow: every range written since S
//!   is remembered (persisted in `OVERFLOW`), without keeping the journal.
//! * **What the old site changed since S**: its own journal after S (it
//!   kept it for its replica), decoded into ranges (`divergent`), plus the
//!   inodes it no longer has (a removal after S: the whole file is needed).
//! * The rewind is a catch-up (`resync_begin`, then the catch-up install at
//!   the old site) whose ranges are the union of both. It is exact by the
//!   catch-up's argument: a byte neither side set after S has its value at
//!   S on both sides; every other byte is sent. The old site's data file
//!   of an inode it lacks is absent (it removed it, or never had it), so
//!   such inodes are sent whole.

use std::path::Path;

use crate::data::write_atomically;
use crate::error::{Result, StoreError};
use crate::overflow::ChangeMap;
use crate::record::Op;
use crate::state::{Body, State};
use crate::store::Store;
use crate::types::{FileType, Ino, Lsn};

/// Epoch history of promotions made at this site (see the module doc).
pub const EPOCHS_FILE: &str = "EPOCHS";
/// Entries kept in `EPOCHS` (the oldest go first): a few promotions a year.
pub const MAX_EPOCH_ENTRIES: usize = 1024;
/// Divergent records a resync reads from the old site's journal.
pub const MAX_DIVERGENT_RECORDS: usize = 1_000_000;

/// One line of `EPOCHS`: `epoch` began with the record at `first_lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochStart {
    pub epoch: u64,
    pub first_lsn: Lsn,
}

/// The history in `dir` (empty if the file is absent).
pub fn epoch_history(dir: &Path) -> Result<Vec<EpochStart>> {
    let path = dir.join(EPOCHS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let bad = |why: String| StoreError::Corrupt(format!("{}: {why}", path.display()));
    let mut out = Vec::new();
    for line in text.lines() {
        let mut w = line.split(' ');
        let (Some(e), Some(l), None) = (w.next(), w.next(), w.next()) else {
            return Err(bad(format!("bad line {line:?}")));
        };
        let (Ok(epoch), Ok(first_lsn)) = (e.parse(), l.parse()) else {
            return Err(bad(format!("bad line {line:?}")));
        };
        if out.len() >= MAX_EPOCH_ENTRIES {
            return Err(bad("too many entries".into()));
        }
        out.push(EpochStart { epoch, first_lsn });
    }
    Ok(out)
}

/// Records that `epoch` begins at `first_lsn` (replacing an entry of the
/// same epoch: a promotion rerun), durably.
pub(crate) fn record_epoch_start(dir: &Path, epoch: u64, first_lsn: Lsn) -> Result<()> {
    let mut h = epoch_history(dir)?;
    h.retain(|e| e.epoch < epoch);
    h.push(EpochStart { epoch, first_lsn });
    let skip = h.len().saturating_sub(MAX_EPOCH_ENTRIES);
    let text: String = h[skip..]
        .iter()
        .map(|e| format!("{} {}\n", e.epoch, e.first_lsn))
        .collect();
    write_atomically(dir, EPOCHS_FILE, text.as_bytes())
}

/// The shared LSN of a site that stayed at `old_epoch` with this one,
/// if this site's history says where `old_epoch + 1` began.
pub fn shared_lsn_in(history: &[EpochStart], old_epoch: u64) -> Option<Lsn> {
    history
        .iter()
        .find(|e| Some(e.epoch) == old_epoch.checked_add(1))
        .map(|e| e.first_lsn.saturating_sub(1))
}

/// What `resync_begin` sends, with the figures for the report.
#[derive(Debug, Clone)]
pub struct ResyncSnapshot {
    pub catchup: crate::overflow::CatchupSnapshot,
    /// Bytes this site changed since the shared LSN (clipped at X).
    pub own_changed_bytes: u64,
    /// Bytes the old site's divergent records touched (clipped at X).
    pub divergent_bytes: u64,
}

/// One record the old site wrote after the shared LSN, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DivergentRecord {
    pub lsn: Lsn,
    pub op: &'static str,
    /// The inode the record changed, if it names one.
    pub ino: Option<Ino>,
    /// (directory, name) the record linked or unlinked, if any; a rename
    /// gives its source here and its target in `to`.
    pub entry: Option<(Ino, Vec<u8>)>,
    pub to: Option<(Ino, Vec<u8>)>,
    /// Byte range [start, end) of file data it set (end u64::MAX: to the
    /// end of the file).
    pub range: Option<(u64, u64)>,
}

/// What the old site changed after the shared LSN.
#[derive(Debug, Clone, Default)]
pub struct Divergence {
    pub shared_lsn: Lsn,
    pub records: Vec<DivergentRecord>,
    /// The ranges its records set.
    pub ranges: ChangeMap,
    /// Inode numbers present in its state now, as inclusive runs.
    pub present: Vec<(Ino, Ino)>,
}

fn summarize(lsn: Lsn, op: &Op) -> DivergentRecord {
    let mut r = DivergentRecord {
        lsn,
        op: op.kind(),
        ino: None,
        entry: None,
        to: None,
        range: None,
    };
    match op {
        Op::Write {
            ino, offset, data, ..
        } => {
            r.ino = Some(*ino);
            r.range = Some((*offset, offset.saturating_add(data.len() as u64)));
        }
        Op::SetAttr { ino, attr } => {
            r.ino = Some(*ino);
            if attr.ftype == FileType::Regular {
                r.range = Some((attr.size, u64::MAX));
            }
        }
        Op::Create {
            dir, name, inode, ..
        } => {
            r.ino = Some(inode.attr.ino);
            r.entry = Some((*dir, name.clone()));
        }
        Op::Unlink { dir, name, .. } => r.entry = Some((*dir, name.clone())),
        Op::Rename {
            from_dir,
            from_name,
            to_dir,
            to_name,
            ..
        } => {
            r.entry = Some((*from_dir, from_name.clone()));
            r.to = Some((*to_dir, to_name.clone()));
        }
        Op::Link { ino, dir, name, .. } => {
            r.ino = Some(*ino);
            r.entry = Some((*dir, name.clone()));
        }
        _ => {}
    }
    r
}

/// Inode numbers of `state` as inclusive runs, ascending.
pub fn present_runs(state: &State) -> Vec<(Ino, Ino)> {
    let mut runs: Vec<(Ino, Ino)> = Vec::new();
    for &ino in state.inodes.keys() {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(ino) => *last = ino,
            _ => runs.push((ino, ino)),
        }
    }
    runs
}

fn in_runs(runs: &[(Ino, Ino)], ino: Ino) -> bool {
    let i = runs.partition_point(|&(_, last)| last < ino);
    runs.get(i).is_some_and(|&(first, _)| first <= ino)
}

/// The ranges a resync sends: the promoted site's own changes since S
/// (`own`), the old site's (`theirs`), and every regular file at `state`
/// the old site does not have, whole.
pub fn resync_ranges(
    state: &State,
    own: &ChangeMap,
    theirs: &ChangeMap,
    present: &[(Ino, Ino)],
) -> ChangeMap {
    let mut all = own.clone();
    all.union(theirs);
    for (&ino, inode) in &state.inodes {
        if matches!(inode.body, Body::File { .. }) && !in_runs(present, ino) {
            all.add(ino, 0, u64::MAX);
        }
    }
    all
}

/// Resync, before the install: the closed diverged store is marked a
/// replica, so whatever happens next it never opens writable again. A
/// change map it kept for its former replica (now the promoted site) is
/// dropped: it could only mislead a later catch-up.
pub fn mark_replica(dir: &Path) -> Result<()> {
    remove_synced(&dir.join(crate::overflow::OVERFLOW_FILE))?;
    write_atomically(
        dir,
        crate::replica::ROLE_FILE,
        crate::replica::ROLE_REPLICA.as_bytes(),
    )
}

/// A resync that failed before its install committed: the store is the
/// diverged active copy again (still fenced).
pub fn undo_mark_replica(dir: &Path) -> Result<()> {
    if dir.join(crate::catchup::CATCHUP_FILE).exists() {
        return Ok(());
    }
    remove_synced(&dir.join(crate::replica::ROLE_FILE))
}

/// After the install: the store holds the promoted site's state and epoch,
/// so the fence no longer applies (its replica role keeps it read-only).
pub fn clear_fence(dir: &Path) -> Result<()> {
    remove_synced(&dir.join(crate::fence::FENCE_FILE))
}

fn remove_synced(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => path.parent().map_or(Ok(()), crate::data::sync_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

impl Store {
    /// This site's epoch history (`EPOCHS`).
    pub fn epoch_history(&self) -> Result<Vec<EpochStart>> {
        epoch_history(&self.dir)
    }

    /// Run by `promote` under the state lock, before its `EpochRaised`
    /// record (LSN `last_lsn` + 1): remembers where the epoch begins and
    /// starts the change map from `last_lsn`, the shared LSN.
    pub(crate) fn begin_epoch(&self, epoch: u64, last_lsn: Lsn) -> Result<()> {
        record_epoch_start(&self.dir, epoch, last_lsn + 1)?;
        self.track_changes_from(last_lsn, last_lsn)
    }

    /// At the promoted site: the catch-up that rewinds an old active site
    /// at `old_epoch` that shared `shared_lsn` with this one, given what
    /// it changed since (`theirs`, `present`). Blocks.
    pub fn resync_begin(
        &self,
        old_epoch: u64,
        shared_lsn: Lsn,
        theirs: &ChangeMap,
        present: &[(Ino, Ino)],
    ) -> Result<ResyncSnapshot> {
        if self.is_replica() {
            return Err(StoreError::CatchupUnavailable(
                "the vserver is a replica here, not active".into(),
            ));
        }
        match self.changed_since() {
            Some((since, _)) if since <= shared_lsn => {}
            _ => {
                return Err(StoreError::CatchupUnavailable(format!(
                    "this site no longer knows every change it made since LSN {shared_lsn} \
                     (a replica confirmed a later LSN, which ended its change map); \
                     fall back to a new baseline"
                )))
            }
        }
        let known = shared_lsn_in(&self.epoch_history()?, old_epoch);
        if known != Some(shared_lsn) {
            return Err(StoreError::CatchupUnavailable(format!(
                "this site's epoch history gives shared LSN {known:?} for epoch {old_epoch}, not {shared_lsn}"
            )));
        }
        let mut own_bytes = 0;
        let mut their_bytes = 0;
        let catchup = self.catchup_begin_with(shared_lsn, |state, own| {
            own_bytes = own.clipped_bytes(state);
            let only_theirs = resync_ranges(state, &ChangeMap::default(), theirs, present);
            their_bytes = only_theirs.clipped_bytes(state);
            resync_ranges(state, own, theirs, present)
        })?;
        Ok(ResyncSnapshot {
            catchup,
            own_changed_bytes: own_bytes,
            divergent_bytes: their_bytes,
        })
    }

    /// Reads what this (diverged) store wrote after `shared_lsn`, from its
    /// own journal. Fails if the journal no longer holds it (the old site
    /// then needs a new baseline from the promoted one). Blocks.
    pub fn divergence(&self, shared_lsn: Lsn) -> Result<Divergence> {
        let last = self.last_lsn();
        self.wait_durable_blocking(last)?;
        let oldest = self.oldest_retained_lsn()?;
        if shared_lsn < last && oldest > shared_lsn + 1 {
            return Err(StoreError::Replication(format!(
                "the journal here starts at LSN {oldest}, but the records after the shared LSN \
                 {shared_lsn} are needed; fall back to a new baseline: remove the vserver here \
                 and replicate it from the promoted site"
            )));
        }
        let mut div = Divergence {
            shared_lsn,
            ..Divergence::default()
        };
        crate::journal::scan(&self.dir.join("journal"), shared_lsn, |r| {
            if r.lsn > last {
                return Ok(());
            }
            if div.records.len() >= MAX_DIVERGENT_RECORDS {
                return Err(StoreError::Inval(format!(
                    "more than {MAX_DIVERGENT_RECORDS} divergent records; fall back to a new baseline"
                )));
            }
            crate::overflow::add_record(&mut div.ranges, &r.record);
            div.records.push(summarize(r.lsn, &r.record.op));
            Ok(())
        })?;
        div.present = present_runs(&self.read_state());
        Ok(div)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_round_trips_and_finds_the_shared_lsn() {
        let dir = tempfile::tempdir().unwrap();
        assert!(epoch_history(dir.path()).unwrap().is_empty());
        record_epoch_start(dir.path(), 2, 41).unwrap();
        record_epoch_start(dir.path(), 3, 90).unwrap();
        // A rerun of the promotion to 3 replaces its entry.
        record_epoch_start(dir.path(), 3, 90).unwrap();
        let h = epoch_history(dir.path()).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(shared_lsn_in(&h, 1), Some(40));
        assert_eq!(shared_lsn_in(&h, 2), Some(89));
        assert_eq!(shared_lsn_in(&h, 3), None);
        std::fs::write(dir.path().join(EPOCHS_FILE), "2 x\n").unwrap();
        assert!(epoch_history(dir.path()).is_err());
    }

    #[test]
    fn runs_cover_exactly_the_present_inodes() {
        let runs = vec![(1, 3), (7, 7), (9, 12)];
        for (ino, want) in [
            (0, false),
            (1, true),
            (3, true),
            (4, false),
            (7, true),
            (8, false),
            (12, true),
            (13, false),
        ] {
            assert_eq!(in_runs(&runs, ino), want, "{ino}");
        }
    }
}
