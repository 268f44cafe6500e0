//! The bench's own failures; everything else travels as `anyhow` context.

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bad bench option: {0}")]
    Config(String),
    /// An NFS call failed.
    #[error(transparent)]
    Client(#[from] tandem_testkit::ClientError),
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
