//! Replication messages on the wire (see docs/formats.md).
