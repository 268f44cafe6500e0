//! The catch-up over a connection, after a journal overflow at the active
//! site: `send_catchup` and `receive_catchup` (layouts and order:
//! docs/replication-protocol.md, "Catch-up (version 1)"). The store does
//! the work (`tandem_store::overflow` on the active side,
//! `tandem_store::catchup` at the replica); this moves its pieces.
//!
//! Order: `CatchupStart` -> `CatchupState` pieces -> `CatchupChunk` /
//! `CatchupZeros` in (inode, offset) order -> `CatchupDone` -> `Ack` at the
//! catch-up LSN once the replica installed it (or `Error`). Nothing
//! resumes: the replica stages everything and switches only at the end, so
//! a broken transfer leaves it as it was and the next attempt starts over.
//! Both functions borrow the stream; the streaming session follows on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tandem_store::catchup::CatchupInstall;
use tandem_store::overflow::{CatchupPiece, CatchupSnapshot};
use tandem_store::{Lsn, Store, StoreOptions};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::baseline::{
    ack_install, blocking, install_error, protocol_error, publish, refuse_input,
    refuse_other_vserver, send_done, send_state, step, store_error, BaselineConfig,
    BaselineSessionError, BaselineStatus,
};
use crate::wire::{self, CatchupStart, Message};

type Result<T> = std::result::Result<T, BaselineSessionError>;

/// What a finished catch-up moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchupSent {
    pub lsn: Lsn,
    /// File bytes sent as data (zero pieces cost no bytes).
    pub data_bytes: u64,
    /// Bytes of the encoded state sent.
    pub state_bytes: u64,
}

/// Sends the catch-up `snap` (from `store.catchup_begin()`) over `stream`.
/// Returns once the replica has installed it; stream frames from its LSN.
/// Progress counts range bytes (data and zeros) of `snap.total_bytes`.
pub async fn send_catchup<S>(
    stream: &mut S,
    store: Arc<Store>,
    snap: Arc<CatchupSnapshot>,
    cfg: &BaselineConfig,
    progress: Option<&watch::Sender<BaselineStatus>>,
) -> Result<CatchupSent>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Message::CatchupStart(CatchupStart {
        vserver: store.config().name,
        epoch: snap.epoch,
        from_lsn: snap.from_lsn,
        lsn: snap.lsn,
        state_len: snap.state.len() as u64,
        state_crc: snap.state_crc,
        range_count: snap.ranges.len() as u64,
        total_bytes: snap.total_bytes,
    });
    wire::write_message(stream, &start, cfg.message_timeout).await?;
    send_state(stream, &snap.state, cfg, |offset, data| {
        Message::CatchupState { offset, data }
    })
    .await?;
    let mut status = BaselineStatus::starting(snap.lsn, snap.total_bytes, 0);
    let mut bucket = crate::throttle::for_copy(cfg.max_bytes_per_s, cfg.chunk_bytes);
    publish(progress, &status);
    let mut data_bytes = 0u64;
    let chunk = cfg.chunk_bytes.clamp(1, wire::MAX_BASELINE_CHUNK_BYTES);
    for r in &snap.ranges {
        let end = r.offset.saturating_add(r.len);
        let mut at = r.offset;
        while at < end {
            let want = chunk.min(usize::try_from(end - at).unwrap_or(chunk));
            let (s, ino) = (store.clone(), r.ino);
            let read = blocking(move || s.catchup_read(ino, at, want)).await?;
            let msg = match read {
                Ok(CatchupPiece::Bytes(data)) => {
                    data_bytes += data.len() as u64;
                    Message::CatchupChunk {
                        ino: r.ino,
                        offset: at,
                        data,
                    }
                }
                Ok(CatchupPiece::Zeros(len)) => Message::CatchupZeros {
                    ino: r.ino,
                    offset: at,
                    len,
                },
                Err(e) => return Err(store_error(stream, e, cfg.message_timeout).await),
            };
            if let Message::CatchupChunk { data, .. } = &msg {
                crate::throttle::pace_copy(&mut bucket, data.len()).await;
            }
            wire::write_message(stream, &msg, cfg.message_timeout).await?;
            at += want as u64;
            status.done_bytes += want as u64;
            publish(progress, &status);
        }
    }
    let done = Message::CatchupDone { lsn: snap.lsn };
    send_done(stream, &done, snap.lsn, cfg).await?;
    status.finished = true;
    publish(progress, &status);
    tracing::info!(
        lsn = snap.lsn,
        data_bytes,
        total_bytes = snap.total_bytes,
        "catch-up sent"
    );
    Ok(CatchupSent {
        lsn: snap.lsn,
        data_bytes,
        state_bytes: snap.state.len() as u64,
    })
}

