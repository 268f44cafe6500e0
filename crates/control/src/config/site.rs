//! A site's data directory and its `site.toml`: where everything lives, and
//! the settings an operator may change. Every value is checked on load, so a
//! bad edit is a clear start-up error rather than a surprise later.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::identity::{self, Identity};
use crate::config::names::validate_name;
use crate::error::{ControlError, Result};

/// Port other sites reach this one on (replication, next issue).
pub const DEFAULT_LISTEN_PORT: u16 = 7447;
/// site.toml is small; anything bigger is not ours.
/// How long a daemon start waits for the peer's epoch before serving a
/// vserver anyway (site.toml `control.epoch_probe_timeout_ms`).
pub const DEFAULT_EPOCH_PROBE_TIMEOUT_MS: u64 = 3000;
pub const MAX_SITE_TOML_BYTES: u64 = 64 * 1024;

/// Fixed layout of a site's data directory.
#[derive(Debug, Clone)]
pub struct SitePaths {
    pub root: PathBuf,
}

impl SitePaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SitePaths { root: root.into() }
    }
    pub fn site_toml(&self) -> PathBuf {
        self.root.join("site.toml")
    }
    pub fn identity_dir(&self) -> PathBuf {
        self.root.join("identity")
    }
    pub fn cert(&self) -> PathBuf {
        self.identity_dir().join("cert.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.identity_dir().join("key.pem")
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }
    /// Paired sites (see peer.rs).
    pub fn peers_toml(&self) -> PathBuf {
        self.root.join("peers.toml")
    }
    pub fn vservers(&self) -> PathBuf {
        self.root.join("vservers")
    }
    pub fn vserver(&self, name: &str) -> PathBuf {
        self.vservers().join(name)
    }
}

/// NFS service settings, applied to every vserver of the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NfsSettings {
    pub nfs_port: u16,
    pub mount_port: u16,
    /// Whether to run a PORTMAP v2 service; needs root for port 111.
    pub portmap: bool,
    pub portmap_port: u16,
    pub max_connections: usize,
    pub max_record_bytes: usize,
    pub max_requests_per_connection: usize,
    /// Requests in progress at once across all connections of one address:
    /// with max_record_bytes, what bounds request memory.
    #[serde(default = "default_max_requests_total")]
    pub max_requests_total: usize,
    /// Connections one client host may hold across a vserver's ports.
    #[serde(default = "default_max_connections_per_host")]
    pub max_connections_per_host: usize,
    /// Connections to MOUNT and portmap (and the lock manager), a budget
    /// apart from `max_connections` (the NFS port's).
    #[serde(default = "default_max_other_connections")]
    pub max_other_connections: usize,
    /// Requests of one client host in progress at once.
    #[serde(default = "default_max_requests_per_host")]
    pub max_requests_per_host: usize,
    /// A connection with nothing in progress is closed after this quiet time.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// A started RPC record must arrive whole within this.
    #[serde(default = "default_record_timeout_ms")]
    pub record_timeout_ms: u64,
}

fn default_max_requests_total() -> usize {
    tandem_nfs::ServerConfig::default().max_requests_total
}
fn default_max_connections_per_host() -> usize {
    tandem_nfs::Shares::default().max_connections_per_host
}
fn default_max_other_connections() -> usize {
    tandem_nfs::Shares::default().max_other_connections
}
fn default_max_requests_per_host() -> usize {
    tandem_nfs::Shares::default().max_requests_per_host
}
fn default_idle_timeout_ms() -> u64 {
    tandem_nfs::Shares::default().idle_timeout_ms
}
fn default_record_timeout_ms() -> u64 {
    tandem_nfs::Shares::default().record_timeout_ms
}

