//! A client that writes rounds through a vserver's address while it
//! moves (switchover, failover): UNSTABLE + COMMIT and FILE_SYNC, retried
//! on NFS3ERR_JUKEBOX and on a lost connection (a new one to the same
//! address and port), keeping its file handles and what was acknowledged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::Nfs3Client;

use super::nfs::*;
use super::replication::pattern;
use super::DEADLINE;

pub const FILES: usize = 3;
pub const CHUNK_BYTES: usize = 8 << 10;

/// The writing client: its handles, what the server acknowledged of each
/// file, and what it met on the way.
pub struct Writer {
    pub client: Nfs3Client<Tcp>,
    pub ip: String,
    pub port: u16,
    pub files: Vec<(nfs_fh3, Vec<u8>)>,
    pub jukebox: u64,
    pub reconnects: u64,
    pub verifier_changes: u64,
}

/// One call, retried on JUKEBOX (after a short back-off, as clients do)
/// and on a lost connection (a new one to the same address: the address
/// moves during a switchover); any other error fails the test.
macro_rules! retrying {
    ($w:ident, $what:literal, |$c:ident| $call:expr) => {{
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < DEADLINE * 2,
                "{}: no success in time",
                $what
            );
            let result = {
                let $c = &mut $w.client;
                call_or_lost($what, $call).await
            };
            match result {
                Ok(Ok(v)) => break v,
                Ok(Err(nfsstat3::NFS3ERR_JUKEBOX)) => {
                    $w.jukebox += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(Err(st)) => panic!("{}: {st:?}; only success or JUKEBOX may come", $what),
                Err(_) => {
                    $w.reconnects += 1;
                    $w.client = reconnect(&$w.ip, $w.port).await;
                }
            }
        }
    }};
}

impl Writer {
    /// Every acknowledged byte, read through the handles the client had
    /// from the start, on the connection it holds now.
    pub async fn assert_acked_readable(&mut self) {
        for (i, (fh, acked)) in self.files.iter().enumerate() {
            let got = read_whole(&mut self.client, fh).await;
            assert!(
                got == *acked,
                "w{i}.bin: {} bytes read, {} acknowledged",
                got.len(),
                acked.len()
            );
        }
    }

    async fn write(&mut self, i: usize, data: &[u8], stable: stable_how) -> writeverf3 {
        let (fh, acked) = &self.files[i];
        let args = WRITE3args {
            file: fh.clone(),
            offset: acked.len() as u64,
            count: data.len() as u32,
            stable,
            data: Opaque::borrowed(data),
        };
        let w = retrying!(self, "WRITE", |c| c.write(&args));
        assert_eq!(w.count as usize, data.len());
        w.verf
    }

    /// Appends to file `round % FILES`: UNSTABLE then COMMIT on even
    /// rounds (resent FILE_SYNC when the verifier changed in between, as
    /// a client must), FILE_SYNC on odd ones. Only then is it acknowledged.
    pub async fn round(&mut self, round: u64) {
        let i = (round as usize) % FILES;
        let data = pattern(CHUNK_BYTES, round);
        if round.is_multiple_of(2) {
            let verf = self.write(i, &data, stable_how::UNSTABLE).await;
            let args = COMMIT3args {
                file: self.files[i].0.clone(),
                offset: 0,
                count: 0,
            };
            let done = retrying!(self, "COMMIT", |c| c.commit(&args));
            if done.verf != verf {
                self.verifier_changes += 1;
                self.write(i, &data, stable_how::FILE_SYNC).await;
            }
        } else {
            self.write(i, &data, stable_how::FILE_SYNC).await;
        }
        self.files[i].1.extend_from_slice(&data);
    }
}

/// Mounts once, creates the files, then writes rounds until `stop`;
/// `rounds` counts the acknowledged ones.
pub async fn run_writer(
    s_addr: String,
    ports: (u16, u16),
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> Writer {
    let mut conn = mount_at(&s_addr, "/data", ports, DEADLINE).await;
    let mut files = Vec::new();
    for i in 0..FILES {
        files.push((
            create_file(&mut conn, &format!("w{i}.bin")).await,
            Vec::new(),
        ));
    }
    let client = reconnect(&s_addr, ports.1).await;
    let mut w = Writer {
        client,
        ip: s_addr,
        port: ports.1,
        files,
        jukebox: 0,
        reconnects: 0,
        verifier_changes: 0,
    };
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        w.round(round).await;
        round += 1;
        rounds.store(round, Ordering::Relaxed);
    }
    w
}

/// Polls until the writer has acknowledged `n` more rounds than `from`.
pub fn wait_rounds(rounds: &AtomicU64, from: u64, n: u64, logs: &dyn Fn() -> String) -> u64 {
    let start = Instant::now();
    loop {
        let now = rounds.load(Ordering::Relaxed);
        if now >= from + n {
            return now;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the writer is stuck at round {now}; logs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
