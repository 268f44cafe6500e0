//! RFC 5531 record marking over TCP: a record is one or more fragments,
//! each behind a 4-byte header (last-fragment bit + 31-bit length).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

const LAST_FRAGMENT_BIT: u32 = 0x8000_0000;
const FRAGMENT_LEN_MASK: u32 = 0x7fff_ffff;
/// A record's buffer grows by at most this much ahead of the bytes read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("record of at least {claimed_bytes} bytes exceeds the limit of {max_record_bytes}")]
    TooLarge {
        claimed_bytes: usize,
        max_record_bytes: usize,
    },
    #[error("connection closed in the middle of a record")]
    Truncated,
    #[error("record not complete within {max_record_secs} s")]
    TooSlow { max_record_secs: u64 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the next whole record. `Ok(None)` is a clean close between records.
/// Waiting for a record to start is bounded only by the connection's idle
/// timeout (NFS clients keep idle connections), but once started it must
/// be complete within `max_record_time`, so a trickling peer cannot hold a
/// connection slot.
#[cfg(test)]
pub(crate) async fn read_record<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_record_bytes: usize,
    max_record_time: Duration,
) -> Result<Option<Vec<u8>>, RecordError> {
    let Some(head) = read_record_start(reader).await? else {
        return Ok(None);
    };
    read_record_rest(reader, head, max_record_bytes, max_record_time)
        .await
        .map(Some)
}

/// Waits for the next record to start; returns its first fragment header,
/// or `None` on a clean close between records. Split from the rest so a
/// caller can wait for a request without holding resources for one.
pub(crate) async fn read_record_start<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<[u8; 4]>, RecordError> {
    let mut head = [0u8; 4];
    match reader.read_exact(&mut head).await {
        Ok(_) => Ok(Some(head)),
        // EOF between records is an ordinary close.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads the rest of a started record, within `max_record_time`.
pub(crate) async fn read_record_rest<R: AsyncRead + Unpin>(
    reader: &mut R,
    head: [u8; 4],
    max_record_bytes: usize,
    max_record_time: Duration,
) -> Result<Vec<u8>, RecordError> {
    match tokio::time::timeout(max_record_time, read_rest(reader, head, max_record_bytes)).await {
        Ok(r) => r,
        Err(_) => Err(RecordError::TooSlow {
            max_record_secs: max_record_time.as_secs(),
        }),
    }
}

async fn read_rest<R: AsyncRead + Unpin>(
    reader: &mut R,
    mut head: [u8; 4],
    max_record_bytes: usize,
) -> Result<Vec<u8>, RecordError> {
    let mut record = Vec::new();
    loop {
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
        // Grown as bytes arrive, not to the claimed size at once: a peer
        // that sends headers and stops must not make us hold megabytes.
        while record.len() < claimed_bytes {
            let start = record.len();
            record.resize(claimed_bytes.min(start + READ_CHUNK_BYTES), 0);
            read_exact_or_truncated(reader, &mut record[start..]).await?;
        }
        if header & LAST_FRAGMENT_BIT != 0 {
            return Ok(record);
        }
        read_exact_or_truncated(reader, &mut head).await?;
    }
}

async fn read_exact_or_truncated<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), RecordError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(RecordError::Truncated),
        Err(e) => Err(e.into()),
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

    const T: Duration = Duration::from_secs(5);

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
        let rec = read_record(&mut r, 100, T).await.unwrap();
        assert_eq!(rec.as_deref(), Some(&b"abcdefgh"[..]));
        assert!(read_record(&mut r, 100, T).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn fragments_longer_than_a_read_chunk_arrive_whole() {
        let big: Vec<u8> = (0..READ_CHUNK_BYTES * 3 + 7).map(|i| i as u8).collect();
        let mut input = frag(false, &big);
        input.extend(frag(true, &big[..5]));
        let mut r = &input[..];
        let rec = read_record(&mut r, big.len() * 2, T)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.len(), big.len() + 5);
        assert_eq!(&rec[..big.len()], &big[..]);
        assert_eq!(&rec[big.len()..], &big[..5]);
    }

    #[tokio::test]
    async fn oversized_fragments_are_refused_before_reading() {
        let mut input = frag(false, &[0; 60]);
        input.extend(frag(true, &[0; 60]));
        let mut r = &input[..];
        assert!(matches!(
            read_record(&mut r, 100, T).await,
            Err(RecordError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_record_is_an_error() {
        let mut input = (100u32 | LAST_FRAGMENT_BIT).to_be_bytes().to_vec();
        input.extend_from_slice(&[0; 10]);
        let mut r = &input[..];
        assert!(matches!(
            read_record(&mut r, 1000, T).await,
            Err(RecordError::Truncated)
        ));
    }
}

#[cfg(test)]
mod slow_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_started_record_must_finish_in_time() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(
            &mut client,
            &(100u32 | LAST_FRAGMENT_BIT).to_be_bytes(),
        )
        .await
        .unwrap();
        let r = read_record(&mut server, 1000, Duration::from_secs(30)).await;
        assert!(matches!(r, Err(RecordError::TooSlow { .. })));
        drop(client);
    }
}
