//! Trees and change sets, planned once from a seed and applied identically
//! through NFS (to the active site) and to a local directory (rsync's
//! source). Every byte written is fresh output of a seeded RNG, so it is
//! incompressible and matches nothing already in the files: neither side
//! can win by finding the new data elsewhere.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::Context;
use nfs3_client::nfs3_types::nfs3::{nfs_fh3, sattr3, stable_how, Nfs3Option};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tandem_testkit::client::Client;

use crate::replication_options::WRITE_BYTES;

/// Granularity of the in-place overwrites of the catch-up change set.
const CHUNK_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New data over `len` bytes at `offset` of an existing file.
    Overwrite {
        file: String,
        offset: u64,
        len: u64,
    },
    /// A new file of `len` bytes.
    Create {
        file: String,
        len: u64,
    },
    /// `len` bytes added at the end (`at` is the file's size).
    Append {
        file: String,
        at: u64,
        len: u64,
    },
    Truncate {
        file: String,
        size: u64,
    },
    Rename {
        from: String,
        to: String,
    },
    Remove {
        file: String,
    },
}

impl Change {
    /// Data bytes this change writes (truncates, renames and removes write
    /// none: their cost on the wire is overhead against the ratio).
    pub fn data_bytes(&self) -> u64 {
        match self {
            Change::Overwrite { len, .. }
            | Change::Create { len, .. }
            | Change::Append { len, .. } => *len,
            _ => 0,
        }
    }
}

/// A list of changes and the seed of their data.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    pub seed: u64,
    pub changes: Vec<Change>,
}

impl ChangeSet {
    pub fn changed_bytes(&self) -> u64 {
        self.changes.iter().map(Change::data_bytes).sum()
    }

    pub fn count(&self, pred: impl Fn(&Change) -> bool) -> usize {
        self.changes.iter().filter(|c| pred(c)).count()
    }

    /// The data of change `i`, `len` bytes.
    fn data(&self, i: usize, len: u64) -> Data {
        Data {
            rng: StdRng::seed_from_u64(self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            buf: vec![0u8; WRITE_BYTES.min(usize::try_from(len).unwrap_or(WRITE_BYTES))],
            done: 0,
            len,
        }
    }
}

/// A change's data, produced in pieces of at most one WRITE.
struct Data {
    rng: StdRng,
    buf: Vec<u8>,
    done: u64,
    len: u64,
}

impl Data {
    /// The next piece and its offset from the change's start.
    fn next_piece(&mut self) -> Option<(u64, &[u8])> {
        if self.done >= self.len {
            return None;
        }
        let n = (self.len - self.done).min(self.buf.len() as u64) as usize;
        self.rng.fill_bytes(&mut self.buf[..n]);
        let at = self.done;
        self.done += n as u64;
        Some((at, &self.buf[..n]))
    }
}

pub fn file_name(i: u64) -> String {
    format!("f{i:06}")
}

/// The initial files: `files` files of `bytes / files` bytes each.
pub fn initial_tree(files: u64, bytes: u64, seed: u64) -> ChangeSet {
    let each = bytes / files;
    ChangeSet {
        seed,
        changes: (0..files)
            .map(|i| Change::Create {
                file: file_name(i),
                len: each,
            })
            .collect(),
    }
}

/// The mixed change set over a tree of `files` files of `each`
/// bytes (needs at least 16 files): a quarter of each of half the files
/// overwritten, two new files, two appends, two truncates to half, two
/// renames and two removes.
pub fn mixed(files: u64, each: u64, seed: u64) -> ChangeSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut changes = Vec::new();
    let half = files / 2;
    let quarter = (each / 4).max(1);
    for i in 0..half {
        let offset = rng.gen_range(0..=each - quarter) & !4095;
        changes.push(Change::Overwrite {
            file: file_name(i),
            offset,
            len: quarter,
        });
    }
    for k in 0..2 {
        changes.push(Change::Create {
            file: format!("new{k}"),
            len: each,
        });
        changes.push(Change::Append {
            file: file_name(half + k),
            at: each,
            len: (each / 8).max(1),
        });
        changes.push(Change::Truncate {
            file: file_name(half + 2 + k),
            size: each / 2,
        });
        changes.push(Change::Rename {
            from: file_name(half + 4 + k),
            to: format!("renamed{k}"),
        });
        changes.push(Change::Remove {
            file: file_name(half + 6 + k),
        });
    }
    ChangeSet {
        seed: seed ^ 0x006d_6978_6564,
        changes,
    }
}

/// The catch-up change set: `fraction` of the tree's bytes overwritten in
/// place (distinct 64 KiB chunks at random), and `new_files` new files
/// holding another `fraction / 2` of it.
pub fn catch_up(files: u64, each: u64, fraction: f64, new_files: u64, seed: u64) -> ChangeSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let chunk = CHUNK_BYTES.min(each);
    let per_file = each / chunk;
    let slots = files * per_file;
    let total = files * each;
    let want = (((total as f64) * fraction) / chunk as f64).ceil() as u64;
    let want = want.clamp(1, slots);
    let mut picked: Vec<u64> = rand::seq::index::sample(&mut rng, slots as usize, want as usize)
        .into_iter()
        .map(|s| s as u64)
        .collect();
    picked.sort_unstable();
    let mut changes: Vec<Change> = picked
        .into_iter()
        .map(|s| Change::Overwrite {
            file: file_name(s / per_file),
            offset: (s % per_file) * chunk,
            len: chunk,
        })
        .collect();
    let new_each = (((total as f64) * fraction / 2.0) as u64 / new_files).max(1);
    for k in 0..new_files {
        changes.push(Change::Create {
            file: format!("new{k:04}"),
            len: new_each,
        });
    }
    ChangeSet {
        seed: seed ^ 0x0063_6174_6368,
        changes,
    }
}

