//! The trusted transport between sites: mutual TLS 1.3 with pinned
//! identities and no certificate authority.
//!
//! A site's identity is its self-signed certificate; its site id is the hex
//! SHA-256 of the certificate's DER. Pairing gives each site the other's id,
//! so trust is exactly "this fingerprint, and proof of holding its key":
//! the server accepts a client certificate only if its fingerprint is in the
//! allowed set, the client accepts the server only if its fingerprint is the
//! expected peer id, and both still check the handshake signature with the
//! crypto provider's algorithms (the proof of the key).
//!
//! Names, CA chains and validity dates are deliberately not checked: the
//! certificate is trusted by its fingerprint, which the operator entered,
//! and a pinned self-signed certificate gains nothing from a date (rotation
//! is re-pairing with the new id). Garbage certificates fail the signature
//! check, which parses them.

use std::collections::BTreeSet;
use std::fmt;
use std::io::BufReader;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use sha2::{Digest, Sha256};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_rustls::TlsConnector;
// Re-exported so users of the transport need no direct tokio-rustls dependency.
pub use tokio_rustls::TlsAcceptor;

/// How long a TCP connect to a peer may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the TLS handshake may take, on either side; a peer that opens a
/// connection and says nothing must not hold a slot forever.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Length of a site id: hex of a SHA-256.
pub const SITE_ID_HEX_CHARS: usize = 64;
/// Certificates and keys are a few kilobytes; refuse anything absurd.
pub const MAX_PEM_BYTES: usize = 64 * 1024;
/// The name the client asks for. Our verifier ignores it (the fingerprint
/// is the identity), but rustls needs one.
const PEER_SERVER_NAME: &str = "tandem-peer";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} with {addr} took longer than {timeout_ms} ms")]
    Timeout {
        what: &'static str,
        addr: String,
        timeout_ms: u128,
    },
    /// The handshake failed; `presented` is the fingerprint of the
    /// certificate the other side showed, when it showed one.
    #[error("TLS handshake with {addr} failed{}: {reason}", presented.as_ref().map(|p| format!(" (presented site id {p})")).unwrap_or_default())]
    Handshake {
        addr: String,
        presented: Option<String>,
        reason: String,
    },
}

pub type Result<T> = std::result::Result<T, TlsError>;

/// Why a certificate was refused; carried inside the rustls error so the
/// accepting side can log the fingerprint it refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefused {
    #[error("site id {presented} is not a paired peer")]
    NotPaired { presented: String },
    #[error("site id {presented} is not the expected peer {expected}")]
    WrongPeer { presented: String, expected: String },
}

impl PeerRefused {
    pub fn presented(&self) -> &str {
        match self {
            PeerRefused::NotPaired { presented } | PeerRefused::WrongPeer { presented, .. } => {
                presented
            }
        }
    }
}

/// Hex SHA-256 of a certificate's DER: the site id.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Whether `id` has the form of a site id (64 lowercase hex characters).
pub fn is_site_id(id: &str) -> bool {
    id.len() == SITE_ID_HEX_CHARS && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The set of site ids the server accepts. Shared with whoever edits the
/// peer list, so pairing takes effect for the next handshake without
/// rebuilding the server config.
#[derive(Debug, Clone, Default)]
pub struct AllowedIds(Arc<RwLock<BTreeSet<String>>>);

impl AllowedIds {
    pub fn new(ids: impl IntoIterator<Item = String>) -> Self {
        AllowedIds(Arc::new(RwLock::new(ids.into_iter().collect())))
    }
    pub fn contains(&self, id: &str) -> bool {
        // A panic while holding the lock cannot leave a set half-edited
        // (insert/remove are single operations), so the data is still good.
        self.0.read().contains(id)
    }
    pub fn replace(&self, ids: impl IntoIterator<Item = String>) {
        *self.0.write() = ids.into_iter().collect();
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn check_pem_size(what: &'static str, pem: &str) -> Result<()> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(TlsError::Pem {
            what,
            reason: format!("larger than {MAX_PEM_BYTES} bytes"),
        });
    }
    Ok(())
}

