//! The CLI's side of the control socket: one connection per command.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::api::proto::{Reply, Request, Response, MAX_RESPONSE_BYTES};
use crate::config::site::SitePaths;
use crate::error::{ControlError, Result};

/// How long to wait for the daemon to accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take (creating a vserver fsyncs several times).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends one request to the daemon of the site in `site_dir`.
pub async fn call(site_dir: &Path, request: &Request) -> Result<Reply> {
    call_within(site_dir, request, REQUEST_TIMEOUT).await
}

/// `call`, waiting up to `timeout` for the answer (for requests known to
/// take long, such as a verify).
pub async fn call_within(site_dir: &Path, request: &Request, timeout: Duration) -> Result<Reply> {
    let paths = SitePaths::new(site_dir);
    if !paths.site_toml().exists() {
        return Err(ControlError::NoSite(site_dir.to_path_buf()));
    }
    let path = paths.socket();
    let not_running = |reason: String| ControlError::DaemonNotRunning {
        dir: site_dir.to_path_buf(),
        reason,
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&path)).await {
        Err(_) => return Err(not_running(format!("{} did not answer", path.display()))),
        Ok(Err(e)) => return Err(not_running(format!("{}: {e}", path.display()))),
        Ok(Ok(s)) => s,
    };
    let response = tokio::time::timeout(timeout, exchange(stream, request))
        .await
        .map_err(|_| {
            ControlError::Protocol(format!(
                "no answer from the daemon within {}s",
                timeout.as_secs()
            ))
        })??;
    response.into_result()
}

async fn exchange(stream: UnixStream, request: &Request) -> Result<Response> {
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(request)
        .map_err(|e| ControlError::Internal(format!("encoding request: {e}")))?;
    bytes.push(b'\n');
    let io = |e: std::io::Error| ControlError::Protocol(format!("talking to the daemon: {e}"));
    write.write_all(&bytes).await.map_err(io)?;
    let mut line = Vec::new();
    BufReader::new(read)
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .await
        .map_err(io)?;
    if line.is_empty() {
        return Err(ControlError::Protocol(
            "the daemon closed the connection without answering".into(),
        ));
    }
    if line.len() > MAX_RESPONSE_BYTES {
        return Err(ControlError::Protocol(format!(
            "answer longer than {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    serde_json::from_slice(&line)
        .map_err(|e| ControlError::Protocol(format!("malformed answer from the daemon: {e}")))
}
