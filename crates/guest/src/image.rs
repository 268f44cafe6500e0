//! The guest's initramfs: busybox, the client kernel modules, the init
//! and its job loop, and the static helpers of TOOLS. Built once per content (kernel,
//! busybox, scripts) into the cache directory, so test processes after
//! the first only hash their inputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::modules::ModuleTree;
use crate::{cache_dir, Error, Host};

const INIT: &str = include_str!("../guest/init.sh");
const LOAD: &str = include_str!("../guest/load.sh");
const MOUNT_NFS_C: &str = include_str!("../guest/mount_nfs.c");
const RPC_STUB_C: &str = include_str!("../guest/rpc_stub.c");
const LOCK_TOOL_C: &str = include_str!("../guest/lock_tool.c");
/// The static helpers compiled into the image: (source name, source,
/// installed as).
const TOOLS: &[(&str, &str, &str)] = &[
    ("mount_nfs.c", MOUNT_NFS_C, "sbin/mount.nfs"),
    ("rpc_stub.c", RPC_STUB_C, "sbin/tandem-rpc"),
    ("lock_tool.c", LOCK_TOOL_C, "bin/tandem-lock"),
];

/// Module groups, loaded by `tandem-load GROUP` in the guest: `boot` at
/// start (the NIC and the NFSv3 client with its lock manager), `cifs`
/// when a test asks for it (it is large and most tests do not).
const GROUPS: &[(&str, &[&str])] = &[
    ("boot", &["virtio_pci", "virtio_net", "nfsv3"]),
    ("cifs", &["cifs"]),
];

/// Bumped when the archive's layout changes in a way the hashed inputs
/// do not show.
const LAYOUT: &str = "tandem-guest initramfs 1";

