//! The NFS file handle: 32 bytes built only from what travels with the
//! vserver (fsid, inode, generation), so it stays valid across restarts
//! and failovers.
//!
//! ```text
//! offset  size  field
//!  0      2     magic "TN" (0x54 0x4e)
//!  2      1     format version (1)
//!  3      1     reserved, 0
//!  4      8     fsid, big-endian u64
//! 12      8     inode number, big-endian u64
//! 20      8     generation, big-endian u64
//! 28      4     CRC32C of bytes 0..28, big-endian u32
//! ```

use tandem_store::Handle;

pub(crate) const HANDLE_BYTES: usize = 32;
const MAGIC: [u8; 2] = *b"TN";
const VERSION: u8 = 1;

pub(crate) fn encode(h: &Handle) -> Vec<u8> {
    let mut out = Vec::with_capacity(HANDLE_BYTES);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&h.fsid.to_be_bytes());
    out.extend_from_slice(&h.ino.to_be_bytes());
    out.extend_from_slice(&h.generation.to_be_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// `None` for anything we did not make: the caller answers BADHANDLE.
pub(crate) fn decode(bytes: &[u8]) -> Option<Handle> {
    let b: &[u8; HANDLE_BYTES] = bytes.try_into().ok()?;
    if b[0..2] != MAGIC || b[2] != VERSION || b[3] != 0 {
        return None;
    }
    let crc = u32::from_be_bytes(b[28..32].try_into().ok()?);
    if crc32c::crc32c(&b[..28]) != crc {
        return None;
    }
    let u64_at =
        |at: usize| -> Option<u64> { Some(u64::from_be_bytes(b[at..at + 8].try_into().ok()?)) };
    Some(Handle {
        fsid: u64_at(4)?,
        ino: u64_at(12)?,
        generation: u64_at(20)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let h = Handle {
            fsid: 7,
            ino: 0x0102_0304_0506_0708,
            generation: 9,
        };
        let bytes = encode(&h);
        assert_eq!(bytes.len(), HANDLE_BYTES);
        assert_eq!(&bytes[..4], b"TN\x01\x00");
        assert_eq!(decode(&bytes), Some(h));
        assert_eq!(decode(&bytes[..31]), None);
        let mut bad = bytes.clone();
        bad[13] ^= 1;
        assert_eq!(decode(&bad), None);
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(decode(&bad), None);
    }
}
