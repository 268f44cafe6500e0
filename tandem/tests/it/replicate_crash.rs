//! Replication survives crashes of either site: while clients keep
//! creating, writing (FILE_SYNC, or UNSTABLE + COMMIT, now and then a few
//! MiB), truncating, renaming and removing files through NFS at the active
//! site, `kill -9` the replica while it applies (odd rounds) or the active
//! site while it streams (even rounds), and restart it; users and file
//! systems are added between kills. At the end both sites converge and
//! show the same tree and configuration, every reply that promised
//! durability holds at both, and `tandem fsck` finds both stores clean.
//!
//! Each client keeps, per file name, the content its acknowledged replies
//! imply. A call whose reply was lost to a kill leaves its names uncertain
//! (done or not): they are never used again and may be present or not at
//! the end. Names are never reused, so a removed name must stay absent.
//!
//! Set TANDEM_REPL_CRASH_SEED to replay one run's random choices (what is
//! in flight at each kill still depends on timing).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::tree::*;
use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::RpcError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

const VS: &str = "vs";
const VS_ADDR: &str = "127.79.22.11";
const REPLICA_ADDR: &str = "127.79.22.12";
const CLIENTS: usize = 3;
const ROUNDS: usize = 6;
/// Polls and reconnects give up after this long (a loaded machine, a
/// debug build, a restart's recovery).
const LONG: Duration = Duration::from_secs(120);
const MAX_FILES: usize = 30;
const MAX_WRITE: usize = 48 << 10;
/// Big files are written in 1 MiB UNSTABLE writes, up to this many.
const MAX_BIG_MIB: usize = 3;

/// The connection is gone (the daemon was killed): the outcome of the
/// call is unknown.
struct Lost;

/// One call: its reply, `Lost` if the transport failed. An NFS error is a
/// test failure: the model knows every name and size.
async fn attempt<T, E: std::fmt::Debug>(
    what: &str,
    fut: impl std::future::Future<Output = Result<Nfs3Result<T, E>, RpcError>>,
) -> Result<T, Lost> {
    match call_or_lost(what, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(st)) => panic!("{what}: {st:?}"),
        Err(_) => Err(Lost),
    }
}

/// Counters the orchestrating thread reads.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Replies that promised durability.
    acked: AtomicU64,
    /// Calls whose connection broke.
    lost: AtomicU64,
}

struct Client {
    id: usize,
    rng: StdRng,
    dir: nfs_fh3,
    seq: u64,
    ports: (u16, u16),
    /// Name (in this client's directory) to the content acknowledged
    /// replies imply.
    files: BTreeMap<String, Vec<u8>>,
    /// Names a lost call touched: present or not, any content.
    uncertain: BTreeSet<String>,
    /// Names whose removal (or rename away) was acknowledged.
    removed: BTreeSet<String>,
    shared: Arc<Shared>,
}

impl Client {
    async fn run(mut self) -> Client {
        let mut c = self.connect().await;
        while !self.shared.stop.load(Ordering::Relaxed) {
            if self.step(&mut c).await.is_err() {
                self.shared.lost.fetch_add(1, Ordering::Relaxed);
                c = self.connect().await;
            }
        }
        self
    }

    async fn connect(&self) -> Conn {
        mount_at(VS_ADDR, "/data", self.ports, LONG).await
    }

    fn fresh_name(&mut self) -> String {
        self.seq += 1;
        format!("f{}", self.seq)
    }

