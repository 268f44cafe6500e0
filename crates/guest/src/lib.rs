//! Test support: real Linux kernel clients (NFS, SMB) in QEMU guests.
//!
//! A guest is Debian's cloud kernel booted under QEMU's TCG emulator (no
//! KVM needed) from an initramfs built here: busybox, the kernel modules
//! of the NFS client (and the SMB client, loaded on demand), a small
//! `mount.nfs`, a portmapper and status monitor for the kernel's lock
//! manager, a byte-range lock tool (`tandem-lock`), and an init that runs
//! shell jobs sent over a serial port.
//! It is plugged by a tap device into a bridge in a network namespace the
//! test made, so it only ever talks to that test's hosts.
//!
//! * [`Host::find`] checks what this machine must have (root, QEMU,
//!   busybox-static, a C compiler, the extracted kernel) and names what is
//!   missing ([`Error::Missing`]: tests skip, or fail in CI).
//! * [`Image::prepare`] builds (once, cached on disk by content) the
//!   initramfs.
//! * [`Guest::start`] boots one (root and `user`, uid/gid 1000, exist); [`Guest::run`] runs a script in it and
//!   returns its stdout, stderr and exit status. Dropping a guest kills it.
//!
//! Used only as a dev-dependency.

mod agent;
mod error;
mod host;
mod image;
mod modules;
mod vm;

pub use agent::Output;
pub use error::Error;
pub use host::{cache_dir, Host};
pub use image::Image;
pub use vm::{Bridge, Guest, Options};
