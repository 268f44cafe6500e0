//! A full disk, for real: the site lives on a 64 MiB tmpfs the test mounts
//! (root and mount(8) needed: skipped without, failed in CI), and an NFS
//! client writes 1 MiB FILE_SYNC files until the disk is full. Writes then
//! get NFS3ERR_NOSPC (not ROFS), status and metrics say `full` (and `low`
//! before), removals free room for new writes, a restart on the full disk
//! serves reads and takes removals, and with the disk filled to the last
//! byte by someone else the vserver still opens and serves reads, and fsck
//! passes. docs/operating.md, "A full disk".

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;

use crate::common::nfs::{call, create_file, mount, read_named, remove, Conn};
use crate::common::*;

const SITE_ADDR: &str = "127.77.90.1";
const VS_ADDR: &str = "127.77.90.2";
/// The replication test's sites, vserver and replica addresses.
const NET: &str = "127.77.91";
const DISK_MIB: u64 = 64;
/// The replica's disk in the replication test, and what it grows to.
const REPLICA_DISK_MIB: u64 = 40;
const GROWN_DISK_MIB: u64 = 160;
const MIB: usize = 1 << 20;

/// A tmpfs mounted on a directory of our own, unmounted at the end.
struct Tmpfs {
    _parent: tempfile::TempDir,
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Tmpfs {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("disk");
        std::fs::create_dir(&dir).expect("mount point");
        let out = run_with_deadline(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
                .arg(&dir),
            DEADLINE,
        );
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            _parent: parent,
            dir,
        }
    }
}

