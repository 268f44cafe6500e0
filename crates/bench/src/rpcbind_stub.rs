//! A stand-in for rpcbind on a Unix socket, for NFS-Ganesha only.
//!
//! Ganesha 4.3 refuses to start unless it can register NFS and MOUNT with
//! rpcbind (there is no option to skip it), and a real rpcbind would take
//! port 111 on every address of the machine, where Tandem's own portmapper
//! and its tests live. So Ganesha runs in a private mount namespace whose
//! `/run` holds this stub's socket (`/run/rpcbind.sock`, the local transport
//! libntirpc tries first); the stub answers NULL, SET and UNSET with
//! success and everything else with PROC_UNAVAIL. Clients never ask it
//! anything: the bench passes Ganesha's ports explicitly.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// rpcbind's program number.
const RPCBIND_PROGRAM: u32 = 100_000;
/// Largest call we accept; registrations are a few hundred bytes.
const MAX_CALL_BYTES: usize = 16 << 10;
/// Connections served at once; Ganesha opens one or two.
const MAX_CONNECTIONS: usize = 16;

const MSG_CALL: u32 = 0;
const MSG_REPLY: u32 = 1;
const MSG_ACCEPTED: u32 = 0;
const ACCEPT_SUCCESS: u32 = 0;
const ACCEPT_PROG_UNAVAIL: u32 = 1;
const ACCEPT_PROC_UNAVAIL: u32 = 3;
const ACCEPT_GARBAGE_ARGS: u32 = 4;

pub struct RpcbindStub {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl RpcbindStub {
    /// Listens on `dir/rpcbind.sock`.
    pub fn start(dir: &Path) -> std::io::Result<RpcbindStub> {
        let path = dir.join("rpcbind.sock");
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&path)?;
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "rpcbind stub: accept failed");
                        return;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    warn!("rpcbind stub: too many connections, closing one");
                    continue;
                };
                tokio::spawn(async move {
                    if let Err(e) = serve(stream).await {
                        debug!(error = %e, "rpcbind stub: connection ended");
                    }
                    drop(permit);
                });
            }
        });
        Ok(RpcbindStub { path, task })
    }
}

impl Drop for RpcbindStub {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(mut stream: UnixStream) -> std::io::Result<()> {
    loop {
        let Some(call) = read_record(&mut stream).await? else {
            return Ok(());
        };
        let reply = answer(&call);
        let len = u32::try_from(reply.len()).unwrap_or(u32::MAX) | 0x8000_0000;
        let mut out = Vec::with_capacity(reply.len() + 4);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&reply);
        stream.write_all(&out).await?;
    }
}

/// One record-marked message, or `None` at a clean end of stream.
async fn read_record(stream: &mut UnixStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut msg = Vec::new();
    loop {
        let mut header = [0u8; 4];
        match stream.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && msg.is_empty() => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let header = u32::from_be_bytes(header);
        let last = header & 0x8000_0000 != 0;
        let len = (header & 0x7fff_ffff) as usize;
        if msg.len() + len > MAX_CALL_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("call larger than {MAX_CALL_BYTES} bytes"),
            ));
        }
        let start = msg.len();
        msg.resize(start + len, 0);
        stream.read_exact(&mut msg[start..]).await?;
        if last {
            return Ok(Some(msg));
        }
    }
}

fn word(buf: &[u8], i: usize) -> Option<u32> {
    let b = buf.get(i * 4..i * 4 + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The reply body (without record mark) to one call.
fn answer(call: &[u8]) -> Vec<u8> {
    let xid = word(call, 0).unwrap_or(0);
    let mut reply = Vec::with_capacity(32);
    for w in [xid, MSG_REPLY, MSG_ACCEPTED, 0, 0] {
        reply.extend_from_slice(&w.to_be_bytes());
    }
    let (stat, result): (u32, Option<u32>) = match (word(call, 1), word(call, 3), word(call, 5)) {
        (Some(MSG_CALL), Some(RPCBIND_PROGRAM), Some(proc_)) => match proc_ {
            0 => (ACCEPT_SUCCESS, None),
            // SET and UNSET (PMAP v2 and RPCB v3/v4 share the numbers): true.
            1 | 2 => (ACCEPT_SUCCESS, Some(1)),
            _ => (ACCEPT_PROC_UNAVAIL, None),
        },
        (Some(MSG_CALL), Some(_), Some(_)) => (ACCEPT_PROG_UNAVAIL, None),
        _ => (ACCEPT_GARBAGE_ARGS, None),
    };
    debug!(
        procedure = word(call, 5),
        version = word(call, 4),
        stat,
        "rpcbind stub call"
    );
    reply.extend_from_slice(&stat.to_be_bytes());
    if stat == ACCEPT_PROG_UNAVAIL {
        // low and high version supported
        reply.extend_from_slice(&2u32.to_be_bytes());
        reply.extend_from_slice(&4u32.to_be_bytes());
    }
    if let Some(r) = result {
        reply.extend_from_slice(&r.to_be_bytes());
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(prog: u32, vers: u32, proc_: u32) -> Vec<u8> {
        let mut c = Vec::new();
        for w in [7, MSG_CALL, 2, prog, vers, proc_, 0, 0, 0, 0] {
            c.extend_from_slice(&w.to_be_bytes());
        }
        c
    }

    #[test]
    fn set_succeeds_and_others_are_refused() {
        let r = answer(&call(RPCBIND_PROGRAM, 3, 1));
        assert_eq!(word(&r, 0), Some(7));
        assert_eq!(word(&r, 5), Some(ACCEPT_SUCCESS));
        assert_eq!(word(&r, 6), Some(1));
        let r = answer(&call(RPCBIND_PROGRAM, 3, 3));
        assert_eq!(word(&r, 5), Some(ACCEPT_PROC_UNAVAIL));
        let r = answer(&call(100_003, 3, 0));
        assert_eq!(word(&r, 5), Some(ACCEPT_PROG_UNAVAIL));
        let r = answer(&[1, 2]);
        assert_eq!(word(&r, 5), Some(ACCEPT_GARBAGE_ARGS));
    }
}
