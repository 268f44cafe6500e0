//! An NFS client for tests that drive the real binary: nfs3_client over a
//! TCP connection whose reads fail at end of stream (nfs3_client 0.9.1's own
//! connector spins at 100% CPU on a closed socket, which a killed server
//! leaves behind), plus small helpers that bound every call in time.

use std::time::{Duration, Instant};

use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::{Nfs3Client, Nfs3Connection, Nfs3ConnectionBuilder, RpcError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{TestSite, DEADLINE};

/// A TCP connection for nfs3_client whose reads fail at end of stream
/// (see crash.rs: nfs3_client's own spins on a closed socket).
pub struct Tcp(pub TcpStream);

impl nfs3_client::io::AsyncRead for Tcp {
    async fn async_read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf).await?;
        if n == 0 && !buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(n)
    }
}

impl nfs3_client::io::AsyncWrite for Tcp {
    async fn async_write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).await
    }
}

pub struct TcpConnector;

impl nfs3_client::net::Connector for TcpConnector {
    type Connection = Tcp;

    async fn connect(&self, addr: std::net::SocketAddr) -> std::io::Result<Tcp> {
        Ok(Tcp(TcpStream::connect(addr).await?))
    }

    async fn connect_with_port(
        &self,
        _addr: std::net::SocketAddr,
        _local_port: u16,
    ) -> std::io::Result<Tcp> {
        unreachable!("connects from unprivileged ports only")
    }
}

pub type Conn = Nfs3Connection<Tcp>;

/// No NFS call may take longer than this.
pub const OP_DEADLINE: Duration = Duration::from_secs(30);

pub fn root_cred() -> opaque_auth<'static> {
    opaque_auth::auth_unix(&auth_unix {
        stamp: 1,
        machinename: Opaque::owned(b"tandem-test".to_vec()),
        uid: 0,
        gid: 0,
        gids: vec![],
    })
}

pub fn dirop<'a>(dir: &nfs_fh3, name: &'a str) -> diropargs3<'a> {
    diropargs3 {
        dir: dir.clone(),
        name: filename3(Opaque::borrowed(name.as_bytes())),
    }
}

/// Mounts /data at `ip` with `site`'s ports, retrying until it is served.
pub async fn mount(site: &TestSite, ip: &str) -> Conn {
    mount_export(site, ip, "/data").await
}

/// Mounts `export` at `ip` with `site`'s ports, retrying until it is served.
pub async fn mount_export(site: &TestSite, ip: &str, export: &str) -> Conn {
    mount_at(ip, export, (site.mount_port, site.nfs_port), DEADLINE).await
}

