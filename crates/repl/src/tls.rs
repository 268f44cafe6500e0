//! Mutual-TLS transport between paired sites (see docs/formats.md).
