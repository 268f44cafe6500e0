//! File contents for clients that write and later check what they wrote.

use rand::{RngCore, SeedableRng};

/// `len` bytes that compress poorly, the same for the same `seed` and
/// different from one seed to another.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

#[cfg(test)]
mod tests {
    use super::pattern;

    #[test]
    fn a_seed_gives_the_same_bytes_and_another_seed_others() {
        assert_eq!(pattern(4096, 7), pattern(4096, 7));
        assert_ne!(pattern(4096, 7), pattern(4096, 8));
        assert_eq!(pattern(100, 7)[..], pattern(4096, 7)[..100]);
        assert!(pattern(0, 1).is_empty());
    }
}