/// Receives a catch-up of `vserver` into `store_dir`, a closed replica
/// store. Returns the replica, opened at the catch-up LSN.
pub async fn receive_catchup<S>(
    stream: &mut S,
    store_dir: &Path,
    vserver: &str,
    opts: StoreOptions,
    cfg: &BaselineConfig,
    progress: Option<&watch::Sender<BaselineStatus>>,
) -> Result<Store>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    receive_catchup_for(stream, store_dir, vserver, opts, cfg, progress, false).await
}

/// `receive_catchup`; `resync`: the directory is a diverged store rewound
/// by a resync (`CatchupInstall::begin_for`).
pub(crate) async fn receive_catchup_for<S>(
    stream: &mut S,
    store_dir: &Path,
    vserver: &str,
    opts: StoreOptions,
    cfg: &BaselineConfig,
    progress: Option<&watch::Sender<BaselineStatus>>,
    resync: bool,
) -> Result<Store>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = match wire::read_message(stream, cfg.message_timeout).await? {
        Message::CatchupStart(s) => s,
        // The sender could not start (a resync it refused): say why.
        Message::Error { code, text } => return Err(BaselineSessionError::Peer { code, text }),
        other => {
            let text = format!("expected CatchupStart, got {}", other.kind());
            return Err(protocol_error(stream, text, cfg.message_timeout).await);
        }
    };
    refuse_other_vserver(stream, vserver, &start.vserver, cfg).await?;
    let dir: PathBuf = store_dir.to_path_buf();
    let s = start.clone();
    let begun = blocking(move || {
        CatchupInstall::begin_for(
            &dir,
            s.from_lsn,
            s.lsn,
            (s.state_len, s.state_crc),
            s.total_bytes,
            resync,
        )
    })
    .await?;
    let mut install = match begun {
        Ok(i) => i,
        Err(e) => return Err(install_error(stream, e, cfg.message_timeout).await),
    };
    let mut status = BaselineStatus::starting(start.lsn, start.total_bytes, 0);
    publish(progress, &status);
    loop {
        let msg = wire::read_message(stream, cfg.message_timeout).await?;
        let (step, moved) = match msg {
            Message::CatchupState { offset, data } => {
                let (i, r) = step(install, move |i| i.write_state(offset, &data)).await?;
                install = i;
                (r, 0)
            }
            Message::CatchupChunk { ino, offset, data } => {
                let n = data.len() as u64;
                let (i, r) = step(install, move |i| i.write(ino, offset, &data)).await?;
                install = i;
                (r, n)
            }
            Message::CatchupZeros { ino, offset, len } => (install.zeros(ino, offset, len), len),
            Message::CatchupDone { lsn } => {
                if install.epoch().is_some_and(|e| e != start.epoch) {
                    let text = format!(
                        "CatchupStart announced epoch {}, the state holds {:?}",
                        start.epoch,
                        install.epoch()
                    );
                    return Err(protocol_error(stream, text, cfg.message_timeout).await);
                }
                let o = opts.clone();
                let finished = blocking(move || install.finish(lsn, o)).await?;
                return ack_install(stream, finished, lsn, &mut status, progress, cfg).await;
            }
            Message::Heartbeat { .. } => (Ok(()), 0),
            Message::Error { code, text } => return Err(BaselineSessionError::Peer { code, text }),
            other => {
                let text = format!("unexpected {} during a catch-up", other.kind());
                return Err(protocol_error(stream, text, cfg.message_timeout).await);
            }
        };
        if let Err(e) = step {
            return Err(refuse_input(stream, e, "catch-up", cfg).await);
        }
        if moved > 0 {
            status.done_bytes = status.done_bytes.saturating_add(moved);
            publish(progress, &status);
        }
    }
}
