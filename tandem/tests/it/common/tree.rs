//! A whole exported tree as seen through NFS (names, handles, attributes,
//! a digest of every file's bytes, symlink targets), and a comparison of
//! two such trees, so replication tests can check that a replica shows
//! exactly what the active site shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nfs3_client::nfs3_types::nfs3::*;
use sha2::{Digest, Sha256};

use super::nfs::{must, read_chunks, Conn};

/// The attributes a replica must reproduce: all of fattr3 except atime
/// (reads at either site move it, and reads are not replicated). `used`
/// is kept: holes stay holes at the replica, through a baseline too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub type_: ftype3,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub used: u64,
    pub rdev: specdata3,
    pub fsid: u64,
    pub fileid: u64,
    pub mtime: nfstime3,
    pub ctime: nfstime3,
}

impl From<&fattr3> for Attrs {
    fn from(a: &fattr3) -> Attrs {
        Attrs {
            type_: a.type_,
            mode: a.mode,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            used: a.used,
            rdev: a.rdev.clone(),
            fsid: a.fsid,
            fileid: a.fileid,
            mtime: a.mtime,
            ctime: a.ctime,
        }
    }
}

/// One name in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub fh: nfs_fh3,
    pub attrs: Attrs,
    /// SHA-256 of a regular file's bytes (read to EOF).
    pub sha256: Option<[u8; 32]>,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
}

/// Path ("" is the export's root, then "a", "a/b", ...) to node.
pub type Tree = BTreeMap<String, Node>;

/// Reads every name under the connection's export.
pub async fn snapshot(c: &mut Conn) -> Tree {
    let root = c.root_nfs_fh3();
    let attr = must(
        "GETATTR root",
        c.getattr(&GETATTR3args {
            object: root.clone(),
        }),
    )
    .await
    .obj_attributes;
    let mut tree = Tree::new();
    tree.insert(String::new(), node(c, root.clone(), &attr).await);
    walk(c, &root, "", &mut tree).await;
    tree
}

async fn node(c: &mut Conn, fh: nfs_fh3, attr: &fattr3) -> Node {
    let (sha256, target) = match attr.type_ {
        ftype3::NF3REG => (Some(digest(c, &fh, attr.size).await), None),
        ftype3::NF3LNK => {
            let r = must(
                "READLINK",
                c.readlink(&READLINK3args {
                    symlink: fh.clone(),
                }),
            )
            .await;
            (None, Some(r.data.0.to_vec()))
        }
        _ => (None, None),
    };
    Node {
        fh,
        attrs: Attrs::from(attr),
        sha256,
        target,
    }
}

async fn walk(c: &mut Conn, dir: &nfs_fh3, prefix: &str, out: &mut Tree) {
    let mut subdirs = Vec::new();
    for (name, fh, attr) in entries(c, dir).await {
        let path = format!("{prefix}{name}");
        if attr.type_ == ftype3::NF3DIR {
            subdirs.push((fh.clone(), format!("{path}/")));
        }
        let n = node(c, fh, &attr).await;
        out.insert(path, n);
    }
    for (fh, p) in subdirs {
        Box::pin(walk(c, &fh, &p, out)).await;
    }
}

/// Every entry of a directory but "." and "..", with its handle and
/// attributes, by READDIRPLUS to EOF.
pub async fn entries(c: &mut Conn, dir: &nfs_fh3) -> Vec<(String, nfs_fh3, fattr3)> {
    let mut cookie = 0;
    let mut verf = cookieverf3::default();
    let mut out = Vec::new();
    loop {
        let r = must(
            "READDIRPLUS",
            c.readdirplus(&READDIRPLUS3args {
                dir: dir.clone(),
                cookie,
                cookieverf: verf,
                dircount: 8192,
                maxcount: 65536,
            }),
        )
        .await;
        verf = r.cookieverf;
        for e in r.reply.entries.into_inner() {
            cookie = e.cookie;
            let name = String::from_utf8(e.name.0.to_vec()).expect("utf-8 name");
            if name == "." || name == ".." {
                continue;
            }
            let (Nfs3Option::Some(fh), Nfs3Option::Some(attr)) = (e.name_handle, e.name_attributes)
            else {
                panic!("READDIRPLUS entry {name} without handle or attributes")
            };
            out.push((name, fh, attr));
        }
        if r.reply.eof {
            return out;
        }
    }
}

/// SHA-256 of a file read to EOF; the length must be the size the
/// attributes gave.
pub async fn digest(c: &mut Conn, fh: &nfs_fh3, size: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    let len = read_chunks(c, fh, |chunk| h.update(chunk)).await;
    assert_eq!(len, size, "bytes read to EOF vs size in the attributes");
    h.finalize().into()
}

/// At most this many differing paths are listed (the first ones tell).
const MAX_LISTED: usize = 20;

/// Lists the differences between two trees (the first `MAX_LISTED`, then
/// a count); empty when they are equal.
pub fn differences(active: &Tree, replica: &Tree) -> String {
    let mut lines = Vec::new();
    for (path, a) in active {
        match replica.get(path) {
            None => lines.push(format!("/{path}: missing at the replica")),
            Some(b) if a != b => lines.push(format!(
                "/{path}: differs\n  active:  {a:?}\n  replica: {b:?}"
            )),
            Some(_) => {}
        }
    }
    for path in replica.keys().filter(|p| !active.contains_key(*p)) {
        lines.push(format!("/{path}: only at the replica"));
    }
    let mut out = String::new();
    for l in lines.iter().take(MAX_LISTED) {
        writeln!(out, "{l}").unwrap();
    }
    if lines.len() > MAX_LISTED {
        writeln!(out, "... and {} more", lines.len() - MAX_LISTED).unwrap();
    }
    out
}

/// Asserts two trees are the same: names, handles, attributes (but atime),
/// bytes and symlink targets.
pub fn assert_same_tree(active: &Tree, replica: &Tree, what: &str) {
    let diff = differences(active, replica);
    assert!(
        diff.is_empty(),
        "{what}: the replica's tree differs from the active's:\n{diff}"
    );
}