    fn pick(&mut self) -> Option<String> {
        if self.files.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..self.files.len());
        self.files.keys().nth(i).cloned()
    }

    fn data(&mut self) -> Vec<u8> {
        let len = self.rng.gen_range(1..=MAX_WRITE);
        pattern(len, self.rng.gen())
    }

    /// Takes `name` out of the certain state until its call is acked.
    fn unsettle(&mut self, name: &str) -> Vec<u8> {
        self.uncertain.insert(name.to_string());
        self.files.remove(name).unwrap_or_default()
    }

    fn settle(&mut self, name: &str, content: Vec<u8>) {
        self.uncertain.remove(name);
        self.files.insert(name.to_string(), content);
        self.shared.acked.fetch_add(1, Ordering::Relaxed);
    }

    fn settle_removed(&mut self, name: &str) {
        self.uncertain.remove(name);
        self.removed.insert(name.to_string());
    }

    async fn step(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let roll = self.rng.gen_range(0..100);
        let full = self.files.len() >= MAX_FILES;
        match self.pick() {
            Some(name) if full || roll < 15 => self.remove(c, name).await,
            Some(name) if roll < 30 => self.rename(c, name).await,
            Some(name) if roll < 45 => self.overwrite(c, name).await,
            Some(name) if roll < 55 => self.truncate(c, name).await,
            _ => self.create(c).await,
        }
    }

    async fn create(&mut self, c: &mut Conn) -> Result<(), Lost> {
        let name = self.fresh_name();
        self.unsettle(&name);
        let r = attempt(
            "CREATE",
            c.create(&CREATE3args {
                where_: dirop(&self.dir, &name),
                how: createhow3::GUARDED(sattr3 {
                    mode: Nfs3Option::Some(0o644),
                    ..Default::default()
                }),
            }),
        )
        .await?;
        let Nfs3Option::Some(fh) = r.obj else {
            panic!("CREATE without a handle")
        };
        // Now and then a big file, so the replica dies amid big batches.
        let big = self.rng.gen_bool(0.04);
        let data = if big {
            let len = self.rng.gen_range(1..=MAX_BIG_MIB) << 20;
            pattern(len, self.rng.gen())
        } else {
            self.data()
        };
        if !big && self.rng.gen_bool(0.5) {
            self.write(c, &fh, 0, &data, stable_how::FILE_SYNC).await?;
        } else {
            // UNSTABLE pieces, then a COMMIT that covers them all.
            let pieces = if big {
                data.len() >> 20
            } else {
                self.rng.gen_range(1..=3)
            };
            let step = data.len().div_ceil(pieces);
            let mut verf = None;
            for (i, chunk) in data.chunks(step).enumerate() {
                let v = self
                    .write(c, &fh, (i * step) as u64, chunk, stable_how::UNSTABLE)
                    .await?;
                assert!(verf.is_none_or(|x| x == v), "verifier changed mid-file");
                verf = Some(v);
            }
            let r = attempt(
                "COMMIT",
                c.commit(&COMMIT3args {
                    file: fh,
                    offset: 0,
                    count: 0,
                }),
            )
            .await?;
            // Same connection, same server: nothing to resend.
            assert_eq!(Some(r.verf), verf, "COMMIT verifier");
        }
        self.settle(&name, data);
        Ok(())
    }

    async fn write(
        &mut self,
        c: &mut Conn,
        fh: &nfs_fh3,
        offset: u64,
        data: &[u8],
        stable: stable_how,
    ) -> Result<writeverf3, Lost> {
        let r = attempt(
            "WRITE",
            c.write(&WRITE3args {
                file: fh.clone(),
                offset,
                count: data.len() as u32,
                stable,
                data: Opaque::borrowed(data),
            }),
        )
        .await?;
        assert_eq!(r.count as usize, data.len(), "short WRITE");
        if stable == stable_how::FILE_SYNC {
            assert_eq!(r.committed, stable_how::FILE_SYNC, "FILE_SYNC write");
        }
        Ok(r.verf)
    }

    async fn lookup(&mut self, c: &mut Conn, name: &str) -> Result<nfs_fh3, Lost> {
        let r = attempt(
            "LOOKUP",
            c.lookup(&LOOKUP3args {
                what: dirop(&self.dir, name),
            }),
        )
        .await?;
        Ok(r.object)
    }

    async fn overwrite(&mut self, c: &mut Conn, name: String) -> Result<(), Lost> {
        let mut content = self.unsettle(&name);
        let fh = self.lookup(c, &name).await?;
        let data = self.data();
        let offset = self.rng.gen_range(0..=content.len());
        self.write(c, &fh, offset as u64, &data, stable_how::FILE_SYNC)
            .await?;
        let end = offset + data.len();
        if content.len() < end {
            content.resize(end, 0);
        }
        content[offset..end].copy_from_slice(&data);
        self.settle(&name, content);
        Ok(())
    }

    async fn truncate(&mut self, c: &mut Conn, name: String) -> Result<(), Lost> {
        let mut content = self.unsettle(&name);
        let fh = self.lookup(c, &name).await?;
        let size = self.rng.gen_range(0..=content.len() + 8192);
        attempt(
            "SETATTR size",
            c.setattr(&SETATTR3args {
                object: fh,
                new_attributes: sattr3 {
                    size: Nfs3Option::Some(size as u64),
                    ..Default::default()
                },
                guard: Nfs3Option::None,
            }),
        )
        .await?;
        content.resize(size, 0);
        self.settle(&name, content);
        Ok(())
    }

    async fn rename(&mut self, c: &mut Conn, from: String) -> Result<(), Lost> {
        let to = self.fresh_name();
        let content = self.unsettle(&from);
        self.unsettle(&to);
        attempt(
            "RENAME",
            c.rename(&RENAME3args {
                from: dirop(&self.dir, &from),
                to: dirop(&self.dir, &to),
            }),
        )
        .await?;
        self.settle_removed(&from);
        self.settle(&to, content);
        Ok(())
    }

    async fn remove(&mut self, c: &mut Conn, name: String) -> Result<(), Lost> {
        self.unsettle(&name);
        attempt(
            "REMOVE",
            c.remove(&REMOVE3args {
                object: dirop(&self.dir, &name),
            }),
        )
        .await?;
        self.settle_removed(&name);
        self.shared.acked.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Every acknowledged file with its bytes, no removed name, nothing
    /// the client never made.
    fn check(&self, tree: &Tree, site: &str) {
        let prefix = format!("c{}/", self.id);
        let present: BTreeMap<&str, &Node> = tree
            .iter()
            .filter_map(|(p, n)| p.strip_prefix(&prefix).map(|name| (name, n)))
            .collect();
        for (name, content) in &self.files {
            let n = present.get(name.as_str()).unwrap_or_else(|| {
                panic!("{site}: {prefix}{name} was acknowledged but is missing")
            });
            let sha: [u8; 32] = Sha256::digest(content).into();
            assert_eq!(
                (n.attrs.size, n.sha256),
                (content.len() as u64, Some(sha)),
                "{site}: {prefix}{name}: not the acknowledged bytes"
            );
        }
        for name in present.keys() {
            assert!(
                !self.removed.contains(*name),
                "{site}: {prefix}{name} was removed (acknowledged) but is present"
            );
            assert!(
                self.files.contains_key(*name) || self.uncertain.contains(*name),
                "{site}: {prefix}{name} was never made"
            );
        }
    }
}

