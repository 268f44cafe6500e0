//! Resync over a connection (docs/replication-protocol.md, "Resync"): the
//! diverged former active site sends `ResyncRequest` (what it changed after
//! the shared LSN); the promoted site answers with a catch-up whose ranges
//! cover both sides' changes (`tandem_store::resync`), which the diverged
//! site installs exactly as a replica installs a catch-up.

use std::path::Path;
use std::sync::Arc;

use tandem_store::overflow::ChangeMap;
use tandem_store::resync::Divergence;
use tandem_store::{Lsn, Store, StoreOptions};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::baseline::{
    blocking, protocol_error, refuse_other_vserver, store_error, BaselineConfig,
    BaselineSessionError,
};
use crate::catchup::{receive_catchup_for, send_catchup};
use crate::wire::{self, Message, ResyncRequest};

type Result<T> = std::result::Result<T, BaselineSessionError>;

/// Ranges a `ResyncRequest` may carry: within the 16 MiB message.
pub const MAX_RESYNC_RANGES: usize = 400_000;
/// Inode runs a `ResyncRequest` may carry.
pub const MAX_RESYNC_RUNS: usize = 300_000;

/// What the promoted site sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncSent {
    pub lsn: Lsn,
    /// File bytes sent as data (zero ranges cost none).
    pub data_bytes: u64,
    pub state_bytes: u64,
    /// Bytes the promoted site changed since the shared LSN.
    pub own_changed_bytes: u64,
    /// Bytes the diverged site's records touched (files it removed count
    /// whole), both clipped to the sizes at the catch-up LSN.
    pub divergent_bytes: u64,
}

/// The request for `div`, or why it does not fit one message.
pub fn request(
    vserver: &str,
    epoch: u64,
    div: &Divergence,
) -> std::result::Result<ResyncRequest, String> {
    let ranges = div.ranges.triples();
    if ranges.len() > MAX_RESYNC_RANGES || div.present.len() > MAX_RESYNC_RUNS {
        return Err(format!(
            "{} divergent ranges and {} inode runs exceed one resync request \
             ({MAX_RESYNC_RANGES} and {MAX_RESYNC_RUNS}); fall back to a new baseline",
            ranges.len(),
            div.present.len()
        ));
    }
    Ok(ResyncRequest {
        vserver: vserver.to_string(),
        epoch,
        shared_lsn: div.shared_lsn,
        ranges,
        present: div.present.clone(),
    })
}

/// At the promoted site, after the "RESYNC" preface was accepted for a
/// site at `old_epoch` sharing `shared_lsn`: reads its request and sends
/// the catch-up. Returns once the diverged site installed it.
pub async fn serve_resync<S>(
    stream: &mut S,
    store: Arc<Store>,
    old_epoch: u64,
    shared_lsn: Lsn,
    cfg: &BaselineConfig,
) -> Result<ResyncSent>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let q = match wire::read_message(stream, cfg.message_timeout).await? {
        Message::ResyncRequest(q) => q,
        Message::Error { code, text } => return Err(BaselineSessionError::Peer { code, text }),
        other => {
            let text = format!("expected ResyncRequest, got {}", other.kind());
            return Err(protocol_error(stream, text, cfg.message_timeout).await);
        }
    };
    refuse_other_vserver(stream, &store.config().name, &q.vserver, cfg).await?;
    if q.epoch != old_epoch || q.shared_lsn != shared_lsn {
        let text = format!(
            "ResyncRequest for epoch {} and shared LSN {}, but the preface said {old_epoch} and {shared_lsn}",
            q.epoch, q.shared_lsn
        );
        return Err(protocol_error(stream, text, cfg.message_timeout).await);
    }
    let mut theirs = ChangeMap::default();
    for &(ino, start, end) in &q.ranges {
        theirs.add(ino, start, end);
    }
    let s = store.clone();
    let begun =
        blocking(move || s.resync_begin(old_epoch, shared_lsn, &theirs, &q.present)).await?;
    let snap = match begun {
        Ok(s) => s,
        Err(e) => return Err(store_error(stream, e, cfg.message_timeout).await),
    };
    tracing::info!(
        shared_lsn,
        lsn = snap.catchup.lsn,
        bytes = snap.catchup.total_bytes,
        own_changed_bytes = snap.own_changed_bytes,
        divergent_bytes = snap.divergent_bytes,
        "sending a resync"
    );
    let sent = send_catchup(stream, store, Arc::new(snap.catchup), cfg, None).await?;
    Ok(ResyncSent {
        lsn: sent.lsn,
        data_bytes: sent.data_bytes,
        state_bytes: sent.state_bytes,
        own_changed_bytes: snap.own_changed_bytes,
        divergent_bytes: snap.divergent_bytes,
    })
}

/// At the diverged site, its store closed and marked a replica: sends the
/// request and installs the catch-up into `store_dir`. Returns the store,
/// opened as a replica at the promoted site's LSN.
pub async fn receive_resync<S>(
    stream: &mut S,
    store_dir: &Path,
    request: ResyncRequest,
    opts: StoreOptions,
    cfg: &BaselineConfig,
) -> Result<Store>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let vserver = request.vserver.clone();
    wire::write_message(
        stream,
        &Message::ResyncRequest(request),
        cfg.message_timeout,
    )
    .await?;
    receive_catchup_for(stream, store_dir, &vserver, opts, cfg, None, true).await
}
