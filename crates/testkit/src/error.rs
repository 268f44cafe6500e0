//! What an NFS call of [`crate::client::Client`] can fail with; everything
//! else travels as `anyhow` context.

use nfs3_client::nfs3_types::nfs3::nfsstat3;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{server}: {op} {what}: {status:?}")]
    Nfs {
        server: &'static str,
        op: &'static str,
        what: String,
        status: nfsstat3,
    },
    #[error("{server}: {op} {what}: RPC failed: {source}")]
    Rpc {
        server: &'static str,
        op: &'static str,
        what: String,
        #[source]
        source: nfs3_client::RpcError,
    },
    #[error("{server}: {what}")]
    Protocol { server: &'static str, what: String },
}
