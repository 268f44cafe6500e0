//! The client workload, identical for every server: five timed rows, each
//! with its untimed set-up. Results are checked (data read back, entry
//! counts, write verifiers) so a fast wrong answer fails instead of
//! scoring; times are only ever measured, never asserted.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nfs3_client::nfs3_types::nfs3::Nfs3Option;
use nfs3_client::nfs3_types::nfs3::{cookieverf3, nfs_fh3, sattr3, stable_how, writeverf3};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tandem_testkit::client::{Client, Mounted};
use tandem_testkit::target::Target;
use tracing::info;

use crate::error::BenchError;
use crate::options::BenchOptions;

/// The five rows of the table, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    SeqWrite,
    SeqRead,
    RandomWrite,
    Metadata,
    Readdirplus,
}

pub const ROWS: [Row; 5] = [
    Row::SeqWrite,
    Row::SeqRead,
    Row::RandomWrite,
    Row::Metadata,
    Row::Readdirplus,
];

impl Row {
    pub fn unit(self) -> &'static str {
        match self {
            Row::SeqWrite | Row::SeqRead => "MiB/s",
            Row::RandomWrite | Row::Metadata => "ops/s",
            Row::Readdirplus => "entries/s",
        }
    }

    pub fn label(self, o: &BenchOptions) -> String {
        match self {
            Row::SeqWrite => format!(
                "sequential write {} ({} UNSTABLE + COMMIT)",
                human_bytes(o.seq_bytes),
                human_bytes(u64::from(o.seq_io_bytes))
            ),
            Row::SeqRead => format!(
                "sequential read {} ({} READ)",
                human_bytes(o.seq_bytes),
                human_bytes(u64::from(o.seq_io_bytes))
            ),
            Row::RandomWrite => format!(
                "random write {} x {} in {} (UNSTABLE + COMMIT)",
                o.random_writes,
                human_bytes(u64::from(o.random_io_bytes)),
                human_bytes(o.random_file_bytes)
            ),
            Row::Metadata => format!(
                "create + setattr + remove, {} files (3 RPCs each)",
                o.meta_files
            ),
            Row::Readdirplus => format!(
                "READDIRPLUS, {} entries x {} listings",
                o.readdir_entries, o.readdir_rounds
            ),
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size && n & (size - 1) == 0 {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} B")
}

/// Work shared by the workers of one phase: an index dispenser and an
/// abort flag raised by the first failure.
struct Dispenser {
    next: AtomicU64,
    total: u64,
    abort: AtomicBool,
}

impl Dispenser {
    fn new(total: u64) -> Arc<Dispenser> {
        Arc::new(Dispenser {
            next: AtomicU64::new(0),
            total,
            abort: AtomicBool::new(false),
        })
    }

    fn take(&self) -> Option<u64> {
        if self.abort.load(Ordering::Relaxed) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.total).then_some(i)
    }
}

