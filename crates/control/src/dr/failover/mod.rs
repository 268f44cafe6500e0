//! A failover's check (what the DR site has and lacks), its durable step
//! marks, and its report.

pub mod check;
pub mod mark;
pub mod report;
