//! The site's TLS identity: a self-signed certificate and its key. Other
//! sites will pin the certificate (next issue); the site id is the hex
//! SHA-256 of the certificate's DER, so it cannot be claimed without the key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::site::SitePaths;
use crate::error::{ControlError, Result};

/// A PEM certificate is a few kilobytes; refuse anything absurd.
const MAX_PEM_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Identity {
    /// Hex SHA-256 of the certificate DER.
    pub id: String,
    pub cert_pem: String,
}

/// Generates the key pair and certificate and writes them (key mode 0600).
pub fn generate(paths: &SitePaths, site_name: &str, listen: &str) -> Result<Identity> {
    let host = listen
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(listen);
    let mut names = vec![site_name.to_string()];
    if host != site_name && !host.is_empty() {
        names.push(host.to_string());
    }
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ControlError::Identity(format!("generating certificate: {e}")))?;
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    let id = fingerprint(certified.cert.der());

    let dir = paths.identity_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| ControlError::io(&dir, e))?;
    write_new(&paths.key(), key_pem.as_bytes(), 0o600)?;
    write_new(&paths.cert(), cert_pem.as_bytes(), 0o644)?;
    Ok(Identity { id, cert_pem })
}

/// Reads the certificate back and derives the site id from it.
pub fn load(paths: &SitePaths) -> Result<Identity> {
    let cert_path = paths.cert();
    let meta = fs::metadata(&cert_path).map_err(|e| ControlError::io(&cert_path, e))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(ControlError::Identity(format!(
            "{} is larger than {MAX_PEM_BYTES} bytes",
            cert_path.display()
        )));
    }
    let cert_pem = fs::read_to_string(&cert_path).map_err(|e| ControlError::io(&cert_path, e))?;
    let parsed = pem::parse(&cert_pem).map_err(|e| {
        ControlError::Identity(format!(
            "{}: not a PEM certificate: {e}",
            cert_path.display()
        ))
    })?;
    if parsed.tag() != "CERTIFICATE" {
        return Err(ControlError::Identity(format!(
            "{}: holds a {:?}, not a CERTIFICATE",
            cert_path.display(),
            parsed.tag()
        )));
    }
    let key_path = paths.key();
    let key_meta = fs::metadata(&key_path).map_err(|e| ControlError::io(&key_path, e))?;
    if key_meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %key_path.display(),
            "site key is readable by others; it should be mode 0600"
        );
    }
    Ok(Identity {
        id: fingerprint(parsed.contents()),
        cert_pem,
    })
}

pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Creates a file that must not exist yet, with its final mode from the
/// start so the key is never readable by others, not even briefly.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| ControlError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| ControlError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_private_and_id_is_stable() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = SitePaths::new(tmp.path());
        let made = generate(&paths, "alpha", "127.0.0.1:7447").unwrap();
        let mode = fs::metadata(paths.key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = load(&paths).unwrap();
        assert_eq!(made.id, loaded.id);
        // A second identity is a different site.
        let tmp2 = tempfile::tempdir().unwrap();
        let other = generate(&SitePaths::new(tmp2.path()), "alpha", "127.0.0.1:7447").unwrap();
        assert_ne!(other.id, made.id);
    }
}
