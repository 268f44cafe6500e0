//! The journal: numbered segment files of checksummed, length-prefixed
//! frames, appended by one writer thread that group-commits (many callers,
//! one fdatasync). Byte layout: docs/formats.md.

pub mod frame;
pub mod reader;
pub mod segment;
pub mod writer;

pub use frame::{decode_payload, encode_frame, FrameHeader, FRAME_HEADER_BYTES, MAX_PAYLOAD_BYTES};
pub use reader::{scan, ScanOutcome, ScannedRecord};
pub use segment::{list_segments, SegmentInfo, SEGMENT_HEADER_BYTES};
pub use writer::{DurableWaiter, JournalWriter, WriterOptions};
