//! Human-readable rendering shared by the commands.

use tandem_control::api::proto::Reply;
use tandem_control::vserver::service::Endpoint;
use tandem_control::vserver::status::FsStatus;
use tandem_store::User;

pub fn describe_endpoint(e: &Endpoint) -> String {
    let portmap = match e.portmap_port {
        Some(p) => format!(", portmap {p}"),
        None => String::new(),
    };
    format!(
        "{}: nfs {}, mount {}{portmap}",
        e.ip, e.nfs_port, e.mount_port
    )
}

pub fn describe_fs(fs: &FsStatus) -> String {
    format!(
        "fsid {}, export {} ({}, {}, anon {}:{}, clients {})",
        fs.fsid,
        fs.export,
        if fs.read_only { "ro" } else { "rw" },
        if fs.root_squash {
            "root squash"
        } else {
            "no root squash"
        },
        fs.anon_uid,
        fs.anon_gid,
        clients(fs),
    )
}

pub fn clients(fs: &FsStatus) -> String {
    if fs.clients.is_empty() {
        "any".to_string()
    } else {
        fs.clients
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

pub fn describe_user(u: &User) -> String {
    let groups = if u.groups.is_empty() {
        String::new()
    } else {
        format!(
            ", groups {}",
            u.groups
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    format!("{} (uid {}, gid {}{groups})", u.name, u.uid, u.gid)
}

/// The daemon answered with a reply of the wrong kind: a version mismatch
/// between CLI and daemon, most likely.
pub fn unexpected(reply: &Reply) -> anyhow::Error {
    anyhow::anyhow!("unexpected answer from the daemon (is it the same tandem version?): {reply:?}")
}

/// Left-aligned columns under a heading, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    columns(Some(header), rows)
}

/// Left-aligned columns, two spaces apart, without borders or (with no
/// `header`) a heading; lines end at their last character.
pub fn columns(header: Option<&[&str]>, rows: &[Vec<String>]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    if let Some(h) = header {
        t.set_header(h.to_vec());
    }
    t.add_rows(rows.iter().cloned());
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    t.trim_fmt()
}