fn parse_cert(cert_pem: &str) -> Result<CertificateDer<'static>> {
    let what = "site certificate";
    check_pem_size(what, cert_pem)?;
    let mut reader = BufReader::new(cert_pem.as_bytes());
    let first = rustls_pemfile::certs(&mut reader).next();
    match first {
        Some(Ok(c)) => Ok(c),
        Some(Err(e)) => Err(TlsError::Pem {
            what,
            reason: e.to_string(),
        }),
        None => Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        }),
    }
}

fn parse_key(key_pem: &str) -> Result<PrivateKeyDer<'static>> {
    let what = "site key";
    check_pem_size(what, key_pem)?;
    match rustls_pemfile::private_key(&mut BufReader::new(key_pem.as_bytes())) {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(TlsError::Pem {
            what,
            reason: "no PRIVATE KEY block".into(),
        }),
        Err(e) => Err(TlsError::Pem {
            what,
            reason: e.to_string(),
        }),
    }
}

fn refused(r: PeerRefused) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(r))))
}

/// The handshake signature checks, the same for both pinned verifiers:
/// the provider's algorithms (`self.algorithms`), nothing pinned about them.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

/// Server side: a client certificate is required and must be a paired id.
struct PinnedClientVerifier {
    allowed: AllowedIds,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedClientVerifier")
            .field("allowed", &self.allowed)
            .finish()
    }
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        if self.allowed.contains(&presented) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(refused(PeerRefused::NotPaired { presented }))
        }
    }
    signature_checks!();
}

/// Client side: the server must be exactly the expected peer.
struct PinnedServerVerifier {
    expected: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedServerVerifier")
            .field("expected", &self.expected)
            .finish()
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        if presented == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(refused(PeerRefused::WrongPeer {
                presented,
                expected: self.expected.clone(),
            }))
        }
    }
    signature_checks!();
}

