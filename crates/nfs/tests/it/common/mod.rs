//! Shared test scaffolding: a store in a temp dir served on 127.0.0.1 with
//! ports picked by the kernel, nfs3_client connections, raw RPC helpers.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use nfs3_client::nfs3_types::nfs3::{diropargs3, filename3, nfs_fh3, Nfs3Result};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::{Nfs3Connection, Nfs3ConnectionBuilder};
use tandem_nfs::{Endpoint, ServerConfig, VserverService};
use tandem_store::config::NOBODY;
use tandem_store::{Export, Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type Conn = Nfs3Connection<TokioIo<TcpStream>>;

pub struct Server {
    pub store: Arc<Store>,
    pub svc: Option<VserverService>,
    pub ep: Endpoint,
    pub fsids: Vec<u64>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn stop(mut self) {
        if let Some(svc) = self.svc.take() {
            svc.shutdown().await;
        }
        let _ = self.store.close();
    }
}

pub fn export(path: &str) -> Export {
    Export {
        path: path.into(),
        clients: Vec::new(),
        read_only: false,
        root_squash: false,
        anon_uid: NOBODY,
        anon_gid: NOBODY,
    }
}

pub async fn start() -> Server {
    start_with(vec![("data", export("/data"))]).await
}

pub async fn start_with(filesystems: Vec<(&str, Export)>) -> Server {
    start_with_config(filesystems, test_config()).await
}

pub fn test_config() -> ServerConfig {
    ServerConfig {
        nfs_port: 0,
        mount_port: 0,
        portmap_port: Some(0),
        ..ServerConfig::default()
    }
}

pub async fn start_with_config(filesystems: Vec<(&str, Export)>, cfg: ServerConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(&dir.path().join("vs"), "vs1", StoreOptions::default()).unwrap();
    let mut fsids = Vec::new();
    for (name, export) in filesystems {
        let m = store.create_fs(name, export).unwrap();
        store.wait_durable(m.lsn).await.unwrap();
        fsids.push(m.value.fsid);
    }
    let store = Arc::new(store);
    let svc = VserverService::start(store.clone(), vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], cfg)
        .await
        .unwrap();
    let ep = svc.endpoints()[0];
    Server {
        store,
        svc: Some(svc),
        ep,
        fsids,
        _dir: dir,
    }
}

pub fn auth_sys(uid: u32, gid: u32) -> opaque_auth<'static> {
    opaque_auth::auth_unix(&auth_unix {
        stamp: 1,
        machinename: Opaque::owned(b"testhost".to_vec()),
        uid,
        gid,
        gids: vec![],
    })
}

pub fn root() -> opaque_auth<'static> {
    auth_sys(0, 0)
}

pub async fn mount(srv: &Server, path: &str, cred: opaque_auth<'static>) -> Conn {
    try_mount(srv, path, cred).await.unwrap()
}

pub async fn try_mount(
    srv: &Server,
    path: &str,
    cred: opaque_auth<'static>,
) -> Result<Conn, nfs3_client::ConnectError> {
    Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", path)
        .connect_from_privileged_port(false)
        .mount_port(srv.ep.mount_port)
        .nfs3_port(srv.ep.nfs_port)
        .credential(cred)
        .mount()
        .await
}

pub fn dirop<'a>(dir: &nfs_fh3, name: &'a str) -> diropargs3<'a> {
    diropargs3 {
        dir: dir.clone(),
        name: filename3(Opaque::borrowed(name.as_bytes())),
    }
}

/// The status of a failed NFS result; panics on success.
pub fn err_status<T: std::fmt::Debug, E>(
    r: Nfs3Result<T, E>,
) -> nfs3_client::nfs3_types::nfs3::nfsstat3 {
    match r {
        Nfs3Result::Ok(v) => panic!("expected an error, got {v:?}"),
        Nfs3Result::Err((st, _)) => st,
    }
}

