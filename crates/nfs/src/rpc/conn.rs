//! One TCP connection: records are read in order, each call runs as its
//! own task (at most `max_requests_per_connection` at once) and replies go
//! out in completion order, which RPC allows since the xid pairs them.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::message::{encode_reply, parse_call, CallError, EncodedReply};
use super::record::{read_record_rest, read_record_start, RecordError};
use crate::budget::{InProgress, Ticket};
use crate::dispatch::{dispatch, Call, Service};
use crate::server::Shared;

/// Time a client has to take one reply off the socket; one that stops
/// reading would otherwise pin its replies (and their memory) for ever.
const MAX_REPLY_WRITE_TIME: std::time::Duration = std::time::Duration::from_secs(60);
/// Replies are buffered up to this size so small ones share a segment.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct ConnLimits {
    pub(crate) max_record_bytes: usize,
    pub(crate) max_requests_per_connection: usize,
    /// Once a record's first header arrived, the whole record within this.
    pub(crate) record_timeout: std::time::Duration,
}

struct Reply {
    encoded: EncodedReply,
    /// The call's slots on this connection, its host and the service,
    /// released only once the reply is written, so replies waiting for a
    /// slow reader count against the limits too (their host's first).
    _slot: Option<(OwnedSemaphorePermit, InProgress)>,
}

pub(crate) async fn serve_connection(
    stream: TcpStream,
    service: Service,
    shared: Arc<Shared>,
    limits: ConnLimits,
    ticket: Ticket,
    mut shutdown: watch::Receiver<bool>,
) {
    let (peer, local) = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(p), Ok(l)) => (p, l),
        _ => return,
    };
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "could not set TCP_NODELAY");
    }
    let (mut read_half, write_half) = stream.into_split();
    let max_requests = limits.max_requests_per_connection.max(1);
    let (tx, rx) = mpsc::channel::<Reply>(max_requests);
    let in_flight = Arc::new(Semaphore::new(max_requests));

    let reader = async {
        let mut tasks = JoinSet::new();
        let result = loop {
            // Waiting for a permit before reading is the back-pressure: a
            // client with too many calls outstanding simply is not read.
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break Ok(());
            };
            let head = match read_record_start(&mut read_half).await {
                Ok(Some(h)) => h,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let mut mark = ticket.started();
            let record = match read_record_rest(
                &mut read_half,
                head,
                limits.max_record_bytes,
                limits.record_timeout,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            // The host's and the service's request permits are taken only
            // for a whole record: a connection that sends a header and
            // stops holds nothing anyone else needs.
            if !ticket.permits(&mut mark).await {
                break Ok(());
            }
            let tx = tx.clone();
            let shared = shared.clone();
            tasks.spawn(async move {
                if let Some(mut reply) = handle_record(&shared, service, peer, local, record).await
                {
                    reply._slot = Some((permit, mark));
                    // A send error means the writer is gone (connection
                    // closing); the reply has nowhere to go.
                    let _ = tx.send(reply).await;
                }
            });
            while tasks.try_join_next().is_some() {}
        };
        // On a clean close, finish what was asked before hanging up.
        if result.is_ok() {
            while tasks.join_next().await.is_some() {}
        }
        drop(tx);
        result
    };
    let writer = write_replies(rx, write_half);

    tokio::pin!(reader, writer);
    tokio::select! {
        read_result = &mut reader => {
            match read_result {
                Ok(()) => {
                    // Clean close: every call has finished; send what is queued.
                    tokio::select! {
                        r = &mut writer => log_write_end(peer, r),
                        () = crate::listener::stopped(&mut shutdown) => {}
                    }
                    debug!(%peer, "connection closed");
                }
                Err(RecordError::TooLarge { claimed_bytes, max_record_bytes }) => warn!(
                    %peer, claimed_bytes, max_record_bytes,
                    "closing connection: RPC record larger than max_record_bytes"
                ),
                Err(e) => debug!(%peer, error = %e, "connection ended"),
            }
        }
        // The writer only ends early on a write error: nobody to answer.
        write_result = &mut writer => log_write_end(peer, write_result),
        () = ticket.closed() => debug!(%peer, "connection closed to make room for a new one"),
        () = ticket.idle() => debug!(%peer, "idle connection closed"),
        () = crate::listener::stopped(&mut shutdown) => debug!(%peer, "connection closed by shutdown"),
    }
}

fn log_write_end(peer: SocketAddr, result: std::io::Result<()>) {
    if let Err(e) = result {
        debug!(%peer, error = %e, "writing replies failed; connection closed");
    }
}

async fn write_replies(
    mut rx: mpsc::Receiver<Reply>,
    write_half: tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, write_half);
    while let Some(reply) = rx.recv().await {
        let written = tokio::time::timeout(MAX_REPLY_WRITE_TIME, async {
            let r = &reply.encoded;
            out.write_all(&r.head).await?;
            out.write_all(&r.body).await?;
            if !r.data.is_empty() {
                out.write_all(&r.data).await?;
                out.write_all(&[0u8; 3][..r.pad_bytes.min(3)]).await?;
            }
            if rx.is_empty() {
                out.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        match written {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "client did not take a reply in time",
                ))
            }
        }
    }
    out.flush().await?;
    out.into_inner().shutdown().await
}

async fn handle_record(
    shared: &Arc<Shared>,
    service: Service,
    peer: SocketAddr,
    local: SocketAddr,
    record: Vec<u8>,
) -> Option<Reply> {
    // Shared, not copied: WRITE hands its data to the store as a slice of it.
    let record = bytes::Bytes::from(record);
    let (xid, status) = match parse_call(&record) {
        Ok((header, args_offset)) => {
            let call = Call {
                xid: header.xid,
                prog: header.prog,
                vers: header.vers,
                proc_num: header.proc_num,
                auth: header.auth,
                peer,
                local,
            };
            let args = if args_offset <= record.len() {
                record.slice(args_offset..)
            } else {
                bytes::Bytes::new()
            };
            (call.xid, dispatch(shared, service, &call, &args).await)
        }
        Err(CallError::Reject { xid, status }) => (xid, status),
        Err(CallError::Unanswerable) => {
            debug!(%peer, record_bytes = record.len(), "ignoring record that is not an RPC call");
            return None;
        }
    };
    match encode_reply(xid, status) {
        Some(encoded) => Some(Reply {
            encoded,
            _slot: None,
        }),
        None => {
            warn!(%peer, xid, "reply too large to encode; dropped");
            None
        }
    }
}
