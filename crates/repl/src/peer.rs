//! The preface of a site-to-site connection (docs/replication-protocol.md,
//! "Preface"): what the connecting site asks before a session, a transfer
//! or a resync, and what the accepting site answers, as typed requests
//! and answers over the wire's messages. The daemons only match on these
//! enums; the bytes are `crate::wire`'s.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::wire::{
    self, EpochAnswer, Message, ReplicaAt, ResyncDone, ResyncOpen, TransferKind, WireError,
};

/// What the connecting site sends in the preface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `peer check`; answered `Pong`.
    Ping { site_id: String },
    /// The vserver's epoch there; answered `Epoch`. The connection ends.
    Epoch { vserver: String, epoch: u64 },
    /// Replication into the accepting site; answered `Replicate`,
    /// `ActiveHere` or `Refused`, then `Transfer` follows.
    Replicate {
        vserver: String,
        replica_address: Option<String>,
    },
    /// What follows an accepted `Replicate` (no answer).
    Transfer(TransferKind),
    /// A resync; answered `ResyncOk` (a catch-up follows) or `Refused`.
    Resync(ResyncOpen),
    /// The resync is installed; answered `ResyncDone` or `Refused`.
    Ready,
}

/// What the accepting site answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Pong {
        site_id: String,
    },
    Epoch(EpochAnswer),
    Replicate(ReplicaAt),
    ResyncOk,
    ResyncDone(ResyncDone),
    /// The vserver is active here at `epoch`: a sender at a lower epoch
    /// must fence itself ("One writer per epoch").
    ActiveHere {
        epoch: u64,
        reason: String,
    },
    /// Anything else refused; `code` as in `wire::code` (BUSY: retry soon).
    Refused {
        code: u16,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
}

impl PeerError {
    /// The I/O error underneath, if any (a TLS alert from the peer is one).
    pub fn io(&self) -> Option<&std::io::Error> {
        match self {
            PeerError::Wire(WireError::Io(e)) => Some(e),
            _ => None,
        }
    }
}

/// The line a version-1 peer (text preface) reads when it connects here:
/// its own parser shows the reason.
const OLD_PEER_LINE: &[u8] = b"ERR this site speaks replication protocol 2 (binary preface); \
upgrade the connecting site\n";
/// How long the line for a version-1 peer may take to write.
const OLD_PEER_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// One site-to-site connection during its preface. Every read and write
/// is bounded by `timeout`; after an error the connection is out of step
/// and is dropped.
pub struct Connection<S> {
    stream: S,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, timeout: Duration) -> Self {
        Connection { stream, timeout }
    }

    /// Client side: sends `req` and reads the answer, the whole exchange
    /// within the timeout.
    pub async fn request(&mut self, req: Request) -> Result<Answer, PeerError> {
        let timeout = self.timeout;
        let exchange = async {
            self.send(req).await?;
            let msg = wire::read_message(&mut self.stream, self.timeout).await?;
            answer_of(msg)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(timed_out(timeout)),
        }
    }

    /// Client side: sends `req` expecting no answer (`Transfer`).
    pub async fn send(&mut self, req: Request) -> Result<(), PeerError> {
        wire::write_message(&mut self.stream, &message_of_request(req), self.timeout).await?;
        Ok(())
    }

    /// Server side: reads the next request within the timeout. A peer
    /// that does not speak these messages (bad magic: a version-1 site's
    /// text line) is told so in a text line before the error returns.
    pub async fn read_request(&mut self) -> Result<Request, PeerError> {
        match wire::read_message(&mut self.stream, self.timeout).await {
            Ok(msg) => request_of(msg),
            Err(e @ WireError::BadMagic { .. }) => {
                let tell = async {
                    self.stream.write_all(OLD_PEER_LINE).await?;
                    self.stream.flush().await
                };
                // Best effort: the connection ends either way.
                let _ = tokio::time::timeout(OLD_PEER_WRITE_TIMEOUT, tell).await;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Server side: sends `answer`.
    pub async fn answer(&mut self, answer: Answer) -> Result<(), PeerError> {
        let msg = message_of_answer(answer);
        wire::write_message(&mut self.stream, &msg, self.timeout).await?;
        Ok(())
    }

    /// The stream, for the transfer or session that follows the preface.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

fn timed_out(timeout: Duration) -> PeerError {
    PeerError::Wire(WireError::Timeout {
        timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
    })
}

fn message_of_request(req: Request) -> Message {
    match req {
        Request::Ping { site_id } => Message::Ping { site_id },
        Request::Epoch { vserver, epoch } => Message::EpochQuery { vserver, epoch },
        Request::Replicate {
            vserver,
            replica_address,
        } => Message::Replicate {
            vserver,
            replica_address,
        },
        Request::Transfer(kind) => Message::Transfer(kind),
        Request::Resync(open) => Message::Resync(open),
        Request::Ready => Message::ResyncReady,
    }
}

/// The request a message is, or `Unexpected` (an answer, a session
/// message, anything a connecting site does not open with).
pub fn request_of(msg: Message) -> Result<Request, PeerError> {
    Ok(match msg {
        Message::Ping { site_id } => Request::Ping { site_id },
        Message::EpochQuery { vserver, epoch } => Request::Epoch { vserver, epoch },
        Message::Replicate {
            vserver,
            replica_address,
        } => Request::Replicate {
            vserver,
            replica_address,
        },
        Message::Transfer(kind) => Request::Transfer(kind),
        Message::Resync(open) => Request::Resync(open),
        Message::ResyncReady => Request::Ready,
        other => {
            return Err(PeerError::Unexpected {
                expected: "a request",
                got: other.kind(),
            })
        }
    })
}

fn message_of_answer(answer: Answer) -> Message {
    match answer {
        Answer::Pong { site_id } => Message::Pong { site_id },
        Answer::Epoch(a) => Message::EpochAnswer(a),
        Answer::Replicate(at) => Message::ReplicateOk(at),
        Answer::ResyncOk => Message::ResyncOk,
        Answer::ResyncDone(d) => Message::ResyncDone(d),
        Answer::ActiveHere { epoch, reason } => Message::ActiveHere {
            epoch,
            reason: wire::clip_text(&reason),
        },
        Answer::Refused { code, reason } => Message::Refuse {
            code,
            reason: wire::clip_text(&reason),
        },
    }
}

/// The answer a message is. A `Refuse` is one (a version-1 site sends it
/// for any of these requests, naming its REPLICATE line); an `Error` too.
pub fn answer_of(msg: Message) -> Result<Answer, PeerError> {
    Ok(match msg {
        Message::Pong { site_id } => Answer::Pong { site_id },
        Message::EpochAnswer(a) => Answer::Epoch(a),
        Message::ReplicateOk(at) => Answer::Replicate(at),
        Message::ResyncOk => Answer::ResyncOk,
        Message::ResyncDone(d) => Answer::ResyncDone(d),
        Message::ActiveHere { epoch, reason } => Answer::ActiveHere { epoch, reason },
        Message::Refuse { code, reason } => Answer::Refused { code, reason },
        Message::Error { code, text } => Answer::Refused { code, reason: text },
        other => {
            return Err(PeerError::Unexpected {
                expected: "an answer",
                got: other.kind(),
            })
        }
    })
}