/// Mounts `export` at `ip` with the given (mount, nfs) ports, retrying
/// until it is served or `limit` has passed (then panics).
pub async fn mount_at(ip: &str, export: &str, ports: (u16, u16), limit: Duration) -> Conn {
    let start = Instant::now();
    loop {
        let r = Nfs3ConnectionBuilder::new(TcpConnector, ip, export)
            .connect_from_privileged_port(false)
            .mount_port(ports.0)
            .nfs3_port(ports.1)
            .credential(root_cred())
            .mount()
            .await;
        match r {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    start.elapsed() < limit,
                    "cannot mount {ip}:{export} within {limit:?}: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One call bounded in time: the reply or its NFS error status, or the
/// transport's error (the server went away: the outcome is unknown).
pub async fn call_or_lost<T, E: std::fmt::Debug>(
    what: &str,
    fut: impl std::future::Future<Output = Result<Nfs3Result<T, E>, RpcError>>,
) -> Result<Result<T, nfsstat3>, RpcError> {
    match tokio::time::timeout(OP_DEADLINE, fut).await {
        Err(_) => panic!("{what}: no reply within {OP_DEADLINE:?}"),
        Ok(Err(e)) => Err(e),
        Ok(Ok(Nfs3Result::Ok(v))) => Ok(Ok(v)),
        Ok(Ok(Nfs3Result::Err((st, _)))) => Ok(Err(st)),
    }
}

pub async fn call<T, E: std::fmt::Debug>(
    what: &str,
    fut: impl std::future::Future<Output = Result<Nfs3Result<T, E>, RpcError>>,
) -> Result<T, nfsstat3> {
    match call_or_lost(what, fut).await {
        Ok(r) => r,
        Err(e) => panic!("{what}: transport: {e:?}"),
    }
}

pub async fn must<T, E: std::fmt::Debug>(
    what: &str,
    fut: impl std::future::Future<Output = Result<Nfs3Result<T, E>, RpcError>>,
) -> T {
    match call(what, fut).await {
        Ok(v) => v,
        Err(st) => panic!("{what}: {st:?}"),
    }
}

/// Reads a whole file with 1 MiB READs.
pub async fn read_all(c: &mut Conn, fh: &nfs_fh3) -> Vec<u8> {
    let mut data = Vec::new();
    read_chunks(c, fh, |chunk| data.extend_from_slice(chunk)).await;
    data
}

/// Reads a file to EOF with 1 MiB READs, handing each reply's bytes to
/// `f`; returns how many bytes were read.
pub async fn read_chunks(c: &mut Conn, fh: &nfs_fh3, mut f: impl FnMut(&[u8])) -> u64 {
    let mut offset = 0u64;
    loop {
        let r = must(
            "READ",
            c.read(&READ3args {
                file: fh.clone(),
                offset,
                count: 1 << 20,
            }),
        )
        .await;
        f(r.data.as_ref());
        offset += r.data.as_ref().len() as u64;
        if r.eof || r.count == 0 {
            return offset;
        }
    }
}

/// Creates `name` (empty, mode 0644) in the export's root.
pub async fn create_file(c: &mut Conn, name: &str) -> nfs_fh3 {
    let root = c.root_nfs_fh3();
    let r = must(
        "CREATE",
        c.create(&CREATE3args {
            where_: dirop(&root, name),
            how: createhow3::UNCHECKED(sattr3 {
                mode: Nfs3Option::Some(0o644),
                ..Default::default()
            }),
        }),
    )
    .await;
    let Nfs3Option::Some(fh) = r.obj else {
        panic!("CREATE without a handle");
    };
    fh
}

/// Creates `name` in the export's root and writes `data` with FILE_SYNC.
pub async fn write_file(c: &mut Conn, name: &str, data: &[u8]) -> nfs_fh3 {
    let fh = create_file(c, name).await;
    write_at(c, &fh, 0, data, stable_how::FILE_SYNC).await;
    fh
}

/// Writes `data` at `offset` in 64 KiB pieces, each `stable`.
pub async fn write_at(c: &mut Conn, fh: &nfs_fh3, offset: u64, data: &[u8], stable: stable_how) {
    for (i, chunk) in data.chunks(64 << 10).enumerate() {
        let w = must(
            "WRITE",
            c.write(&WRITE3args {
                file: fh.clone(),
                offset: offset + (i as u64) * (64 << 10),
                count: chunk.len() as u32,
                stable,
                data: Opaque::borrowed(chunk),
            }),
        )
        .await;
        assert_eq!(w.count as usize, chunk.len());
    }
}

/// The handle of `name` in the export's root, if LOOKUP finds it.
pub async fn lookup(c: &mut Conn, name: &str) -> Option<nfs_fh3> {
    let root = c.root_nfs_fh3();
    call(
        "LOOKUP",
        c.lookup(&LOOKUP3args {
            what: dirop(&root, name),
        }),
    )
    .await
    .ok()
    .map(|r| r.object)
}

/// An NFS client on a new connection to `ip:port`, with no MOUNT: it uses
/// the handles it already has. Retries the connect until served.
pub async fn reconnect(ip: &str, port: u16) -> Nfs3Client<Tcp> {
    let s = connect_until_served(ip, port).await;
    Nfs3Client::new_with_auth(Tcp(s), root_cred(), opaque_auth::default())
}

/// A new TCP connection to `ip:port`, retried until something listens.
pub async fn connect_until_served(ip: &str, port: u16) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect((ip, port)).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(start.elapsed() < DEADLINE, "cannot reach {ip}:{port}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads a whole file through a client without a mount (see `reconnect`).
pub async fn read_whole(c: &mut Nfs3Client<Tcp>, fh: &nfs_fh3) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let r = must(
            "READ",
            c.read(&READ3args {
                file: fh.clone(),
                offset: data.len() as u64,
                count: 1 << 20,
            }),
        )
        .await;
        data.extend_from_slice(&r.data);
        if r.eof || r.data.is_empty() {
            return data;
        }
    }
}

/// One WRITE of `data` at `offset` through a client without a mount.
pub async fn write_once(
    c: &mut Nfs3Client<Tcp>,
    fh: &nfs_fh3,
    offset: u64,
    data: &[u8],
    stable: stable_how,
) -> WRITE3resok {
    must(
        "WRITE",
        c.write(&WRITE3args {
            file: fh.clone(),
            offset,
            count: data.len() as u32,
            stable,
            data: Opaque::borrowed(data),
        }),
    )
    .await
}

/// REMOVE of `name` in the export's root, which must succeed.
pub async fn remove(c: &mut Conn, name: &str) {
    let root = c.root_nfs_fh3();
    must(
        "REMOVE",
        c.remove(&REMOVE3args {
            object: dirop(&root, name),
        }),
    )
    .await;
}

/// The content of `name` in the export's root, if it exists.
pub async fn read_named(c: &mut Conn, name: &str) -> Option<Vec<u8>> {
    let fh = lookup(c, name).await?;
    Some(read_all(c, &fh).await)
}
