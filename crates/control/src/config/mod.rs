//! What a site is configured with, all on disk under its data directory:
//! site.toml and its settings, the TLS identity, the peer list, the site
//! lock, names and their validation, and the atomic TOML writer. Nothing
//! here runs; everything above reads it.

pub mod address_text;
pub mod identity;
pub mod lock;
pub mod names;
pub mod peers;
pub mod resources;
pub mod site;
pub mod toml_file;
pub mod words;
