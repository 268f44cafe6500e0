//! Typed errors of the control layer. Each carries enough context to be
//! shown to an operator as it is; the CLI only adds what it was doing.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The class of an error, as carried over the control API so the CLI can
/// tell "you asked for something wrong" from "the site is broken".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was malformed or a value was out of range.
    Invalid,
    /// The thing to create exists already.
    Exists,
    /// The thing named does not exist.
    NotFound,
    /// The site itself failed (I/O, corrupt store, ...).
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("site configuration {path}: {reason}")]
    SiteConfig { path: PathBuf, reason: String },
    #[error("a site already exists in {0}")]
    SiteExists(PathBuf),
    #[error("no site in {0} (create one with `tandem init --data {0} --site NAME`)")]
    NoSite(PathBuf),
    #[error("site identity: {0}")]
    Identity(String),
    #[error("a daemon is already running for {dir}{pid}")]
    DaemonRunning { dir: PathBuf, pid: String },
    #[error("the daemon for {dir} is not running (start it with `tandem daemon --data {dir}`): {reason}")]
    DaemonNotRunning { dir: PathBuf, reason: String },
    #[error("vserver {0} already exists")]
    VserverExists(String),
    #[error("no vserver named {0}")]
    NoVserver(String),
    #[error("{what} already exists: {detail}")]
    Exists { what: String, detail: String },
    #[error("vserver {vserver}: {source}")]
    Store {
        vserver: String,
        #[source]
        source: tandem_store::StoreError,
    },
    #[error("vserver {vserver}: {reason}")]
    Unavailable { vserver: String, reason: String },
    #[error("no peer named {0} (see `tandem peer list`)")]
    NoPeer(String),
    #[error("peer {name} ({addr}): {reason}")]
    PeerUnreachable {
        name: String,
        addr: String,
        reason: String,
    },
    #[error("control API: {0}")]
    Protocol(String),
    /// An error the daemon reported, passed through to the CLI.
    #[error("{message}")]
    Remote { kind: ErrorKind, message: String },
    #[error("internal: {0}")]
    Internal(String),
}

impl From<tandem_store::durable::DurableError> for ControlError {
    fn from(e: tandem_store::durable::DurableError) -> Self {
        ControlError::io(e.path, e.source)
    }
}

impl ControlError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ControlError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ControlError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub fn store(vserver: &str, source: tandem_store::StoreError) -> Self {
        ControlError::Store {
            vserver: vserver.to_string(),
            source,
        }
    }

    /// How this error is classed when sent over the control API.
    pub fn kind(&self) -> ErrorKind {
        use tandem_store::StoreError as S;
        match self {
            ControlError::Invalid { .. } => ErrorKind::Invalid,
            ControlError::VserverExists(_) | ControlError::Exists { .. } => ErrorKind::Exists,
            ControlError::NoVserver(_) | ControlError::NoPeer(_) => ErrorKind::NotFound,
            ControlError::Remote { kind, .. } => *kind,
            ControlError::Store { source, .. } => match source {
                S::Exist => ErrorKind::Exists,
                S::NoEnt => ErrorKind::NotFound,
                S::Inval(_) | S::NameTooLong { .. } | S::NoSpace(_) => ErrorKind::Invalid,
                _ => ErrorKind::Internal,
            },
            _ => ErrorKind::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, ControlError>;