/// Builds a file handle the way docs/formats.md describes it.
pub fn make_handle(fsid: u64, ino: u64, generation: u64) -> nfs_fh3 {
    let mut b = b"TN\x01\x00".to_vec();
    b.extend(fsid.to_be_bytes());
    b.extend(ino.to_be_bytes());
    b.extend(generation.to_be_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend(crc.to_be_bytes());
    nfs_fh3 {
        data: Opaque::owned(b),
    }
}

// ---- raw RPC ----

pub struct RawCall {
    pub xid: u32,
    pub rpcvers: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_num: u32,
    pub args: Vec<u8>,
}

impl RawCall {
    pub fn new(xid: u32, prog: u32, vers: u32, proc_num: u32) -> Self {
        RawCall {
            xid,
            rpcvers: 2,
            prog,
            vers,
            proc_num,
            args: Vec::new(),
        }
    }

    /// One record (single fragment) with AUTH_NONE credentials.
    pub fn record(&self) -> Vec<u8> {
        self.record_with_cred(0, &[])
    }

    /// One record with AUTH_SYS credentials of root.
    pub fn record_as_root(&self) -> Vec<u8> {
        let mut cred = Vec::new();
        // stamp, machine name "t" (padded), uid 0, gid 0, no groups
        for v in [1u32, 1, u32::from_be_bytes(*b"t\0\0\0"), 0, 0, 0] {
            cred.extend(v.to_be_bytes());
        }
        self.record_with_cred(1, &cred)
    }

    fn record_with_cred(&self, flavor: u32, cred: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for v in [
            self.xid,
            0,
            self.rpcvers,
            self.prog,
            self.vers,
            self.proc_num,
            flavor,
            cred.len() as u32,
        ] {
            body.extend(u32::to_be_bytes(v));
        }
        body.extend(cred);
        // verifier: AUTH_NONE
        body.extend([0u8; 8]);
        body.extend(&self.args);
        let mut rec = ((body.len() as u32) | 0x8000_0000).to_be_bytes().to_vec();
        rec.extend(body);
        rec
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RawReply {
    /// accept_stat and what follows it.
    Accepted { xid: u32, stat: u32, rest: Vec<u8> },
    /// reject_stat and what follows it.
    Denied { xid: u32, stat: u32, rest: Vec<u8> },
}

impl RawReply {
    /// The accept_stat of an accepted reply; `None` for a denied one.
    pub fn accept_stat(&self) -> Option<u32> {
        match self {
            RawReply::Accepted { stat, .. } => Some(*stat),
            RawReply::Denied { .. } => None,
        }
    }

    pub fn xid(&self) -> u32 {
        match self {
            RawReply::Accepted { xid, .. } | RawReply::Denied { xid, .. } => *xid,
        }
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

pub async fn read_reply(s: &mut TcpStream) -> RawReply {
    let mut body = Vec::new();
    loop {
        let mut h = [0u8; 4];
        s.read_exact(&mut h).await.unwrap();
        let h = u32::from_be_bytes(h);
        let mut frag = vec![0u8; (h & 0x7fff_ffff) as usize];
        s.read_exact(&mut frag).await.unwrap();
        body.extend(frag);
        if h & 0x8000_0000 != 0 {
            break;
        }
    }
    let xid = be32(&body, 0);
    assert_eq!(be32(&body, 4), 1, "not a REPLY");
    if be32(&body, 8) == 0 {
        let verf_len = be32(&body, 16) as usize;
        let at = 20 + verf_len.div_ceil(4) * 4;
        RawReply::Accepted {
            xid,
            stat: be32(&body, at),
            rest: body[at + 4..].to_vec(),
        }
    } else {
        RawReply::Denied {
            xid,
            stat: be32(&body, 12),
            rest: body[16..].to_vec(),
        }
    }
}

pub async fn raw_call(port: u16, call: &RawCall) -> RawReply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&call.record()).await.unwrap();
    read_reply(&mut s).await
}

/// How long the raw helpers wait for the server.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// A NULL call on a new connection is answered.
pub async fn still_serving(srv: &Server) {
    let reply = raw_call(srv.ep.nfs_port, &RawCall::new(77, 100_003, 3, 0)).await;
    assert_eq!(
        reply,
        RawReply::Accepted {
            xid: 77,
            stat: 0,
            rest: vec![]
        }
    );
}

/// Reads until the server closes the connection; fails past the deadline.
pub async fn expect_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "server kept the connection open");
}
