//! Replication messages on the wire (byte layout: docs/replication-protocol.md).
//!
//! Every message is a 16-byte envelope and a payload:
//! `magic "TNRP" | version u16 | type u16 | len u32 | crc32c u32 | payload`,
//! little-endian, the CRC covering envelope bytes 0..12 and the payload. The
//! length is checked against `MAX_MESSAGE_BYTES` before anything is
//! allocated for the payload, and every field inside against its own limit:
//! the bytes come from another machine, so a bad one is an error, never a
//! panic or an unbounded allocation (invariants 7 and 8).
//!
//! After any error from `read_message` (including a timeout, which may
//! leave half a message unread) the stream is out of step: drop the
//! connection.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tandem_store::digest::{ConfigDigests, Hash};
use tandem_store::journal::{FRAME_HEADER_BYTES, MAX_PAYLOAD_BYTES};
use tandem_store::{Lsn, RawFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// "TNRP" (Tandem replication protocol), as its bytes appear on the wire.
pub const MAGIC: [u8; 4] = *b"TNRP";
/// Version of the envelope and payload layouts below. A reader refuses any
/// other: it never guesses at a layout it does not know.
pub const WIRE_VERSION: u16 = 1;
/// Protocol version a site announces in `Hello`; the sessions' rules (which
/// messages, in which order) may change without the layout changing.
/// Version 2: the preface of a site-to-site connection (ping, epoch
/// question, REPLICATE, RESYNC) is messages (types 48-59), no longer text.
pub const PROTOCOL_VERSION: u16 = 2;
pub const ENVELOPE_BYTES: usize = 16;
/// Largest payload of one message. A batch carries at least one journal
/// frame (at most 4 MiB + 24 bytes), so this leaves room for several.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Longest refusal reason or error text.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Longest site id (a hex SHA-256 fingerprint is 64).
pub const MAX_SITE_ID_BYTES: usize = 128;
/// Longest vserver name (the store's own limit).
pub const MAX_VSERVER_BYTES: usize = 64;
/// Longest replica address ("IP/PREFIX[@INTERFACE]": an IPv6 address with
/// its prefix and an interface name take about 60).
pub const MAX_ADDRESS_BYTES: usize = 128;
/// Most frames in one batch: bounds the per-frame bookkeeping.
pub const MAX_BATCH_FRAMES: usize = 65_536;
/// Largest piece of file data in one `BaselineChunk` (the store's limit).
pub const MAX_BASELINE_CHUNK_BYTES: usize = tandem_store::baseline::MAX_BASELINE_CHUNK_BYTES;
/// Largest piece of the encoded state in one `BaselineState`.
pub const MAX_BASELINE_STATE_PIECE_BYTES: usize =
    tandem_store::baseline::MAX_BASELINE_STATE_PIECE_BYTES;
/// Largest encoded state a baseline announces (the checkpoint limit).
pub const MAX_BASELINE_STATE_BYTES: u64 = tandem_store::checkpoint::MAX_CHECKPOINT_BYTES;

/// Most (inode, digest) entries in one `VerifyEntries` (40 bytes each:
/// 10 MiB, well inside `MAX_MESSAGE_BYTES`).
pub const MAX_VERIFY_ENTRIES_PER_MESSAGE: usize = 262_144;
/// Bytes of one `VerifyEntries` entry: inode u64 and a SHA-256 digest.
const VERIFY_ENTRY_BYTES: usize = 40;
/// zstd level for BatchZstd. Measured (`zstd -b1 -e3`) on this
/// repository's sources, a text-heavy write load, on the 2-core dev
/// machine: level 1 packs 3.99x at ~130 MB/s, level 3 4.46x at ~79 MB/s.
/// Level 1 keeps up with a 1 Gbit/s link on one core, which matters more
/// on a sender that also serves NFS than the last 10% of ratio.
pub const ZSTD_LEVEL: i32 = 1;
/// A compressed batch is sent only if it is at least this much smaller.
pub const MIN_ZSTD_SAVING_PERCENT: usize = 3;

/// Message type numbers (envelope bytes 6..8).
pub mod msg_type {
    pub const HELLO: u16 = 1;
    pub const HELLO_OK: u16 = 2;
    pub const REFUSE: u16 = 3;
    pub const BATCH: u16 = 4;
    pub const ACK: u16 = 5;
    pub const HEARTBEAT: u16 = 6;
    pub const ERROR: u16 = 7;
    // Verify (`tandem verify`): both sites digest the same LSN.
    pub const VERIFY_REQUEST: u16 = 8;
    pub const VERIFY_RESULT: u16 = 9;
    pub const VERIFY_ENTRIES: u16 = 10;
    /// A Batch whose frames are zstd-compressed (docs: "BatchZstd (11)").
    pub const BATCH_ZSTD: u16 = 11;
    // Baseline (the first copy of a vserver): a block of its own, so the
    // streaming types can grow without renumbering.
    pub const BASELINE_START: u16 = 16;
    pub const BASELINE_RESUME: u16 = 17;
    pub const BASELINE_STATE: u16 = 18;
    pub const BASELINE_CHUNK: u16 = 19;
    pub const BASELINE_DONE: u16 = 20;
    // Catch-up after a journal overflow (docs/replication-protocol.md).
    pub const CATCHUP_START: u16 = 24;
    pub const CATCHUP_STATE: u16 = 25;
    pub const CATCHUP_CHUNK: u16 = 26;
    pub const CATCHUP_ZEROS: u16 = 27;
    pub const CATCHUP_DONE: u16 = 28;
    // Resync of a diverged former active site (32-39).
    pub const RESYNC_REQUEST: u16 = 32;
    // Switchover (`tandem switchover`): the active site hands the vserver
    // to its replica at one LSN. 43 is kept for this block.
    pub const SWITCHOVER_REQUEST: u16 = 40;
    pub const SWITCHOVER_DONE: u16 = 41;
    pub const SWITCHOVER_REFUSED: u16 = 42;
    // The preface of a site-to-site connection (48-63): what the
    // connecting site asks before any session, transfer or resync
    // (`crate::peer`).
    pub const PING: u16 = 48;
    pub const PONG: u16 = 49;
    pub const EPOCH_QUERY: u16 = 50;
    pub const EPOCH_ANSWER: u16 = 51;
    pub const REPLICATE: u16 = 52;
    pub const REPLICATE_OK: u16 = 53;
    pub const TRANSFER: u16 = 54;
    pub const RESYNC: u16 = 55;
    pub const RESYNC_OK: u16 = 56;
    pub const RESYNC_READY: u16 = 57;
    pub const RESYNC_DONE: u16 = 58;
    pub const ACTIVE_HERE: u16 = 59;

    /// Every type above, ascending.
    pub const ALL: &[u16] = &[
        HELLO,
        HELLO_OK,
        REFUSE,
        BATCH,
        ACK,
        HEARTBEAT,
        ERROR,
        VERIFY_REQUEST,
        VERIFY_RESULT,
        VERIFY_ENTRIES,
        BATCH_ZSTD,
        BASELINE_START,
        BASELINE_RESUME,
        BASELINE_STATE,
        BASELINE_CHUNK,
        BASELINE_DONE,
        CATCHUP_START,
        CATCHUP_STATE,
        CATCHUP_CHUNK,
        CATCHUP_ZEROS,
        CATCHUP_DONE,
        RESYNC_REQUEST,
        SWITCHOVER_REQUEST,
        SWITCHOVER_DONE,
        SWITCHOVER_REFUSED,
        PING,
        PONG,
        EPOCH_QUERY,
        EPOCH_ANSWER,
        REPLICATE,
        REPLICATE_OK,
        TRANSFER,
        RESYNC,
        RESYNC_OK,
        RESYNC_READY,
        RESYNC_DONE,
        ACTIVE_HERE,
    ];
}

/// Reason codes of `Refuse` and `Error`. Unknown codes are kept as they are
/// (a newer peer may send more), so they are plain numbers.
pub mod code {
    /// The peer speaks a protocol version this site does not.
    pub const VERSION: u16 = 1;
    /// No such vserver here, or not one this peer may replicate.
    pub const UNKNOWN_VSERVER: u16 = 2;
    /// The message's epoch is lower than ours: its sender was fenced off.
    pub const FENCED: u16 = 3;
    /// A frame failed its checks (checksum, length, decoding).
    pub const BAD_FRAME: u16 = 4;
    /// LSNs do not follow what the receiver holds.
    pub const GAP: u16 = 5;
    /// The sender no longer holds the frames the replica needs.
    pub const NOT_RETAINED: u16 = 6;
    /// The receiver is busy (another session for this vserver); retry later.
    pub const BUSY: u16 = 7;
    /// Anything else; the text says what.
    pub const INTERNAL: u16 = 8;
    /// The receiver's disk has no room for the batch; nothing of it was
    /// applied. The sender offers it again later.
    pub const NO_SPACE: u16 = 9;
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed by the peer")]
    Closed,
    #[error("connection closed in the middle of a message ({got_bytes} of {want_bytes} bytes)")]
    Truncated { got_bytes: usize, want_bytes: usize },
    #[error("no complete message within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad magic {found:02x?}: not a Tandem replication stream")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported message format version {found} (this site speaks {WIRE_VERSION})")]
    UnsupportedVersion { found: u16 },
    #[error("unknown message type {found}")]
    UnknownType { found: u16 },
    #[error("message of {len_bytes} bytes exceeds the {max_bytes}-byte limit")]
    TooLarge { len_bytes: u64, max_bytes: usize },
    #[error(
        "message checksum mismatch (envelope says {expected:#010x}, content gives {actual:#010x})"
    )]
    Checksum { expected: u32, actual: u32 },
    #[error("malformed {kind} message: {why}")]
    Malformed { kind: &'static str, why: String },
}