/// The listener's config: our identity, and client certificates accepted
/// only when their fingerprint is in `allowed` (read at each handshake).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    allowed: AllowedIds,
) -> Result<Arc<ServerConfig>> {
    let cert = parse_cert(cert_pem)?;
    let key = parse_key(key_pem)?;
    let provider = provider();
    let verifier = Arc::new(PinnedClientVerifier {
        allowed,
        algorithms: provider.signature_verification_algorithms,
    });
    // TLS 1.3 only: both ends are Tandem, so there is no old peer to serve.
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .map_err(|e| TlsError::Config(format!("site certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

/// A connecting side's config: our identity as client certificate, and the
/// server accepted only if its fingerprint is `expected_server_id`.
pub fn client_config(
    cert_pem: &str,
    key_pem: &str,
    expected_server_id: &str,
) -> Result<Arc<ClientConfig>> {
    if !is_site_id(expected_server_id) {
        return Err(TlsError::Config(format!(
            "{expected_server_id:?} is not a site id ({SITE_ID_HEX_CHARS} hex characters)"
        )));
    }
    let cert = parse_cert(cert_pem)?;
    let key = parse_key(key_pem)?;
    let provider = provider();
    let verifier = Arc::new(PinnedServerVerifier {
        expected: expected_server_id.to_string(),
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key)
        .map_err(|e| TlsError::Config(format!("site certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

/// Our refusal, if the handshake error is one; else None.
pub fn refusal_of(e: &std::io::Error) -> Option<PeerRefused> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match inner {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other))) => {
            other.downcast_ref::<PeerRefused>().cloned()
        }
        _ => None,
    }
}

/// The TLS alert the other side sent, if that is what `e` is: how a client
/// learns, on its first read, that the server refused its certificate.
pub fn alert_of(e: &std::io::Error) -> Option<String> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(format!("{alert:?}")),
        _ => None,
    }
}

fn handshake_error(addr: &str, e: std::io::Error) -> TlsError {
    let (presented, reason) = match refusal_of(&e) {
        Some(r) => (Some(r.presented().to_string()), r.to_string()),
        None => (None, e.to_string()),
    };
    TlsError::Handshake {
        addr: addr.to_string(),
        presented,
        reason,
    }
}

/// Connects to a peer and completes the handshake, or fails naming what
/// went wrong. Note that in TLS 1.3 the server judges our certificate only
/// after the client's side of the handshake is done: a server that refuses
/// us shows up as an alert on the first read.
pub async fn connect(
    addr: impl ToSocketAddrs + fmt::Display,
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let addr_text = addr.to_string();
    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(TlsError::Timeout {
                what: "connecting",
                addr: addr_text,
                timeout_ms: connect_timeout.as_millis(),
            })
        }
        Ok(Err(source)) => {
            return Err(TlsError::Connect {
                addr: addr_text,
                source,
            })
        }
        Ok(Ok(s)) => s,
    };
    // Small request/response messages: do not wait to coalesce them.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay");
    }
    let name = ServerName::try_from(PEER_SERVER_NAME)
        .map_err(|e| TlsError::Config(format!("server name: {e}")))?;
    let connector = TlsConnector::from(config);
    match tokio::time::timeout(handshake_timeout, connector.connect(name, tcp)).await {
        Err(_) => Err(TlsError::Timeout {
            what: "TLS handshake",
            addr: addr_text,
            timeout_ms: handshake_timeout.as_millis(),
        }),
        Ok(Err(e)) => Err(handshake_error(&addr_text, e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Completes the server side of the handshake on an accepted connection.
/// Returns the verified peer's site id with the stream.
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer_addr: SocketAddr,
    handshake_timeout: Duration,
) -> Result<(String, tokio_rustls::server::TlsStream<TcpStream>)> {
    let addr_text = peer_addr.to_string();
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay");
    }
    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Err(_) => {
            return Err(TlsError::Timeout {
                what: "TLS handshake",
                addr: addr_text,
                timeout_ms: handshake_timeout.as_millis(),
            })
        }
        Ok(Err(e)) => return Err(handshake_error(&addr_text, e)),
        Ok(Ok(s)) => s,
    };
    // The verifier accepted exactly one end-entity certificate; read its id
    // back from the connection rather than trusting anything the peer says.
    let id = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| fingerprint(c))
        .ok_or_else(|| TlsError::Handshake {
            addr: addr_text.clone(),
            presented: None,
            reason: "no client certificate".into(),
        })?;
    Ok((id, stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    struct Ident {
        cert: String,
        key: String,
        id: String,
    }

    fn ident(name: &str) -> Ident {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        Ident {
            cert: c.cert.pem(),
            key: c.signing_key.serialize_pem(),
            id: fingerprint(c.cert.der()),
        }
    }

    fn expired(name: &str) -> Ident {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ident {
            cert: cert.pem(),
            key: key.serialize_pem(),
            id: fingerprint(cert.der()),
        }
    }

    const T: Duration = Duration::from_secs(5);

    /// Runs one server handshake; the server echoes one byte then closes.
    async fn serve_once(
        server: &Ident,
        allowed: AllowedIds,
    ) -> (SocketAddr, tokio::task::JoinHandle<Result<String>>) {
        let cfg = server_config(&server.cert, &server.key, allowed).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, peer) = l.accept().await.unwrap();
            let (id, mut s) = accept(&TlsAcceptor::from(cfg), tcp, peer, T).await?;
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).await.is_ok() {
                let _ = s.write_all(&b).await;
                let _ = s.flush().await;
            }
            Ok(id)
        });
        (addr, task)
    }

    /// Client: connect, send a byte, expect it back.
    async fn ping(client: &Ident, server_id: &str, addr: SocketAddr) -> std::io::Result<()> {
        let cfg = client_config(&client.cert, &client.key, server_id).unwrap();
        let mut s = connect(addr, cfg, T, T)
            .await
            .map_err(std::io::Error::other)?;
        s.write_all(b"x").await?;
        s.flush().await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        Ok(())
    }

    #[tokio::test]
    async fn paired_sites_talk() {
        let (a, b) = (ident("a"), ident("b"));
        let (addr, task) = serve_once(&b, AllowedIds::new([a.id.clone()])).await;
        ping(&a, &b.id, addr).await.unwrap();
        assert_eq!(task.await.unwrap().unwrap(), a.id);
    }

    #[tokio::test]
    async fn unknown_client_is_refused_by_server() {
        let (a, b, c) = (ident("a"), ident("b"), ident("c"));
        let (addr, task) = serve_once(&b, AllowedIds::new([c.id.clone()])).await;
        let client = ping(&a, &b.id, addr).await;
        assert!(client.is_err());
        let err = task.await.unwrap().unwrap_err();
        match &err {
            TlsError::Handshake { presented, .. } => {
                assert_eq!(presented.as_deref(), Some(a.id.as_str()))
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("not a paired peer"), "{err}");
    }

    #[tokio::test]
    async fn pairing_change_takes_effect_at_next_handshake() {
        let (a, b) = (ident("a"), ident("b"));
        let allowed = AllowedIds::default();
        let (addr, task) = serve_once(&b, allowed.clone()).await;
        allowed.replace([a.id.clone()]);
        ping(&a, &b.id, addr).await.unwrap();
        assert_eq!(task.await.unwrap().unwrap(), a.id);
    }

    #[tokio::test]
    async fn wrong_server_is_refused_by_client() {
        let (a, b, c) = (ident("a"), ident("b"), ident("c"));
        let (addr, _task) = serve_once(&b, AllowedIds::new([a.id.clone()])).await;
        let cfg = client_config(&a.cert, &a.key, &c.id).unwrap();
        let err = connect(addr, cfg, T, T).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&b.id) && text.contains(&c.id), "{text}");
        assert!(text.contains("not the expected peer"), "{text}");
    }

    #[tokio::test]
    async fn expired_certificate_is_still_trusted_by_fingerprint() {
        // Dates are not checked (see the module comment); this pins that
        // decision and that such certificates do not upset anything.
        let (a, b) = (expired("a"), ident("b"));
        let (addr, task) = serve_once(&b, AllowedIds::new([a.id.clone()])).await;
        ping(&a, &b.id, addr).await.unwrap();
        assert_eq!(task.await.unwrap().unwrap(), a.id);
    }

    #[test]
    fn garbage_identities_are_errors() {
        let a = ident("a");
        let allowed = AllowedIds::default();
        for (cert, key) in [
            ("", a.key.as_str()),
            (
                "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
                a.key.as_str(),
            ),
            (a.cert.as_str(), ""),
            (
                a.cert.as_str(),
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
        ] {
            assert!(server_config(cert, key, allowed.clone()).is_err());
            assert!(client_config(cert, key, &a.id).is_err());
        }
        // Well-formed PEM around bytes that are no certificate: whether
        // rustls refuses it here or at the first handshake is its choice;
        // this only checks that it does not panic.
        let junk = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
        let _ = server_config(junk, &a.key, allowed.clone());
        assert!(client_config(&a.cert, &a.key, "abc").is_err());
        assert!(client_config(&a.cert, &a.key, &a.id.to_uppercase()).is_err());
    }

    #[tokio::test]
    async fn garbage_on_the_wire_is_an_error() {
        let (a, b) = (ident("a"), ident("b"));
        let (addr, task) = serve_once(&b, AllowedIds::new([a.id.clone()])).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let err = task.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Handshake {
                    presented: None,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn silent_client_times_out() {
        let b = ident("b");
        let cfg = server_config(&b.cert, &b.key, AllowedIds::default()).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _tcp = TcpStream::connect(addr).await.unwrap();
        let (tcp, peer) = l.accept().await.unwrap();
        let err = accept(
            &TlsAcceptor::from(cfg),
            tcp,
            peer,
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, TlsError::Timeout { .. }), "{err}");
    }
}
