//! What a client does across a failover: poll the vserver's address until
//! it answers again, read a file back whole, write one in large UNSTABLE
//! pieces.

use std::time::{Duration, Instant};

use anyhow::bail;
use nfs3_client::nfs3_types::nfs3::{nfs_fh3, stable_how, writeverf3};

use crate::client::Client;
use crate::target::Target;

/// How long one poll of the address waits for its reply.
const POLL_CALL: Duration = Duration::from_millis(500);
/// Pause between two polls that found nobody listening.
pub const FIRST_REPLY_POLL_GAP: Duration = Duration::from_millis(2);
/// Size of each client WRITE.
const WRITE_BYTES: usize = 1 << 20;
/// Largest READ while checking the bytes.
const READ_BYTES: u32 = 1 << 20;

/// Polls `target` with GETATTR of `fh` on new connections until one is
/// answered; returns how long after `since` that was, and the client.
pub async fn first_reply(
    target: &Target,
    fh: &nfs_fh3,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<(Duration, Client)> {
    loop {
        let attempt = tokio::time::timeout(POLL_CALL, async {
            let mut c = Client::connect(target).await?;
            c.getattr(fh).await?;
            anyhow::Ok(c)
        })
        .await;
        match attempt {
            Ok(Ok(c)) => return Ok((since.elapsed(), c)),
            Ok(Err(e)) if since.elapsed() > timeout => {
                bail!(
                    "no NFS reply at {}:{} within {timeout:?}: {e:#}",
                    target.ip,
                    target.nfs_port
                )
            }
            Err(_) if since.elapsed() > timeout => {
                bail!(
                    "no NFS reply at {}:{} within {timeout:?}",
                    target.ip,
                    target.nfs_port
                )
            }
            _ => tokio::time::sleep(FIRST_REPLY_POLL_GAP).await,
        }
    }
}

/// Reads `fh` from the start until EOF (at most `limit` bytes and one
/// READ more).
pub async fn read_whole(c: &mut Client, fh: &nfs_fh3, limit: u64) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let (chunk, eof) = c.read(fh, data.len() as u64, READ_BYTES).await?;
        data.extend_from_slice(&chunk);
        if eof || chunk.is_empty() || data.len() as u64 > limit {
            return Ok(data);
        }
    }
}

/// UNSTABLE WRITEs of `data` at `offset`, `WRITE_BYTES` at a time; the
/// verifier of the last reply.
pub async fn write_chunks(
    c: &mut Client,
    fh: &nfs_fh3,
    offset: u64,
    data: &[u8],
) -> anyhow::Result<writeverf3> {
    let mut verf = writeverf3::default();
    for (i, chunk) in data.chunks(WRITE_BYTES).enumerate() {
        let at = offset + (i * WRITE_BYTES) as u64;
        verf = c.write_all(fh, at, chunk, stable_how::UNSTABLE).await?;
    }
    Ok(verf)
}
