//! POSIX `fcntl` byte-range arithmetic on one owner's locks of one file:
//! what a new lock or an unlock leaves behind. Pure functions, so the store
//! can compute an outcome before journaling it and `apply` can recompute
//! the very same outcome from the record.

use serde::{Deserialize, Serialize};

/// An inclusive byte range; `end == u64::MAX` means "to the end of the
/// file, however far it grows" (an NLM length of 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// The range an NLM (offset, length) pair names: length 0, or one
    /// reaching past the largest offset, runs to the end of the file (as
    /// the Linux lock manager reads it).
    pub fn from_offset_len(offset: u64, len: u64) -> ByteRange {
        let end = match len {
            0 => u64::MAX,
            n => offset.saturating_add(n - 1),
        };
        ByteRange { start: offset, end }
    }

    /// The NLM (offset, length) pair of this range (length 0: to EOF).
    pub fn offset_len(&self) -> (u64, u64) {
        if self.end == u64::MAX {
            (self.start, 0)
        } else {
            (self.start, self.end - self.start + 1)
        }
    }

    pub fn to_eof(&self) -> bool {
        self.end == u64::MAX
    }

    pub fn is_valid(&self) -> bool {
        self.start <= self.end
    }

    pub fn overlaps(&self, other: &ByteRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Overlapping or directly adjacent: two such ranges of one owner and
    /// one type are one lock.
    fn touches(&self, other: &ByteRange) -> bool {
        self.start <= other.end.saturating_add(1) && other.start <= self.end.saturating_add(1)
    }

    /// What is left of `self` after taking `cut` out: zero, one or two
    /// pieces.
    fn minus(&self, cut: &ByteRange) -> impl Iterator<Item = ByteRange> {
        let (before, after) = if self.overlaps(cut) {
            let before = (self.start < cut.start).then(|| ByteRange {
                start: self.start,
                end: cut.start - 1,
            });
            let after = (cut.end < self.end).then(|| ByteRange {
                start: cut.end + 1,
                end: self.end,
            });
            (before, after)
        } else {
            (Some(*self), None)
        };
        before.into_iter().chain(after)
    }
}

/// One piece of an owner's locks: a range and whether it is exclusive
/// (write) or shared (read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Piece {
    pub range: ByteRange,
    pub exclusive: bool,
}

/// An owner's pieces after locking `range`: the new type replaces whatever
/// the owner held there (upgrade, downgrade, split), and touching pieces of
/// one type become one (merge). Input and output are sorted by start and
/// disjoint.
pub fn after_lock(mine: &[Piece], range: ByteRange, exclusive: bool) -> Vec<Piece> {
    let mut out = after_unlock(mine, range);
    let at = out.partition_point(|p| p.range.start < range.start);
    out.insert(at, Piece { range, exclusive });
    merge(out)
}

/// An owner's pieces after unlocking `range` (which may split a piece).
pub fn after_unlock(mine: &[Piece], range: ByteRange) -> Vec<Piece> {
    mine.iter()
        .flat_map(|p| {
            p.range.minus(&range).map(move |r| Piece {
                range: r,
                exclusive: p.exclusive,
            })
        })
        .collect()
}

/// Joins touching pieces of one type; `pieces` sorted by start, disjoint.
fn merge(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match out.last_mut() {
            Some(last) if last.exclusive == p.exclusive && last.range.touches(&p.range) => {
                last.range.end = last.range.end.max(p.range.end);
            }
            _ => out.push(p),
        }
    }
    out
}

/// Whether `pieces` are as `after_lock` leaves them: valid ranges, sorted,
/// disjoint, and no two touching pieces of one type.
pub fn is_canonical(pieces: &[Piece]) -> bool {
    pieces.iter().all(|p| p.range.is_valid())
        && pieces.windows(2).all(|w| {
            w[0].range.end < w[1].range.start
                && !(w[0].exclusive == w[1].exclusive && w[0].range.touches(&w[1].range))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn p(start: u64, end: u64, exclusive: bool) -> Piece {
        Piece {
            range: r(start, end),
            exclusive,
        }
    }

    #[test]
    fn offset_and_length() {
        assert_eq!(ByteRange::from_offset_len(10, 0), r(10, u64::MAX));
        assert_eq!(ByteRange::from_offset_len(10, 5), r(10, 14));
        assert_eq!(
            ByteRange::from_offset_len(u64::MAX - 1, 5),
            r(u64::MAX - 1, u64::MAX)
        );
        assert_eq!(r(10, 14).offset_len(), (10, 5));
        assert_eq!(r(10, u64::MAX).offset_len(), (10, 0));
    }

    #[test]
    fn split_merge_upgrade_downgrade() {
        let whole = after_lock(&[], r(0, 99), false);
        assert_eq!(whole, vec![p(0, 99, false)]);
        let split = after_lock(&whole, r(40, 59), true);
        assert_eq!(
            split,
            vec![p(0, 39, false), p(40, 59, true), p(60, 99, false)]
        );
        let back = after_lock(&split, r(40, 59), false);
        assert_eq!(back, vec![p(0, 99, false)], "a downgrade merges again");
        let adjacent = after_lock(&back, r(100, u64::MAX), false);
        assert_eq!(adjacent, vec![p(0, u64::MAX, false)]);
        let holed = after_unlock(&adjacent, r(10, 19));
        assert_eq!(holed, vec![p(0, 9, false), p(20, u64::MAX, false)]);
        assert!(is_canonical(&holed));
        assert!(!is_canonical(&[p(0, 9, false), p(10, 19, false)]));
        assert!(is_canonical(&[p(0, 9, false), p(10, 19, true)]));
    }
}
