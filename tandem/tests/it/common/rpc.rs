//! NFS calls with an xid the test chooses, to retransmit a request the way
//! a client does after losing the reply: same xid, same credentials, on a
//! new connection (nfs3_client picks its own xids).

use nfs3_client::nfs3_types::rpc::{
    accept_stat_data, call_body, fragment_header, msg_body, opaque_auth, reply_body, rpc_msg,
    RPC_VERSION_2,
};
use nfs3_client::nfs3_types::xdr_codec::{Pack, Unpack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::nfs::{root_cred, OP_DEADLINE};

/// Largest reply read.
const MAX_REPLY_BYTES: u32 = 1 << 20;

/// Calls NFSv3 procedure `proc_num` with `xid` and the tests' AUTH_SYS
/// root credential on `s`; returns the decoded result.
pub async fn nfs_call_with_xid<A, R>(s: &mut TcpStream, xid: u32, proc_num: u32, args: &A) -> R
where
    A: Pack,
    R: Unpack,
{
    let fut = async {
        let cred = root_cred();
        let msg = rpc_msg {
            xid,
            body: msg_body::CALL(call_body {
                rpcvers: RPC_VERSION_2,
                prog: nfs3_client::nfs3_types::nfs3::PROGRAM,
                vers: nfs3_client::nfs3_types::nfs3::VERSION,
                proc: proc_num,
                cred: cred.borrow(),
                verf: opaque_auth::default(),
            }),
        };
        let len = u32::try_from(msg.packed_size() + args.packed_size()).unwrap();
        let mut buf = Vec::new();
        fragment_header::new(len, true).pack(&mut buf).unwrap();
        msg.pack(&mut buf).unwrap();
        args.pack(&mut buf).unwrap();
        s.write_all(&buf).await.unwrap();

        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.unwrap();
        let head: fragment_header = head.into();
        assert!(head.eof(), "a single-fragment reply");
        assert!(head.fragment_length() <= MAX_REPLY_BYTES);
        let mut body = vec![0u8; head.fragment_length() as usize];
        s.read_exact(&mut body).await.unwrap();
        let mut cursor = std::io::Cursor::new(body);
        let (reply, _) = rpc_msg::unpack(&mut cursor).unwrap();
        assert_eq!(reply.xid, xid, "the reply answers the call");
        match reply.body {
            msg_body::REPLY(reply_body::MSG_ACCEPTED(a)) => {
                assert!(matches!(a.reply_data, accept_stat_data::SUCCESS))
            }
            other => panic!("call {xid} not accepted: {other:?}"),
        }
        R::unpack(&mut cursor).unwrap().0
    };
    tokio::time::timeout(OP_DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("no reply to xid {xid} within {OP_DEADLINE:?}"))
}