/// Polls `f` until it returns true, `LONG` at most.
fn poll(what: &str, logs: &dyn Fn() -> String, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < LONG,
            "{what}: not within {LONG:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn last_lsn(site: &TestSite) -> u64 {
    vserver_status(site, VS)
        .and_then(|v| v["last_lsn"].as_u64())
        .unwrap_or(0)
}

fn acked_by_replica(a: &TestSite) -> u64 {
    vserver_status(a, VS)
        .and_then(|v| v["replication"]["replica_lsn"].as_u64())
        .unwrap_or(0)
}

#[test]
fn both_sites_survive_kill_9_rounds_and_converge() {
    let seed = std::env::var("TANDEM_REPL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("TANDEM_REPL_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let (a, a_addr) = site("alpha", "127.79.22.1");
    let (b, b_addr) = site("beta", "127.79.22.2");
    let mut da = a.start_daemon();
    let mut db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, VS, VS_ADDR, "data", "/data");
    replicate_to_beta(&a, VS, REPLICA_ADDR);
    let rt = runtime();
    let shared = Arc::new(Shared::default());

    let dirs = rt.block_on(async {
        let mut c = mount(&a, VS_ADDR).await;
        let root = c.root_nfs_fh3();
        let mut dirs = Vec::new();
        for id in 0..CLIENTS {
            let r = must(
                "MKDIR",
                c.mkdir(&MKDIR3args {
                    where_: dirop(&root, &format!("c{id}")),
                    attributes: sattr3::default(),
                }),
            )
            .await;
            let Nfs3Option::Some(fh) = r.obj else {
                panic!("MKDIR without a handle")
            };
            dirs.push(fh);
        }
        dirs
    });
    let tasks: Vec<_> = dirs
        .into_iter()
        .enumerate()
        .map(|(id, dir)| {
            let client = Client {
                id,
                rng: StdRng::seed_from_u64(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9)),
                dir,
                seq: 0,
                ports: (a.mount_port, a.nfs_port),
                files: BTreeMap::new(),
                uncertain: BTreeSet::new(),
                removed: BTreeSet::new(),
                shared: shared.clone(),
            };
            rt.spawn(client.run())
        })
        .collect();

    let logs = |da: &Daemon, db: &Daemon| format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    for round in 1..=ROUNDS {
        let acked_before = shared.acked.load(Ordering::Relaxed);
        let delay = Duration::from_millis(rng.gen_range(0..=400));
        // A user-map change each round, a file system every other one:
        // configuration records cross the kills too.
        let user = format!("u{round}");
        let uid = (1000 + round).to_string();
        let out = a.tandem(&["user", "add", VS, &user, "--uid", &uid, "--gid", &uid]);
        assert_success(&out, "user add");
        if round % 2 == 0 {
            create_fs(&a, VS, &format!("fs{round}"), &format!("/fs{round}"));
        }
        if round % 2 == 1 {
            // The replica, while it applies: its LSN is moving.
            let from = last_lsn(&b);
            poll("replica applying", &|| logs(&da, &db), || {
                last_lsn(&b) > from
            });
            let lost_before = shared.lost.load(Ordering::Relaxed);
            std::thread::sleep(delay);
            let at_kill = last_lsn(&b);
            db.kill9();
            assert_fsck_clean(&b, VS);
            db = b.start_daemon();
            // It resumes applying past where it died.
            poll("replica applies again", &|| logs(&da, &db), || {
                last_lsn(&b) > at_kill
            });
            // In async mode the active site served on, without a break.
            assert_eq!(
                shared.lost.load(Ordering::Relaxed),
                lost_before,
                "a client lost its connection to the active while the replica was down"
            );
            eprintln!("round {round}: replica killed after {delay:?} at LSN {at_kill}");
        } else {
            // The active site, while it streams: acks are moving.
            let from = acked_by_replica(&a);
            poll("active streaming", &|| logs(&da, &db), || {
                acked_by_replica(&a) > from
            });
            let lost_before = shared.lost.load(Ordering::Relaxed);
            std::thread::sleep(delay);
            let at_kill = last_lsn(&a);
            da.kill9();
            assert_fsck_clean(&a, VS);
            da = a.start_daemon();
            poll("active streams again", &|| logs(&da, &db), || {
                acked_by_replica(&a) > at_kill
            });
            // Every client was busy, so each lost a call to the kill.
            assert!(
                shared.lost.load(Ordering::Relaxed) >= lost_before + CLIENTS as u64,
                "a client did not notice the active site die"
            );
            eprintln!("round {round}: active killed after {delay:?} at LSN {at_kill}");
        }
        // The clients work again.
        poll("clients make progress", &|| logs(&da, &db), || {
            shared.acked.load(Ordering::Relaxed) > acked_before
        });
    }

    shared.stop.store(true, Ordering::Relaxed);
    let clients: Vec<Client> = rt.block_on(async {
        let mut v = Vec::new();
        for t in tasks {
            match t.await {
                Ok(c) => v.push(c),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        v
    });
    let acked = shared.acked.load(Ordering::Relaxed);
    assert!(
        acked >= 40,
        "too few durable replies to mean anything: {acked}"
    );
    eprintln!(
        "{acked} durable replies, {} calls lost to kills",
        shared.lost.load(Ordering::Relaxed)
    );

    wait_converged_within(&a, &b, VS, LONG, &|| logs(&da, &db));
    let (at_a, at_b) = rt.block_on(async {
        let mut ca = mount(&a, VS_ADDR).await;
        let mut cb = mount(&b, REPLICA_ADDR).await;
        (snapshot(&mut ca).await, snapshot(&mut cb).await)
    });
    let config = assert_same_config(&a, &b, VS);
    assert_eq!(config, (1 + ROUNDS / 2, ROUNDS), "file systems and users");
    for cl in &clients {
        cl.check(&at_a, "active");
        cl.check(&at_b, "replica");
    }
    assert_same_tree(&at_a, &at_b, "after the kill rounds");

    assert_verify_matches(&a, VS);
    assert!(db.stop().success(), "replica stops cleanly");
    assert!(da.stop().success(), "active stops cleanly");
    assert_fsck_clean(&a, VS);
    assert_fsck_clean(&b, VS);
}