impl NfsSettings {
    /// The NFS layer's defaults (`tandem_nfs::ServerConfig`). Portmap is
    /// on by default only for root, who alone may bind port 111.
    pub fn defaults(as_root: bool) -> Self {
        let d = tandem_nfs::ServerConfig::default();
        NfsSettings {
            nfs_port: d.nfs_port,
            mount_port: d.mount_port,
            portmap: as_root,
            portmap_port: d.portmap_port.unwrap_or(tandem_nfs::DEFAULT_PORTMAP_PORT),
            max_connections: d.max_connections,
            max_record_bytes: d.max_record_bytes,
            max_requests_per_connection: d.max_requests_per_connection,
            max_requests_total: d.max_requests_total,
            max_connections_per_host: d.shares.max_connections_per_host,
            max_other_connections: d.shares.max_other_connections,
            max_requests_per_host: d.shares.max_requests_per_host,
            idle_timeout_ms: d.shares.idle_timeout_ms,
            record_timeout_ms: d.shares.record_timeout_ms,
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let mut ports = vec![("nfs_port", self.nfs_port), ("mount_port", self.mount_port)];
        if self.portmap {
            ports.push(("portmap_port", self.portmap_port));
        }
        for (i, (name, port)) in ports.iter().enumerate() {
            if *port == 0 {
                return Err(format!("nfs.{name} must not be 0"));
            }
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                return Err(format!("nfs.{name} and nfs.{other} are both {port}"));
            }
        }
        check_range("nfs.max_connections", self.max_connections, 1, 65_536)?;
        check_range(
            "nfs.max_record_bytes",
            self.max_record_bytes,
            // The NFS layer needs a 4 KiB WRITE plus 4 KiB of headers.
            8192,
            64 << 20,
        )?;
        check_range(
            "nfs.max_requests_per_connection",
            self.max_requests_per_connection,
            1,
            4096,
        )?;
        check_range("nfs.max_requests_total", self.max_requests_total, 1, 65_536)?;
        check_range(
            "nfs.max_connections_per_host",
            self.max_connections_per_host,
            1,
            65_536,
        )?;
        check_range(
            "nfs.max_other_connections",
            self.max_other_connections,
            1,
            65_536,
        )?;
        check_range(
            "nfs.max_requests_per_host",
            self.max_requests_per_host,
            1,
            65_536,
        )?;
        // Milliseconds: a second to a day for idle connections, a second
        // to ten minutes for one record.
        let ms = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        check_range(
            "nfs.idle_timeout_ms",
            ms(self.idle_timeout_ms),
            1000,
            86_400_000,
        )?;
        check_range(
            "nfs.record_timeout_ms",
            ms(self.record_timeout_ms),
            1000,
            600_000,
        )?;
        Ok(())
    }
}

/// Limits of the local control API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSettings {
    /// Concurrent CLI connections; more wait.
    pub max_clients: usize,
    /// Longest request line accepted on the control socket.
    pub max_request_bytes: usize,
    /// A connection idle this long is closed.
    pub idle_timeout_secs: u64,
    /// Most vservers one site may hold.
    pub max_vservers: usize,
    /// At daemon start, how long an active vserver with outgoing
    /// replication waits for its peer's epoch before it is served anyway
    /// (control::resync).
    #[serde(default = "default_epoch_probe_timeout_ms")]
    pub epoch_probe_timeout_ms: u64,
}

fn default_epoch_probe_timeout_ms() -> u64 {
    DEFAULT_EPOCH_PROBE_TIMEOUT_MS
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            max_clients: 32,
            max_request_bytes: 64 * 1024,
            idle_timeout_secs: 60,
            max_vservers: 256,
            epoch_probe_timeout_ms: default_epoch_probe_timeout_ms(),
        }
    }
}

impl ControlSettings {
    fn validate(&self) -> std::result::Result<(), String> {
        check_range("control.max_clients", self.max_clients, 1, 1024)?;
        check_range(
            "control.max_request_bytes",
            self.max_request_bytes,
            1024,
            16 << 20,
        )?;
        check_range(
            "control.idle_timeout_secs",
            self.idle_timeout_secs as usize,
            1,
            86_400,
        )?;
        check_range("control.max_vservers", self.max_vservers, 1, 4096)?;
        check_range(
            "control.epoch_probe_timeout_ms",
            usize::try_from(self.epoch_probe_timeout_ms).unwrap_or(usize::MAX),
            100,
            60_000,
        )?;
        Ok(())
    }
}

