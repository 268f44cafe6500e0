//! Crash safety: clients (nfs3_client, AUTH_SYS uid 0) run a stream of
//! creates, FILE_SYNC writes, UNSTABLE writes + COMMIT, MKDIR, RENAME,
//! REMOVE, RMDIR and SETATTR size; the daemon is killed with SIGKILL at a
//! random moment; after a restart on the same data directory every reply
//! that promised durability must hold ("Stable means stable"), handles from before the
//! kill must still work ("Identity travels") and the write verifier must have
//! changed ("The verifier changes"). Several rounds on the same store, `tandem fsck`
//! after each kill and at the end.
//!
//! Each client keeps a model of its own directory: the state every
//! acknowledged reply implies. What was in flight at the kill (sent, no
//! reply) and UNSTABLE writes not yet covered by a COMMIT are uncertain:
//! after the restart the server may show them done or not, and the model
//! adopts what it finds, but only among those outcomes: whole operations,
//! never bytes of a write mixed into a state without it (data files change
//! only once a record is durable, docs/design.md).
//!
//! Set TANDEM_CRASH_SEED to replay one run's random choices (the moment of
//! each kill is drawn from it too, but what is in flight then depends on
//! timing).

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::{Nfs3ConnectionBuilder, RpcError};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::common::nfs::{Conn, TcpConnector};

const SITE_ADDR: &str = "127.77.70.1";
const VS_ADDR: &str = "127.77.70.11";
const VS: &str = "vs";
const CLIENTS: usize = 3;
const ROUNDS: usize = 8;
/// No single NFS call may take longer than this, killed daemon or not.
const OP_DEADLINE: Duration = Duration::from_secs(60);
const MAX_FILES: usize = 24;
const MAX_DIRS: usize = 5;
const MAX_FILE_SIZE: u64 = 192 << 10;
const MAX_BATCH: usize = 4;

fn root_cred() -> opaque_auth<'static> {
    opaque_auth::auth_unix(&auth_unix {
        stamp: 1,
        machinename: Opaque::owned(b"crash-test".to_vec()),
        uid: 0,
        gid: 0,
        gids: vec![],
    })
}

fn dirop<'a>(dir: &nfs_fh3, name: &'a str) -> diropargs3<'a> {
    diropargs3 {
        dir: dir.clone(),
        name: filename3(Opaque::borrowed(name.as_bytes())),
    }
}

