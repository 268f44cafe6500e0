//! The bench's smoke tests, one test binary.

mod common;

mod ganesha_smoke;
mod replication_smoke;
mod tandem_smoke;
