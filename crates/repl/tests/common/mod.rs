//! Helpers the repl integration tests share (each test binary uses some).
#![allow(dead_code)]

use std::time::Duration;

use tandem_repl::session::SessionConfig;
use tandem_store::{Export, StoreOptions};

pub const SITE: &str = "3f2a9c0d5e6b7a8f3f2a9c0d5e6b7a8f3f2a9c0d5e6b7a8f3f2a9c0d5e6b7a8f";

pub fn export(path: &str) -> Export {
    Export {
        path: path.into(),
        clients: Vec::new(),
        read_only: false,
        root_squash: false,
        anon_uid: 65534,
        anon_gid: 65534,
    }
}

/// Small segments and frequent checkpoints: without the retention floor,
/// checkpoints would delete frames the replica still lacks.
pub fn small_segments() -> StoreOptions {
    StoreOptions {
        max_segment_bytes: 32 << 10,
        checkpoint_every_bytes: 64 << 10,
        ..StoreOptions::default()
    }
}

/// Fast heartbeats and a short idle timeout, so a dead link shows quickly.
pub fn session_cfg() -> SessionConfig {
    SessionConfig {
        site_id: SITE.into(),
        message_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(500),
        window_batches: 3,
        max_batch_bytes: 16 << 10,
        ..SessionConfig::new(SITE)
    }
}