/// Mounts /data, retrying until the (re)started daemon serves it.
async fn connect(site: &TestSite) -> Conn {
    let start = Instant::now();
    loop {
        let r = Nfs3ConnectionBuilder::new(TcpConnector, VS_ADDR, "/data")
            .connect_from_privileged_port(false)
            .mount_port(site.mount_port)
            .nfs3_port(site.nfs_port)
            .credential(root_cred())
            .mount()
            .await;
        match r {
            Ok(c) => return c,
            Err(e) => {
                assert!(start.elapsed() < DEADLINE, "cannot mount /data: {e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The transport failed (the daemon is gone): the call's outcome is unknown.
#[derive(Debug)]
struct Lost {
    at: Instant,
    what: String,
}

/// One NFS call: `Ok(Some(reply))` acknowledged, `Ok(None)` transport lost.
/// An NFS error status is a failure: the model knows every name and size.
async fn call<T, E: std::fmt::Debug>(
    what: &str,
    fut: impl std::future::Future<Output = Result<Nfs3Result<T, E>, RpcError>>,
) -> Result<T, Lost> {
    match tokio::time::timeout(OP_DEADLINE, fut).await {
        Err(_) => panic!("{what}: no reply and no error within {OP_DEADLINE:?}"),
        Ok(Err(e)) => Err(Lost {
            at: Instant::now(),
            what: format!("{what}: {e:?}"),
        }),
        Ok(Ok(Nfs3Result::Ok(v))) => Ok(v),
        Ok(Ok(Nfs3Result::Err((st, res)))) => panic!("{what}: {st:?} {res:?}"),
    }
}

/// A call that must succeed (setup and verification, daemon running).
async fn must<T, E: std::fmt::Debug>(
    what: &str,
    fut: impl std::future::Future<Output = Result<Nfs3Result<T, E>, RpcError>>,
) -> T {
    call(what, fut)
        .await
        .unwrap_or_else(|l| panic!("{}", l.what))
}

// ---- the model ----

#[derive(Clone, Debug)]
enum ContentOp {
    Write { offset: u64, data: Vec<u8> },
    Truncate(u64),
}

impl ContentOp {
    fn apply(&self, content: &mut Vec<u8>) {
        match self {
            ContentOp::Write { offset, data } => {
                let (o, end) = (*offset as usize, *offset as usize + data.len());
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[o..end].copy_from_slice(data);
            }
            ContentOp::Truncate(size) => content.resize(*size as usize, 0),
        }
    }
}

#[derive(Clone, Debug)]
struct Node {
    dir: bool,
    /// Unknown only for a CREATE or MKDIR in flight at the kill.
    fh: Option<nfs_fh3>,
    fileid: Option<u64>,
    /// Durable contents (files).
    content: Vec<u8>,
    /// Sent but not known durable, in order: any subset may have survived.
    pending: Vec<ContentOp>,
}

impl Node {
    /// The contents an acknowledged history allows: the durable bytes with
    /// any subset of the pending operations applied, in order.
    fn possible_contents(&self) -> Vec<Vec<u8>> {
        assert!(self.pending.len() <= 8, "pending list too long");
        (0u32..1 << self.pending.len())
            .map(|mask| {
                let mut c = self.content.clone();
                for (i, op) in self.pending.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        op.apply(&mut c);
                    }
                }
                c
            })
            .collect()
    }

    /// Whether byte `i` equal to `b` may come from an unacknowledged write.
    fn pending_byte(&self, i: usize, b: u8) -> bool {
        self.pending.iter().any(|op| match op {
            ContentOp::Write { offset, data } => {
                let o = *offset as usize;
                i >= o && i < o + data.len() && data[i - o] == b
            }
            ContentOp::Truncate(_) => false,
        })
    }

    /// Checks a file's contents after a restart: they must be exactly one of
    /// the possible contents. Returns whether bytes of unacknowledged writes
    /// were seen mixed in (always an error now; kept to say so precisely).
    fn check_content(&self, actual: &[u8]) -> Result<bool, String> {
        let possible = self.possible_contents();
        if possible.iter().any(|c| c == actual) {
            return Ok(false);
        }
        let mut why = Vec::new();
        for c in &possible {
            if c.len() != actual.len() {
                why.push(format!("{} bytes", c.len()));
                continue;
            }
            let unexplained =
                (0..c.len()).find(|&i| actual[i] != c[i] && !self.pending_byte(i, actual[i]));
            match unexplained {
                None => why.push(format!(
                    "{} bytes, mixing in bytes of a write that no surviving record holds",
                    c.len()
                )),
                Some(i) => why.push(format!("{} bytes, byte {i} differs", c.len())),
            }
        }
        let ops: Vec<String> = self
            .pending
            .iter()
            .map(|op| match op {
                ContentOp::Write { offset, data } => format!("write {offset}+{}", data.len()),
                ContentOp::Truncate(s) => format!("truncate {s}"),
            })
            .collect();
        Err(format!(
            "contents ({} bytes) are none of the possible ones [{}] (durable {} bytes, pending {ops:?})",
            actual.len(),
            why.join("; "),
            self.content.len(),
        ))
    }
}

/// Paths relative to the client's directory ("f3", "d2/f7") to nodes.
type Model = BTreeMap<String, Node>;

fn parent_and_name(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    }
}

/// What the server shows after the restart.
#[derive(Debug)]
struct Actual {
    dir: bool,
    fh: nfs_fh3,
    fileid: u64,
    content: Vec<u8>,
}

/// Whether the server's state is the one `model` describes; lists the
/// files that kept bytes of unacknowledged writes.
fn matches(model: &Model, actual: &BTreeMap<String, Actual>) -> Result<Vec<String>, String> {
    let mut leaked = Vec::new();
    let want: Vec<&String> = model.keys().collect();
    let got: Vec<&String> = actual.keys().collect();
    if want != got {
        return Err(format!("names differ: model {want:?}, server {got:?}"));
    }
    for (path, n) in model {
        let a = &actual[path];
        if n.dir != a.dir {
            return Err(format!("{path}: directory {} on the server", a.dir));
        }
        if let Some(id) = n.fileid {
            if id != a.fileid {
                return Err(format!("{path}: fileid {} not {id}", a.fileid));
            }
        }
        if !n.dir {
            match n.check_content(&a.content) {
                Ok(true) => leaked.push(path.clone()),
                Ok(false) => {}
                Err(e) => return Err(format!("{path}: {e}")),
            }
        }
    }
    Ok(leaked)
}

// ---- one client ----

struct Client {
    id: usize,
    rng: StdRng,
    dir_fh: nfs_fh3,
    model: Model,
    /// The model as it will be if the namespace call in flight succeeds.
    in_flight: Option<Model>,
    /// Handles of objects whose removal was acknowledged.
    gone: Vec<nfs_fh3>,
    seq: u64,
    /// Write verifiers seen in this daemon run.
    verfs: HashSet<[u8; 8]>,
    /// Replies that promised durability, this round.
    acked: u64,
    lost: Option<Lost>,
}

enum Step {
    Create,
    FileSyncWrite,
    UnstableBatch,
    Truncate,
    Mkdir,
    Rename,
    RenameDir,
    Remove,
    Rmdir,
}

impl Client {
    fn files(&self) -> Vec<String> {
        self.model
            .iter()
            .filter(|(_, n)| !n.dir)
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn dirs(&self) -> Vec<String> {
        self.model
            .iter()
            .filter(|(_, n)| n.dir)
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn pick(&mut self, v: &[String]) -> String {
        v[self.rng.gen_range(0..v.len())].clone()
    }

    /// A directory to put something in: the client's own or a subdirectory.
    fn pick_parent(&mut self) -> String {
        let dirs = self.dirs();
        if dirs.is_empty() || self.rng.gen_bool(0.4) {
            String::new()
        } else {
            self.pick(&dirs)
        }
    }

    fn dir_handle(&self, dir: &str) -> nfs_fh3 {
        if dir.is_empty() {
            self.dir_fh.clone()
        } else {
            self.model[dir].fh.clone().expect("known directory handle")
        }
    }

    fn fh(&self, path: &str) -> nfs_fh3 {
        self.model[path].fh.clone().expect("known handle")
    }

    fn new_name(&mut self, prefix: &str, parent: &str) -> String {
        self.seq += 1;
        if parent.is_empty() {
            format!("{prefix}{}", self.seq)
        } else {
            format!("{parent}/{prefix}{}", self.seq)
        }
    }

    fn random_data(&mut self, max: usize) -> Vec<u8> {
        let mut d = vec![0u8; self.rng.gen_range(1..=max)];
        self.rng.fill_bytes(&mut d);
        d
    }

    fn note_verf(&mut self, v: writeverf3) {
        self.verfs.insert(v.0);
        assert_eq!(
            self.verfs.len(),
            1,
            "client {}: the write verifier changed within one daemon run",
            self.id
        );
    }

    fn choose_step(&mut self) -> Step {
        let files = self.files().len();
        let dirs = self.dirs().len();
        let empty_dirs = self.empty_dirs().len();
        loop {
            let step = match self.rng.gen_range(0..100) {
                0..=17 => Step::Create,
                18..=42 => Step::FileSyncWrite,
                43..=59 => Step::UnstableBatch,
                60..=67 => Step::Truncate,
                68..=72 => Step::Mkdir,
                73..=83 => Step::Rename,
                84..=85 => Step::RenameDir,
                86..=96 => Step::Remove,
                _ => Step::Rmdir,
            };
            let ok = match step {
                Step::Create => files < MAX_FILES,
                Step::FileSyncWrite | Step::UnstableBatch | Step::Truncate | Step::Rename => {
                    files > 0
                }
                Step::Remove => files > MAX_FILES / 3,
                Step::Mkdir => dirs < MAX_DIRS,
                Step::RenameDir => dirs > 0,
                Step::Rmdir => empty_dirs > 0,
            };
            if ok {
                return step;
            }
        }
    }

    fn empty_dirs(&self) -> Vec<String> {
        self.dirs()
            .into_iter()
            .filter(|d| {
                let prefix = format!("{d}/");
                !self.model.keys().any(|k| k.starts_with(&prefix))
            })
            .collect()
    }

    /// Runs operations until the transport fails (the daemon was killed).
    async fn run(mut self, mut c: Conn) -> Client {
        loop {
            if let Err(lost) = self.step(&mut c).await {
                self.lost = Some(lost);
                return self;
            }
        }
    }

    async fn step(&mut self, c: &mut Conn) -> Result<(), Lost> {
        match self.choose_step() {
            Step::Create => self.create(c).await,
            Step::FileSyncWrite => self.file_sync_write(c).await,
            Step::UnstableBatch => self.unstable_batch(c).await,
            Step::Truncate => self.truncate(c).await,
            Step::Mkdir => self.mkdir(c).await,
            Step::Rename => self.rename(c).await,
            Step::RenameDir => self.rename_dir(c).await,
            Step::Remove => self.remove(c).await,
            Step::Rmdir => self.rmdir(c).await,
        }
    }

    fn new_node(dir: bool) -> Node {
        Node {
            dir,
            fh: None,
            fileid: None,
            content: Vec::new(),
            pending: Vec::new(),
        }
    }

    async fn create(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let parent = self.pick_parent();
        let path = self.new_name("f", &parent);
        let mut after = self.model.clone();
        after.insert(path.clone(), Self::new_node(false));
        self.in_flight = Some(after);
        let (_, name) = parent_and_name(&path);
        let r = call(
            "CREATE",
            c.create(&CREATE3args {
                where_: dirop(&self.dir_handle(&parent), name),
                how: createhow3::GUARDED(sattr3 {
                    mode: Nfs3Option::Some(0o644),
                    ..Default::default()
                }),
            }),
        )
        .await?;
        let (fh, attr) = match (r.obj, r.obj_attributes) {
            (Nfs3Option::Some(fh), Nfs3Option::Some(a)) => (fh, a),
            _ => panic!("CREATE without handle or attributes"),
        };
        assert_eq!(attr.size, 0);
        self.settle_namespace(&path, fh, attr.fileid);
        Ok(())
    }

    async fn mkdir(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let path = self.new_name("d", "");
        let mut after = self.model.clone();
        after.insert(path.clone(), Self::new_node(true));
        self.in_flight = Some(after);
        let r = call(
            "MKDIR",
            c.mkdir(&MKDIR3args {
                where_: dirop(&self.dir_fh, &path),
                attributes: sattr3 {
                    mode: Nfs3Option::Some(0o755),
                    ..Default::default()
                },
            }),
        )
        .await?;
        let (fh, attr) = match (r.obj, r.obj_attributes) {
            (Nfs3Option::Some(fh), Nfs3Option::Some(a)) => (fh, a),
            _ => panic!("MKDIR without handle or attributes"),
        };
        assert_eq!(attr.type_, ftype3::NF3DIR);
        self.settle_namespace(&path, fh, attr.fileid);
        Ok(())
    }

    /// The namespace call in flight was acknowledged: its outcome is the
    /// model now. `path` (if any) names the node it created.
    fn settle_namespace(&mut self, path: &str, fh: nfs_fh3, fileid: u64) {
        let mut after = self.in_flight.take().expect("a call in flight");
        let n = after.get_mut(path).expect("created node");
        n.fh = Some(fh);
        n.fileid = Some(fileid);
        self.model = after;
        self.acked += 1;
    }

    async fn rename(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let files = self.files();
        let from = self.pick(&files);
        // Sometimes onto another existing file, which it replaces.
        let to = if files.len() > 1 && self.rng.gen_bool(0.25) {
            let others: Vec<String> = files.into_iter().filter(|f| *f != from).collect();
            self.pick(&others)
        } else {
            let parent = self.pick_parent();
            self.new_name("m", &parent)
        };
        let mut after = self.model.clone();
        let node = after.remove(&from).expect("source");
        let replaced = after.insert(to.clone(), node);
        self.in_flight = Some(after);
        let (fdir, fname) = parent_and_name(&from);
        let (tdir, tname) = parent_and_name(&to);
        call(
            "RENAME",
            c.rename(&RENAME3args {
                from: dirop(&self.dir_handle(fdir), fname),
                to: dirop(&self.dir_handle(tdir), tname),
            }),
        )
        .await?;
        self.model = self.in_flight.take().expect("in flight");
        if let Some(r) = replaced {
            self.gone.push(r.fh.expect("known handle"));
        }
        self.acked += 1;
        Ok(())
    }

    async fn rename_dir(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let dirs = self.dirs();
        let from = self.pick(&dirs);
        let to = self.new_name("d", "");
        let (old_prefix, new_prefix) = (format!("{from}/"), format!("{to}/"));
        let after: Model = self
            .model
            .iter()
            .map(|(k, n)| {
                let k = if *k == from {
                    to.clone()
                } else if let Some(rest) = k.strip_prefix(&old_prefix) {
                    format!("{new_prefix}{rest}")
                } else {
                    k.clone()
                };
                (k, n.clone())
            })
            .collect();
        self.in_flight = Some(after);
        call(
            "RENAME (directory)",
            c.rename(&RENAME3args {
                from: dirop(&self.dir_fh, &from),
                to: dirop(&self.dir_fh, &to),
            }),
        )
        .await?;
        self.model = self.in_flight.take().expect("in flight");
        self.acked += 1;
        Ok(())
    }

    async fn remove(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let files = self.files();
        let path = self.pick(&files);
        self.remove_path(c, &path, false).await
    }

    async fn rmdir(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let dirs = self.empty_dirs();
        let path = self.pick(&dirs);
        self.remove_path(c, &path, true).await
    }

    async fn remove_path(&mut self, c: &mut Conn, path: &str, dir: bool) -> Result<(), Lost> {
        let mut after = self.model.clone();
        let node = after.remove(path).expect("exists");
        self.in_flight = Some(after);
        let (parent, name) = parent_and_name(path);
        let args = dirop(&self.dir_handle(parent), name);
        if dir {
            call("RMDIR", c.rmdir(&RMDIR3args { object: args })).await?;
        } else {
            call("REMOVE", c.remove(&REMOVE3args { object: args })).await?;
        }
        self.model = self.in_flight.take().expect("in flight");
        self.gone.push(node.fh.expect("known handle"));
        self.acked += 1;
        Ok(())
    }

    fn size(&self, path: &str) -> u64 {
        self.model[path].content.len() as u64
    }

    /// Sends one WRITE of `data` at `offset`; the op stays pending until
    /// something makes it durable.
    async fn write(
        &mut self,
        c: &mut Conn,
        path: &str,
        offset: u64,
        data: Vec<u8>,
        stable: stable_how,
    ) -> Result<WRITE3resok, Lost> {
        let fh = self.fh(path);
        let len = data.len();
        self.model
            .get_mut(path)
            .expect("file")
            .pending
            .push(ContentOp::Write {
                offset,
                data: data.clone(),
            });
        let r = call(
            "WRITE",
            c.write(&WRITE3args {
                file: fh,
                offset,
                count: len as u32,
                stable,
                data: Opaque::borrowed(&data),
            }),
        )
        .await?;
        assert_eq!(r.count as usize, len, "short WRITE");
        self.note_verf(r.verf);
        Ok(r)
    }

    /// Everything pending on `path` is durable now.
    fn settle_content(&mut self, path: &str) {
        let n = self.model.get_mut(path).expect("file");
        for op in std::mem::take(&mut n.pending) {
            op.apply(&mut n.content);
        }
        self.acked += 1;
    }

    fn random_offset(&mut self, path: &str, len: usize) -> u64 {
        let size = self.size(path);
        let hi = (size + 4096).min(MAX_FILE_SIZE.saturating_sub(len as u64));
        self.rng.gen_range(0..=hi)
    }

    async fn file_sync_write(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let files = self.files();
        let path = self.pick(&files);
        assert!(self.model[&path].pending.is_empty());
        let data = self.random_data(32 << 10);
        let offset = self.random_offset(&path, data.len());
        let r = self
            .write(c, &path, offset, data, stable_how::FILE_SYNC)
            .await?;
        assert_eq!(r.committed, stable_how::FILE_SYNC, "FILE_SYNC write");
        self.settle_content(&path);
        Ok(())
    }

    async fn unstable_batch(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let files = self.files();
        let path = self.pick(&files);
        assert!(self.model[&path].pending.is_empty());
        let n = self.rng.gen_range(1..=MAX_BATCH);
        for _ in 0..n {
            let data = self.random_data(64 << 10);
            let offset = self.random_offset(&path, data.len());
            self.write(c, &path, offset, data, stable_how::UNSTABLE)
                .await?;
        }
        let r = call(
            "COMMIT",
            c.commit(&COMMIT3args {
                file: self.fh(&path),
                offset: 0,
                count: 0,
            }),
        )
        .await?;
        // The same verifier as the writes: nothing to resend.
        self.note_verf(r.verf);
        self.settle_content(&path);
        Ok(())
    }

    async fn truncate(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let files = self.files();
        let path = self.pick(&files);
        assert!(self.model[&path].pending.is_empty());
        let size = self.size(&path);
        let new = self.rng.gen_range(0..=(size + 8192).min(MAX_FILE_SIZE));
        let fh = self.fh(&path);
        self.model
            .get_mut(&path)
            .expect("file")
            .pending
            .push(ContentOp::Truncate(new));
        let r = call(
            "SETATTR size",
            c.setattr(&SETATTR3args {
                object: fh,
                new_attributes: sattr3 {
                    size: Nfs3Option::Some(new),
                    ..Default::default()
                },
                guard: Nfs3Option::None,
            }),
        )
        .await?;
        if let Nfs3Option::Some(a) = r.obj_wcc.after {
            assert_eq!(a.size, new, "size after SETATTR");
        }
        self.settle_content(&path);
        Ok(())
    }

    // ---- after a restart ----

    /// Checks the server against the model (and the call in flight at the
    /// kill), then adopts what the server shows.
    async fn verify_after_restart(&mut self, c: &mut Conn) -> String {
        let who = format!("client {}", self.id);
        // The client's directory, by its old handle and by name.
        let root = c.root_nfs_fh3();
        let looked = must(
            "LOOKUP client dir",
            c.lookup(&LOOKUP3args {
                what: dirop(&root, &format!("c{}", self.id)),
            }),
        )
        .await;
        assert_eq!(looked.object, self.dir_fh, "{who}: directory handle");

        let mut actual = BTreeMap::new();
        walk(c, &self.dir_fh, "", &mut actual).await;

        let pending: usize = self.model.values().map(|n| n.pending.len()).sum();
        let mut candidates = vec![self.model.clone()];
        candidates.extend(self.in_flight.take());
        let had_in_flight = candidates.len() > 1;
        let mut reasons = Vec::new();
        let (which, matched, leaked) = candidates
            .into_iter()
            .enumerate()
            .find_map(|(i, m)| match matches(&m, &actual) {
                Ok(leaked) => Some((i, m, leaked)),
                Err(e) => {
                    reasons.push(e);
                    None
                }
            })
            .unwrap_or_else(|| {
                panic!(
                    "{who}: the server after the restart shows no state the acknowledged replies allow:\n{}",
                    reasons.join("\n")
                )
            });

        // Handles from before the kill still work and still name the same
        // object; READDIRPLUS hands out the same bytes.
        for (path, n) in &matched {
            let a = &actual[path];
            if let Some(old) = &n.fh {
                assert_eq!(*old, a.fh, "{who}: {path}: handle changed");
                let attr = must(
                    "GETATTR old handle",
                    c.getattr(&GETATTR3args {
                        object: old.clone(),
                    }),
                )
                .await
                .obj_attributes;
                assert_eq!(attr.fileid, a.fileid, "{who}: {path}: old handle");
                assert_eq!(attr.type_ == ftype3::NF3DIR, n.dir);
                if !n.dir {
                    assert_eq!(attr.size, a.content.len() as u64, "{who}: {path}");
                }
            }
        }
        // Handles of objects whose removal was acknowledged are stale.
        for fh in std::mem::take(&mut self.gone) {
            let r = tokio::time::timeout(OP_DEADLINE, c.getattr(&GETATTR3args { object: fh }))
                .await
                .expect("GETATTR reply")
                .expect("GETATTR transport");
            match r {
                Nfs3Result::Err((nfsstat3::NFS3ERR_STALE, _)) => {}
                other => panic!("{who}: handle of a removed object: {other:?}"),
            }
        }

        self.model = matched
            .into_iter()
            .map(|(path, mut n)| {
                let a = actual.remove(&path).expect("matched");
                n.fh = Some(a.fh);
                n.fileid = Some(a.fileid);
                n.content = a.content;
                n.pending.clear();
                (path, n)
            })
            .collect();
        self.verfs.clear();
        self.lost = None;
        let in_flight = match (had_in_flight, which) {
            (false, _) => "no namespace call",
            (true, 0) => "namespace call not done",
            (true, _) => "namespace call done",
        };
        let leaked = if leaked.is_empty() {
            String::new()
        } else {
            format!(", unacknowledged bytes kept inside the size of {leaked:?}")
        };
        format!("{in_flight}, {pending} uncertain writes/truncates{leaked}")
    }
}

/// Every object under `dir`, with handles, ids and file contents.
async fn walk(c: &mut Conn, dir: &nfs_fh3, prefix: &str, out: &mut BTreeMap<String, Actual>) {
    let mut subdirs = Vec::new();
    for (name, fh, attr) in common::tree::entries(c, dir).await {
        let path = format!("{prefix}{name}");
        let isdir = attr.type_ == ftype3::NF3DIR;
        let content = if isdir {
            subdirs.push((fh.clone(), format!("{path}/")));
            Vec::new()
        } else {
            read_all(c, &fh, attr.size).await
        };
        out.insert(
            path,
            Actual {
                dir: isdir,
                fh,
                fileid: attr.fileid,
                content,
            },
        );
    }
    for (fh, p) in subdirs {
        Box::pin(walk(c, &fh, &p, out)).await;
    }
}

async fn read_all(c: &mut Conn, fh: &nfs_fh3, size: u64) -> Vec<u8> {
    let data = common::nfs::read_all(c, fh).await;
    assert_eq!(data.len() as u64, size, "READ length vs attributes");
    data
}

/// A COMMIT on the probe file: the current write verifier.
async fn current_verifier(c: &mut Conn) -> [u8; 8] {
    let root = c.root_nfs_fh3();
    let fh = must(
        "LOOKUP probe",
        c.lookup(&LOOKUP3args {
            what: dirop(&root, "probe"),
        }),
    )
    .await
    .object;
    must(
        "COMMIT probe",
        c.commit(&COMMIT3args {
            file: fh,
            offset: 0,
            count: 0,
        }),
    )
    .await
    .verf
    .0
}

#[test]
fn durable_replies_survive_kill_9_at_random_moments() {
    let seed = std::env::var("TANDEM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("TANDEM_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let s = TestSite::init("crash", SITE_ADDR);
    let mut daemon = s.start_daemon();
    create_vserver_and_fs(&s, VS, VS_ADDR, "data", "/data");

    // Setup: a probe file for the verifier and one directory per client.
    let (mut clients, mut old_verf) = rt.block_on(async {
        let mut c = connect(&s).await;
        let root = c.root_nfs_fh3();
        let probe = must(
            "CREATE probe",
            c.create(&CREATE3args {
                where_: dirop(&root, "probe"),
                how: createhow3::GUARDED(sattr3::default()),
            }),
        )
        .await;
        assert!(matches!(probe.obj, Nfs3Option::Some(_)));
        let mut clients = Vec::new();
        for id in 0..CLIENTS {
            let r = must(
                "MKDIR client dir",
                c.mkdir(&MKDIR3args {
                    where_: dirop(&root, &format!("c{id}")),
                    attributes: sattr3::default(),
                }),
            )
            .await;
            let Nfs3Option::Some(dir_fh) = r.obj else {
                panic!("MKDIR without handle")
            };
            clients.push(Client {
                id,
                rng: StdRng::seed_from_u64(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9)),
                dir_fh,
                model: Model::new(),
                in_flight: None,
                gone: Vec::new(),
                seq: 0,
                verfs: HashSet::new(),
                acked: 0,
                lost: None,
            });
        }
        (clients, current_verifier(&mut c).await)
    });

    let mut total_acked = 0;
    for round in 1..=ROUNDS {
        let conns: Vec<Conn> = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..CLIENTS {
                v.push(connect(&s).await);
            }
            v
        });
        let tasks: Vec<_> = clients
            .into_iter()
            .zip(conns)
            .map(|(cl, conn)| rt.spawn(cl.run(conn)))
            .collect();
        // A random moment, not a wait for some state.
        let delay = Duration::from_millis(rng.gen_range(100..=1500));
        std::thread::sleep(delay);
        let killed_at = Instant::now();
        daemon.kill9();
        clients = rt.block_on(async {
            let mut v = Vec::new();
            for t in tasks {
                match t.await {
                    Ok(c) => v.push(c),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
            v
        });
        let mut acked = 0;
        for cl in &mut clients {
            let lost = cl.lost.as_ref().expect("stopped by the kill");
            assert!(
                lost.at >= killed_at,
                "client {} lost its connection before the kill: {}",
                cl.id,
                lost.what
            );
            acked += std::mem::take(&mut cl.acked);
        }
        total_acked += acked;
        eprintln!("round {round}: killed after {delay:?}, {acked} durable replies");

        // The crashed store is consistent as it lies on disk.
        assert_fsck_clean(&s, VS);

        daemon = s.start_daemon();
        old_verf = rt.block_on(async {
            let mut c = connect(&s).await;
            let verf = current_verifier(&mut c).await;
            assert_ne!(verf, old_verf, "the write verifier changes at a restart");
            for cl in &mut clients {
                if let Some(v) = cl.verfs.iter().next() {
                    assert_ne!(verf, *v, "the write verifier changes at a restart");
                }
                let how = cl.verify_after_restart(&mut c).await;
                eprintln!("  client {}: in flight at the kill: {how}", cl.id);
            }
            verf
        });
    }
    assert!(
        total_acked >= 20,
        "too few durable replies to mean anything: {total_acked}"
    );
    assert!(daemon.stop().success(), "clean stop");
    assert_fsck_clean(&s, VS);
}