pub type Result<T> = std::result::Result<T, WireError>;

/// First message of a session, from the site that connects (the active
/// site, which sends): who it is, which vserver, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub protocol_version: u16,
    pub site_id: String,
    pub vserver: String,
    pub epoch: u64,
    /// Sender's last durable LSN.
    pub last_lsn: Lsn,
}

/// The receiver accepts the session and says where to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloOk {
    pub protocol_version: u16,
    /// Receiver's epoch for this vserver.
    pub epoch: u64,
    /// Receiver's last durable LSN: the sender ships from `last_lsn + 1`.
    pub last_lsn: Lsn,
}

/// Consecutive journal frames, exactly as in the sender's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub vserver: String,
    /// Sender's epoch; no frame in the batch carries a higher one.
    pub epoch: u64,
    /// At least one; LSNs consecutive.
    pub frames: Vec<RawFrame>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Highest LSN received (checked, maybe not yet durable).
    pub received_lsn: Lsn,
    /// Highest LSN durable in the receiver's journal.
    pub durable_lsn: Lsn,
    /// Highest LSN applied (visible to readers at the receiver).
    pub applied_lsn: Lsn,
}

impl Ack {
    /// Received, durable and applied alike: what a receiver that applies
    /// each batch durably before answering acknowledges.
    pub fn through(lsn: Lsn) -> Self {
        Ack {
            received_lsn: lsn,
            durable_lsn: lsn,
            applied_lsn: lsn,
        }
    }
}

/// Opens a baseline, from the active site: the state at `lsn` (its
/// length and CRC identify it, so a broken copy can resume) and what the
/// copy covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineStart {
    pub vserver: String,
    pub epoch: u64,
    pub lsn: Lsn,
    pub state_len: u64,
    pub state_crc: u32,
    /// Regular files to copy.
    pub files: u64,
    /// Sum of their sizes at `lsn`.
    pub total_bytes: u64,
}

/// Opens a catch-up, from the active site: the state at `lsn` and the
/// changed ranges of a replica holding an LSN in `from_lsn..=lsn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchupStart {
    pub vserver: String,
    pub epoch: u64,
    pub from_lsn: Lsn,
    pub lsn: Lsn,
    pub state_len: u64,
    pub state_crc: u32,
    /// Changed ranges to send.
    pub range_count: u64,
    /// Their total length (zeros included); data bytes sent never exceed it.
    pub total_bytes: u64,
}

/// From a diverged former active site (resync): what it changed after the
/// LSN it shares with the promoted site, which answers with a catch-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncRequest {
    pub vserver: String,
    /// The diverged site's epoch.
    pub epoch: u64,
    pub shared_lsn: Lsn,
    /// (inode, start, end): byte ranges its records after the shared LSN
    /// set; end u64::MAX is "to the end of the file".
    pub ranges: Vec<(u64, u64, u64)>,
    /// Inode numbers it holds now, as inclusive runs, ascending.
    pub present: Vec<(u64, u64)>,
}

/// The replica's answer to `BaselineStart`: where to (re)start. A fresh
/// copy is all zeros with `state_received` false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaselineResume {
    pub lsn: Lsn,
    /// The replica holds the whole state already: send no `BaselineState`.
    pub state_received: bool,
    pub next_ino: u64,
    pub next_offset: u64,
    pub done_bytes: u64,
}

/// The replica's digest at the LSN of a `VerifyRequest`, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyResult {
    pub lsn: Lsn,
    pub outcome: std::result::Result<VerifyHeader, String>,
}

/// What a digest is, except its per-inode entries (sent in `VerifyEntries`
/// messages after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyHeader {
    /// `tandem_store::digest::DIGEST_VERSION` of the sender of this result.
    pub version: u32,
    pub root: Hash,
    pub config: ConfigDigests,
    pub files: u64,
    pub bytes: u64,
    /// `VerifyEntries` entries that follow, in all.
    pub entries: u64,
}

/// A site's part in a vserver, as an epoch question's answer gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The vserver is not there (its epoch is 0).
    None,
    Replica,
    Active,
}

/// The answer to an epoch question: the answering site's epoch and role
/// for the vserver, and the LSN it shares with a site left at the asked
/// epoch (from its epoch history), if it knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochAnswer {
    pub epoch: u64,
    pub role: Role,
    pub shared_lsn: Option<Lsn>,
}

/// The replica site's answer to `Replicate`: its last LSN, and whether it
/// holds an unfinished baseline (then only a baseline can go on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAt {
    pub lsn: Lsn,
    pub unfinished_baseline: bool,
}

/// What the connecting site sends after the replica accepted `Replicate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    /// The streaming session (Hello) follows.
    Stream,
    /// A baseline (BaselineStart) follows, then the session.
    Baseline,
    /// A catch-up (CatchupStart) follows, then the session.
    Catchup,
}

/// Opens a resync, from a diverged former active site: its epoch, the LSN
/// it shares with the promoted site, and the address to serve the replica on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncOpen {
    pub vserver: String,
    pub epoch: u64,
    pub shared_lsn: Lsn,
    pub replica_address: Option<String>,
}

