//! The readable place a resync keeps a diverged site's own writes in,
//! before they are rewound: `<data>/resync/<vs>/<UTC time>/report.txt`
//! (one line per record after the shared LSN: LSN, operation, path,
//! byte range) and `files/<fs>/<path>`, the contents of every file those
//! records touched as they are at this site now.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tandem_store::resync::{Divergence, DivergentRecord};
use tandem_store::state::{Body, State};
use tandem_store::{Cred, FileType, Ino, Store};

use crate::config::site::Site;
use crate::error::{ControlError, Result};

/// Longest path walked up from a file to its file system's root.
const MAX_PATH_DEPTH: usize = 4096;
/// Bytes read per call when copying a file out.
const COPY_PIECE_BYTES: u32 = 1 << 20;

/// Writes the report and files; returns the folder.
pub(crate) async fn write(
    site: &Site,
    vserver: &str,
    store: &Arc<Store>,
    div: &Divergence,
) -> Result<PathBuf> {
    let folder = site
        .paths
        .root
        .join("resync")
        .join(vserver)
        .join(utc_stamp(SystemTime::now()));
    let (store, div, f) = (store.clone(), div.clone(), folder.clone());
    tokio::task::spawn_blocking(move || write_blocking(&f, &store, &div))
        .await
        .map_err(|e| ControlError::Internal(format!("writing the resync report: {e}")))??;
    Ok(folder)
}

fn write_blocking(folder: &Path, store: &Store, div: &Divergence) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| ControlError::io(p, e);
    std::fs::create_dir_all(folder.join("files")).map_err(|e| io(folder, e))?;
    let state = store.snapshot();
    let names = Names::of(&state);
    let mut text = format!(
        "# resync of {}: records written here after the shared LSN {}, which the promoted site never received.\n\
         # Files they touched are under files/ as they were here before the resync.\n\
         # LSN op path range\n",
        state.config.name, div.shared_lsn
    );
    let mut touched = BTreeSet::new();
    for r in &div.records {
        text.push_str(&line(r, &names));
        text.push('\n');
        for ino in affected(r, &state) {
            touched.insert(ino);
        }
    }
    for ino in touched {
        let Some(path) = names.path(ino) else {
            continue;
        };
        let dest = folder.join("files").join(path.trim_start_matches('/'));
        copy_out(store, ino, &dest)?;
    }
    let report = folder.join("report.txt");
    std::fs::write(&report, text).map_err(|e| io(&report, e))
}

/// Inodes a record touched that are regular files here now.
fn affected(r: &DivergentRecord, state: &State) -> Vec<Ino> {
    let by_entry = |e: &Option<(Ino, Vec<u8>)>| {
        e.as_ref()
            .and_then(|(dir, name)| match &state.inodes.get(dir)?.body {
                Body::Dir(d) => d.entries.get(name).map(|s| s.ino),
                _ => None,
            })
    };
    [r.ino, by_entry(&r.entry), by_entry(&r.to)]
        .into_iter()
        .flatten()
        .filter(|ino| {
            state
                .inodes
                .get(ino)
                .is_some_and(|i| i.attr.ftype == FileType::Regular)
        })
        .collect()
}

fn line(r: &DivergentRecord, names: &Names) -> String {
    let mut out = format!("{} {}", r.lsn, r.op);
    let entry = |(dir, name): &(Ino, Vec<u8>)| {
        let dir = names.path(*dir).unwrap_or_else(|| format!("<dir {dir}>"));
        format!(
            "{}/{}",
            dir.trim_end_matches('/'),
            String::from_utf8_lossy(name)
        )
    };
    match (&r.entry, r.ino) {
        (Some(e), _) => out.push_str(&format!(" {}", entry(e))),
        (None, Some(ino)) => {
            let p = names
                .path(ino)
                .unwrap_or_else(|| format!("<inode {ino}, gone>"));
            out.push_str(&format!(" {p}"));
        }
        (None, None) => {}
    }
    if let Some(to) = &r.to {
        out.push_str(&format!(" -> {}", entry(to)));
    }
    match r.range {
        Some((s, u64::MAX)) => out.push_str(&format!(" size {s} (bytes {s}.. changed)")),
        Some((s, e)) => out.push_str(&format!(" bytes {s}..{e}")),
        None => {}
    }
    out
}

/// Inode -> "/fs/dir/name" for the state here now.
struct Names {
    parent: BTreeMap<Ino, (Ino, String)>,
    roots: BTreeMap<Ino, String>,
}

impl Names {
    fn of(state: &State) -> Names {
        let roots = state
            .config
            .filesystems
            .values()
            .map(|f| (f.root_ino, f.name.clone()))
            .collect();
        let mut parent = BTreeMap::new();
        for (&ino, inode) in &state.inodes {
            if let Body::Dir(d) = &inode.body {
                for (name, slot) in &d.entries {
                    parent
                        .entry(slot.ino)
                        .or_insert_with(|| (ino, String::from_utf8_lossy(name).into_owned()));
                }
            }
        }
        Names { parent, roots }
    }

    fn path(&self, mut ino: Ino) -> Option<String> {
        let mut parts = Vec::new();
        for _ in 0..MAX_PATH_DEPTH {
            if let Some(fs) = self.roots.get(&ino) {
                parts.push(fs.clone());
                parts.reverse();
                return Some(format!("/{}", parts.join("/")));
            }
            let (p, name) = self.parent.get(&ino)?;
            // A name from a client may hold anything but '/' and NUL; ".."
            // must not climb out of the folder.
            parts.push(if name == ".." || name == "." {
                format!("_{name}")
            } else {
                name.clone()
            });
            ino = *p;
        }
        None
    }
}

fn copy_out(store: &Store, ino: Ino, dest: &Path) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| ControlError::io(p, e);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let mut f = std::fs::File::create(dest).map_err(|e| io(dest, e))?;
    let mut offset = 0u64;
    loop {
        let r = store
            .read(&Cred::root(), ino, offset, COPY_PIECE_BYTES)
            .map_err(|e| ControlError::store(&store.config().name, e))?;
        f.write_all(&r.data).map_err(|e| io(dest, e))?;
        offset += r.data.len() as u64;
        if r.eof || r.data.is_empty() {
            break;
        }
    }
    f.sync_all().map_err(|e| io(dest, e))
}

/// "YYYYMMDDTHHMMSSZ" (UTC): sorts by time, no characters a shell or a
/// file browser would trip on.
fn utc_stamp(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_dates() {
        let at = |secs| utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_700_000_000), "20231114T221320Z");
    }
}