fn check_range(
    name: &str,
    value: usize,
    min: usize,
    max: usize,
) -> std::result::Result<(), String> {
    if value < min || value > max {
        return Err(format!("{name} = {value} is outside {min}..={max}"));
    }
    Ok(())
}

/// The contents of site.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    /// Where other sites reach this one ("HOST:PORT").
    pub listen: String,
    pub nfs: NfsSettings,
    #[serde(default)]
    pub control: ControlSettings,
    #[serde(default)]
    pub metrics: MetricsSettings,
    #[serde(default)]
    pub store: StoreSettings,
    /// Network interfaces a vserver address may name (`IP/PREFIX@NAME`).
    /// Arrays of tables come last: TOML puts them after plain tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<crate::config::resources::InterfaceSettings>,
    /// Storage pools: where replicas may live and how much room they have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::config::resources::PoolSettings>,
}

/// Store settings, applied to every vserver store of the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Most journal kept for a replica that is away; past it the active
    /// site tracks changed ranges instead and the replica gets a catch-up
    /// (docs/operating.md, "Journal overflow").
    #[serde(default = "default_journal_max_bytes")]
    pub journal_max_bytes: u64,
    /// Disk room each store keeps for removals and truncations: writes
    /// and creations are refused (NFS3ERR_NOSPC) once only this is left
    /// (docs/operating.md, "A full disk").
    #[serde(default = "default_space_reserve_bytes")]
    pub space_reserve_bytes: u64,
    /// `tandem status` says `low` and the log warns while free space
    /// above the reserve is under this percentage of the file system.
    #[serde(default = "default_space_low_percent")]
    pub space_low_percent: u8,
}

fn default_space_reserve_bytes() -> u64 {
    tandem_store::space::DEFAULT_RESERVE_BYTES
}

fn default_space_low_percent() -> u8 {
    tandem_store::space::DEFAULT_LOW_PERCENT
}

fn default_journal_max_bytes() -> u64 {
    tandem_store::store::DEFAULT_JOURNAL_MAX_BYTES
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            journal_max_bytes: default_journal_max_bytes(),
            space_reserve_bytes: default_space_reserve_bytes(),
            space_low_percent: default_space_low_percent(),
        }
    }
}

/// Smallest `store.journal_max_bytes`: a few journal segments' worth.
pub const MIN_JOURNAL_MAX_BYTES: u64 = 1 << 20;
/// Largest `store.journal_max_bytes` (16 TiB): past it, a typo.
pub const MAX_JOURNAL_MAX_BYTES: u64 = 16 << 40;

impl StoreSettings {
    fn validate(&self) -> std::result::Result<(), String> {
        let v = self.journal_max_bytes;
        if !(MIN_JOURNAL_MAX_BYTES..=MAX_JOURNAL_MAX_BYTES).contains(&v) {
            return Err(format!(
                "store.journal_max_bytes = {v} is outside {MIN_JOURNAL_MAX_BYTES}..={MAX_JOURNAL_MAX_BYTES}"
            ));
        }
        use tandem_store::space::{
            MAX_LOW_PERCENT, MAX_RESERVE_BYTES, MIN_LOW_PERCENT, MIN_RESERVE_BYTES,
        };
        let r = self.space_reserve_bytes;
        if !(MIN_RESERVE_BYTES..=MAX_RESERVE_BYTES).contains(&r) {
            return Err(format!(
                "store.space_reserve_bytes = {r} is outside {MIN_RESERVE_BYTES}..={MAX_RESERVE_BYTES}"
            ));
        }
        check_range(
            "store.space_low_percent",
            usize::from(self.space_low_percent),
            usize::from(MIN_LOW_PERCENT),
            usize::from(MAX_LOW_PERCENT),
        )?;
        Ok(())
    }