/// Applies `set` in directory `dir` through NFS: UNSTABLE WRITEs, a
/// COMMIT per file written.
pub async fn apply_nfs(c: &mut Client, dir: &nfs_fh3, set: &ChangeSet) -> anyhow::Result<()> {
    for (i, change) in set.changes.iter().enumerate() {
        match change {
            Change::Overwrite { file, offset, len }
            | Change::Append {
                file,
                at: offset,
                len,
            } => {
                let fh = c.lookup(dir, file).await?;
                write_nfs(c, &fh, set, i, *offset, *len).await?;
            }
            Change::Create { file, len } => {
                let fh = c.create(dir, file, 0o644).await?;
                write_nfs(c, &fh, set, i, 0, *len).await?;
            }
            Change::Truncate { file, size } => {
                let fh = c.lookup(dir, file).await?;
                let attrs = sattr3 {
                    size: Nfs3Option::Some(*size),
                    ..sattr3::default()
                };
                c.setattr(&fh, file, attrs).await?;
            }
            Change::Rename { from, to } => c.rename(dir, from, to).await?,
            Change::Remove { file } => c.remove(dir, file).await?,
        }
    }
    Ok(())
}

async fn write_nfs(
    c: &mut Client,
    fh: &nfs_fh3,
    set: &ChangeSet,
    i: usize,
    offset: u64,
    len: u64,
) -> anyhow::Result<()> {
    let mut data = set.data(i, len);
    while let Some((at, d)) = data.next_piece() {
        c.write_all(fh, offset + at, d, stable_how::UNSTABLE)
            .await?;
    }
    c.commit(fh).await?;
    Ok(())
}

/// Applies `set` to the local directory `dir` (no fsync: rsync reads it
/// back through the page cache either way).
pub fn apply_local(dir: &Path, set: &ChangeSet) -> anyhow::Result<()> {
    for (i, change) in set.changes.iter().enumerate() {
        match change {
            Change::Overwrite { file, offset, len }
            | Change::Append {
                file,
                at: offset,
                len,
            } => write_local(&dir.join(file), false, set, i, *offset, *len)?,
            Change::Create { file, len } => write_local(&dir.join(file), true, set, i, 0, *len)?,
            Change::Truncate { file, size } => {
                let path = dir.join(file);
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(*size))
                    .with_context(|| format!("truncating {}", path.display()))?;
            }
            Change::Rename { from, to } => std::fs::rename(dir.join(from), dir.join(to))
                .with_context(|| format!("renaming {from}"))?,
            Change::Remove { file } => {
                std::fs::remove_file(dir.join(file)).with_context(|| format!("removing {file}"))?
            }
        }
    }
    Ok(())
}

/// Writes change `i`'s data at `offset` of `path` (a new file if `create`).
fn write_local(
    path: &Path,
    create: bool,
    set: &ChangeSet,
    i: usize,
    offset: u64,
    len: u64,
) -> anyhow::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(create)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut data = set.data(i, len);
    while let Some((at, d)) = data.next_piece() {
        f.write_all_at(d, offset + at)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_set_touches_distinct_files_and_counts_data_only() {
        let set = mixed(16, 1 << 20, 7);
        assert_eq!(set.count(|c| matches!(c, Change::Overwrite { .. })), 8);
        assert_eq!(set.count(|c| matches!(c, Change::Remove { .. })), 2);
        // 8 quarters, 2 new files, 2 eighths.
        assert_eq!(
            set.changed_bytes(),
            8 * (1 << 18) + 2 * (1 << 20) + 2 * (1 << 17)
        );
        let mut touched: Vec<&str> = set
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Create { .. } => None,
                Change::Overwrite { file, .. }
                | Change::Append { file, .. }
                | Change::Truncate { file, .. }
                | Change::Remove { file } => Some(file.as_str()),
                Change::Rename { from, .. } => Some(from.as_str()),
            })
            .collect();
        let n = touched.len();
        touched.sort_unstable();
        touched.dedup();
        assert_eq!(touched.len(), n, "a file is changed twice");
    }

    #[test]
    fn catch_up_set_overwrites_distinct_chunks_inside_files() {
        let each = 1 << 20;
        let set = catch_up(20, each, 0.05, 2, 9);
        let mut seen = std::collections::HashSet::new();
        for c in &set.changes {
            if let Change::Overwrite { file, offset, len } = c {
                assert!(offset + len <= each, "{c:?}");
                assert!(seen.insert((file.clone(), *offset)), "{c:?} twice");
            }
        }
        // 5% of 20 MiB in 64 KiB chunks (16, or 17 by rounding).
        assert!((16..=17).contains(&seen.len()), "{}", seen.len());
        assert_eq!(set.count(|c| matches!(c, Change::Create { .. })), 2);
    }

    #[test]
    fn local_apply_writes_the_same_bytes_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
            apply_local(d, &initial_tree(16, 16 * 8192, 1)).unwrap();
            apply_local(d, &mixed(16, 8192, 2)).unwrap();
        }
        for name in ["f000000", "new0", "renamed1", "f000010"] {
            assert_eq!(
                std::fs::read(a.join(name)).unwrap(),
                std::fs::read(b.join(name)).unwrap(),
                "{name}"
            );
        }
        assert!(!a.join("f000014").exists(), "removed");
        assert_eq!(std::fs::metadata(a.join("f000010")).unwrap().len(), 4096);
        assert_eq!(
            std::fs::metadata(a.join("f000008")).unwrap().len(),
            8192 + 1024
        );
    }
}
