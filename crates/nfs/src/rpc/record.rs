//! RFC 5531 record marking over TCP: a record is one or more fragments,
//! each behind a 4-byte header (last-fragment bit + 31-bit length).

use tokio::io::{AsyncRead, AsyncReadExt};

const LAST_FRAGMENT_BIT: u32 = 0x8000_0000;
const FRAGMENT_LEN_MASK: u32 = 0x7fff_ffff;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("record of at least {claimed_bytes} bytes exceeds the limit of {max_record_bytes}")]
    TooLarge {
        claimed_bytes: usize,
        max_record_bytes: usize,
    },
    #[error("connection closed in the middle of a record")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the next whole record. `Ok(None)` is a clean close between records.
pub(crate) async fn read_record<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_record_bytes: usize,
) -> Result<Option<Vec<u8>>, RecordError> {
    let mut record = Vec::new();
    let mut first = true;
    loop {
        let mut head = [0u8; 4];
        match reader.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // EOF between records is an ordinary close; anywhere else the
                // peer cut a record short.
                return if first {
                    Ok(None)
                } else {
                    Err(RecordError::Truncated)
                };
            }
            Err(e) => return Err(e.into()),
        }
        first = false;
        let header = u32::from_be_bytes(head);
        let fragment_bytes = (header & FRAGMENT_LEN_MASK) as usize;
        let claimed_bytes = record.len().saturating_add(fragment_bytes);
        // Checked before allocating: the header alone must not make us reserve
        // memory the peer never sends.
        if claimed_bytes > max_record_bytes {
            return Err(RecordError::TooLarge {
                claimed_bytes,
                max_record_bytes,
            });
        }
        let start = record.len();
        record.resize(claimed_bytes, 0);
        if let Err(e) = reader.read_exact(&mut record[start..]).await {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                RecordError::Truncated
            } else {
                e.into()
            });
        }
        if header & LAST_FRAGMENT_BIT != 0 {
            return Ok(Some(record));
        }
    }
}

/// Header for a reply sent as one fragment.
pub(crate) fn single_fragment_header(len_bytes: usize) -> Option<[u8; 4]> {
    let len = u32::try_from(len_bytes).ok()?;
    if len > FRAGMENT_LEN_MASK {
        return None;
    }
    Some((len | LAST_FRAGMENT_BIT).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(last: bool, data: &[u8]) -> Vec<u8> {
        let mut h = data.len() as u32;
        if last {
            h |= LAST_FRAGMENT_BIT;
        }
        let mut v = h.to_be_bytes().to_vec();
        v.extend_from_slice(data);
        v
    }

    #[tokio::test]
    async fn multi_fragment_record_is_joined() {
        let mut input = frag(false, b"abcd");
        input.extend(frag(true, b"efgh"));
        let mut r = &input[..];
        let rec = read_record(&mut r, 100).await.unwrap();
        assert_eq!(rec.as_deref(), Some(&b"abcdefgh"[..]));
        assert!(read_record(&mut r, 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_fragments_are_refused_before_reading() {
        let mut input = frag(false, &[0; 60]);
        input.extend(frag(true, &[0; 60]));
        let mut r = &input[..];
        assert!(matches!(
            read_record(&mut r, 100).await,
            Err(RecordError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_record_is_an_error() {
        let mut input = (100u32 | LAST_FRAGMENT_BIT).to_be_bytes().to_vec();
        input.extend_from_slice(&[0; 10]);
        let mut r = &input[..];
        assert!(matches!(
            read_record(&mut r, 1000).await,
            Err(RecordError::Truncated)
        ));
    }
}
