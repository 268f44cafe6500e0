//! The bench's own failures; everything else travels as `anyhow` context.

use nfs3_types::nfs3::nfsstat3;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bad bench option: {0}")]
    Config(String),
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
    #[error("{server}: the write verifier changed during the run (server restarted?)")]
    VerifierChanged { server: &'static str },
    #[error("NFS-Ganesha is not available: {0}")]
    GaneshaMissing(String),
    #[error("NFS-Ganesha did not start: {reason}\n--- last lines of {log} ---\n{tail}")]
    GaneshaStart {
        reason: String,
        log: String,
        tail: String,
    },
}