/// The promoted site's figures once a resync is installed and it
/// replicates to the former active site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncDone {
    pub lsn: Lsn,
    pub data_bytes: u64,
    pub state_bytes: u64,
    pub own_changed_bytes: u64,
    pub divergent_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    HelloOk(HelloOk),
    Refuse {
        code: u16,
        reason: String,
    },
    Batch(Batch),
    /// The same batch, its frames zstd-compressed on the wire.
    BatchZstd(Batch),
    Ack(Ack),
    Heartbeat {
        now_ms: u64,
    },
    Error {
        code: u16,
        text: String,
    },
    BaselineStart(BaselineStart),
    BaselineResume(BaselineResume),
    /// A piece of the encoded state, pieces in order from offset 0.
    BaselineState {
        offset: u64,
        data: Bytes,
    },
    /// A piece of a file's data as read at the active site.
    BaselineChunk {
        ino: u64,
        offset: u64,
        data: Bytes,
    },
    /// Everything is sent; the replica finishes and answers `Ack` at `lsn`.
    BaselineDone {
        lsn: Lsn,
    },
    /// Sent right after the batch ending at `lsn`: the replica digests its
    /// state there (it has applied exactly that much when it reads this).
    VerifyRequest {
        lsn: Lsn,
    },
    VerifyResult(VerifyResult),
    /// A piece of the replica's per-inode digests, inodes ascending.
    VerifyEntries {
        lsn: Lsn,
        entries: Vec<(u64, Hash)>,
    },
    CatchupStart(CatchupStart),
    /// A piece of the encoded state, pieces in order from offset 0.
    CatchupState {
        offset: u64,
        data: Bytes,
    },
    /// Changed bytes of a file as read at the active site.
    CatchupChunk {
        ino: u64,
        offset: u64,
        data: Bytes,
    },
    /// Changed bytes that are all zero, sent without their bytes.
    CatchupZeros {
        ino: u64,
        offset: u64,
        len: u64,
    },
    /// Everything is sent; the replica installs and answers `Ack` at `lsn`.
    CatchupDone {
        lsn: Lsn,
    },
    ResyncRequest(ResyncRequest),
    /// Sent once the batch ending at `lsn` is acknowledged, by an active
    /// site that demoted itself there: promote at exactly `lsn`.
    SwitchoverRequest(SwitchoverRequest),
    /// The replica promoted at `lsn` to `epoch` and serves the vserver;
    /// `notes` says what it could not serve (empty: everything).
    SwitchoverDone {
        lsn: Lsn,
        epoch: u64,
        notes: String,
    },
    /// The replica did not promote (nothing changed there); the session
    /// goes on.
    SwitchoverRefused {
        lsn: Lsn,
        reason: String,
    },
    /// `peer check`: the sender's site id, which must be the one its
    /// certificate proved.
    Ping {
        site_id: String,
    },
    Pong {
        site_id: String,
    },
    /// What is the vserver's epoch there (the sender's is `epoch`)?
    EpochQuery {
        vserver: String,
        epoch: u64,
    },
    EpochAnswer(EpochAnswer),
    /// Opens replication of `vserver` into the accepting site.
    Replicate {
        vserver: String,
        replica_address: Option<String>,
    },
    ReplicateOk(ReplicaAt),
    Transfer(TransferKind),
    Resync(ResyncOpen),
    /// The promoted site accepts the resync; a ResyncRequest follows.
    ResyncOk,
    /// The diverged site installed the resync and is a replica now.
    ResyncReady,
    ResyncDone(ResyncDone),
    /// A refusal from a site where the vserver is active at `epoch` (a
    /// failover or switchover promoted it): a sender at a lower epoch
    /// fences itself.
    ActiveHere {
        epoch: u64,
        reason: String,
    },
}

/// A switchover's hand-over: the vserver, the LSN both sites hold, the
/// epoch the replica takes, and the replication settings it uses to
/// replicate back (opaque here: the daemons' TOML, at most a text's size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverRequest {
    pub vserver: String,
    pub lsn: Lsn,
    pub epoch: u64,
    pub settings: String,
}

impl Message {
    pub fn type_code(&self) -> u16 {
        match self {
            Message::Hello(_) => msg_type::HELLO,
            Message::HelloOk(_) => msg_type::HELLO_OK,
            Message::Refuse { .. } => msg_type::REFUSE,
            Message::Batch(_) => msg_type::BATCH,
            Message::BatchZstd(_) => msg_type::BATCH_ZSTD,
            Message::Ack(_) => msg_type::ACK,
            Message::Heartbeat { .. } => msg_type::HEARTBEAT,
            Message::Error { .. } => msg_type::ERROR,
            Message::BaselineStart(_) => msg_type::BASELINE_START,
            Message::BaselineResume(_) => msg_type::BASELINE_RESUME,
            Message::BaselineState { .. } => msg_type::BASELINE_STATE,
            Message::BaselineChunk { .. } => msg_type::BASELINE_CHUNK,
            Message::BaselineDone { .. } => msg_type::BASELINE_DONE,
            Message::VerifyRequest { .. } => msg_type::VERIFY_REQUEST,
            Message::VerifyResult(_) => msg_type::VERIFY_RESULT,
            Message::VerifyEntries { .. } => msg_type::VERIFY_ENTRIES,
            Message::CatchupStart(_) => msg_type::CATCHUP_START,
            Message::CatchupState { .. } => msg_type::CATCHUP_STATE,
            Message::CatchupChunk { .. } => msg_type::CATCHUP_CHUNK,
            Message::CatchupZeros { .. } => msg_type::CATCHUP_ZEROS,
            Message::CatchupDone { .. } => msg_type::CATCHUP_DONE,
            Message::ResyncRequest(_) => msg_type::RESYNC_REQUEST,
            Message::SwitchoverRequest(_) => msg_type::SWITCHOVER_REQUEST,
            Message::SwitchoverDone { .. } => msg_type::SWITCHOVER_DONE,
            Message::SwitchoverRefused { .. } => msg_type::SWITCHOVER_REFUSED,
            Message::Ping { .. } => msg_type::PING,
            Message::Pong { .. } => msg_type::PONG,
            Message::EpochQuery { .. } => msg_type::EPOCH_QUERY,
            Message::EpochAnswer(_) => msg_type::EPOCH_ANSWER,
            Message::Replicate { .. } => msg_type::REPLICATE,
            Message::ReplicateOk(_) => msg_type::REPLICATE_OK,
            Message::Transfer(_) => msg_type::TRANSFER,
            Message::Resync(_) => msg_type::RESYNC,
            Message::ResyncOk => msg_type::RESYNC_OK,
            Message::ResyncReady => msg_type::RESYNC_READY,
            Message::ResyncDone(_) => msg_type::RESYNC_DONE,
            Message::ActiveHere { .. } => msg_type::ACTIVE_HERE,
        }
    }

    pub fn kind(&self) -> &'static str {
        type_name(self.type_code())
    }
}

fn type_name(t: u16) -> &'static str {
    match t {
        msg_type::HELLO => "Hello",
        msg_type::HELLO_OK => "HelloOk",
        msg_type::REFUSE => "Refuse",
        msg_type::BATCH => "Batch",
        msg_type::BATCH_ZSTD => "BatchZstd",
        msg_type::ACK => "Ack",
        msg_type::HEARTBEAT => "Heartbeat",
        msg_type::ERROR => "Error",
        msg_type::BASELINE_START => "BaselineStart",
        msg_type::BASELINE_RESUME => "BaselineResume",
        msg_type::BASELINE_STATE => "BaselineState",
        msg_type::BASELINE_CHUNK => "BaselineChunk",
        msg_type::BASELINE_DONE => "BaselineDone",
        msg_type::VERIFY_REQUEST => "VerifyRequest",
        msg_type::VERIFY_RESULT => "VerifyResult",
        msg_type::VERIFY_ENTRIES => "VerifyEntries",
        msg_type::CATCHUP_START => "CatchupStart",
        msg_type::CATCHUP_STATE => "CatchupState",
        msg_type::CATCHUP_CHUNK => "CatchupChunk",
        msg_type::CATCHUP_ZEROS => "CatchupZeros",
        msg_type::CATCHUP_DONE => "CatchupDone",
        msg_type::RESYNC_REQUEST => "ResyncRequest",
        msg_type::SWITCHOVER_REQUEST => "SwitchoverRequest",
        msg_type::SWITCHOVER_DONE => "SwitchoverDone",
        msg_type::SWITCHOVER_REFUSED => "SwitchoverRefused",
        msg_type::PING => "Ping",
        msg_type::PONG => "Pong",
        msg_type::EPOCH_QUERY => "EpochQuery",
        msg_type::EPOCH_ANSWER => "EpochAnswer",
        msg_type::REPLICATE => "Replicate",
        msg_type::REPLICATE_OK => "ReplicateOk",
        msg_type::TRANSFER => "Transfer",
        msg_type::RESYNC => "Resync",
        msg_type::RESYNC_OK => "ResyncOk",
        msg_type::RESYNC_READY => "ResyncReady",
        msg_type::RESYNC_DONE => "ResyncDone",
        msg_type::ACTIVE_HERE => "ActiveHere",
        _ => "unknown",
    }
}

