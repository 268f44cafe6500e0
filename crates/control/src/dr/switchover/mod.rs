//! A switchover's report.

pub mod report;
