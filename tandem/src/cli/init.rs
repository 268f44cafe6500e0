//! `tandem init`: create a site.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tandem_control::config::site::{running_as_root, Site, DEFAULT_LISTEN_PORT};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The site's name (letters, digits, '_', '.', '-').
    #[arg(long)]
    pub site: String,
    /// Where other sites will reach this one: HOST[:PORT].
    #[arg(long, default_value_t = format!("0.0.0.0:{DEFAULT_LISTEN_PORT}"))]
    pub listen: String,
}

pub fn run(data: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let site = Site::init(data, &args.site, &args.listen, running_as_root())
        .with_context(|| format!("cannot create site in {}", data.display()))?;
    say!(
        "Created site {} in {}\n  id:     {}\n  listen: {}\n  nfs:    port {}, mount port {}, portmap {}",
        site.config.name,
        data.display(),
        site.identity.id,
        site.config.listen,
        site.config.nfs.nfs_port,
        site.config.nfs.mount_port,
        if site.config.nfs.portmap {
            format!("on port {}", site.config.nfs.portmap_port)
        } else {
            "off".to_string()
        },
    );
    say!(
        "Settings are in {}. Start the site with: tandem daemon --data {}",
        site.paths.site_toml().display(),
        data.display()
    );
    Ok(ExitCode::SUCCESS)
}
