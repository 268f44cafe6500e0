//! How far a replica is behind, in records, bytes and time. Every commit
//! leaves a mark (LSN, journal bytes so far, wall time) in a bounded ring;
//! the replica's acknowledged LSN then gives the bytes it lacks and the age
//! of the oldest record it lacks: what a sudden loss of this site would
//! lose now (the RPO, in async mode).

use parking_lot::Mutex;
use std::collections::VecDeque;

use crate::store::Store;
use crate::types::{now_unix_ms, Lsn};

/// Marks kept; past this, the oldest go, and the bytes of a lag older
/// than every mark kept are estimated as all bytes since the store opened.
pub const MAX_LSN_MARKS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Mark {
    lsn: Lsn,
    /// Journal bytes appended up to and including this record.
    bytes: u64,
    unix_ms: u64,
}

#[derive(Default)]
pub(crate) struct LsnMarks {
    inner: Mutex<Marks>,
}

#[derive(Default)]
struct Marks {
    ring: VecDeque<Mark>,
    total_bytes: u64,
}

/// A replica's distance behind this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    pub records: u64,
    pub bytes: u64,
    /// Age of the oldest record the replica lacks, in milliseconds (0 when
    /// it lacks none).
    pub oldest_unacked_ms: u64,
}

impl LsnMarks {
    pub(crate) fn record(&self, lsn: Lsn, frame_bytes: usize) {
        let mut m = self.inner.lock();
        m.total_bytes += frame_bytes as u64;
        let bytes = m.total_bytes;
        m.ring.push_back(Mark {
            lsn,
            bytes,
            unix_ms: now_unix_ms(),
        });
        if m.ring.len() > MAX_LSN_MARKS {
            m.ring.pop_front();
        }
    }

    fn lag(&self, last_lsn: Lsn, acked: Lsn) -> Lag {
        let records = last_lsn.saturating_sub(acked);
        if records == 0 {
            return Lag::default();
        }
        let m = self.inner.lock();
        // The first mark past `acked`: the oldest record the replica lacks.
        let first = m.ring.partition_point(|k| k.lsn <= acked);
        let Some(oldest) = m.ring.get(first) else {
            return Lag {
                records,
                ..Lag::default()
            };
        };
        // Older than every mark: count every byte since this store opened
        // (exact unless the ring has dropped marks, then an estimate).
        let acked_bytes = match first.checked_sub(1) {
            Some(i) => m.ring[i].bytes,
            None => 0,
        };
        Lag {
            records,
            bytes: m.total_bytes.saturating_sub(acked_bytes),
            oldest_unacked_ms: now_unix_ms().saturating_sub(oldest.unix_ms),
        }
    }
}

impl Store {
    /// How far behind a replica that acknowledged `acked` is. Marks are
    /// kept for records committed since this store was opened.
    pub fn lag_behind(&self, acked: Lsn) -> Lag {
        self.lsn_marks.lag(self.last_lsn(), acked)
    }
}
