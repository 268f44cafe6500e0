//! The peer list (`peers.toml`): the sites this site is paired with.
//!
//! Trust is by site id only (see tandem_repl::tls): the listener accepts a
//! connection only from a site whose id is in the peer list, and a site
//! connects to a peer only if the peer proves the id it was given. The peer
//! list lives in its own file, not site.toml, because it is changed by the
//! daemon at run time while site.toml is the operator's to edit.

use std::fs;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tandem_repl::tls;

use crate::config::names::validate_name;
use crate::config::site::{parse_listen, SitePaths};
use crate::error::{ControlError, Result};

/// Most peers one site may have.
pub const MAX_PEERS: usize = 64;
/// peers.toml holds at most MAX_PEERS short entries.
pub const MAX_PEERS_TOML_BYTES: u64 = 64 * 1024;

/// One paired site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub name: String,
    /// "HOST:PORT" of the peer's listener.
    pub addr: String,
    /// The peer's site id (hex SHA-256 of its certificate).
    pub id: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    #[serde(default)]
    peers: Vec<Peer>,
}

/// Checks and normalises a peer as typed by an operator or read from disk:
/// a valid name, an address to connect to, a well-formed id that is not
/// ours. Returns the normalised peer (address with port, id lower-case).
pub fn validate_peer(peer: &Peer, own_id: &str) -> Result<Peer> {
    validate_name("peer name", &peer.name)?;
    let addr = parse_listen(&peer.addr).map_err(|e| match e {
        ControlError::Invalid { reason, .. } => ControlError::invalid("peer address", reason),
        other => other,
    })?;
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        // parse_listen lets "IP:0" through (fine for binding, never for
        // connecting).
        if sa.port() == 0 {
            return Err(ControlError::invalid("peer address", "port must not be 0"));
        }
        if sa.ip().is_unspecified() || sa.ip().is_multicast() {
            return Err(ControlError::invalid(
                "peer address",
                format!(
                    "{} cannot be connected to; give the peer's own address",
                    sa.ip()
                ),
            ));
        }
    }
    let id = peer.id.trim().to_ascii_lowercase();
    if !tls::is_site_id(&id) {
        return Err(ControlError::invalid(
            "peer id",
            format!(
                "{:?} is not a site id ({} hex characters, as `tandem status` shows at the peer)",
                tandem_store::validate::shorten(&peer.id),
                tls::SITE_ID_HEX_CHARS
            ),
        ));
    }
    if id == own_id {
        return Err(ControlError::invalid(
            "peer id",
            format!("{id} is this site's own id; give the id of the other site"),
        ));
    }
    Ok(Peer {
        name: peer.name.clone(),
        addr,
        id,
    })
}

/// Refuses a peer whose name, id or address is already in `peers`.
pub fn check_unique(peers: &[Peer], new: &Peer) -> Result<()> {
    for p in peers {
        let clash = if p.name == new.name {
            Some(format!("peer {} (id {})", p.name, p.id))
        } else if p.id == new.id {
            Some(format!("id {} is peer {}", new.id, p.name))
        } else if p.addr == new.addr {
            Some(format!("address {} is peer {}", new.addr, p.name))
        } else {
            None
        };
        if let Some(detail) = clash {
            return Err(ControlError::Exists {
                what: "peer".into(),
                detail,
            });
        }
    }
    Ok(())
}

/// Reads peers.toml; a missing file is no peers. Every entry is checked as
/// if typed, so a bad hand edit is a clear start-up error.
pub fn load(paths: &SitePaths, own_id: &str) -> Result<Vec<Peer>> {
    let path = paths.peers_toml();
    let bad = |reason: String| ControlError::SiteConfig {
        path: path.clone(),
        reason,
    };
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ControlError::io(&path, e)),
    };
    if meta.len() > MAX_PEERS_TOML_BYTES {
        return Err(bad(format!("larger than {MAX_PEERS_TOML_BYTES} bytes")));
    }
    let text = fs::read_to_string(&path).map_err(|e| ControlError::io(&path, e))?;
    let file: PeersFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if file.peers.len() > MAX_PEERS {
        return Err(bad(format!("more than {MAX_PEERS} peers")));
    }
    let mut peers: Vec<Peer> = Vec::with_capacity(file.peers.len());
    for p in &file.peers {
        let p = validate_peer(p, own_id).map_err(|e| bad(e.to_string()))?;
        check_unique(&peers, &p).map_err(|e| bad(e.to_string()))?;
        peers.push(p);
    }
    Ok(peers)
}

/// Writes peers.toml through a temporary file, fsync and rename, then
/// fsyncs the directory, so a crash leaves the old list or the new one.
pub fn save(paths: &SitePaths, peers: &[Peer]) -> Result<()> {
    let path = paths.peers_toml();
    let file = PeersFile {
        peers: peers.to_vec(),
    };
    crate::config::toml_file::write_atomically(
        &path,
        "# Paired sites, written by `tandem peer add/remove`. See docs/operating.md.\n",
        &file,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn peer(name: &str, addr: &str, id: &str) -> Peer {
        Peer {
            name: name.into(),
            addr: addr.into(),
            id: id.into(),
        }
    }

    #[test]
    fn validation() {
        let ok = validate_peer(&peer("b", "127.0.0.3", &B.to_uppercase()), A).unwrap();
        assert_eq!(ok.addr, "127.0.0.3:7447");
        assert_eq!(ok.id, B);
        for (p, needle) in [
            (peer("b/x", "127.0.0.3", B), "peer name"),
            (peer("b", "127.0.0.3:0", B), "peer address"),
            (peer("b", "0.0.0.0:7447", B), "cannot be connected to"),
            (peer("b", "127.0.0.3", "abc"), "not a site id"),
            (peer("b", "127.0.0.3", &"g".repeat(64)), "not a site id"),
            (peer("b", "127.0.0.3", A), "own id"),
        ] {
            let e = validate_peer(&p, A).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let list = vec![peer("b", "127.0.0.3:7447", B)];
        assert!(check_unique(&list, &peer("b", "127.0.0.4:1", &"c".repeat(64))).is_err());
        assert!(check_unique(&list, &peer("c", "127.0.0.4:1", B)).is_err());
        assert!(check_unique(&list, &peer("c", "127.0.0.3:7447", &"c".repeat(64))).is_err());
        assert!(check_unique(&list, &peer("c", "127.0.0.4:1", &"c".repeat(64))).is_ok());
    }

    #[test]
    fn save_then_load_and_bad_files() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = SitePaths::new(tmp.path());
        assert!(load(&paths, A).unwrap().is_empty());
        let list = vec![peer("b", "127.0.0.3:7447", B)];
        save(&paths, &list).unwrap();
        assert_eq!(load(&paths, A).unwrap(), list);
        // Our own id in the file (a copy of the other site's list?) is refused.
        assert!(load(&paths, B).is_err());
        fs::write(paths.peers_toml(), "[[peers]]\nname = 1\n").unwrap();
        let e = load(&paths, A).unwrap_err().to_string();
        assert!(e.contains("peers.toml"), "{e}");
    }
}
