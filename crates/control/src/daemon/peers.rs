//! Pairing: the sites this one replicates with, and the check that one
//! answers.

use super::Daemon;
use crate::config::names::validate_name;
use crate::config::peers::{self as peer, Peer, MAX_PEERS};
use crate::error::{ControlError, Result};
use crate::replication::link::{self, PeerCheck};

impl Daemon {
    /// The paired sites.
    pub async fn peers(&self) -> Vec<Peer> {
        self.peers.lock().clone()
    }

    /// The paired site called `name`.
    pub(crate) fn peer_named(&self, name: &str) -> Option<Peer> {
        self.peers.lock().iter().find(|p| p.name == name).cloned()
    }

    /// The paired site whose certificate carries `id`.
    pub(crate) fn peer_with_id(&self, id: &str) -> Option<Peer> {
        self.peers.lock().iter().find(|p| p.id == id).cloned()
    }

    /// Pairs a site: durable in peers.toml first, then accepted by the
    /// listener from the next handshake on.
    pub async fn add_peer(&self, peer: Peer) -> Result<Peer> {
        let peer = peer::validate_peer(&peer, &self.site.identity.id)?;
        let mut peers = self.peers.lock();
        peer::check_unique(&peers, &peer)?;
        if peers.len() >= MAX_PEERS {
            return Err(ControlError::invalid(
                "peer",
                format!("the site already has {MAX_PEERS} peers"),
            ));
        }
        let mut next = peers.clone();
        next.push(peer.clone());
        peer::save(&self.site.paths, &next)?;
        self.peer_tls
            .allowed
            .replace(next.iter().map(|p| p.id.clone()));
        *peers = next;
        tracing::info!(peer = %peer.name, addr = %peer.addr, id = %peer.id, "peer added");
        Ok(peer)
    }

    /// Unpairs a site. Connections already open stay until they close;
    /// new handshakes from it are refused at once.
    pub async fn remove_peer(&self, name: &str) -> Result<Peer> {
        validate_name("peer name", name)?;
        let mut peers = self.peers.lock();
        let Some(pos) = peers.iter().position(|p| p.name == name) else {
            return Err(ControlError::NoPeer(name.to_string()));
        };
        let mut next = peers.clone();
        let removed = next.remove(pos);
        peer::save(&self.site.paths, &next)?;
        self.peer_tls
            .allowed
            .replace(next.iter().map(|p| p.id.clone()));
        *peers = next;
        tracing::info!(peer = %removed.name, id = %removed.id, "peer removed");
        Ok(removed)
    }

    /// Connects to a peer with mutual TLS and exchanges a Ping/Pong.
    pub async fn check_peer(&self, name: &str) -> Result<PeerCheck> {
        validate_name("peer name", name)?;
        let Some(p) = self.peer_named(name) else {
            return Err(ControlError::NoPeer(name.to_string()));
        };
        link::check(&p, &self.peer_tls).await
    }
}
