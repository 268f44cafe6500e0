//! The public face of a vserver's store. (API skeleton; bodies land next.)
#![allow(unused_variables)]

use std::path::{Path, PathBuf};

use crate::config::{AddressSpec, Export, FsConfig, User, VserverConfig};
use crate::error::Result;
use crate::types::*;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Roll to a new journal segment past this size.
    pub max_segment_bytes: u64,
    /// Take a checkpoint once this many journal bytes follow the last one.
    pub checkpoint_every_bytes: u64,
    /// Keep journal segments older than the checkpoint (replication and
    /// replay tests need them); otherwise they are deleted.
    pub retain_journal: bool,
    /// Most journal bytes buffered but not yet written; writers wait past it.
    pub max_buffered_bytes: usize,
    /// Open data-file descriptors kept cached.
    pub max_open_files: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_segment_bytes: 64 << 20,
            checkpoint_every_bytes: 512 << 20,
            retain_journal: false,
            max_buffered_bytes: 64 << 20,
            max_open_files: 1024,
        }
    }
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Creates a new vserver store in an empty (or absent) directory; the
    /// first journal record names the vserver.
    pub fn init(dir: &Path, name: &str, opts: StoreOptions) -> Result<Store> {
        todo!()
    }
    /// Opens an existing store: latest valid checkpoint + journal replay.
    /// A corrupt journal is a clear error, never a silently shorter store.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store> {
        todo!()
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // ---- configuration (each a journal record) ----
    pub fn config(&self) -> VserverConfig {
        todo!()
    }
    pub fn add_address(&self, addr: AddressSpec) -> Result<Mutation<()>> {
        todo!()
    }
    /// Creates a file system with its root directory (mode 0755, owned by root
    /// ) and its export.
    pub fn create_fs(&self, name: &str, export: Export) -> Result<Mutation<FsConfig>> {
        todo!()
    }
    pub fn add_user(&self, user: User) -> Result<Mutation<()>> {
        todo!()
    }

    // ---- durability ----
    /// Highest LSN assigned so far.
    pub fn last_lsn(&self) -> Lsn {
        todo!()
    }
    /// Highest LSN known to be on stable storage.
    pub fn durable_lsn(&self) -> Lsn {
        todo!()
    }
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        todo!()
    }
    pub fn wait_durable_blocking(&self, lsn: Lsn) -> Result<()> {
        todo!()
    }
    /// Changes whenever uncommitted data may have been lost: new at every
    /// open of the store.
    pub fn write_verifier(&self) -> [u8; 8] {
        todo!()
    }
    /// Flushes, checkpoints and stops the journal writer.
    pub fn close(&self) -> Result<()> {
        todo!()
    }

    // ---- file-system reads ----
    /// Handle -> inode, checking fsid and generation (`Stale` otherwise).
    pub fn resolve(&self, handle: &Handle) -> Result<Attr> {
        todo!()
    }
    pub fn root_handle(&self, fsid: Fsid) -> Result<Handle> {
        todo!()
    }
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        todo!()
    }
    /// Returns the child's attributes. "." and ".." are understood.
    pub fn lookup(&self, cred: &Cred, dir: Ino, name: &[u8]) -> Result<Attr> {
        todo!()
    }
    /// Which of the `access::*` bits in `want` the caller holds.
    pub fn access(&self, cred: &Cred, ino: Ino, want: u32) -> Result<(u32, Attr)> {
        todo!()
    }
    pub fn readlink(&self, cred: &Cred, ino: Ino) -> Result<(Vec<u8>, Attr)> {
        todo!()
    }
    pub fn read(&self, cred: &Cred, ino: Ino, offset: u64, count: u32) -> Result<ReadReply> {
        todo!()
    }
    /// Entries after `cookie` (0 = from the start), at most `max_entries`.
    pub fn readdir(&self, cred: &Cred, dir: Ino, cookie: u64, max_entries: usize) -> Result<ReadDir> {
        todo!()
    }
    pub fn fsstat(&self, fsid: Fsid) -> Result<FsStat> {
        todo!()
    }

    // ---- file-system changes (each one journal record) ----
    pub fn setattr(&self, ctx: &OpCtx, ino: Ino, set: &SetAttr, guard_ctime: Option<Timestamp>) -> Result<Mutation<Attr>> {
        todo!()
    }
    /// The caller decides how long to wait for durability (UNSTABLE vs
    /// FILE_SYNC) with `wait_durable(mutation.lsn)`.
    pub fn write(&self, ctx: &OpCtx, ino: Ino, offset: u64, data: &[u8]) -> Result<Mutation<Attr>> {
        todo!()
    }
    pub fn create(&self, ctx: &OpCtx, dir: Ino, name: &[u8], how: CreateHow, set: &SetAttr) -> Result<Mutation<Attr>> {
        todo!()
    }
    pub fn mkdir(&self, ctx: &OpCtx, dir: Ino, name: &[u8], set: &SetAttr) -> Result<Mutation<Attr>> {
        todo!()
    }
    pub fn symlink(&self, ctx: &OpCtx, dir: Ino, name: &[u8], target: &[u8], set: &SetAttr) -> Result<Mutation<Attr>> {
        todo!()
    }
    pub fn mknod(&self, ctx: &OpCtx, dir: Ino, name: &[u8], kind: NodeKind, set: &SetAttr) -> Result<Mutation<Attr>> {
        todo!()
    }
    pub fn remove(&self, ctx: &OpCtx, dir: Ino, name: &[u8]) -> Result<Mutation<()>> {
        todo!()
    }
    pub fn rmdir(&self, ctx: &OpCtx, dir: Ino, name: &[u8]) -> Result<Mutation<()>> {
        todo!()
    }
    /// `pre` in the result holds the source directory's pre-op attributes.
    pub fn rename(&self, ctx: &OpCtx, from_dir: Ino, from_name: &[u8], to_dir: Ino, to_name: &[u8]) -> Result<Mutation<()>> {
        todo!()
    }
    pub fn link(&self, ctx: &OpCtx, ino: Ino, dir: Ino, name: &[u8]) -> Result<Mutation<Attr>> {
        todo!()
    }
}