    /// The options every vserver store of this site opens with. Segments
    /// are at most a quarter of the limit: a checkpoint deletes only whole
    /// segments, so larger ones would keep the journal above it.
    pub fn store_options(&self) -> tandem_store::StoreOptions {
        let d = tandem_store::StoreOptions::default();
        tandem_store::StoreOptions {
            journal_max_bytes: self.journal_max_bytes,
            max_segment_bytes: d.max_segment_bytes.min(self.journal_max_bytes / 4),
            reserve_bytes: self.space_reserve_bytes,
            low_percent: self.space_low_percent,
            ..d
        }
    }
}

/// Prometheus metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// "HOST:PORT" to serve `/metrics` on; none (the default) serves nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl SiteConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        validate_name("site name", &self.name).map_err(|e| e.to_string())?;
        parse_listen(&self.listen).map_err(|e| e.to_string())?;
        self.nfs.validate()?;
        self.control.validate()?;
        self.store.validate()?;
        if let Some(listen) = &self.metrics.listen {
            parse_listen(listen).map_err(|e| format!("metrics.listen: {e}"))?;
        }
        crate::config::resources::validate_interfaces(&self.interfaces)?;
        crate::config::resources::validate_pools(&self.pools)?;
        Ok(())
    }

    /// The NFS layer's settings for this site.
    pub fn server_config(&self) -> ServiceConfig {
        ServiceConfig {
            nfs: tandem_nfs::ServerConfig {
                nfs_port: self.nfs.nfs_port,
                mount_port: self.nfs.mount_port,
                portmap_port: self.nfs.portmap.then_some(self.nfs.portmap_port),
                max_connections: self.nfs.max_connections,
                max_record_bytes: self.nfs.max_record_bytes,
                max_requests_per_connection: self.nfs.max_requests_per_connection,
                max_requests_total: self.nfs.max_requests_total,
                nlm: tandem_nfs::NlmConfig::default(),
                shares: tandem_nfs::Shares {
                    max_connections_per_host: self.nfs.max_connections_per_host,
                    max_other_connections: self.nfs.max_other_connections,
                    max_requests_per_host: self.nfs.max_requests_per_host,
                    idle_timeout_ms: self.nfs.idle_timeout_ms,
                    record_timeout_ms: self.nfs.record_timeout_ms,
                },
            },
            interfaces: self.interfaces.clone(),
        }
    }
}

/// How the site serves an address, built from site.toml: the NFS layer's
/// settings and the interfaces addresses are claimed on.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub nfs: tandem_nfs::ServerConfig,
    pub interfaces: Vec<crate::config::resources::InterfaceSettings>,
}

/// Accepts "HOST:PORT", "[V6]:PORT", a bare IP or a bare host name (which
/// get the default port). Host names are kept as text: they are resolved
/// when used, since addresses may change.
pub fn parse_listen(text: &str) -> Result<String> {
    let what = "listen address";
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(text.to_string());
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_LISTEN_PORT).to_string());
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .map_err(|_| ControlError::invalid(what, format!("{p:?} is not a port")))?;
            (h, port)
        }
        None => (text, DEFAULT_LISTEN_PORT),
    };
    if port == 0 {
        return Err(ControlError::invalid(what, "port must not be 0"));
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !host_ok {
        return Err(ControlError::invalid(
            what,
            format!("{text:?} is not HOST:PORT"),
        ));
    }
    Ok(format!("{host}:{port}"))
}

/// A loaded site: its configuration and identity.
#[derive(Debug, Clone)]
pub struct Site {
    pub paths: SitePaths,
    pub config: SiteConfig,
    pub identity: Identity,
}

impl Site {
    /// Creates a new site in `dir` (which may exist but must not hold a
    /// site): site.toml, the TLS identity and the vservers directory.
    pub fn init(dir: &Path, name: &str, listen: &str, as_root: bool) -> Result<Site> {
        validate_name("site name", name)?;
        let listen = parse_listen(listen)?;
        let paths = SitePaths::new(dir);
        if paths.site_toml().exists() || paths.identity_dir().exists() {
            return Err(ControlError::SiteExists(dir.to_path_buf()));
        }
        // 0700: the control socket and the key live here.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| ControlError::io(dir, e))?;
        let config = SiteConfig {
            name: name.to_string(),
            listen: listen.clone(),
            nfs: NfsSettings::defaults(as_root),
            control: ControlSettings::default(),
            metrics: MetricsSettings::default(),
            store: StoreSettings::default(),
            interfaces: Vec::new(),
            pools: Vec::new(),
        };
        let identity = identity::generate(&paths, name, &listen)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(paths.vservers())
            .map_err(|e| ControlError::io(paths.vservers(), e))?;
        write_site_toml(&paths.site_toml(), &config)?;
        Ok(Site {
            paths,
            config,
            identity,
        })
    }

