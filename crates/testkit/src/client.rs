//! Connections to one server: a MOUNT, then `in_flight` NFS connections
//! (`nfs3_client` keeps one call outstanding per connection), and thin
//! wrappers that turn every NFS status into a [`ClientError`].

use std::net::SocketAddr;

use anyhow::Context;
use nfs3_client::nfs3_types::mount::dirpath;
use nfs3_client::nfs3_types::nfs3::{
    self as nfs, diropargs3, filename3, nfs_fh3, nfsstat3, Nfs3Result,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::TokioIo;
use nfs3_client::{MountClient, Nfs3Client, RpcError};
use tokio::net::TcpStream;

use crate::error::ClientError;
use crate::target::Target;

pub type Io = TokioIo<TcpStream>;

/// One NFS connection with the server's name for error messages.
pub struct Client {
    pub server: &'static str,
    pub nfs: Nfs3Client<Io>,
}

/// The credential every call carries: root, so both servers (exported
/// without root squash) grant everything.
fn credential() -> opaque_auth<'static> {
    opaque_auth::auth_unix(&auth_unix {
        stamp: 0,
        machinename: Opaque::borrowed(b"tandem-bench"),
        uid: 0,
        gid: 0,
        gids: vec![],
    })
}

async fn connect(target: &Target, port: u16) -> anyhow::Result<Io> {
    let addr = SocketAddr::new(target.ip, port);
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("{}: connecting to {addr}", target.server))?;
    stream
        .set_nodelay(true)
        .with_context(|| format!("{}: TCP_NODELAY on {addr}", target.server))?;
    Ok(TokioIo::new(stream))
}

pub struct Mounted {
    pub root: nfs_fh3,
    pub clients: Vec<Client>,
    mount: MountClient<Io>,
    export: String,
}

impl Mounted {
    pub async fn mount(target: &Target, connections: usize) -> anyhow::Result<Mounted> {
        let io = connect(target, target.mount_port).await?;
        let mut mount = MountClient::new_with_auth(io, credential(), opaque_auth::default());
        let ok = mount
            .mnt(dirpath(Opaque::borrowed(target.export.as_bytes())))
            .await
            .map_err(|e| anyhow::anyhow!("{}: MOUNT {}: {e}", target.server, target.export))?;
        let root = nfs_fh3 {
            data: Opaque::owned(ok.fhandle.0.to_vec()),
        };
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            clients.push(Client::connect(target).await?);
        }
        Ok(Mounted {
            root,
            clients,
            mount,
            export: target.export.clone(),
        })
    }

    pub async fn unmount(mut self) {
        let path = dirpath(Opaque::borrowed(self.export.as_bytes()));
        if let Err(e) = self.mount.umnt(path).await {
            tracing::warn!(error = %e, "UMNT failed");
        }
    }
}

pub fn name(s: &str) -> filename3<'_> {
    filename3(Opaque::borrowed(s.as_bytes()))
}

pub fn dirop<'a>(dir: &nfs_fh3, s: &'a str) -> diropargs3<'a> {
    diropargs3 {
        dir: dir.clone(),
        name: name(s),
    }
}

impl Client {
    /// A new NFS connection to `target`, no MOUNT: what a client that
    /// keeps its handles does after losing its connection.
    pub async fn connect(target: &Target) -> anyhow::Result<Client> {
        let io = connect(target, target.nfs_port).await?;
        Ok(Client {
            server: target.server,
            nfs: Nfs3Client::new_with_auth(io, credential(), opaque_auth::default()),
        })
    }

    pub async fn getattr(&mut self, fh: &nfs_fh3) -> Result<nfs::fattr3, ClientError> {
        let res = self
            .nfs
            .getattr(&nfs::GETATTR3args { object: fh.clone() })
            .await;
        Ok(self.check("GETATTR", "handle", res)?.obj_attributes)
    }

    fn rpc(&self, op: &'static str, what: &str, source: RpcError) -> ClientError {
        ClientError::Rpc {
            server: self.server,
            op,
            what: what.to_string(),
            source,
        }
    }

    fn status(&self, op: &'static str, what: &str, status: nfsstat3) -> ClientError {
        ClientError::Nfs {
            server: self.server,
            op,
            what: what.to_string(),
            status,
        }
    }

    /// Unwraps an NFS result, naming the call in the error.
    fn check<T, E>(
        &self,
        op: &'static str,
        what: &str,
        res: Result<Nfs3Result<T, E>, RpcError>,
    ) -> Result<T, ClientError> {
        match res {
            Ok(Nfs3Result::Ok(v)) => Ok(v),
            Ok(Nfs3Result::Err((status, _))) => Err(self.status(op, what, status)),
            Err(e) => Err(self.rpc(op, what, e)),
        }
    }

    pub async fn fsinfo(&mut self, root: &nfs_fh3) -> Result<nfs::FSINFO3resok, ClientError> {
        let res = self
            .nfs
            .fsinfo(&nfs::FSINFO3args {
                fsroot: root.clone(),
            })
            .await;
        self.check("FSINFO", "/", res)
    }

    pub async fn lookup(&mut self, dir: &nfs_fh3, n: &str) -> Result<nfs_fh3, ClientError> {
        let res = self
            .nfs
            .lookup(&nfs::LOOKUP3args {
                what: dirop(dir, n),
            })
            .await;
        Ok(self.check("LOOKUP", n, res)?.object)
    }

