//! What this machine must have to boot guests, found or named as missing.
//! `.ci/run` installs all of it (Debian packages, and the cloud kernel
//! image extracted into the cache directory, not installed).

use std::path::{Path, PathBuf};

use object::read::elf::{ElfFile64, ProgramHeader};
use object::Endianness;

use crate::Error;

/// Where the kernel is extracted and built images are kept:
/// `$TANDEM_GUEST_CACHE`, else `$HOME/.cache/tandem-guest`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TANDEM_GUEST_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/tandem-guest")
}

/// The tools and kernel found on this machine.
#[derive(Debug, Clone)]
pub struct Host {
    pub qemu: PathBuf,
    pub busybox: PathBuf,
    pub cc: PathBuf,
    /// The extracted kernel package: boot/vmlinuz-VERSION and
    /// lib/modules/VERSION beneath it.
    pub kernel_root: PathBuf,
    pub kernel_version: String,
}

impl Host {
    /// Finds everything a guest needs; `Error::Missing` names the first
    /// thing that is not there and how to get it.
    pub fn find() -> Result<Host, Error> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Error::Missing(
                "root (tap devices and network namespaces)".into(),
            ));
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err(Error::Missing("/dev/net/tun (tap devices)".into()));
        }
        let qemu = on_path("qemu-system-x86_64")
            .ok_or_else(|| Error::Missing("qemu-system-x86_64 (Debian: qemu-system-x86)".into()))?;
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Missing("busybox (Debian: busybox-static)".into()))?;
        if !is_static(&busybox)? {
            return Err(Error::Missing(format!(
                "a static busybox, {} is dynamically linked (Debian: busybox-static)",
                busybox.display()
            )));
        }
        let cc = on_path("cc")
            .or_else(|| on_path("gcc"))
            .ok_or_else(|| Error::Missing("a C compiler, cc (Debian: gcc, libc6-dev)".into()))?;
        let kernel_root = cache_dir().join("kernel");
        let kernel_version = kernel_version(&kernel_root)?;
        Ok(Host {
            qemu,
            busybox,
            cc,
            kernel_root,
            kernel_version,
        })
    }

    pub fn vmlinuz(&self) -> PathBuf {
        self.kernel_root
            .join("boot")
            .join(format!("vmlinuz-{}", self.kernel_version))
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.kernel_root
            .join("lib/modules")
            .join(&self.kernel_version)
    }
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The newest kernel version that has both its image and its modules
/// under `root` (an extracted linux-image package).
fn kernel_version(root: &Path) -> Result<String, Error> {
    let missing = || {
        Error::Missing(format!(
            "a Linux kernel extracted under {} (boot/vmlinuz-V and lib/modules/V; \
             .ci/run does it: apt-get download linux-image-V-cloud-amd64, dpkg-deb -x)",
            root.display()
        ))
    };
    let boot = root.join("boot");
    let entries = match std::fs::read_dir(&boot) {
        Ok(e) => e,
        Err(_) => return Err(missing()),
    };
    let mut versions: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .filter(|v| root.join("lib/modules").join(v).join("kernel").is_dir())
        .collect();
    versions.sort();
    versions.pop().ok_or_else(missing)
}

/// Whether an ELF executable asks for no program interpreter.
fn is_static(path: &Path) -> Result<bool, Error> {
    let data = std::fs::read(path).map_err(Error::io(path))?;
    let elf = ElfFile64::<Endianness>::parse(&*data)
        .map_err(|e| Error::Missing(format!("{} is not a 64-bit ELF file: {e}", path.display())))?;
    let endian = elf.endian();
    let interp = elf
        .elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == object::elf::PT_INTERP);
    Ok(!interp)
}
