//! A bounded XDR reader for everything that arrives from the network.
//!
//! `nfs3_types` decoders allocate whatever length prefix the peer sends
//! (`vec![0; len]`, `Vec::with_capacity(len)`) before checking that the
//! bytes exist, so a 16-byte request could ask for gigabytes. This reader
//! only hands out slices of the record already received, so the record
//! size limit bounds every allocation.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum XdrError {
    #[error("argument truncated")]
    Truncated,
    #[error("variable-length item of {len_bytes} bytes exceeds its limit of {max_bytes}")]
    TooLong { len_bytes: usize, max_bytes: usize },
    #[error("invalid discriminant {0}")]
    BadDiscriminant(u32),
}

pub(crate) struct XdrReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> XdrReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        XdrReader { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, len_bytes: usize) -> Result<&'a [u8], XdrError> {
        let end = self.pos.checked_add(len_bytes).ok_or(XdrError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(XdrError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, XdrError> {
        let hi = u64::from(self.u32()?);
        let lo = u64::from(self.u32()?);
        Ok((hi << 32) | lo)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(XdrError::BadDiscriminant(other)),
        }
    }

    /// Variable-length opaque (or string) of at most `max_bytes`.
    pub(crate) fn opaque(&mut self, max_bytes: usize) -> Result<&'a [u8], XdrError> {
        let len_bytes = usize::try_from(self.u32()?).map_err(|_| XdrError::Truncated)?;
        if len_bytes > max_bytes {
            return Err(XdrError::TooLong {
                len_bytes,
                max_bytes,
            });
        }
        let data = self.take(len_bytes)?;
        self.take(pad_bytes(len_bytes))?;
        Ok(data)
    }

    pub(crate) fn fixed<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        self.take(pad_bytes(N))?;
        Ok(out)
    }
}

fn pad_bytes(len_bytes: usize) -> usize {
    (4 - len_bytes % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_length_beyond_record_is_truncated_not_allocated() {
        let mut r = XdrReader::new(&[0xff, 0xff, 0xff, 0xff, 1, 2]);
        assert_eq!(r.opaque(usize::MAX), Err(XdrError::Truncated));
    }

    #[test]
    fn opaque_respects_limit_and_padding() {
        let buf = [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 9];
        let mut r = XdrReader::new(&buf);
        assert_eq!(r.opaque(3), Ok(&b"abc"[..]));
        assert_eq!(r.u32(), Ok(9));
        let mut r = XdrReader::new(&buf);
        assert!(matches!(r.opaque(2), Err(XdrError::TooLong { .. })));
    }

    #[test]
    fn u64_and_bool() {
        let buf = [0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        let mut r = XdrReader::new(&buf);
        assert_eq!(r.u64(), Ok((1 << 32) | 2));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.bool(), Err(XdrError::BadDiscriminant(2)));
    }
}