    /// Writes `config` back to site.toml (atomically, as at init); the
    /// daemon reads it at start.
    pub fn save(&self) -> Result<()> {
        self.config
            .nfs
            .validate()
            .map_err(|reason| ControlError::SiteConfig {
                path: self.paths.site_toml(),
                reason,
            })?;
        write_site_toml(&self.paths.site_toml(), &self.config)
    }

    pub fn load(dir: &Path) -> Result<Site> {
        let paths = SitePaths::new(dir);
        let toml_path = paths.site_toml();
        let meta = match fs::metadata(&toml_path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ControlError::NoSite(dir.to_path_buf()))
            }
            Err(e) => return Err(ControlError::io(&toml_path, e)),
        };
        let bad = |reason: String| ControlError::SiteConfig {
            path: toml_path.clone(),
            reason,
        };
        if meta.len() > MAX_SITE_TOML_BYTES {
            return Err(bad(format!("larger than {MAX_SITE_TOML_BYTES} bytes")));
        }
        let text = fs::read_to_string(&toml_path).map_err(|e| ControlError::io(&toml_path, e))?;
        let config: SiteConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        config.validate().map_err(bad)?;
        let identity = identity::load(&paths)?;
        Ok(Site {
            paths,
            config,
            identity,
        })
    }
}

/// Writes through a temporary file and a rename so a crash never leaves a
/// half-written site.toml.
pub fn write_site_toml(path: &Path, config: &SiteConfig) -> Result<()> {
    crate::config::toml_file::write_atomically(
        path,
        "# Tandem site configuration. Checked on every start; see docs/operating.md.\n",
        config,
    )
}

