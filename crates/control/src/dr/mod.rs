//! Disaster-recovery logic that needs no running daemon: the failover
//! check and its durable marks, the reports of failover, switchover and
//! resync, and the crash-point test hook. The daemon (daemon/) runs the
//! workflows that use them.

pub mod crash_point;
pub mod failover;
pub mod resync;
pub mod switchover;