/// A checked envelope: magic, version and type known, length within limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    pub msg_type: u16,
    pub payload_len: usize,
    pub crc: u32,
    /// Envelope bytes 0..12, which the CRC covers with the payload.
    head: [u8; 12],
}

impl Envelope {
    /// Checks the 16 envelope bytes; nothing of the payload is needed yet,
    /// so an oversized or foreign message is refused before it is read.
    pub fn parse(bytes: &[u8; ENVELOPE_BYTES]) -> Result<Envelope> {
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(WireError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != WIRE_VERSION {
            return Err(WireError::UnsupportedVersion { found: version });
        }
        let msg_type = u16::from_le_bytes([bytes[6], bytes[7]]);
        if type_name(msg_type) == "unknown" {
            return Err(WireError::UnknownType { found: msg_type });
        }
        let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if len as u64 > MAX_MESSAGE_BYTES as u64 {
            return Err(WireError::TooLarge {
                len_bytes: len as u64,
                max_bytes: MAX_MESSAGE_BYTES,
            });
        }
        let mut head = [0u8; 12];
        head.copy_from_slice(&bytes[..12]);
        Ok(Envelope {
            msg_type,
            payload_len: len as usize,
            crc: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
            head,
        })
    }

    /// Checks the payload's checksum, then decodes it.
    pub fn open(&self, payload: Bytes) -> Result<Message> {
        if payload.len() != self.payload_len {
            return Err(WireError::Truncated {
                got_bytes: ENVELOPE_BYTES + payload.len(),
                want_bytes: ENVELOPE_BYTES + self.payload_len,
            });
        }
        let actual = crc32c::crc32c_append(crc32c::crc32c(&self.head), &payload);
        if actual != self.crc {
            return Err(WireError::Checksum {
                expected: self.crc,
                actual,
            });
        }
        decode_payload(self.msg_type, payload)
    }
}

/// `text` cut to a length that always fits [`MAX_TEXT_BYTES`] (a UTF-8
/// character is at most 4 bytes), for refusals and errors sent to a peer.
pub fn clip_text(text: &str) -> String {
    text.chars().take(MAX_TEXT_BYTES / 4).collect()
}

/// Encodes one message, envelope included. Refuses what a reader would
/// refuse (over-long fields, too many frames, too large a message), so a
/// bug here shows up at the sender, not as a broken session.
pub fn encode(msg: &Message) -> Result<Vec<u8>> {
    let mut out = vec![0u8; ENVELOPE_BYTES];
    let kind = msg.kind();
    let mut w = Writer {
        out: &mut out,
        kind,
    };
    match msg {
        Message::Hello(h) => {
            w.u16(h.protocol_version);
            w.site_id(&h.site_id)?;
            w.vserver(&h.vserver)?;
            w.u64(h.epoch);
            w.u64(h.last_lsn);
        }
        Message::HelloOk(h) => {
            w.u16(h.protocol_version);
            w.u64(h.epoch);
            w.u64(h.last_lsn);
        }
        Message::Refuse { code, reason } => {
            w.u16(*code);
            w.text(reason)?;
        }
        Message::Batch(b) => {
            let total = w.batch_header(b)?;
            w.out.reserve(total);
            for f in &b.frames {
                w.out.extend_from_slice(&f.bytes);
            }
        }
        Message::BatchZstd(b) => {
            let total = w.batch_header(b)?;
            let mut raw = Vec::with_capacity(total);
            for f in &b.frames {
                raw.extend_from_slice(&f.bytes);
            }
            let packed = zstd::bulk::compress(&raw, ZSTD_LEVEL)
                .map_err(|e| malformed(kind, format!("zstd: {e}")))?;
            // `total` is within MAX_MESSAGE_BYTES (checked above), so a u32.
            w.u32(total as u32);
            w.out.extend_from_slice(&packed);
        }
        Message::Ack(a) => {
            w.u64(a.received_lsn);
            w.u64(a.durable_lsn);
            w.u64(a.applied_lsn);
        }
        Message::Heartbeat { now_ms } => w.u64(*now_ms),
        Message::Error { code, text } => {
            w.u16(*code);
            w.text(text)?;
        }
        Message::BaselineStart(b) => {
            w.vserver(&b.vserver)?;
            w.u64(b.epoch);
            w.u64(b.lsn);
            if b.state_len > MAX_BASELINE_STATE_BYTES {
                return Err(malformed(kind, state_too_large(b.state_len)));
            }
            w.u64(b.state_len);
            w.u32(b.state_crc);
            w.u64(b.files);
            w.u64(b.total_bytes);
        }
        Message::BaselineResume(r) => {
            w.u64(r.lsn);
            w.out.push(u8::from(r.state_received));
            w.u64(r.next_ino);
            w.u64(r.next_offset);
            w.u64(r.done_bytes);
        }
        Message::BaselineState { offset, data } => {
            check_piece(data.len(), MAX_BASELINE_STATE_PIECE_BYTES)
                .map_err(|why| malformed(kind, why))?;
            w.u64(*offset);
            w.out.extend_from_slice(data);
        }
        Message::BaselineChunk { ino, offset, data } => {
            check_piece(data.len(), MAX_BASELINE_CHUNK_BYTES)
                .map_err(|why| malformed(kind, why))?;
            w.u64(*ino);
            w.u64(*offset);
            w.out.extend_from_slice(data);
        }
        Message::BaselineDone { lsn } => w.u64(*lsn),
        Message::VerifyRequest { lsn } => w.u64(*lsn),
        Message::VerifyResult(v) => {
            w.u64(v.lsn);
            match &v.outcome {
                Ok(h) => {
                    w.out.push(0);
                    w.u32(h.version);
                    w.out.extend_from_slice(&h.root);
                    for (_, d) in h.config.parts() {
                        w.out.extend_from_slice(d);
                    }
                    w.u64(h.files);
                    w.u64(h.bytes);
                    w.u64(h.entries);
                }
                Err(text) => {
                    w.out.push(1);
                    w.text(text)?;
                }
            }
        }
        Message::VerifyEntries { lsn, entries } => {
            check_entries(entries).map_err(|why| malformed(kind, why))?;
            w.u64(*lsn);
            w.u32(entries.len() as u32);
            for (ino, d) in entries {
                w.u64(*ino);
                w.out.extend_from_slice(d);
            }
        }
        Message::CatchupStart(c) => {
            check_catchup_start(c).map_err(|why| malformed(kind, why))?;
            w.vserver(&c.vserver)?;
            w.u64(c.epoch);
            w.u64(c.from_lsn);
            w.u64(c.lsn);
            w.u64(c.state_len);
            w.u32(c.state_crc);
            w.u64(c.range_count);
            w.u64(c.total_bytes);
        }
        Message::CatchupState { offset, data } => {
            check_piece(data.len(), MAX_BASELINE_STATE_PIECE_BYTES)
                .map_err(|why| malformed(kind, why))?;
            w.u64(*offset);
            w.out.extend_from_slice(data);
        }
        Message::CatchupChunk { ino, offset, data } => {
            check_piece(data.len(), MAX_BASELINE_CHUNK_BYTES)
                .map_err(|why| malformed(kind, why))?;
            w.u64(*ino);
            w.u64(*offset);
            w.out.extend_from_slice(data);
        }
        Message::CatchupZeros { ino, offset, len } => {
            check_zeros(*offset, *len).map_err(|why| malformed(kind, why))?;
            w.u64(*ino);
            w.u64(*offset);
            w.u64(*len);
        }
        Message::CatchupDone { lsn } => w.u64(*lsn),
        Message::ResyncRequest(q) => {
            check_resync_request(q).map_err(|why| malformed(kind, why))?;
            w.vserver(&q.vserver)?;
            w.u64(q.epoch);
            w.u64(q.shared_lsn);
            w.u32(q.ranges.len() as u32);
            for &(ino, start, end) in &q.ranges {
                w.u64(ino);
                w.u64(start);
                w.u64(end);
            }
            w.u32(q.present.len() as u32);
            for &(first, last) in &q.present {
                w.u64(first);
                w.u64(last);
            }
        }
        Message::SwitchoverRequest(r) => {
            w.vserver(&r.vserver)?;
            w.u64(r.lsn);
            w.u64(r.epoch);
            w.text(&r.settings)?;
        }
        Message::SwitchoverDone { lsn, epoch, notes } => {
            w.u64(*lsn);
            w.u64(*epoch);
            w.text(notes)?;
        }
        Message::SwitchoverRefused { lsn, reason } => {
            w.u64(*lsn);
            w.text(reason)?;
        }
        Message::Ping { site_id } | Message::Pong { site_id } => w.site_id(site_id)?,
        Message::EpochQuery { vserver, epoch } => {
            w.vserver(vserver)?;
            w.u64(*epoch);
        }
        Message::EpochAnswer(a) => {
            w.u64(a.epoch);
            w.out.push(match a.role {
                Role::None => 0,
                Role::Replica => 1,
                Role::Active => 2,
            });
            w.optional_lsn(a.shared_lsn);
        }
        Message::Replicate {
            vserver,
            replica_address,
        } => {
            w.vserver(vserver)?;
            w.address(replica_address.as_deref())?;
        }
        Message::ReplicateOk(r) => {
            w.u64(r.lsn);
            w.out.push(u8::from(r.unfinished_baseline));
        }
        Message::Transfer(kind) => w.out.push(match kind {
            TransferKind::Stream => 0,
            TransferKind::Baseline => 1,
            TransferKind::Catchup => 2,
        }),
        Message::Resync(r) => {
            w.vserver(&r.vserver)?;
            w.u64(r.epoch);
            w.u64(r.shared_lsn);
            w.address(r.replica_address.as_deref())?;
        }
        Message::ResyncOk | Message::ResyncReady => {}
        Message::ResyncDone(d) => {
            w.u64(d.lsn);
            w.u64(d.data_bytes);
            w.u64(d.state_bytes);
            w.u64(d.own_changed_bytes);
            w.u64(d.divergent_bytes);
        }
        Message::ActiveHere { epoch, reason } => {
            w.u64(*epoch);
            w.text(reason)?;
        }
    }
    let payload_len = out.len() - ENVELOPE_BYTES;
    if payload_len > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge {
            len_bytes: payload_len as u64,
            max_bytes: MAX_MESSAGE_BYTES,
        });
    }
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&WIRE_VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&msg.type_code().to_le_bytes());
    out[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[..12]), &out[ENVELOPE_BYTES..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes exactly one whole message (envelope and payload) from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Message> {
    let Some(head) = bytes.get(..ENVELOPE_BYTES) else {
        return Err(WireError::Truncated {
            got_bytes: bytes.len(),
            want_bytes: ENVELOPE_BYTES,
        });
    };
    let mut arr = [0u8; ENVELOPE_BYTES];
    arr.copy_from_slice(head);
    let env = Envelope::parse(&arr)?;
    let payload = &bytes[ENVELOPE_BYTES..];
    if payload.len() < env.payload_len {
        return Err(WireError::Truncated {
            got_bytes: bytes.len(),
            want_bytes: ENVELOPE_BYTES + env.payload_len,
        });
    }
    if payload.len() > env.payload_len {
        return Err(malformed(
            type_name(env.msg_type),
            format!(
                "{} bytes after the message",
                payload.len() - env.payload_len
            ),
        ));
    }
    env.open(Bytes::copy_from_slice(payload))
}

/// Reads one message, all of it within `timeout`. `Closed` if the peer
/// closed the connection cleanly between messages.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R, timeout: Duration) -> Result<Message> {
    match tokio::time::timeout(timeout, read_message_inner(r)).await {
        Ok(result) => result,
        Err(_) => Err(WireError::Timeout {
            timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
        }),
    }
}

