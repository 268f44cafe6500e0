//! The daemon's side of the control socket. Each connection is a task that
//! reads bounded request lines; connections are capped, idle ones closed,
//! and a request in progress finishes before shutdown completes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::proto::{Request, Response};
use crate::api::Handler;
use crate::config::site::ControlSettings;
use crate::error::{ControlError, ErrorKind, Result};

/// Longest Unix socket path Linux accepts (sun_path is 108 bytes with NUL).
pub const MAX_SOCKET_PATH_BYTES: usize = 107;
/// How long shutdown waits for requests in progress.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub struct ApiServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ApiServer {
    /// Binds the socket. The caller must hold the site lock: a leftover
    /// socket file from a crashed daemon is then safe to replace.
    pub fn bind(path: &Path) -> Result<ApiServer> {
        if path.as_os_str().len() > MAX_SOCKET_PATH_BYTES {
            return Err(ControlError::invalid(
                "data directory",
                format!(
                    "control socket path {} is longer than {MAX_SOCKET_PATH_BYTES} bytes; use a shorter --data path",
                    path.display()
                ),
            ));
        }
        match std::fs::remove_file(path) {
            Ok(()) => tracing::debug!(path = %path.display(), "removed stale control socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ControlError::io(path, e)),
        }
        let listener = UnixListener::bind(path).map_err(|e| ControlError::io(path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| ControlError::io(path, e))?;
        Ok(ApiServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves until `shutdown` is cancelled, then lets requests in progress
    /// finish (up to SHUTDOWN_GRACE) and removes the socket.
    pub async fn serve<H: Handler>(
        self,
        handler: Arc<H>,
        settings: ControlSettings,
        shutdown: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(settings.max_clients));
        let mut conns = JoinSet::new();
        loop {
            // Take a slot first, so a full house makes new clients wait in
            // the kernel's backlog while shutdown stays responsive.
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let handler = handler.clone();
                        let settings = settings.clone();
                        let shutdown = shutdown.clone();
                        conns.spawn(async move {
                            if let Err(e) = connection(stream, &*handler, &settings, shutdown).await {
                                tracing::debug!(error = %e, "control connection ended");
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept on control socket failed");
                        // Out of file descriptors and the like: back off
                        // rather than spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            // Reap finished connections so the set does not grow forever.
            while conns.try_join_next().is_some() {}
        }
        drop(self.listener);
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(error = %e, "removing control socket");
        }
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("control requests still running at shutdown; abandoning them");
            conns.abort_all();
        }
    }
}

async fn connection<H: Handler>(
    stream: UnixStream,
    handler: &H,
    settings: &ControlSettings,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let idle = Duration::from_secs(settings.idle_timeout_secs);
    let max = settings.max_request_bytes;
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(max as u64 + 1);
        // Between requests only: a request being handled is never cut off.
        let n = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(idle, limited.read_until(b'\n', &mut line)) => match r {
                Err(_) => return Ok(()),
                Ok(r) => r?,
            },
        };
        if n == 0 {
            return Ok(());
        }
        let response = if line.len() > max {
            // The rest of the oversized line is unread; the stream cannot
            // be resynchronised, so answer and hang up.
            let resp = Response::Error {
                kind: ErrorKind::Invalid,
                message: format!("request longer than {max} bytes"),
            };
            send(&mut write, &resp).await?;
            return Ok(());
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(req) => handler.handle(req).await,
                Err(e) => Response::Error {
                    kind: ErrorKind::Invalid,
                    message: format!("malformed request: {e}"),
                },
            }
        };
        send(&mut write, &response).await?;
    }
}

async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    resp: &Response,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(resp).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.flush().await
}