/// Whether this process runs as root (effective uid 0).
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen("127.0.0.1").unwrap(), "127.0.0.1:7447");
        assert_eq!(parse_listen("127.0.0.1:9000").unwrap(), "127.0.0.1:9000");
        assert_eq!(parse_listen("[::1]:9000").unwrap(), "[::1]:9000");
        assert_eq!(parse_listen("::1").unwrap(), "[::1]:7447");
        assert_eq!(
            parse_listen("site-a.example").unwrap(),
            "site-a.example:7447"
        );
        assert!(parse_listen("host:0").is_err());
        assert!(parse_listen("host:99999").is_err());
        assert!(parse_listen("bad host:1").is_err());
        assert!(parse_listen("").is_err());
    }

    #[test]
    fn init_then_load_and_refuse_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let site = Site::init(&dir, "alpha", "127.0.0.1", false).unwrap();
        assert!(!site.config.nfs.portmap);
        let loaded = Site::load(&dir).unwrap();
        assert_eq!(loaded.config, site.config);
        assert_eq!(loaded.identity.id, site.identity.id);
        assert_eq!(loaded.identity.id.len(), 64);
        assert!(matches!(
            Site::init(&dir, "alpha", "127.0.0.1", false),
            Err(ControlError::SiteExists(_))
        ));
    }

    #[test]
    fn bad_site_toml_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        Site::init(&dir, "alpha", "127.0.0.1", false).unwrap();
        let toml_path = SitePaths::new(&dir).site_toml();
        let text = fs::read_to_string(&toml_path).unwrap();
        fs::write(
            &toml_path,
            text.replace("nfs_port = 2049", "nfs_port = 20048"),
        )
        .unwrap();
        let err = Site::load(&dir).unwrap_err().to_string();
        assert!(err.contains("nfs.mount_port and nfs.nfs_port"), "{err}");
        // The shares: absent keys take the defaults; values out of range
        // are refused by name.
        for (key, value, needle) in [
            ("max_requests_per_host", 0, "nfs.max_requests_per_host = 0"),
            (
                "max_connections_per_host",
                0,
                "nfs.max_connections_per_host = 0",
            ),
            ("max_other_connections", 0, "nfs.max_other_connections = 0"),
            ("idle_timeout_ms", 10, "nfs.idle_timeout_ms = 10"),
            (
                "record_timeout_ms",
                3_600_000,
                "nfs.record_timeout_ms = 3600000",
            ),
        ] {
            let mut t: toml::Table = text.parse().unwrap();
            let nfs = t.get_mut("nfs").and_then(|n| n.as_table_mut()).unwrap();
            nfs.insert(key.into(), toml::Value::Integer(value));
            fs::write(&toml_path, toml::to_string(&t).unwrap()).unwrap();
            let err = Site::load(&dir).unwrap_err().to_string();
            assert!(err.contains(needle), "{key}: {err}");
        }
        fs::write(&toml_path, &text).unwrap();
        let site = Site::load(&dir).unwrap();
        assert_eq!(
            site.config.server_config().nfs.shares,
            tandem_nfs::Shares::default()
        );
        fs::write(&toml_path, "name = [").unwrap();
        assert!(matches!(
            Site::load(&dir),
            Err(ControlError::SiteConfig { .. })
        ));
    }

    #[test]
    fn epoch_probe_timeout_is_read_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let site = Site::init(&dir, "alpha", "127.0.0.1", false).unwrap();
        assert_eq!(site.config.control.epoch_probe_timeout_ms, 3000);
        let toml_path = SitePaths::new(&dir).site_toml();
        let text = fs::read_to_string(&toml_path).unwrap();
        let with = |v: i64| {
            let mut t: toml::Table = text.parse().unwrap();
            let control = t
                .entry("control")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let control = control.as_table_mut().unwrap();
            for (k, d) in [
                ("max_clients", 32),
                ("max_request_bytes", 65536),
                ("idle_timeout_secs", 60),
                ("max_vservers", 256),
            ] {
                control.entry(k).or_insert(toml::Value::Integer(d));
            }
            control.insert("epoch_probe_timeout_ms".into(), toml::Value::Integer(v));
            fs::write(&toml_path, toml::to_string(&t).unwrap()).unwrap();
        };
        with(500);
        assert_eq!(
            Site::load(&dir)
                .unwrap()
                .config
                .control
                .epoch_probe_timeout_ms,
            500
        );
        for bad in [0, 99, 60_001] {
            with(bad);
            let err = Site::load(&dir).unwrap_err().to_string();
            assert!(
                err.contains("control.epoch_probe_timeout_ms"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn space_settings_are_read_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let site = Site::init(&dir, "alpha", "127.0.0.1", false).unwrap();
        let opts = site.config.store.store_options();
        assert_eq!(
            opts.reserve_bytes,
            tandem_store::space::DEFAULT_RESERVE_BYTES
        );
        assert_eq!(opts.low_percent, tandem_store::space::DEFAULT_LOW_PERCENT);
        let toml_path = SitePaths::new(&dir).site_toml();
        let text = fs::read_to_string(&toml_path).unwrap();
        let without = text.split("[store]").next().unwrap().trim_end().to_string();
        let with = |keys: &str| {
            fs::write(&toml_path, format!("{without}\n\n[store]\n{keys}\n")).unwrap();
            Site::load(&dir)
        };
        let loaded = with("space_reserve_bytes = 2097152\nspace_low_percent = 25").unwrap();
        let opts = loaded.config.store.store_options();
        assert_eq!(opts.reserve_bytes, 2 << 20);
        assert_eq!(opts.low_percent, 25);
        // Absent keys take the defaults (site.toml files from before them).
        let loaded = with("journal_max_bytes = 8388608").unwrap();
        assert_eq!(
            loaded.config.store.space_reserve_bytes,
            tandem_store::space::DEFAULT_RESERVE_BYTES
        );
        for (keys, needle) in [
            (
                "space_reserve_bytes = 1000",
                "store.space_reserve_bytes = 1000",
            ),
            (
                "space_reserve_bytes = 70000000000000",
                "store.space_reserve_bytes",
            ),
            ("space_low_percent = 0", "store.space_low_percent = 0"),
            ("space_low_percent = 91", "store.space_low_percent = 91"),
            ("space_low_percent = 300", "space_low_percent"),
        ] {
            let err = with(keys).unwrap_err().to_string();
            assert!(err.contains(needle), "{keys}: {err}");
        }
    }

    #[test]
    fn journal_max_bytes_is_read_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let site = Site::init(&dir, "alpha", "127.0.0.1", false).unwrap();
        assert_eq!(
            site.config.store.journal_max_bytes,
            tandem_store::store::DEFAULT_JOURNAL_MAX_BYTES
        );
        let toml_path = SitePaths::new(&dir).site_toml();
        let text = fs::read_to_string(&toml_path).unwrap();
        let without = text.split("[store]").next().unwrap().trim_end().to_string();
        fs::write(
            &toml_path,
            format!("{without}\n\n[store]\njournal_max_bytes = 8388608\n"),
        )
        .unwrap();
        let loaded = Site::load(&dir).unwrap();
        assert_eq!(loaded.config.store.journal_max_bytes, 8 << 20);
        assert_eq!(
            loaded.config.store.store_options().journal_max_bytes,
            8 << 20
        );
        for bad in ["0", "1000", "17592186044417"] {
            fs::write(
                &toml_path,
                format!("{without}\n\n[store]\njournal_max_bytes = {bad}\n"),
            )
            .unwrap();
            let err = Site::load(&dir).unwrap_err().to_string();
            assert!(err.contains("store.journal_max_bytes"), "{bad}: {err}");
        }
        fs::write(
            &toml_path,
            format!("{without}\n\n[store]\njournal_max = 1\n"),
        )
        .unwrap();
        assert!(Site::load(&dir).is_err());
    }

    #[test]
    fn interfaces_and_pools_are_read_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        let site = Site::init(&dir, "alpha", "127.0.0.1", false).unwrap();
        assert!(site.config.interfaces.is_empty() && site.config.pools.is_empty());
        let toml_path = SitePaths::new(&dir).site_toml();
        let text = fs::read_to_string(&toml_path).unwrap();
        let good = "\n[[interfaces]]\nname = \"front\"\ndevice = \"lo\"\n\
                    \n[[pools]]\nname = \"main\"\npath = \"/srv/tandem\"\ncapacity_bytes = 1073741824\n";
        fs::write(&toml_path, format!("{text}{good}")).unwrap();
        let mut loaded = Site::load(&dir).unwrap();
        assert_eq!(loaded.config.interfaces[0].device, "lo");
        assert_eq!(loaded.config.pools[0].capacity_bytes, Some(1 << 30));
        // Saving keeps them (arrays of tables after the plain tables).
        loaded.config.nfs.max_connections = 7;
        loaded.save().unwrap();
        assert_eq!(Site::load(&dir).unwrap().config.pools, loaded.config.pools);
        let bad = "\n[[interfaces]]\nname = \"front\"\ndevice = \"no/slash\"\n";
        fs::write(&toml_path, format!("{text}{bad}")).unwrap();
        let err = Site::load(&dir).unwrap_err().to_string();
        assert!(err.contains("interfaces[0] (\"front\"): device"), "{err}");
        let bad = "\n[[pools]]\nname = \"main\"\npath = \"srv\"\n";
        fs::write(&toml_path, format!("{text}{bad}")).unwrap();
        let err = Site::load(&dir).unwrap_err().to_string();
        assert!(err.contains("pools[0] (\"main\")"), "{err}");
        let bad = "\n[[pools]]\nname = \"main\"\npath = \"/srv\"\nsize = 1\n";
        fs::write(&toml_path, format!("{text}{bad}")).unwrap();
        assert!(Site::load(&dir).is_err());
    }
}
