//! Calls from the server to a client's lock manager: GRANTED for a blocked
//! lock that became free, and the *_RES results of the _MSG calls. The
//! client's lock manager is found through its portmapper; calls leave
//! from the address the client called (Linux's lock manager takes a
//! GRANTED only from the server address it locked at). Each attempt is
//! bounded by a timeout, attempts are bounded in number, and callbacks
//! running at once by a semaphore. A granted lock whose client refuses it
//! or never answers is released again, so it cannot stay held forever.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tandem_store::locks::{ByteRange, LockOwner};
use tandem_store::Ino;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tracing::{debug, info, warn};

use super::args::{self, Out};
use super::waiters::Waiter;
use super::{PROGRAM, VERSION};
use crate::nfs3::common::blocking;
use crate::rpc::record::{read_record_rest, read_record_start};
use crate::server::Shared;
use crate::xdr::XdrReader;

/// Where a callback goes (`peer`, the client that called) and where it
/// leaves from (`local`, the address it called).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) local: IpAddr,
    pub(crate) peer: IpAddr,
}

impl Route {
    /// The way back to the sender of `call`.
    pub(crate) fn back_to(call: &crate::dispatch::Call) -> Self {
        Route {
            local: call.local.ip(),
            peer: call.peer.ip(),
        }
    }
}

const PMAP_PROGRAM: u32 = 100_000;
const PMAP_VERSION: u32 = 2;
const PMAP_GETPORT: u32 = 3;
const IPPROTO_TCP: u32 = 6;
const NLM_GRANTED: u32 = 5;
/// Largest reply read from a client (a result is a few words).
const MAX_CALLBACK_REPLY_BYTES: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CallbackError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("the client's portmapper knows no lock manager")]
    NotRegistered,
    #[error("bad reply: {0}")]
    BadReply(String),
}

/// Grants whose client has not yet confirmed them, by the cookie of our
/// callback (GRANTED_RES names it).
#[derive(Default)]
pub(crate) struct PendingGrants(Mutex<HashMap<Vec<u8>, (Ino, LockOwner, ByteRange)>>);

impl PendingGrants {
    fn insert(&self, cookie: Vec<u8>, v: (Ino, LockOwner, ByteRange)) {
        self.0.lock().insert(cookie, v);
    }

    pub(crate) fn take(&self, cookie: &[u8]) -> Option<(Ino, LockOwner, ByteRange)> {
        self.0.lock().remove(cookie)
    }
}

/// A connection to `ip:port` from `local` (any port): the address the
/// client knows us by, not the one routing would pick (in a site's
/// namespace, its own address rather than the vserver's).
async fn connect_from(local: IpAddr, ip: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if local.is_ipv4() == ip.is_ipv4() && !local.is_unspecified() {
        socket.bind((local, 0).into())?;
    }
    socket.connect((ip, port).into()).await
}

/// One RPC over TCP to `prog`/`vers` at `ip:port`, from `local`; the
/// result body.
async fn rpc(
    local: IpAddr,
    ip: IpAddr,
    port: u16,
    (prog, vers, proc_num): (u32, u32, u32),
    args: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, CallbackError> {
    let xid: u32 = rand::random();
    let mut body = Out::default();
    body.u32(xid)
        .u32(0)
        .u32(2)
        .u32(prog)
        .u32(vers)
        .u32(proc_num);
    body.u32(0).u32(0).u32(0).u32(0);
    body.0.extend_from_slice(args);
    let mut record = (body.0.len() as u32 | 0x8000_0000).to_be_bytes().to_vec();
    record.extend_from_slice(&body.0);
    let exchange = async {
        let mut s = connect_from(local, ip, port).await?;
        s.write_all(&record).await?;
        let head = read_record_start(&mut s)
            .await
            .map_err(|e| CallbackError::BadReply(e.to_string()))?
            .ok_or_else(|| CallbackError::BadReply("closed".into()))?;
        read_record_rest(&mut s, head, MAX_CALLBACK_REPLY_BYTES, timeout)
            .await
            .map_err(|e| CallbackError::BadReply(e.to_string()))
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| CallbackError::Timeout)??;
    let mut r = XdrReader::new(&reply);
    let bad = |what: &str| CallbackError::BadReply(what.into());
    let head = (|| Ok::<_, crate::xdr::XdrError>((r.u32()?, r.u32()?, r.u32()?)))()
        .map_err(|_| bad("truncated"))?;
    if head != (xid, 1, 0) {
        return Err(bad("not an accepted reply to our call"));
    }
    let accepted = (|| {
        let _flavor = r.u32()?;
        r.opaque(400)?;
        r.u32()
    })()
    .map_err(|_| bad("truncated"))?;
    if accepted != 0 {
        return Err(bad(&format!("accept_stat {accepted}")));
    }
    Ok(reply[r.position()..].to_vec())
}

/// Calls the client's lock manager, found through its portmapper, along
/// `route`.
pub(crate) async fn call_client(
    shared: &Shared,
    route: Route,
    proc_num: u32,
    args: &[u8],
) -> Result<Vec<u8>, CallbackError> {
    let cfg = &shared.nlm.cfg;
    let timeout = Duration::from_millis(cfg.callback_timeout_ms);
    let mut q = Out::default();
    q.u32(PROGRAM).u32(VERSION).u32(IPPROTO_TCP).u32(0);
    let pm = (PMAP_PROGRAM, PMAP_VERSION, PMAP_GETPORT);
    let Route { local, peer: ip } = route;
    let reply = rpc(local, ip, cfg.callback_portmap_port, pm, &q.0, timeout).await?;
    let port = XdrReader::new(&reply)
        .u32()
        .map_err(|_| CallbackError::BadReply("GETPORT".into()))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(CallbackError::NotRegistered)?;
    rpc(local, ip, port, (PROGRAM, VERSION, proc_num), args, timeout).await
}

/// Sends the result of an _MSG call as the matching _RES call; one
/// attempt (the client resends its _MSG call if it hears nothing).
pub(crate) fn spawn_result(shared: Arc<Shared>, route: Route, proc_num: u32, body: Vec<u8>) {
    let ip = route.peer;
    let Ok(permit) = shared.nlm.callbacks.clone().try_acquire_owned() else {
        warn!(%ip, proc_num, "too many callbacks running; result not sent");
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = call_client(&shared, route, proc_num, &body).await {
            debug!(%ip, proc_num, error = %e, "result callback failed");
        }
    });
}

