//! PORTMAP v2 (RFC 1833): read-only answers about this server's own
//! programs; nobody else may register here.

use nfs3_types::portmap::{mapping, IPPROTO_TCP};
use nfs3_types::xdr_codec::List;

use crate::dispatch::{success, Call};
use crate::nfs3::common::parse_args;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;
use crate::Endpoint;

pub(crate) fn dispatch(shared: &Shared, call: &Call, args: &[u8]) -> ReplyStatus {
    let endpoint = shared
        .endpoints
        .iter()
        .find(|e| e.ip == call.local.ip())
        .or_else(|| shared.endpoints.first());
    match call.proc_num {
        0 => ReplyStatus::Success(Vec::new()),
        // SET and UNSET: refused, the registrations here are fixed.
        1 | 2 => success(&false),
        3 => {
            let parsed = parse_args(args, |r| Ok((r.u32()?, r.u32()?, r.u32()?, r.u32()?)));
            let (prog, vers, prot, _port) = match parsed {
                Ok(m) => m,
                Err(status) => return status,
            };
            let port = endpoint
                .and_then(|e| {
                    mappings(e)
                        .into_iter()
                        .find(|m| (m.prog, m.vers, m.prot) == (prog, vers, prot))
                })
                .map_or(0, |m| m.port);
            success(&port)
        }
        4 => success(&List(endpoint.map(mappings).unwrap_or_default())),
        _ => ReplyStatus::ProcUnavail,
    }
}

fn mappings(e: &Endpoint) -> Vec<mapping> {
    let tcp = |prog, vers, port: u16| mapping {
        prog,
        vers,
        prot: IPPROTO_TCP,
        port: u32::from(port),
    };
    let mut out = vec![
        tcp(
            nfs3_types::nfs3::PROGRAM,
            nfs3_types::nfs3::VERSION,
            e.nfs_port,
        ),
        tcp(
            nfs3_types::mount::PROGRAM,
            nfs3_types::mount::VERSION,
            e.mount_port,
        ),
        tcp(crate::nlm::PROGRAM, crate::nlm::VERSION, e.mount_port),
        tcp(crate::nsm::PROGRAM, crate::nsm::VERSION, e.mount_port),
    ];
    if let Some(port) = e.portmap_port {
        out.push(tcp(
            nfs3_types::portmap::PROGRAM,
            nfs3_types::portmap::VERSION,
            port,
        ));
    }
    out
}