async fn read_message_inner<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message> {
    let mut head = [0u8; ENVELOPE_BYTES];
    let got = read_up_to(r, &mut head[..MAGIC.len()]).await?;
    if got == 0 {
        return Err(WireError::Closed);
    }
    // The magic is checked before the rest of the envelope is awaited: a
    // peer speaking something else (a version-1 text line, shorter than an
    // envelope) is answered at once, not at the timeout.
    if got == MAGIC.len() && head[..MAGIC.len()] != MAGIC {
        let mut found = [0u8; 4];
        found.copy_from_slice(&head[..MAGIC.len()]);
        return Err(WireError::BadMagic { found });
    }
    let got = got + read_up_to(r, &mut head[got..]).await?;
    if got < ENVELOPE_BYTES {
        return Err(WireError::Truncated {
            got_bytes: got,
            want_bytes: ENVELOPE_BYTES,
        });
    }
    // Checked before the payload buffer exists: the length is bounded.
    let env = Envelope::parse(&head)?;
    let mut payload = BytesMut::zeroed(env.payload_len);
    let got = read_up_to(r, &mut payload).await?;
    if got < env.payload_len {
        return Err(WireError::Truncated {
            got_bytes: ENVELOPE_BYTES + got,
            want_bytes: ENVELOPE_BYTES + env.payload_len,
        });
    }
    env.open(payload.freeze())
}

/// Fills `buf` unless the stream ends first; returns the bytes read.
async fn read_up_to<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Encodes and writes one message (flushed), all within `timeout`.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &Message,
    timeout: Duration,
) -> Result<()> {
    write_bytes(w, &encode(msg)?, timeout).await
}

/// Writes one encoded message (flushed), all within `timeout`.
pub async fn write_bytes<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> Result<()> {
    let write = async {
        w.write_all(bytes).await?;
        w.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(WireError::Timeout {
            timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
        }),
    }
}

fn malformed(kind: &'static str, why: impl Into<String>) -> WireError {
    WireError::Malformed {
        kind,
        why: why.into(),
    }
}

/// Frames of a batch: at least one, at most `MAX_BATCH_FRAMES`, LSNs
/// consecutive, no epoch above the batch's.
fn check_frames(frames: &[RawFrame], epoch: u64) -> std::result::Result<(), String> {
    if frames.is_empty() {
        return Err("a batch needs at least one frame".into());
    }
    if frames.len() > MAX_BATCH_FRAMES {
        return Err(format!(
            "{} frames exceed the {MAX_BATCH_FRAMES}-frame limit",
            frames.len()
        ));
    }
    for pair in frames.windows(2) {
        if pair[0].lsn.checked_add(1) != Some(pair[1].lsn) {
            return Err(format!(
                "frame LSN {} follows {}: not consecutive",
                pair[1].lsn, pair[0].lsn
            ));
        }
    }
    if let Some(f) = frames.iter().find(|f| f.epoch > epoch) {
        return Err(format!(
            "frame LSN {} carries epoch {} above the batch's {epoch}",
            f.lsn, f.epoch
        ));
    }
    Ok(())
}

