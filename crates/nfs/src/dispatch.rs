//! Routes a parsed call to its program, checking program and version.

use std::net::SocketAddr;
use std::sync::Arc;

use nfs3_types::xdr_codec::Pack;
use tracing::error;

use crate::rpc::auth::AuthCred;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

/// Which program a listener serves; each port answers for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Nfs,
    Mount,
    Portmap,
}

#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) xid: u32,
    pub(crate) prog: u32,
    pub(crate) vers: u32,
    pub(crate) proc_num: u32,
    pub(crate) auth: AuthCred,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
}

pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    service: Service,
    call: &Call,
    args: &bytes::Bytes,
) -> ReplyStatus {
    let (prog, vers) = match (service, call.prog) {
        // The MOUNT port serves the lock manager too (portmap says so).
        (Service::Mount, crate::nlm::PROGRAM) => (crate::nlm::PROGRAM, crate::nlm::VERSION),
        (Service::Mount, crate::nsm::PROGRAM) => (crate::nsm::PROGRAM, crate::nsm::VERSION),
        (Service::Nfs, _) => (nfs3_types::nfs3::PROGRAM, nfs3_types::nfs3::VERSION),
        (Service::Mount, _) => (nfs3_types::mount::PROGRAM, nfs3_types::mount::VERSION),
        (Service::Portmap, _) => (nfs3_types::portmap::PROGRAM, nfs3_types::portmap::VERSION),
    };
    if call.prog != prog {
        return ReplyStatus::ProgUnavail;
    }
    if call.vers != vers {
        return ReplyStatus::ProgMismatch {
            low: vers,
            high: vers,
        };
    }
    match service {
        Service::Nfs => crate::nfs3::dispatch(shared, call, args).await,
        Service::Mount if prog == crate::nlm::PROGRAM => {
            crate::nlm::dispatch(shared, call, args).await
        }
        Service::Mount if prog == crate::nsm::PROGRAM => {
            crate::nsm::dispatch(shared, call, args).await
        }
        Service::Mount => crate::mount::dispatch(shared, call, args).await,
        Service::Portmap => crate::portmap::dispatch(shared, call, args),
    }
}

/// Packs a result body; a packing failure is our bug, never the client's.
pub(crate) fn success<T: Pack>(value: &T) -> ReplyStatus {
    let mut out = Vec::with_capacity(value.packed_size());
    match value.pack(&mut out) {
        Ok(_) => ReplyStatus::Success(out),
        Err(e) => {
            error!(error = %e, "could not encode reply");
            ReplyStatus::SystemErr
        }
    }
}