impl Tmpfs {
    /// What an operator does about a full disk: grows it.
    fn grow(&self, size_mib: u64) {
        let out = run_with_deadline(
            Command::new("mount")
                .args(["-o", &format!("remount,size={size_mib}m")])
                .arg(&self.dir),
            DEADLINE,
        );
        assert!(
            out.status.success(),
            "remount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let out = run_with_deadline(Command::new("umount").arg(&self.dir), DEADLINE);
        if !out.status.success() {
            eprintln!(
                "umount {}: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// One 1 MiB FILE_SYNC WRITE (a single RPC, as the clients sent).
async fn write_mib(c: &mut Conn, fh: &nfs_fh3, data: &[u8]) -> Result<(), nfsstat3> {
    call(
        "WRITE",
        c.write(&WRITE3args {
            file: fh.clone(),
            offset: 0,
            count: data.len() as u32,
            stable: stable_how::FILE_SYNC,
            data: Opaque::borrowed(data),
        }),
    )
    .await
    .map(|_| ())
}

/// CREATE `name` then write 1 MiB into it; the first NFS error, if any.
async fn try_file(c: &mut Conn, name: &str, data: &[u8]) -> Result<(), nfsstat3> {
    let root = c.root_nfs_fh3();
    let made = call(
        "CREATE",
        c.create(&CREATE3args {
            where_: crate::common::nfs::dirop(&root, name),
            how: createhow3::UNCHECKED(sattr3::default()),
        }),
    )
    .await?;
    let Nfs3Option::Some(fh) = made.obj else {
        panic!("CREATE without a handle");
    };
    write_mib(c, &fh, data).await
}

fn data_of(i: usize) -> Vec<u8> {
    tandem_testkit::pattern(MIB, i as u64)
}

fn space_state(site: &TestSite) -> (String, String) {
    let st = site.status_json();
    let vs = &st["vservers"][0];
    (
        vs["state"].as_str().unwrap_or("").to_string(),
        vs["space"]["state"].as_str().unwrap_or("").to_string(),
    )
}

fn metrics(port: u16) -> String {
    let mut s = std::net::TcpStream::connect((SITE_ADDR, port)).expect("connect to metrics");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Writes into a file on `dir` until the file system refuses more.
fn fill_to_the_last_byte(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let block = vec![0xAAu8; 64 << 10];
    loop {
        if let Err(e) = f.write_all(&block) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
            break;
        }
    }
    // Page by page, to the last one.
    let page = [0x55u8; 4096];
    while f.write_all(&page).is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_frees_by_removal_and_survives_restarts() {
    if !require(
        is_root() && have_tools(&["mount", "umount"]),
        "root and mount(8)",
    ) {
        return;
    }
    let disk = Tmpfs::mount(DISK_MIB);
    let logs = tempfile::tempdir().expect("tempdir");
    let site = TestSite::init_in(
        logs,
        disk.dir.join("site"),
        "full-site",
        &format!("{SITE_ADDR}:7447"),
    );
    let metrics_port = free_port();
    site.edit_toml(|t| {
        let mut m = toml::Table::new();
        m.insert(
            "listen".into(),
            format!("{SITE_ADDR}:{metrics_port}").into(),
        );
        t.insert("metrics".into(), m.into());
        let store = t["store"].as_table_mut().expect("store table");
        // A wide warning band on a small disk, so `low` shows well before
        // writes are refused.
        store.insert("space_low_percent".into(), 30.into());
    });
    let daemon = site.start_daemon();
    create_vserver_and_fs(&site, "vs", VS_ADDR, "data", "/data");
    let mut c = mount(&site, VS_ADDR).await;

    // 1 MiB FILE_SYNC files until the disk is full. A refusal makes the
    // store checkpoint and drop journal segments whose data is in the data
    // files, which may make room for a few more: full is when a refusal
    // leaves status and metrics saying so.
    let mut written = Vec::new();
    let mut saw_low = false;
    let mut name = 0;
    loop {
        assert!(
            name < 2 * DISK_MIB as usize,
            "{name} tries on a {DISK_MIB} MiB disk"
        );
        let tried = try_file(&mut c, &format!("f{name}"), &data_of(name)).await;
        name += 1;
        let (vs_state, space) = space_state(&site);
        assert_eq!(vs_state, "active");
        let Err(st) = tried else {
            written.push(format!("f{}", name - 1));
            saw_low |= space == "low";
            continue;
        };
        assert_eq!(
            st,
            nfsstat3::NFS3ERR_NOSPC,
            "a full disk is NOSPC, not ROFS"
        );
        let m = metrics(metrics_port);
        let full_metric = "tandem_vserver_space_state{vserver=\"vs\",state=\"full\"} 1";
        if space == "full" && m.contains(full_metric) {
            assert!(
                m.contains("tandem_vserver_space_free_bytes{vserver=\"vs\"}"),
                "{m}"
            );
            break;
        }
    }
    eprintln!("{} MiB fit", written.len());
    assert!(written.len() >= 48, "only {} MiB fit", written.len());
    assert!(saw_low, "status said `low` before writes were refused");
    assert!(
        daemon.log_text().contains("disk space is low"),
        "the low-room warning is logged"
    );

    // Removals free room: new writes pass again (once the removed files'
    // data and the journal holding it are gone).
    let half = written.len() / 2;
    for name in written.drain(..half) {
        remove(&mut c, &name).await;
    }
    let again = name;
    let deadline = std::time::Instant::now() + DEADLINE;
    let fh = create_file(&mut c, &format!("f{again}")).await;
    while write_mib(&mut c, &fh, &data_of(again)).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no room after removals"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    written.push(format!("f{again}"));
    // Full again, to restart on a full disk.
    let mut next = again + 1;
    while try_file(&mut c, &format!("f{next}"), &data_of(next))
        .await
        .is_ok()
    {
        written.push(format!("f{next}"));
        next += 1;
    }
    drop(c);

    // A crash on the full disk: the restart serves reads and removals.
    daemon.kill9();
    let daemon = site.start_daemon();
    let (vs_state, _) = space_state(&site);
    assert_eq!(vs_state, "active", "{}", daemon.log_text());
    let mut c = mount(&site, VS_ADDR).await;
    assert_files(&mut c, &written).await;
    let gone = written.remove(0);
    remove(&mut c, &gone).await;
    drop(c);

    // Someone else takes the last byte: the store still opens and serves
    // reads, and fsck does not fail for want of room.
    fill_to_the_last_byte(&disk.dir);
    daemon.kill9();
    let daemon = site.start_daemon();
    let (vs_state, space) = space_state(&site);
    assert_eq!(vs_state, "active", "{}", daemon.log_text());
    assert_eq!(space, "full");
    let mut c = mount(&site, VS_ADDR).await;
    assert_files(&mut c, &written).await;
    drop(c);
    let stopped = daemon.stop();
    assert!(stopped.success(), "daemon exit on a full disk: {stopped:?}");
    assert_fsck_clean(&site, "vs");
    drop(site);
}

/// Every file in `names` holds the bytes it was written with.
async fn assert_files(c: &mut Conn, names: &[String]) {
    for name in names {
        let i: usize = name[1..].parse().expect("fN");
        let got = read_named(c, name)
            .await
            .unwrap_or_else(|| panic!("{name} is gone"));
        assert!(got == data_of(i), "{name} changed");
    }
}

/// The DR site's disk fills while it applies replicated changes: it
/// refuses the batch that does not fit, whole, and stays a consistent copy;
/// the active site keeps serving and shows replication `stalled` with the
/// replica's reason; once the replica's disk grows, replication resumes by
/// itself and the copies match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replica_stalls_replication_and_the_active_site_serves_on() {
    use crate::common::replication::{
        assert_verify_matches, pair_both, replicate_to_beta, site, vserver_status, wait_converged,
    };
    if !require(
        is_root() && have_tools(&["mount", "umount"]),
        "root and mount(8)",
    ) {
        return;
    }
    let disk = Tmpfs::mount(REPLICA_DISK_MIB);
    let (a, a_addr) = site("alpha", &format!("{NET}.1"));
    let b_addr = format!("{NET}.2:{}", free_port());
    let logs = tempfile::tempdir().expect("tempdir");
    let b = TestSite::init_in(logs, disk.dir.join("site"), "beta", &b_addr);
    let (da, db) = (a.start_daemon(), b.start_daemon());
    pair_both(&a, &a_addr, &b, &b_addr);
    let vs_ip = format!("{NET}.3");
    create_vserver_and_fs(&a, "vs", &vs_ip, "data", "/data");
    replicate_to_beta(&a, "vs", &format!("{NET}.4"));
    let both_logs = || format!("alpha:\n{}\nbeta:\n{}", da.log_text(), db.log_text());
    wait_converged(&a, &b, "vs", &both_logs);

    // The active site's disk is large; the replica's fills. A refusal makes
    // the replica checkpoint and drop journal it no longer needs, which may
    // let the next batch in: full is when a refusal leaves it full.
    let mut c = mount(&a, &vs_ip).await;
    let mut files = 0;
    loop {
        assert!(
            files < 2 * REPLICA_DISK_MIB as usize,
            "replication never stalled on a full replica: {}",
            both_logs()
        );
        try_file(&mut c, &format!("f{files}"), &data_of(files))
            .await
            .unwrap_or_else(|st| panic!("the active site refused f{files}: {st:?}"));
        files += 1;
        let va = vserver_status(&a, "vs").expect("vserver at alpha");
        let vb = vserver_status(&b, "vs").expect("vserver at beta");
        if va["replication"]["state"] == "stalled" && vb["space"]["state"] == "full" {
            let error = va["replication"]["last_error"].as_str().unwrap_or("");
            assert!(error.contains("no room"), "{va}");
            assert_eq!(vb["state"], "replica", "{vb}");
            break;
        }
    }
    // The active site serves on, writes included.
    for _ in 0..3 {
        try_file(&mut c, &format!("f{files}"), &data_of(files))
            .await
            .expect("a write at the active site while the replica is full");
        files += 1;
    }
    assert!(
        db.log_text().contains("no room on the disk"),
        "the replica logs why it refuses"
    );

    // Room returns: replication resumes by itself and the copies match.
    disk.grow(GROWN_DISK_MIB);
    wait_converged(&a, &b, "vs", &both_logs);
    assert_verify_matches(&a, "vs");
    drop(c);
    assert!(da.stop().success());
    assert!(db.stop().success());
    assert_fsck_clean(&b, "vs");
    drop(b);
}