/// Entries of a `VerifyEntries`: at least one, within the limit, inodes
/// strictly ascending.
fn check_entries(entries: &[(u64, Hash)]) -> std::result::Result<(), String> {
    if entries.is_empty() {
        return Err("no entries".into());
    }
    if entries.len() > MAX_VERIFY_ENTRIES_PER_MESSAGE {
        return Err(format!(
            "{} entries exceed the {MAX_VERIFY_ENTRIES_PER_MESSAGE}-entry limit",
            entries.len()
        ));
    }
    if let Some(pair) = entries.windows(2).find(|p| p[0].0 >= p[1].0) {
        return Err(format!(
            "inode {} follows {}: not ascending",
            pair[1].0, pair[0].0
        ));
    }
    Ok(())
}

/// Inflates a BatchZstd's frames: exactly `raw_len` bytes, never more
/// (the buffer is that size and zstd refuses to overrun it, so a small
/// message that would inflate past its announcement is refused, not
/// expanded), and `raw_len` itself within the message limit.
fn unzstd(packed: Bytes, raw_len: usize) -> std::result::Result<Bytes, String> {
    if raw_len == 0 || raw_len > MAX_MESSAGE_BYTES {
        return Err(format!(
            "uncompressed length {raw_len} is not within 1..={MAX_MESSAGE_BYTES}"
        ));
    }
    if packed.is_empty() {
        return Err("no compressed bytes".into());
    }
    let raw = zstd::bulk::decompress(&packed, raw_len)
        .map_err(|e| format!("zstd data does not inflate within {raw_len} bytes: {e}"))?;
    if raw.len() != raw_len {
        return Err(format!(
            "zstd data inflates to {} bytes, not the announced {raw_len}",
            raw.len()
        ));
    }
    Ok(Bytes::from(raw))
}

/// Encodes a batch as BatchZstd when `compress` and that saves at least
/// `MIN_ZSTD_SAVING_PERCENT`, else as Batch: incompressible data (already
/// compressed or encrypted files) costs no more on the wire than without
/// compression, only the attempt's CPU.
pub fn encode_batch(batch: Batch, compress: bool) -> Result<Vec<u8>> {
    if !compress {
        return encode(&Message::Batch(batch));
    }
    let frame_bytes: usize = batch.frames.iter().map(|f| f.bytes.len()).sum();
    let msg = Message::BatchZstd(batch);
    let packed = encode(&msg)?;
    let Message::BatchZstd(batch) = msg else {
        return Err(malformed("BatchZstd", "not a batch"));
    };
    let plain_len = ENVELOPE_BYTES + frame_bytes;
    if packed.len().saturating_mul(100) <= plain_len.saturating_mul(100 - MIN_ZSTD_SAVING_PERCENT) {
        Ok(packed)
    } else {
        encode(&Message::Batch(batch))
    }
}

fn state_too_large(len: u64) -> String {
    format!("state of {len} bytes exceeds the {MAX_BASELINE_STATE_BYTES}-byte limit")
}

/// A catch-up's opening: a state that can be stored, `from_lsn <= lsn`.
fn check_resync_request(q: &ResyncRequest) -> std::result::Result<(), String> {
    if let Some(&(ino, s, e)) = q.ranges.iter().find(|&&(_, s, e)| s >= e) {
        return Err(format!("inode {ino}: empty range {s}..{e}"));
    }
    let mut prev: Option<u64> = None;
    for &(first, last) in &q.present {
        if first > last || prev.is_some_and(|p| first <= p) {
            return Err(format!(
                "inode runs not ascending and disjoint at {first}..={last}"
            ));
        }
        prev = Some(last);
    }
    Ok(())
}

fn check_catchup_start(c: &CatchupStart) -> std::result::Result<(), String> {
    if c.state_len > MAX_BASELINE_STATE_BYTES {
        return Err(state_too_large(c.state_len));
    }
    if c.state_len == 0 {
        return Err("empty state".into());
    }
    if c.from_lsn > c.lsn {
        return Err(format!(
            "from LSN {} is past the catch-up LSN {}",
            c.from_lsn, c.lsn
        ));
    }
    Ok(())
}

/// A zero range: not empty, its end representable.
fn check_zeros(offset: u64, len: u64) -> std::result::Result<(), String> {
    if len == 0 || offset.checked_add(len).is_none() {
        return Err(format!("zero range of {len} bytes at {offset}"));
    }
    Ok(())
}

/// A baseline piece: not empty (it would make no progress), within its limit.
fn check_piece(len: usize, max: usize) -> std::result::Result<(), String> {
    if len == 0 {
        return Err("empty piece".into());
    }
    if len > max {
        return Err(format!("piece of {len} bytes exceeds the {max}-byte limit"));
    }
    Ok(())
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    kind: &'static str,
}

impl Writer<'_> {
    /// Batch and BatchZstd's common fields; returns the frames' total bytes.
    fn batch_header(&mut self, b: &Batch) -> Result<usize> {
        self.vserver(&b.vserver)?;
        self.u64(b.epoch);
        check_frames(&b.frames, b.epoch).map_err(|why| malformed(self.kind, why))?;
        let first = b.frames.first().map_or(0, |f| f.lsn);
        self.u64(first);
        self.u32(b.frames.len() as u32);
        let total: usize = b.frames.iter().map(|f| f.bytes.len()).sum();
        if total > MAX_MESSAGE_BYTES {
            return Err(WireError::TooLarge {
                len_bytes: total as u64,
                max_bytes: MAX_MESSAGE_BYTES,
            });
        }
        Ok(total)
    }
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, field: &str, s: &str, max: usize) -> Result<()> {
        if s.len() > max {
            return Err(malformed(
                self.kind,
                format!("{field} of {} bytes exceeds {max}", s.len()),
            ));
        }
        self.u16(s.len() as u16);
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn text(&mut self, s: &str) -> Result<()> {
        self.str("text", s, MAX_TEXT_BYTES)
    }
    fn site_id(&mut self, s: &str) -> Result<()> {
        check_site_id(s).map_err(|why| malformed(self.kind, why))?;
        self.str("site id", s, MAX_SITE_ID_BYTES)
    }
    fn vserver(&mut self, s: &str) -> Result<()> {
        check_vserver(s).map_err(|why| malformed(self.kind, why))?;
        self.str("vserver", s, MAX_VSERVER_BYTES)
    }
    /// An optional replica address: empty for none.
    fn address(&mut self, s: Option<&str>) -> Result<()> {
        let s = s.unwrap_or("");
        check_address(s).map_err(|why| malformed(self.kind, why))?;
        self.str("address", s, MAX_ADDRESS_BYTES)
    }
    /// A presence byte (0 or 1), then the LSN (0 when absent).
    fn optional_lsn(&mut self, lsn: Option<Lsn>) {
        self.out.push(u8::from(lsn.is_some()));
        self.u64(lsn.unwrap_or(0));
    }
}

/// A replica address as the wire carries it: printable ASCII without
/// spaces (its meaning is the daemons'); empty is none.
fn check_address(s: &str) -> std::result::Result<(), String> {
    if s.len() > MAX_ADDRESS_BYTES || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "address must be at most {MAX_ADDRESS_BYTES} printable ASCII characters"
        ));
    }
    Ok(())
}

fn check_site_id(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() || s.len() > MAX_SITE_ID_BYTES || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "site id must be 1-{MAX_SITE_ID_BYTES} printable ASCII characters"
        ));
    }
    Ok(())
}

fn check_vserver(s: &str) -> std::result::Result<(), String> {
    tandem_store::validate::vserver_name(s).map_err(|e| e.to_string())
}

/// Reads fields off a payload; every read is bounds-checked.
struct Reader {
    buf: Bytes,
    pos: usize,
    kind: &'static str,
}