    /// CREATE (UNCHECKED) with `mode`; the handle comes from the reply or,
    /// if the server left it out, from a LOOKUP.
    pub async fn create(
        &mut self,
        dir: &nfs_fh3,
        n: &str,
        mode: u32,
    ) -> Result<nfs_fh3, ClientError> {
        let res = self
            .nfs
            .create(&nfs::CREATE3args {
                where_: dirop(dir, n),
                how: nfs::createhow3::UNCHECKED(nfs::sattr3 {
                    mode: nfs::Nfs3Option::Some(mode),
                    ..nfs::sattr3::default()
                }),
            })
            .await;
        match self.check("CREATE", n, res)?.obj {
            nfs::Nfs3Option::Some(fh) => Ok(fh),
            nfs::Nfs3Option::None => self.lookup(dir, n).await,
        }
    }

    pub async fn mkdir(&mut self, dir: &nfs_fh3, n: &str) -> Result<nfs_fh3, ClientError> {
        let res = self
            .nfs
            .mkdir(&nfs::MKDIR3args {
                where_: dirop(dir, n),
                attributes: nfs::sattr3 {
                    mode: nfs::Nfs3Option::Some(0o755),
                    ..nfs::sattr3::default()
                },
            })
            .await;
        match self.check("MKDIR", n, res)?.obj {
            nfs::Nfs3Option::Some(fh) => Ok(fh),
            nfs::Nfs3Option::None => self.lookup(dir, n).await,
        }
    }

    pub async fn setattr(
        &mut self,
        fh: &nfs_fh3,
        what: &str,
        attrs: nfs::sattr3,
    ) -> Result<(), ClientError> {
        let res = self
            .nfs
            .setattr(&nfs::SETATTR3args {
                object: fh.clone(),
                new_attributes: attrs,
                guard: nfs::Nfs3Option::None,
            })
            .await;
        self.check("SETATTR", what, res).map(|_| ())
    }

    pub async fn remove(&mut self, dir: &nfs_fh3, n: &str) -> Result<(), ClientError> {
        let res = self
            .nfs
            .remove(&nfs::REMOVE3args {
                object: dirop(dir, n),
            })
            .await;
        self.check("REMOVE", n, res).map(|_| ())
    }

    pub async fn rename(&mut self, dir: &nfs_fh3, from: &str, to: &str) -> Result<(), ClientError> {
        let res = self
            .nfs
            .rename(&nfs::RENAME3args {
                from: dirop(dir, from),
                to: dirop(dir, to),
            })
            .await;
        self.check("RENAME", from, res).map(|_| ())
    }

    /// One WRITE; returns the count written, how stable, and the verifier.
    pub async fn write(
        &mut self,
        fh: &nfs_fh3,
        offset: u64,
        data: &[u8],
        stable: nfs::stable_how,
    ) -> Result<(u32, nfs::writeverf3), ClientError> {
        let count = u32::try_from(data.len()).map_err(|_| ClientError::Protocol {
            server: self.server,
            what: format!("WRITE of {} bytes is too large", data.len()),
        })?;
        let res = self
            .nfs
            .write(&nfs::WRITE3args {
                file: fh.clone(),
                offset,
                count,
                stable,
                data: Opaque::borrowed(data),
            })
            .await;
        let ok = self.check("WRITE", &format!("offset {offset}"), res)?;
        if ok.count == 0 || ok.count > count {
            return Err(ClientError::Protocol {
                server: self.server,
                what: format!(
                    "WRITE at offset {offset} of {count} bytes answered count {}",
                    ok.count
                ),
            });
        }
        Ok((ok.count, ok.verf))
    }

    /// Writes all of `data` at `offset`, re-sending the rest of a short
    /// write; returns the verifier of the last reply.
    pub async fn write_all(
        &mut self,
        fh: &nfs_fh3,
        mut offset: u64,
        mut data: &[u8],
        stable: nfs::stable_how,
    ) -> Result<nfs::writeverf3, ClientError> {
        loop {
            let (n, verf) = self.write(fh, offset, data, stable).await?;
            let n = n as usize;
            if n >= data.len() {
                return Ok(verf);
            }
            data = &data[n..];
            offset += n as u64;
        }
    }

    pub async fn commit(&mut self, fh: &nfs_fh3) -> Result<nfs::writeverf3, ClientError> {
        let res = self
            .nfs
            .commit(&nfs::COMMIT3args {
                file: fh.clone(),
                offset: 0,
                count: 0,
            })
            .await;
        Ok(self.check("COMMIT", "whole file", res)?.verf)
    }

    /// One READ; returns the data and the EOF flag.
    pub async fn read(
        &mut self,
        fh: &nfs_fh3,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool), ClientError> {
        let res = self
            .nfs
            .read(&nfs::READ3args {
                file: fh.clone(),
                offset,
                count,
            })
            .await;
        let ok = self.check("READ", &format!("offset {offset}"), res)?;
        if ok.data.len() != ok.count as usize || ok.count > count {
            return Err(ClientError::Protocol {
                server: self.server,
                what: format!(
                    "READ at offset {offset} of {count} bytes answered count {} with {} data bytes",
                    ok.count,
                    ok.data.len()
                ),
            });
        }
        Ok((ok.data.into_owned(), ok.eof))
    }

    /// One READDIRPLUS call.
    pub async fn readdirplus(
        &mut self,
        dir: &nfs_fh3,
        cookie: u64,
        cookieverf: nfs::cookieverf3,
        dircount: u32,
        maxcount: u32,
    ) -> Result<nfs::READDIRPLUS3resok<'static>, ClientError> {
        let res = self
            .nfs
            .readdirplus(&nfs::READDIRPLUS3args {
                dir: dir.clone(),
                cookie,
                cookieverf,
                dircount,
                maxcount,
            })
            .await;
        self.check("READDIRPLUS", &format!("cookie {cookie}"), res)
    }
}