/// Tells the client its blocked lock is now held (NLM GRANTED), retrying
/// as configured; releases the lock if the client refuses it or never
/// answers.
pub(crate) fn spawn_grant(shared: Arc<Shared>, w: Waiter) {
    tokio::spawn(async move {
        let Ok(_permit) = shared.nlm.callbacks.clone().acquire_owned().await else {
            return;
        };
        let cfg = shared.nlm.cfg.clone();
        let cookie = w.id.to_be_bytes().to_vec();
        let key = (w.ino, w.args.lock.owner(), w.args.lock.range());
        shared.nlm.pending_grants.insert(cookie.clone(), key);
        let mut a = Out::default();
        a.opaque(&cookie)
            .u32(u32::from(w.args.exclusive))
            .lock(&w.args.lock);
        let mut answer = None;
        for attempt in 1..=cfg.callback_attempts {
            match call_client(&shared, w.route, NLM_GRANTED, &a.0).await {
                Ok(body) => {
                    answer = args::res(&mut XdrReader::new(&body)).ok().map(|(_, s)| s);
                    break;
                }
                Err(e) => {
                    debug!(peer = %w.route.peer, attempt, error = %e, "GRANTED callback failed");
                    if attempt < cfg.callback_attempts {
                        tokio::time::sleep(Duration::from_millis(cfg.callback_retry_delay_ms))
                            .await;
                    }
                }
            }
        }
        // Gone already: a GRANTED_RES or FREE_ALL dealt with it.
        if shared.nlm.pending_grants.take(&cookie).is_none() {
            return;
        }
        match answer {
            Some(0) => info!(host = %w.args.lock.caller_name, "blocked lock handed to its client"),
            other => {
                warn!(host = %w.args.lock.caller_name, answer = ?other, "client did not take its granted lock; released");
                release(&shared, &w).await;
            }
        }
    });
}

/// Releases a lock granted to a waiter that will not have it, and lets
/// the next waiter of the file try.
pub(crate) async fn release(shared: &Arc<Shared>, w: &Waiter) {
    release_lock(shared, w.ino, w.args.lock.owner(), w.args.lock.range()).await;
}

pub(crate) async fn release_lock(
    shared: &Arc<Shared>,
    ino: Ino,
    owner: LockOwner,
    range: ByteRange,
) {
    let done = blocking(shared, move |s| s.unlock(ino, &owner, range)).await;
    if let Ok(Err(e)) = done {
        warn!(error = %e, "releasing an unwanted lock failed");
    }
    // Spawned, not awaited: a wake-up in progress (which may be our
    // caller) holds the one-at-a-time lock.
    tokio::spawn(super::waiters::wake(shared.clone(), Some(ino)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::net::TcpListener;

    /// A client whose lock manager checks the caller (Linux's) sees the
    /// server address it locked at, even where routing would pick another
    /// source: here 127.0.0.2 rather than 127.0.0.1.
    #[tokio::test]
    async fn callbacks_leave_from_the_address_the_client_called() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ours: IpAddr = Ipv4Addr::new(127, 0, 0, 2).into();
        let client = Ipv4Addr::LOCALHOST.into();
        let _s = connect_from(ours, client, port).await.unwrap();
        let (_, from) = listener.accept().await.unwrap();
        assert_eq!(from.ip(), ours);

        // Without a usable local address, routing picks it.
        for unusable in [Ipv4Addr::UNSPECIFIED.into(), "::1".parse().unwrap()] {
            let _s = connect_from(unusable, client, port).await.unwrap();
            let (_, from) = listener.accept().await.unwrap();
            assert_eq!(from.ip(), client);
        }
    }
}