impl Reader {
    fn take(&mut self, n: usize, field: &str) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(malformed(self.kind, format!("payload ends inside {field}")));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self, field: &str) -> Result<u16> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, field: &str) -> Result<u32> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, field: &str) -> Result<u64> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self, field: &str, max: usize) -> Result<String> {
        let len = self.u16(field)? as usize;
        if len > max {
            return Err(malformed(
                self.kind,
                format!("{field} of {len} bytes exceeds {max}"),
            ));
        }
        let kind = self.kind;
        let b = self.take(len, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| malformed(kind, format!("{field} is not UTF-8")))
    }
    fn text(&mut self) -> Result<String> {
        self.str("text", MAX_TEXT_BYTES)
    }
    fn site_id(&mut self) -> Result<String> {
        let s = self.str("site id", MAX_SITE_ID_BYTES)?;
        check_site_id(&s).map_err(|why| malformed(self.kind, why))?;
        Ok(s)
    }
    fn vserver(&mut self) -> Result<String> {
        let s = self.str("vserver", MAX_VSERVER_BYTES)?;
        check_vserver(&s).map_err(|why| malformed(self.kind, why))?;
        Ok(s)
    }
    fn address(&mut self) -> Result<Option<String>> {
        let s = self.str("address", MAX_ADDRESS_BYTES)?;
        check_address(&s).map_err(|why| malformed(self.kind, why))?;
        Ok((!s.is_empty()).then_some(s))
    }
    fn optional_lsn(&mut self, field: &str) -> Result<Option<Lsn>> {
        let present = self.bool(field)?;
        let lsn = self.u64(field)?;
        match (present, lsn) {
            (true, lsn) => Ok(Some(lsn)),
            (false, 0) => Ok(None),
            (false, _) => Err(malformed(self.kind, format!("{field} is absent but not 0"))),
        }
    }
    /// One byte naming a variant: `names[i]` for byte i.
    fn variant<T: Copy>(&mut self, field: &str, names: &[T]) -> Result<T> {
        let b = self.take(1, field)?[0];
        names.get(usize::from(b)).copied().ok_or_else(|| {
            malformed(
                self.kind,
                format!("{field} is {b}, not below {}", names.len()),
            )
        })
    }
    /// The rest of the payload as `count` journal frames, each checked
    /// (length, checksum) and shared with the payload, not copied.
    fn frames(&mut self, count: usize, first_lsn: Lsn) -> Result<Vec<RawFrame>> {
        if count > MAX_BATCH_FRAMES {
            return Err(malformed(
                self.kind,
                format!("{count} frames exceed the {MAX_BATCH_FRAMES}-frame limit"),
            ));
        }
        let mut frames = Vec::with_capacity(count);
        for i in 0..count {
            let head = self.take(FRAME_HEADER_BYTES, "a frame header")?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len > MAX_PAYLOAD_BYTES {
                return Err(malformed(
                    self.kind,
                    format!("frame {i}: payload of {len} bytes exceeds {MAX_PAYLOAD_BYTES}"),
                ));
            }
            let start = self.pos - FRAME_HEADER_BYTES;
            self.take(len, "a frame payload")?;
            let frame = RawFrame::parse(self.buf.slice(start..self.pos))
                .map_err(|e| malformed(self.kind, format!("frame {i}: {e}")))?;
            frames.push(frame);
        }
        if frames.first().map(|f| f.lsn) != Some(first_lsn) {
            return Err(malformed(
                self.kind,
                format!("first frame is not LSN {first_lsn}"),
            ));
        }
        Ok(frames)
    }
    fn hash(&mut self, field: &str) -> Result<Hash> {
        let mut h = [0u8; 32];
        h.copy_from_slice(self.take(32, field)?);
        Ok(h)
    }
    fn verify_result(&mut self) -> Result<VerifyResult> {
        let lsn = self.u64("LSN")?;
        let outcome = match self.take(1, "status")?[0] {
            0 => Ok(VerifyHeader {
                version: self.u32("digest version")?,
                root: self.hash("root digest")?,
                config: ConfigDigests {
                    name: self.hash("name digest")?,
                    addresses: self.hash("addresses digest")?,
                    filesystems: self.hash("file systems digest")?,
                    users: self.hash("users digest")?,
                },
                files: self.u64("files")?,
                bytes: self.u64("bytes")?,
                entries: self.u64("entry count")?,
            }),
            1 => Err(self.text()?),
            other => {
                return Err(malformed(
                    self.kind,
                    format!("status is {other}, not 0 or 1"),
                ))
            }
        };
        Ok(VerifyResult { lsn, outcome })
    }
    fn verify_entries(&mut self) -> Result<Vec<(u64, Hash)>> {
        let count = self.u32("entry count")? as usize;
        // Checked before allocating: the count is the peer's word.
        if count > MAX_VERIFY_ENTRIES_PER_MESSAGE
            || count.saturating_mul(VERIFY_ENTRY_BYTES) != self.buf.len() - self.pos
        {
            return Err(malformed(
                self.kind,
                format!(
                    "{count} entries do not fit {} bytes (limit {MAX_VERIFY_ENTRIES_PER_MESSAGE})",
                    self.buf.len() - self.pos
                ),
            ));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push((self.u64("inode")?, self.hash("digest")?));
        }
        check_entries(&entries).map_err(|why| malformed(self.kind, why))?;
        Ok(entries)
    }
    /// A count of `item_bytes`-byte items that must fit what is left, so
    /// nothing is allocated for items that are not there.
    fn count(&mut self, item_bytes: usize, field: &str) -> Result<usize> {
        let n = self.u32(field)? as usize;
        if n.saturating_mul(item_bytes) > self.buf.len() - self.pos {
            return Err(malformed(
                self.kind,
                format!("{field} {n} exceeds the payload"),
            ));
        }
        Ok(n)
    }
    fn resync_request(&mut self) -> Result<ResyncRequest> {
        let vserver = self.vserver()?;
        let epoch = self.u64("epoch")?;
        let shared_lsn = self.u64("shared LSN")?;
        let n = self.count(24, "range count")?;
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            ranges.push((self.u64("inode")?, self.u64("start")?, self.u64("end")?));
        }
        let n = self.count(16, "run count")?;
        let mut present = Vec::with_capacity(n);
        for _ in 0..n {
            present.push((self.u64("first inode")?, self.u64("last inode")?));
        }
        let q = ResyncRequest {
            vserver,
            epoch,
            shared_lsn,
            ranges,
            present,
        };
        check_resync_request(&q).map_err(|why| malformed(self.kind, why))?;
        Ok(q)
    }
    fn bool(&mut self, field: &str) -> Result<bool> {
        match self.take(1, field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(malformed(
                self.kind,
                format!("{field} is {other}, not 0 or 1"),
            )),
        }
    }
    /// The rest of the payload, shared with it (not copied).
    fn rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        rest
    }
    fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(malformed(
                self.kind,
                format!("{} bytes after the last field", self.buf.len() - self.pos),
            ));
        }
        Ok(())
    }
}

