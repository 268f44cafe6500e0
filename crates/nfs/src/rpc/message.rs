//! RPC call headers in, reply headers out (RFC 5531 section 9).

use super::auth::{parse_cred, AuthCred, MAX_AUTH_BODY_BYTES};
use super::record::single_fragment_header;
use crate::xdr::XdrReader;

const MSG_CALL: u32 = 0;
const MSG_REPLY: u32 = 1;
const MSG_ACCEPTED: u32 = 0;
const MSG_DENIED: u32 = 1;
const RPC_VERSION: u32 = 2;

#[derive(Debug)]
pub(crate) struct CallHeader {
    pub(crate) xid: u32,
    pub(crate) prog: u32,
    pub(crate) vers: u32,
    pub(crate) proc_num: u32,
    pub(crate) auth: AuthCred,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CallError {
    /// No xid or not a CALL: nothing can be replied to.
    Unanswerable,
    /// Answer with this status under this xid.
    Reject { xid: u32, status: ReplyStatus },
}

/// The outcome of one call, as it goes on the wire.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReplyStatus {
    Success(Vec<u8>),
    /// A result whose XDR ends in one large opaque (READ): `body` holds
    /// everything up to and including the opaque's length word, `data` the
    /// bytes, sent as they are so they are not copied again; the XDR padding
    /// is added when the reply is written.
    SuccessWithData {
        body: Vec<u8>,
        data: Vec<u8>,
    },
    ProgUnavail,
    ProgMismatch {
        low: u32,
        high: u32,
    },
    ProcUnavail,
    GarbageArgs,
    SystemErr,
    RpcMismatch,
    AuthError(u32),
}

/// Parses the call header; returns it with the offset of the arguments.
pub(crate) fn parse_call(record: &[u8]) -> Result<(CallHeader, usize), CallError> {
    let mut r = XdrReader::new(record);
    let xid = r.u32().map_err(|_| CallError::Unanswerable)?;
    if r.u32() != Ok(MSG_CALL) {
        return Err(CallError::Unanswerable);
    }
    let reject = |status| CallError::Reject { xid, status };
    let rpcvers = r.u32().map_err(|_| reject(ReplyStatus::GarbageArgs))?;
    if rpcvers != RPC_VERSION {
        return Err(reject(ReplyStatus::RpcMismatch));
    }
    let (prog, vers, proc_num) = match (r.u32(), r.u32(), r.u32()) {
        (Ok(p), Ok(v), Ok(n)) => (p, v, n),
        _ => return Err(reject(ReplyStatus::GarbageArgs)),
    };
    let bad_cred = || reject(ReplyStatus::AuthError(super::auth::AUTH_BADCRED));
    let cred_flavor = r.u32().map_err(|_| bad_cred())?;
    let cred_body = r.opaque(MAX_AUTH_BODY_BYTES).map_err(|_| bad_cred())?;
    let _verf_flavor = r.u32().map_err(|_| bad_cred())?;
    let _verf_body = r.opaque(MAX_AUTH_BODY_BYTES).map_err(|_| bad_cred())?;
    let auth =
        parse_cred(cred_flavor, cred_body).map_err(|stat| reject(ReplyStatus::AuthError(stat)))?;
    Ok((
        CallHeader {
            xid,
            prog,
            vers,
            proc_num,
            auth,
        },
        r.position(),
    ))
}

/// Encodes a reply as (record header + RPC reply header, result body), kept
/// apart so a large READ body is not copied again.
pub(crate) fn encode_reply(xid: u32, status: ReplyStatus) -> Option<EncodedReply> {
    let mut head: Vec<u8> = Vec::with_capacity(40);
    head.extend_from_slice(&[0; 4]);
    let mut put = |v: u32| head.extend_from_slice(&v.to_be_bytes());
    put(xid);
    put(MSG_REPLY);
    let mut body = Vec::new();
    let mut data = Vec::new();
    match status {
        ReplyStatus::RpcMismatch => {
            put(MSG_DENIED);
            put(0);
            put(RPC_VERSION);
            put(RPC_VERSION);
        }
        ReplyStatus::AuthError(stat) => {
            put(MSG_DENIED);
            put(1);
            put(stat);
        }
        accepted => {
            put(MSG_ACCEPTED);
            // Verifier: AUTH_NONE, empty.
            put(0);
            put(0);
            match accepted {
                ReplyStatus::Success(b) => {
                    put(0);
                    body = b;
                }
                ReplyStatus::SuccessWithData { body: b, data: d } => {
                    put(0);
                    body = b;
                    data = d;
                }
                ReplyStatus::ProgUnavail => put(1),
                ReplyStatus::ProgMismatch { low, high } => {
                    put(2);
                    put(low);
                    put(high);
                }
                ReplyStatus::ProcUnavail => put(3),
                ReplyStatus::GarbageArgs => put(4),
                _ => put(5),
            }
        }
    }
    let pad_bytes = (4 - data.len() % 4) % 4;
    let fragment = single_fragment_header(head.len() - 4 + body.len() + data.len() + pad_bytes)?;
    head[..4].copy_from_slice(&fragment);
    Some(EncodedReply {
        head,
        body,
        data,
        pad_bytes,
    })
}

/// A reply ready for the wire: `head`, `body`, `data`, then `pad_bytes` zeros.
pub(crate) struct EncodedReply {
    pub(crate) head: Vec<u8>,
    pub(crate) body: Vec<u8>,
    pub(crate) data: Vec<u8>,
    pub(crate) pad_bytes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(rpcvers: u32, cred_flavor: u32, cred: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [42, MSG_CALL, rpcvers, 100003, 3, 0, cred_flavor] {
            v.extend(u32::to_be_bytes(x));
        }
        v.extend((cred.len() as u32).to_be_bytes());
        v.extend(cred);
        v.extend([0; 8]);
        v
    }

    #[test]
    fn parses_null_call() {
        let (h, off) = parse_call(&call(2, 0, &[])).unwrap();
        assert_eq!((h.xid, h.prog, h.vers, h.proc_num), (42, 100003, 3, 0));
        assert_eq!(off, 40);
    }

    #[test]
    fn rejects_bad_version_and_cred() {
        assert_eq!(
            parse_call(&call(3, 0, &[])).unwrap_err(),
            CallError::Reject {
                xid: 42,
                status: ReplyStatus::RpcMismatch
            }
        );
        assert!(matches!(
            parse_call(&call(2, 1, &[0, 0, 0, 0])).unwrap_err(),
            CallError::Reject {
                status: ReplyStatus::AuthError(_),
                ..
            }
        ));
        assert_eq!(parse_call(&[0, 0]).unwrap_err(), CallError::Unanswerable);
    }

    #[test]
    fn reply_header_has_fragment_length() {
        let r = encode_reply(7, ReplyStatus::Success(vec![1, 2, 3, 4])).unwrap();
        let len = u32::from_be_bytes([r.head[0], r.head[1], r.head[2], r.head[3]]);
        assert_eq!(len & 0x7fff_ffff, (r.head.len() - 4 + r.body.len()) as u32);
        assert_ne!(len & 0x8000_0000, 0);
        let body = vec![0, 0, 0, 5];
        let r = encode_reply(
            7,
            ReplyStatus::SuccessWithData {
                body,
                data: vec![9; 5],
            },
        )
        .unwrap();
        assert_eq!(r.pad_bytes, 3);
        let len = u32::from_be_bytes([r.head[0], r.head[1], r.head[2], r.head[3]]);
        assert_eq!(len & 0x7fff_ffff, (r.head.len() - 4 + 4 + 5 + 3) as u32);
    }
}
