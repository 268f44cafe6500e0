//! `tandem fsck`: checks a store's consistency and says precisely what is
//! wrong. Opening the store first recovers it exactly as a daemon start
//! would (checkpoint + journal replay, torn tail cut), so fsck sees the
//! state clients would see; it then re-reads every journal frame present,
//! checksums included, and checks the metadata and data files against each
//! other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::Result;
use crate::journal;
use crate::state::{Body, State};
use crate::store::{Store, StoreOptions};
use crate::types::{FileType, Ino};

/// Problems listed before the report stops counting them one by one.
pub const MAX_REPORTED_PROBLEMS: usize = 1000;

#[derive(Debug, Default, Clone)]
pub struct FsckReport {
    pub problems: Vec<String>,
    /// Problems past `MAX_REPORTED_PROBLEMS`, counted but not listed.
    pub more_problems: u64,
    pub records_checked: u64,
    pub inodes: u64,
    pub lsn: u64,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.more_problems == 0
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_REPORTED_PROBLEMS {
            self.problems.push(text);
        } else {
            self.more_problems += 1;
        }
    }
}

impl std::fmt::Display for FsckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "checked {} journal records and {} inodes at LSN {}",
            self.records_checked, self.inodes, self.lsn
        )?;
        if self.is_clean() {
            return writeln!(f, "no problems found");
        }
        for p in &self.problems {
            writeln!(f, "problem: {p}")?;
        }
        if self.more_problems > 0 {
            writeln!(f, "... and {} more problems", self.more_problems)?;
        }
        Ok(())
    }
}

/// Checks the store in `dir`, which no other process may have open.
pub fn check(dir: &Path) -> Result<FsckReport> {
    let store = Store::open(
        dir,
        StoreOptions {
            retain_journal: true,
            ..StoreOptions::default()
        },
    )?;
    let mut report = FsckReport::default();
    let state = store.snapshot();
    store.wait_durable_blocking(state.lsn)?;
    let outcome = journal::scan(&dir.join("journal"), 0, |_| Ok(()));
    match outcome {
        Ok(o) => report.records_checked = o.records,
        Err(e) => report.problem(format!("journal: {e}")),
    }
    check_state(&state, &mut report);
    check_data_files(&store, &state, &mut report)?;
    report.inodes = state.inodes.len() as u64;
    report.lsn = state.lsn;
    drop(store);
    Ok(report)
}

/// Metadata invariants: entries point at inodes, link counts match the
/// entries, every inode is reachable, cookies are consistent; the lock
/// state is consistent with itself and names existing files.
pub fn check_state(st: &State, report: &mut FsckReport) {
    for p in st.locks.problems(&st.inodes) {
        report.problem(p);
    }
    let mut links: BTreeMap<Ino, u32> = BTreeMap::new();
    let mut subdirs: BTreeMap<Ino, u32> = BTreeMap::new();
    for (&ino, inode) in &st.inodes {
        if inode.attr.ino != ino {
            report.problem(format!(
                "inode {ino} records its number as {}",
                inode.attr.ino
            ));
        }
        if ino >= st.next_ino {
            report.problem(format!(
                "inode {ino} is not below next inode number {}",
                st.next_ino
            ));
        }
        let Body::Dir(d) = &inode.body else { continue };
        if d.entries.len() != d.by_cookie.len() {
            report.problem(format!(
                "directory {ino}: {} entries but {} cookies",
                d.entries.len(),
                d.by_cookie.len()
            ));
        }
        for (name, slot) in &d.entries {
            let shown = String::from_utf8_lossy(name);
            if d.by_cookie.get(&slot.cookie) != Some(name) {
                report.problem(format!(
                    "directory {ino}: entry {shown:?} has cookie {} not indexed",
                    slot.cookie
                ));
            }
            if slot.cookie >= d.next_cookie {
                report.problem(format!(
                    "directory {ino}: entry {shown:?} cookie {} not below next {}",
                    slot.cookie, d.next_cookie
                ));
            }
            match st.inodes.get(&slot.ino) {
                None => report.problem(format!(
                    "directory {ino}: dangling entry {shown:?} -> missing inode {}",
                    slot.ino
                )),
                Some(child) => {
                    *links.entry(slot.ino).or_default() += 1;
                    if child.attr.fsid != inode.attr.fsid {
                        report.problem(format!(
                            "directory {ino}: entry {shown:?} crosses into fsid {}",
                            child.attr.fsid
                        ));
                    }
                    if let Body::Dir(cd) = &child.body {
                        *subdirs.entry(ino).or_default() += 1;
                        if cd.parent != ino {
                            report.problem(format!(
                                "directory {}: parent is {} but it is entered in {ino}",
                                slot.ino, cd.parent
                            ));
                        }
                    }
                }
            }
        }
    }
    let roots: BTreeSet<Ino> = st
        .config
        .filesystems
        .values()
        .map(|fs| fs.root_ino)
        .collect();
    for root in &roots {
        if !st.inodes.contains_key(root) {
            report.problem(format!("file system root inode {root} is missing"));
        }
    }
    for (&ino, inode) in &st.inodes {
        let entered = links.get(&ino).copied().unwrap_or(0);
        let is_root = roots.contains(&ino);
        if entered == 0 && !is_root {
            report.problem(format!(
                "orphan inode {ino} ({:?}): no directory entry names it",
                inode.attr.ftype
            ));
            continue;
        }
        let expected = if inode.attr.ftype == FileType::Directory {
            2 + subdirs.get(&ino).copied().unwrap_or(0)
        } else {
            entered
        };
        if inode.attr.nlink != expected {
            report.problem(format!(
                "inode {ino}: link count {} but {expected} expected",
                inode.attr.nlink
            ));
        }
        if inode.attr.ftype == FileType::Directory && entered > 1 {
            report.problem(format!("directory {ino} is entered {entered} times"));
        }
    }
}

fn check_data_files(store: &Store, st: &State, report: &mut FsckReport) -> Result<()> {
    for ino in store.data.list()? {
        match st.inodes.get(&ino) {
            None => report.problem(format!("data file of missing inode {ino}")),
            Some(i) if i.attr.ftype != FileType::Regular => {
                report.problem(format!("data file of non-regular inode {ino}"))
            }
            Some(i) => {
                let path = store.data.path_of(ino);
                if let Ok(meta) = std::fs::metadata(&path) {
                    if meta.len() > i.attr.size {
                        report.problem(format!(
                            "inode {ino}: data file holds {} bytes, size is {}",
                            meta.len(),
                            i.attr.size
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}