fn decode_payload(msg_type: u16, payload: Bytes) -> Result<Message> {
    let kind = type_name(msg_type);
    let mut r = Reader {
        buf: payload,
        pos: 0,
        kind,
    };
    let msg = match msg_type {
        msg_type::HELLO => Message::Hello(Hello {
            protocol_version: r.u16("protocol version")?,
            site_id: r.site_id()?,
            vserver: r.vserver()?,
            epoch: r.u64("epoch")?,
            last_lsn: r.u64("last LSN")?,
        }),
        msg_type::HELLO_OK => Message::HelloOk(HelloOk {
            protocol_version: r.u16("protocol version")?,
            epoch: r.u64("epoch")?,
            last_lsn: r.u64("last LSN")?,
        }),
        msg_type::REFUSE => Message::Refuse {
            code: r.u16("code")?,
            reason: r.text()?,
        },
        msg_type::BATCH => {
            let vserver = r.vserver()?;
            let epoch = r.u64("epoch")?;
            let first_lsn = r.u64("first LSN")?;
            let count = r.u32("frame count")? as usize;
            let frames = r.frames(count, first_lsn)?;
            check_frames(&frames, epoch).map_err(|why| malformed(kind, why))?;
            Message::Batch(Batch {
                vserver,
                epoch,
                frames,
            })
        }
        msg_type::BATCH_ZSTD => {
            let vserver = r.vserver()?;
            let epoch = r.u64("epoch")?;
            let first_lsn = r.u64("first LSN")?;
            let count = r.u32("frame count")? as usize;
            let raw_len = r.u32("uncompressed length")? as usize;
            let raw = unzstd(r.rest(), raw_len).map_err(|why| malformed(kind, why))?;
            // From here exactly Batch's checks, on the inflated frames.
            let mut inner = Reader {
                buf: raw,
                pos: 0,
                kind,
            };
            let frames = inner.frames(count, first_lsn)?;
            inner.finish()?;
            check_frames(&frames, epoch).map_err(|why| malformed(kind, why))?;
            Message::BatchZstd(Batch {
                vserver,
                epoch,
                frames,
            })
        }
        msg_type::ACK => Message::Ack(Ack {
            received_lsn: r.u64("received LSN")?,
            durable_lsn: r.u64("durable LSN")?,
            applied_lsn: r.u64("applied LSN")?,
        }),
        msg_type::HEARTBEAT => Message::Heartbeat {
            now_ms: r.u64("time")?,
        },
        msg_type::ERROR => Message::Error {
            code: r.u16("code")?,
            text: r.text()?,
        },
        msg_type::BASELINE_START => {
            let start = BaselineStart {
                vserver: r.vserver()?,
                epoch: r.u64("epoch")?,
                lsn: r.u64("LSN")?,
                state_len: r.u64("state length")?,
                state_crc: r.u32("state CRC")?,
                files: r.u64("file count")?,
                total_bytes: r.u64("total bytes")?,
            };
            if start.state_len > MAX_BASELINE_STATE_BYTES {
                return Err(malformed(kind, state_too_large(start.state_len)));
            }
            Message::BaselineStart(start)
        }
        msg_type::BASELINE_RESUME => Message::BaselineResume(BaselineResume {
            lsn: r.u64("LSN")?,
            state_received: r.bool("state received")?,
            next_ino: r.u64("next inode")?,
            next_offset: r.u64("next offset")?,
            done_bytes: r.u64("done bytes")?,
        }),
        msg_type::BASELINE_STATE => {
            let offset = r.u64("offset")?;
            let data = r.rest();
            check_piece(data.len(), MAX_BASELINE_STATE_PIECE_BYTES)
                .map_err(|why| malformed(kind, why))?;
            Message::BaselineState { offset, data }
        }
        msg_type::BASELINE_CHUNK => {
            let ino = r.u64("inode")?;
            let offset = r.u64("offset")?;
            let data = r.rest();
            check_piece(data.len(), MAX_BASELINE_CHUNK_BYTES)
                .map_err(|why| malformed(kind, why))?;
            Message::BaselineChunk { ino, offset, data }
        }
        msg_type::BASELINE_DONE => Message::BaselineDone { lsn: r.u64("LSN")? },
        msg_type::VERIFY_REQUEST => Message::VerifyRequest { lsn: r.u64("LSN")? },
        msg_type::VERIFY_RESULT => Message::VerifyResult(r.verify_result()?),
        msg_type::VERIFY_ENTRIES => Message::VerifyEntries {
            lsn: r.u64("LSN")?,
            entries: r.verify_entries()?,
        },
        msg_type::CATCHUP_START => {
            let start = CatchupStart {
                vserver: r.vserver()?,
                epoch: r.u64("epoch")?,
                from_lsn: r.u64("from LSN")?,
                lsn: r.u64("LSN")?,
                state_len: r.u64("state length")?,
                state_crc: r.u32("state CRC")?,
                range_count: r.u64("range count")?,
                total_bytes: r.u64("total bytes")?,
            };
            check_catchup_start(&start).map_err(|why| malformed(kind, why))?;
            Message::CatchupStart(start)
        }
        msg_type::CATCHUP_STATE => {
            let offset = r.u64("offset")?;
            let data = r.rest();
            check_piece(data.len(), MAX_BASELINE_STATE_PIECE_BYTES)
                .map_err(|why| malformed(kind, why))?;
            Message::CatchupState { offset, data }
        }
        msg_type::CATCHUP_CHUNK => {
            let ino = r.u64("inode")?;
            let offset = r.u64("offset")?;
            let data = r.rest();
            check_piece(data.len(), MAX_BASELINE_CHUNK_BYTES)
                .map_err(|why| malformed(kind, why))?;
            Message::CatchupChunk { ino, offset, data }
        }
        msg_type::CATCHUP_ZEROS => {
            let (ino, offset, len) = (r.u64("inode")?, r.u64("offset")?, r.u64("length")?);
            check_zeros(offset, len).map_err(|why| malformed(kind, why))?;
            Message::CatchupZeros { ino, offset, len }
        }
        msg_type::CATCHUP_DONE => Message::CatchupDone { lsn: r.u64("LSN")? },
        msg_type::RESYNC_REQUEST => Message::ResyncRequest(r.resync_request()?),
        msg_type::SWITCHOVER_REQUEST => Message::SwitchoverRequest(SwitchoverRequest {
            vserver: r.vserver()?,
            lsn: r.u64("LSN")?,
            epoch: r.u64("epoch")?,
            settings: r.text()?,
        }),
        msg_type::SWITCHOVER_DONE => Message::SwitchoverDone {
            lsn: r.u64("LSN")?,
            epoch: r.u64("epoch")?,
            notes: r.text()?,
        },
        msg_type::SWITCHOVER_REFUSED => Message::SwitchoverRefused {
            lsn: r.u64("LSN")?,
            reason: r.text()?,
        },
        msg_type::PING => Message::Ping {
            site_id: r.site_id()?,
        },
        msg_type::PONG => Message::Pong {
            site_id: r.site_id()?,
        },
        msg_type::EPOCH_QUERY => Message::EpochQuery {
            vserver: r.vserver()?,
            epoch: r.u64("epoch")?,
        },
        msg_type::EPOCH_ANSWER => Message::EpochAnswer(EpochAnswer {
            epoch: r.u64("epoch")?,
            role: r.variant("role", &[Role::None, Role::Replica, Role::Active])?,
            shared_lsn: r.optional_lsn("shared LSN")?,
        }),
        msg_type::REPLICATE => Message::Replicate {
            vserver: r.vserver()?,
            replica_address: r.address()?,
        },
        msg_type::REPLICATE_OK => Message::ReplicateOk(ReplicaAt {
            lsn: r.u64("LSN")?,
            unfinished_baseline: r.bool("unfinished baseline")?,
        }),
        msg_type::TRANSFER => Message::Transfer(r.variant(
            "transfer",
            &[
                TransferKind::Stream,
                TransferKind::Baseline,
                TransferKind::Catchup,
            ],
        )?),
        msg_type::RESYNC => Message::Resync(ResyncOpen {
            vserver: r.vserver()?,
            epoch: r.u64("epoch")?,
            shared_lsn: r.u64("shared LSN")?,
            replica_address: r.address()?,
        }),
        msg_type::RESYNC_OK => Message::ResyncOk,
        msg_type::RESYNC_READY => Message::ResyncReady,
        msg_type::RESYNC_DONE => Message::ResyncDone(ResyncDone {
            lsn: r.u64("LSN")?,
            data_bytes: r.u64("data bytes")?,
            state_bytes: r.u64("state bytes")?,
            own_changed_bytes: r.u64("changed bytes")?,
            divergent_bytes: r.u64("divergent bytes")?,
        }),
        msg_type::ACTIVE_HERE => Message::ActiveHere {
            epoch: r.u64("epoch")?,
            reason: r.text()?,
        },
        other => return Err(WireError::UnknownType { found: other }),
    };
    r.finish()?;
    Ok(msg)
}