/// A kernel and an initramfs, ready for QEMU.
#[derive(Debug, Clone)]
pub struct Image {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

impl Image {
    /// Builds (or finds in the cache) the initramfs for `host`'s kernel;
    /// once per process.
    pub fn prepare(host: &Host) -> Result<Image, Error> {
        static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
        IMAGE
            .get_or_init(|| build(host).map_err(|e| e.to_string()))
            .clone()
            .map_err(|why| Error::Build {
                what: "initramfs".into(),
                why,
            })
    }
}

enum Content {
    Dir,
    File { mode: u32, data: Vec<u8> },
    CharDevice { major: u32, minor: u32 },
    Symlink(&'static str),
}

fn build(host: &Host) -> Result<Image, Error> {
    let tree = ModuleTree::scan(&host.modules_dir())?;
    let mut entries: Vec<(String, Content)> = [
        "bin",
        "sbin",
        "etc",
        "etc/modules",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "dev",
        "tmp",
        "mnt",
        "run",
        "root",
    ]
    .iter()
    .map(|d| (d.to_string(), Content::Dir))
    .collect();
    let file = |mode, data: Vec<u8>| Content::File { mode, data };
    entries.push((
        "dev/console".into(),
        Content::CharDevice { major: 5, minor: 1 },
    ));
    // The scripts' interpreter; init makes busybox's other links itself.
    entries.push(("bin/sh".into(), Content::Symlink("busybox")));
    entries.push(("init".into(), file(0o755, INIT.into())));
    entries.push(("sbin/tandem-load".into(), file(0o755, LOAD.into())));
    // `su user -c ...` runs a command as uid/gid 1000 (root needs no
    // password for su).
    entries.push((
        "etc/passwd".into(),
        file(
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n".to_vec(),
        ),
    ));
    entries.push((
        "etc/group".into(),
        file(0o644, b"root:x:0:\nuser:x:1000:\n".to_vec()),
    ));
    entries.push((
        "bin/busybox".into(),
        file(
            0o755,
            std::fs::read(&host.busybox).map_err(Error::io(&host.busybox))?,
        ),
    ));
    let mut loaded = std::collections::BTreeSet::new();
    for (group, wanted) in GROUPS {
        let order = tree.load_order(wanted)?;
        let mut list = String::new();
        for name in &order {
            list.push_str(name);
            list.push('\n');
            if loaded.insert(name.clone()) {
                let path = tree.path(name)?;
                let data = std::fs::read(path).map_err(Error::io(path))?;
                entries.push((format!("lib/modules/{name}.ko"), file(0o644, data)));
            }
        }
        entries.push((format!("etc/modules/{group}"), file(0o644, list.into())));
    }

    let mut hash = Sha256::new();
    for part in [LAYOUT, &host.kernel_version]
        .into_iter()
        .chain(TOOLS.iter().map(|(_, source, _)| *source))
    {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    for (name, content) in &entries {
        hash.update(name.as_bytes());
        hash.update([0]);
        let data: &[u8] = match content {
            Content::File { data, .. } => data,
            Content::Symlink(target) => target.as_bytes(),
            Content::Dir | Content::CharDevice { .. } => &[],
        };
        hash.update((data.len() as u64).to_le_bytes());
        hash.update(data);
    }
    let digest = hex::encode(hash.finalize());
    let cache = cache_dir();
    let initramfs = cache.join(format!("initramfs-{}.cpio", &digest[..16]));
    if !initramfs.is_file() {
        std::fs::create_dir_all(&cache).map_err(Error::io(&cache))?;
        let tmp = tempfile::tempdir_in(&cache).map_err(Error::io(&cache))?;
        for (name, source, installed) in TOOLS {
            let exe = compile(host, tmp.path(), name, source)?;
            entries.push((
                installed.to_string(),
                file(0o755, std::fs::read(&exe).map_err(Error::io(&exe))?),
            ));
        }
        let out = tmp.path().join("initramfs.cpio");
        write_cpio(&entries, &out)?;
        // Renamed into place: a concurrent test process sees the whole
        // archive or none.
        std::fs::rename(&out, &initramfs).map_err(Error::io(&initramfs))?;
    }
    Ok(Image {
        kernel: host.vmlinuz(),
        initramfs,
    })
}

/// `cc -static` of one C file; returns the executable's path.
fn compile(host: &Host, dir: &Path, name: &str, source: &str) -> Result<PathBuf, Error> {
    let src = dir.join(name);
    std::fs::write(&src, source).map_err(Error::io(&src))?;
    let exe = dir.join(name.trim_end_matches(".c"));
    let out = Command::new(&host.cc)
        .args(["-static", "-Os", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(Error::os(format!("run {}", host.cc.display())))?;
    if !out.status.success() {
        return Err(Error::Build {
            what: name.into(),
            why: format!(
                "{} -static ({}): {}",
                host.cc.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(exe)
}

fn write_cpio(entries: &[(String, Content)], path: &Path) -> Result<(), Error> {
    let f = std::fs::File::create(path).map_err(Error::io(path))?;
    let mut w = std::io::BufWriter::new(f);
    for (ino, (name, content)) in entries.iter().enumerate() {
        let b = cpio::NewcBuilder::new(name)
            .ino(ino as u32 + 1)
            .uid(0)
            .gid(0);
        let (b, data): (_, &[u8]) = match content {
            Content::Dir => (b.mode(0o040755).nlink(2), &[]),
            Content::File { mode, data } => (b.mode(0o100000 | mode).nlink(1), data),
            Content::CharDevice { major, minor } => (
                b.mode(0o020600)
                    .nlink(1)
                    .rdev_major(*major)
                    .rdev_minor(*minor),
                &[],
            ),
            Content::Symlink(target) => (b.mode(0o120777).nlink(1), target.as_bytes()),
        };
        let size = u32::try_from(data.len()).map_err(|_| Error::Build {
            what: "initramfs".into(),
            why: format!("{name} is over 4 GiB"),
        })?;
        let mut fw = b.write(&mut w, size);
        fw.write_all(data).map_err(Error::io(path))?;
        fw.finish().map_err(Error::io(path))?;
    }
    cpio::newc::trailer(&mut w).map_err(Error::io(path))?;
    w.flush().map_err(Error::io(path))?;
    Ok(())
}
