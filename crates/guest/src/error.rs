use std::path::PathBuf;

/// What can go wrong preparing or running a guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the host must have is not there (tests skip on this,
    /// or fail in CI).
    #[error("{0}")]
    Missing(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel module {module}: {why}")]
    Module { module: String, why: String },
    #[error("building the guest's {what} failed: {why}")]
    Build { what: String, why: String },
    #[error("guest {guest}: {what} not done within {timeout_ms} ms\n--- console ---\n{console}")]
    Timeout {
        guest: String,
        what: String,
        timeout_ms: u128,
        console: String,
    },
    #[error("guest {guest}: {what}\n--- console ---\n{console}")]
    Guest {
        guest: String,
        what: String,
        console: String,
    },
    #[error("bad guest options: {0}")]
    Options(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn os(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Os { what, source }
    }
}