/// Runs `work` once per client concurrently (each on its own task, each
/// with one call in flight) and gives the clients back.
async fn run_workers<F, Fut>(
    clients: &mut Vec<Client>,
    dispenser: &Arc<Dispenser>,
    work: F,
) -> Result<(), BenchError>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = (Client, Result<(), BenchError>)> + Send + 'static,
{
    let mut tasks = Vec::with_capacity(clients.len());
    for c in clients.drain(..) {
        tasks.push(tokio::spawn(work(c)));
    }
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok((c, res)) => {
                clients.push(c);
                if let Err(e) = res {
                    dispenser.abort.store(true, Ordering::Relaxed);
                    first_err.get_or_insert(e);
                }
            }
            Err(e) => {
                dispenser.abort.store(true, Ordering::Relaxed);
                first_err.get_or_insert(BenchError::Protocol {
                    server: "bench",
                    what: format!("worker task failed: {e}"),
                });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Remembers the first write verifier and refuses any other.
struct Verifier {
    server: &'static str,
    seen: Mutex<Option<writeverf3>>,
}

impl Verifier {
    fn new(server: &'static str) -> Arc<Verifier> {
        Arc::new(Verifier {
            server,
            seen: Mutex::new(None),
        })
    }

    fn check(&self, v: writeverf3) -> Result<(), BenchError> {
        let mut seen = self.seen.lock();
        match *seen {
            None => {
                *seen = Some(v);
                Ok(())
            }
            Some(s) if s == v => Ok(()),
            Some(_) => Err(BenchError::VerifierChanged {
                server: self.server,
            }),
        }
    }
}

/// The data written at chunk `i`: a window into a seeded random pattern
/// that moves with `i`, so misplaced chunks do not read back as correct.
fn chunk(pattern: &[u8], i: u64, len: usize) -> &[u8] {
    let shift = ((i % 1024) * 4) as usize;
    &pattern[shift..shift + len]
}

#[derive(Clone, Copy)]
enum Kind {
    Seq,
    Random,
}

/// One server, mounted and set up, ready to run any row any number of
/// times. Set-up (files, the populated directory) is untimed.
pub struct Session {
    pub server: &'static str,
    m: Mounted,
    io: u32,
    pattern: Arc<Vec<u8>>,
    root: nfs_fh3,
    /// The file the last sequential write made (name, handle).
    seq: Option<(String, nfs_fh3)>,
    /// The file of the last random-write run.
    rnd: Option<(String, nfs_fh3)>,
    meta: nfs_fh3,
    list: nfs_fh3,
    readdir_calls: u64,
    notes: Vec<String>,
}

impl Session {
    pub async fn open(target: &Target, o: &BenchOptions) -> anyhow::Result<Session> {
        let server = target.server;
        let mut m = Mounted::mount(target, o.in_flight).await?;
        let root = m.root.clone();
        let mut notes = Vec::new();

        let info = m.clients[0].fsinfo(&root).await?;
        let mut io = o.seq_io_bytes;
        for max in [info.rtmax, info.wtmax] {
            if max > 0 && max < io {
                io = max - max % 4;
            }
        }
        if io != o.seq_io_bytes {
            notes.push(format!(
                "{server}: rtmax {} / wtmax {}: sequential I/O clamped to {io} bytes",
                info.rtmax, info.wtmax
            ));
        }
        if u64::from(o.random_io_bytes) > u64::from(info.wtmax) && info.wtmax > 0 {
            return Err(BenchError::Protocol {
                server,
                what: format!(
                    "wtmax {} is below the random write size {}",
                    info.wtmax, o.random_io_bytes
                ),
            }
            .into());
        }
        let mut pattern = vec![0u8; io as usize + 4096];
        StdRng::seed_from_u64(o.seed).fill_bytes(&mut pattern);

        let c = &mut m.clients[0];
        let meta = c.mkdir(&root, "meta").await?;
        let list = c.mkdir(&root, "list").await?;
        populate(&mut m.clients, &list, o.readdir_entries).await?;
        info!(server, "set up");
        Ok(Session {
            server,
            m,
            io,
            pattern: Arc::new(pattern),
            root,
            seq: None,
            rnd: None,
            meta,
            list,
            readdir_calls: 0,
            notes,
        })
    }

    /// Runs one row once (`rep` numbers the repetition) and returns its
    /// rate in the row's unit.
    pub async fn run_row(&mut self, row: Row, rep: u32, o: &BenchOptions) -> anyhow::Result<f64> {
        let server = self.server;
        let rate = match row {
            Row::SeqWrite => {
                // A new file every time (writing into allocated blocks is
                // another, faster, workload); the previous one is removed
                // after the timed part.
                let name = format!("seq-{rep}.bin");
                let fh = self.m.clients[0].create(&self.root, &name, 0o644).await?;
                let d = seq_write(
                    &mut self.m.clients,
                    &fh,
                    o.seq_bytes,
                    self.io,
                    &self.pattern,
                )
                .await?;
                info!(server, rep, elapsed = ?d, "sequential write");
                self.replace_file(Kind::Seq, name, fh).await?;
                tandem_control::api::proto::mib(o.seq_bytes) / secs(d)
            }
            Row::SeqRead => {
                let fh = match &self.seq {
                    Some((_, fh)) => fh.clone(),
                    None => {
                        let name = "seq-read.bin".to_string();
                        let fh = self.m.clients[0].create(&self.root, &name, 0o644).await?;
                        seq_write(
                            &mut self.m.clients,
                            &fh,
                            o.seq_bytes,
                            self.io,
                            &self.pattern,
                        )
                        .await?;
                        self.replace_file(Kind::Seq, name, fh.clone()).await?;
                        fh
                    }
                };
                let d = seq_read(
                    &mut self.m.clients,
                    &fh,
                    o.seq_bytes,
                    self.io,
                    &self.pattern,
                )
                .await?;
                info!(server, rep, elapsed = ?d, "sequential read");
                tandem_control::api::proto::mib(o.seq_bytes) / secs(d)
            }
            Row::RandomWrite => {
                let name = format!("random-{rep}.bin");
                let c = &mut self.m.clients[0];
                let fh = c.create(&self.root, &name, 0o644).await?;
                c.setattr(
                    &fh,
                    &name,
                    sattr3 {
                        size: Nfs3Option::Some(o.random_file_bytes),
                        ..sattr3::default()
                    },
                )
                .await?;
                let mut rng = StdRng::seed_from_u64(o.seed ^ u64::from(rep).rotate_left(32));
                let slots = o.random_file_bytes / u64::from(o.random_io_bytes);
                let offsets: Vec<u64> = (0..o.random_writes)
                    .map(|_| rng.gen_range(0..slots) * u64::from(o.random_io_bytes))
                    .collect();
                let d = random_write(
                    &mut self.m.clients,
                    &fh,
                    Arc::new(offsets),
                    o.random_io_bytes,
                    &self.pattern,
                )
                .await?;
                info!(server, rep, elapsed = ?d, "random write");
                self.replace_file(Kind::Random, name, fh).await?;
                o.random_writes as f64 / secs(d)
            }
            Row::Metadata => {
                let d = metadata(&mut self.m.clients, &self.meta, o.meta_files, rep).await?;
                info!(server, rep, elapsed = ?d, "create + setattr + remove");
                (3 * o.meta_files) as f64 / secs(d)
            }
            Row::Readdirplus => {
                let (d, calls) = readdirplus(&mut self.m.clients[0], &self.list, o).await?;
                self.readdir_calls = calls / u64::from(o.readdir_rounds.max(1));
                info!(server, rep, elapsed = ?d, calls, "READDIRPLUS");
                (o.readdir_entries * u64::from(o.readdir_rounds)) as f64 / secs(d)
            }
        };
        Ok(rate)
    }

    /// Untimed, before a run of `row`: removes the file the previous run
    /// of a write row left, so the file system can reuse its blocks (on
    /// thin-provisioned disks, first writes to never-used blocks are several
    /// times slower, which would otherwise decide the row).
    pub async fn prepare(&mut self, row: Row) -> Result<(), BenchError> {
        let old = match row {
            Row::SeqWrite => self.seq.take(),
            Row::RandomWrite => self.rnd.take(),
            _ => None,
        };
        if let Some((name, _)) = old {
            self.m.clients[0].remove(&self.root, &name).await?;
        }
        Ok(())
    }

    /// Remembers the newest file of a kind and removes the one before.
    async fn replace_file(
        &mut self,
        kind: Kind,
        name: String,
        fh: nfs_fh3,
    ) -> Result<(), BenchError> {
        let slot = match kind {
            Kind::Seq => &mut self.seq,
            Kind::Random => &mut self.rnd,
        };
        if let Some((old, _)) = slot.replace((name, fh)) {
            self.m.clients[0].remove(&self.root, &old).await?;
        }
        Ok(())
    }

    /// Unmounts; returns what the server told us along the way.
    pub async fn close(mut self, o: &BenchOptions) -> Vec<String> {
        if self.readdir_calls > 0 {
            self.notes.push(format!(
                "{}: {} READDIRPLUS calls per listing (dircount {}, maxcount {})",
                self.server, self.readdir_calls, o.readdir_dircount, o.readdir_maxcount
            ));
        }
        self.m.unmount().await;
        self.notes
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

async fn seq_write(
    clients: &mut Vec<Client>,
    fh: &nfs_fh3,
    total: u64,
    io: u32,
    pattern: &Arc<Vec<u8>>,
) -> Result<Duration, BenchError> {
    let chunks = total.div_ceil(u64::from(io));
    let places = (0..chunks)
        .map(|i| {
            let offset = i * u64::from(io);
            (offset, (total - offset).min(u64::from(io)) as usize)
        })
        .collect();
    unstable_writes(clients, fh, Arc::new(places), pattern).await
}

/// Write `i` goes to `places[i]` (offset, length) as UNSTABLE, spread over
/// the clients, then one COMMIT; the verifier must not change throughout.
async fn unstable_writes(
    clients: &mut Vec<Client>,
    fh: &nfs_fh3,
    places: Arc<Vec<(u64, usize)>>,
    pattern: &Arc<Vec<u8>>,
) -> Result<Duration, BenchError> {
    let server = clients[0].server;
    let dispenser = Dispenser::new(places.len() as u64);
    let verifier = Verifier::new(server);
    let start = Instant::now();
    run_workers(clients, &dispenser, |mut c| {
        let (dispenser, verifier, pattern, fh, places) = (
            dispenser.clone(),
            verifier.clone(),
            pattern.clone(),
            fh.clone(),
            places.clone(),
        );
        async move {
            let res = async {
                while let Some(i) = dispenser.take() {
                    let (offset, len) = places[i as usize];
                    let data = chunk(&pattern, i, len);
                    let verf = c.write_all(&fh, offset, data, stable_how::UNSTABLE).await?;
                    verifier.check(verf)?;
                }
                Ok(())
            }
            .await;
            (c, res)
        }
    })
    .await?;
    let verf = clients[0].commit(fh).await?;
    verifier.check(verf)?;
    Ok(start.elapsed())
}

async fn seq_read(
    clients: &mut Vec<Client>,
    fh: &nfs_fh3,
    total: u64,
    io: u32,
    pattern: &Arc<Vec<u8>>,
) -> Result<Duration, BenchError> {
    let chunks = total.div_ceil(u64::from(io));
    let dispenser = Dispenser::new(chunks);
    let start = Instant::now();
    run_workers(clients, &dispenser, |mut c| {
        let (dispenser, pattern, fh) = (dispenser.clone(), pattern.clone(), fh.clone());
        async move {
            let res = async {
                while let Some(i) = dispenser.take() {
                    let offset = i * u64::from(io);
                    let len = (total - offset).min(u64::from(io)) as usize;
                    let expect = chunk(&pattern, i, len);
                    let mut got = 0usize;
                    while got < len {
                        let want = (len - got) as u32;
                        let (data, eof) = c.read(&fh, offset + got as u64, want).await?;
                        if data.is_empty() {
                            return Err(BenchError::Protocol {
                                server: c.server,
                                what: format!(
                                    "READ at offset {} returned no data (eof {eof}) in a {total}-byte file",
                                    offset + got as u64
                                ),
                            });
                        }
                        if data[..] != expect[got..got + data.len()] {
                            return Err(BenchError::Protocol {
                                server: c.server,
                                what: format!(
                                    "READ at offset {} returned data that differs from what was written",
                                    offset + got as u64
                                ),
                            });
                        }
                        got += data.len();
                    }
                }
                Ok(())
            }
            .await;
            (c, res)
        }
    })
    .await?;
    Ok(start.elapsed())
}

async fn random_write(
    clients: &mut Vec<Client>,
    fh: &nfs_fh3,
    offsets: Arc<Vec<u64>>,
    io: u32,
    pattern: &Arc<Vec<u8>>,
) -> Result<Duration, BenchError> {
    let places = offsets.iter().map(|&o| (o, io as usize)).collect();
    unstable_writes(clients, fh, Arc::new(places), pattern).await
}

async fn metadata(
    clients: &mut Vec<Client>,
    dir: &nfs_fh3,
    files: u64,
    rep: u32,
) -> Result<Duration, BenchError> {
    let dispenser = Dispenser::new(files);
    let start = Instant::now();
    run_workers(clients, &dispenser, |mut c| {
        let (dispenser, dir) = (dispenser.clone(), dir.clone());
        async move {
            let res = async {
                while let Some(i) = dispenser.take() {
                    let name = format!("m{rep}-{i:07}");
                    let fh = c.create(&dir, &name, 0o644).await?;
                    c.setattr(
                        &fh,
                        &name,
                        sattr3 {
                            mode: Nfs3Option::Some(0o600),
                            ..sattr3::default()
                        },
                    )
                    .await?;
                    c.remove(&dir, &name).await?;
                }
                Ok(())
            }
            .await;
            (c, res)
        }
    })
    .await?;
    Ok(start.elapsed())
}

/// Untimed: creates `entries` empty files in `dir`.
async fn populate(
    clients: &mut Vec<Client>,
    dir: &nfs_fh3,
    entries: u64,
) -> Result<(), BenchError> {
    let dispenser = Dispenser::new(entries);
    run_workers(clients, &dispenser, |mut c| {
        let (dispenser, dir) = (dispenser.clone(), dir.clone());
        async move {
            let res = async {
                while let Some(i) = dispenser.take() {
                    c.create(&dir, &format!("e{i:07}"), 0o644).await?;
                }
                Ok(())
            }
            .await;
            (c, res)
        }
    })
    .await
}

/// Timed: `readdir_rounds` full listings, one after the other (a listing
/// is a chain of cookies, so one call at a time). Returns the time and
/// the number of calls.
async fn readdirplus(
    c: &mut Client,
    dir: &nfs_fh3,
    o: &BenchOptions,
) -> Result<(Duration, u64), BenchError> {
    // A listing that never reaches EOF is a server bug; stop well past
    // the most calls a correct server could need (one entry per call).
    let max_calls = o.readdir_entries + 16;
    let mut calls = 0u64;
    let start = Instant::now();
    for round in 0..o.readdir_rounds {
        let mut cookie = 0u64;
        let mut verf = cookieverf3::default();
        let mut seen = 0u64;
        let mut round_calls = 0u64;
        loop {
            round_calls += 1;
            if round_calls > max_calls {
                return Err(BenchError::Protocol {
                    server: c.server,
                    what: format!(
                        "READDIRPLUS listing {round} did not end after {max_calls} calls"
                    ),
                });
            }
            let ok = c
                .readdirplus(dir, cookie, verf, o.readdir_dircount, o.readdir_maxcount)
                .await?;
            verf = ok.cookieverf;
            for e in &ok.reply.entries.0 {
                let name = e.name.as_ref();
                if name != b"." && name != b".." {
                    seen += 1;
                }
                cookie = e.cookie;
            }
            if ok.reply.eof {
                break;
            }
            if ok.reply.entries.0.is_empty() {
                return Err(BenchError::Protocol {
                    server: c.server,
                    what: format!("READDIRPLUS at cookie {cookie} returned no entries and no EOF"),
                });
            }
        }
        if seen != o.readdir_entries {
            return Err(BenchError::Protocol {
                server: c.server,
                what: format!(
                    "READDIRPLUS listing {round} returned {seen} entries, expected {}",
                    o.readdir_entries
                ),
            });
        }
        calls += round_calls;
    }
    Ok((start.elapsed(), calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(4096), "4 KiB");
        assert_eq!(human_bytes(1000), "1000 B");
    }

    #[test]
    fn chunks_move_with_their_index() {
        let pattern: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        assert_ne!(chunk(&pattern, 0, 16), chunk(&pattern, 1, 16));
        assert_eq!(chunk(&pattern, 3, 16), chunk(&pattern, 1027, 16));
    }

    #[test]
    fn verifier_refuses_a_change() {
        let v = Verifier::new("x");
        v.check(writeverf3([1; 8])).expect("first");
        v.check(writeverf3([1; 8])).expect("same");
        assert!(v.check(writeverf3([2; 8])).is_err());
    }
}
