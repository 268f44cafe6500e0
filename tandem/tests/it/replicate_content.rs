//! Everything a client can do through NFS at the active site reaches the
//! replica: two sites on loopback, a vserver with several file systems
//! written through NFS (nested directories, files of many sizes, UNSTABLE
//! writes + COMMIT, a sparse file, hard links, renames, truncates, SETATTR,
//! symlinks, a FIFO), a file system and a user added while replicating.
//! Once converged, every export read through NFS at the replica address
//! shows the same names, handles, attributes (but atime) and bytes as at
//! the active site, and the replica's status shows the same file systems
//! and users.

use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::tree::*;
use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;

const VS: &str = "vs";
const MIB: usize = 1 << 20;
/// Generous: 140 MiB of files, a debug build, a shared machine.
const CONVERGE: std::time::Duration = std::time::Duration::from_secs(120);

fn handle(obj: post_op_fh3, what: &str) -> nfs_fh3 {
    match obj {
        Nfs3Option::Some(fh) => fh,
        Nfs3Option::None => panic!("{what} without a handle"),
    }
}

async fn create(c: &mut Conn, dir: &nfs_fh3, name: &str) -> nfs_fh3 {
    let r = must(
        "CREATE",
        c.create(&CREATE3args {
            where_: dirop(dir, name),
            how: createhow3::GUARDED(sattr3 {
                mode: Nfs3Option::Some(0o644),
                ..Default::default()
            }),
        }),
    )
    .await;
    handle(r.obj, "CREATE")
}

async fn mkdir(c: &mut Conn, dir: &nfs_fh3, name: &str) -> nfs_fh3 {
    let r = must(
        "MKDIR",
        c.mkdir(&MKDIR3args {
            where_: dirop(dir, name),
            attributes: sattr3 {
                mode: Nfs3Option::Some(0o755),
                ..Default::default()
            },
        }),
    )
    .await;
    handle(r.obj, "MKDIR")
}

async fn write(c: &mut Conn, fh: &nfs_fh3, offset: u64, data: &[u8], stable: stable_how) {
    for (i, chunk) in data.chunks(MIB).enumerate() {
        let w = must(
            "WRITE",
            c.write(&WRITE3args {
                file: fh.clone(),
                offset: offset + (i * MIB) as u64,
                count: chunk.len() as u32,
                stable,
                data: Opaque::borrowed(chunk),
            }),
        )
        .await;
        assert_eq!(w.count as usize, chunk.len(), "short WRITE");
    }
}

async fn commit(c: &mut Conn, fh: &nfs_fh3) {
    must(
        "COMMIT",
        c.commit(&COMMIT3args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        }),
    )
    .await;
}

async fn setattr(c: &mut Conn, fh: &nfs_fh3, attrs: sattr3) -> fattr3 {
    let r = must(
        "SETATTR",
        c.setattr(&SETATTR3args {
            object: fh.clone(),
            new_attributes: attrs,
            guard: Nfs3Option::None,
        }),
    )
    .await;
    match r.obj_wcc.after {
        Nfs3Option::Some(a) => a,
        Nfs3Option::None => panic!("SETATTR without attributes after"),
    }
}

async fn getattr(c: &mut Conn, fh: &nfs_fh3) -> fattr3 {
    must("GETATTR", c.getattr(&GETATTR3args { object: fh.clone() }))
        .await
        .obj_attributes
}

async fn rename(c: &mut Conn, from: (&nfs_fh3, &str), to: (&nfs_fh3, &str)) {
    must(
        "RENAME",
        c.rename(&RENAME3args {
            from: dirop(from.0, from.1),
            to: dirop(to.0, to.1),
        }),
    )
    .await;
}

async fn remove(c: &mut Conn, dir: &nfs_fh3, name: &str) {
    must(
        "REMOVE",
        c.remove(&REMOVE3args {
            object: dirop(dir, name),
        }),
    )
    .await;
}

async fn link(c: &mut Conn, file: &nfs_fh3, dir: &nfs_fh3, name: &str) {
    must(
        "LINK",
        c.link(&LINK3args {
            file: file.clone(),
            link: dirop(dir, name),
        }),
    )
    .await;
}

async fn read_at(c: &mut Conn, fh: &nfs_fh3, offset: u64, count: u32) -> Vec<u8> {
    must(
        "READ",
        c.read(&READ3args {
            file: fh.clone(),
            offset,
            count,
        }),
    )
    .await
    .data
    .as_ref()
    .to_vec()
}

/// Writes the whole variety into the connection's export; checks at this
/// (active) site what each step must have left. `big` adds the 20 MiB
/// file and the 100 MiB sparse one.
async fn populate(c: &mut Conn, seed: u64, big: bool) {
    let root = c.root_nfs_fh3();
    // Nested directories.
    let a = mkdir(c, &root, "a").await;
    let ab = mkdir(c, &a, "b").await;
    let abc = mkdir(c, &ab, "c").await;
    let other = mkdir(c, &root, "other").await;
    mkdir(c, &abc, "empty-dir").await;

    // Files of various sizes, FILE_SYNC.
    create(c, &root, "empty").await;
    let one = create(c, &a, "one-byte").await;
    write(c, &one, 0, b"x", stable_how::FILE_SYNC).await;
    let mid = create(c, &ab, "mid").await;
    let mid_data = pattern(MIB + 7, seed);
    write(c, &mid, 0, &mid_data, stable_how::FILE_SYNC).await;
    assert_eq!(read_all(c, &mid).await, mid_data);

    if big {
        // 20 MiB in 1 MiB UNSTABLE writes, then one COMMIT.
        let f = create(c, &abc, "big").await;
        write(c, &f, 0, &pattern(20 * MIB, seed + 1), stable_how::UNSTABLE).await;
        commit(c, &f).await;
        assert_eq!(getattr(c, &f).await.size, 20 * MIB as u64);
        // Sparse: bytes at 0 and at 100 MiB, a hole between.
        let s = create(c, &root, "sparse").await;
        write(c, &s, 0, b"head", stable_how::FILE_SYNC).await;
        write(c, &s, 100 * MIB as u64, b"tail", stable_how::FILE_SYNC).await;
        assert_eq!(read_at(c, &s, 50 * MIB as u64, 4096).await, vec![0; 4096]);
    }

    // Hard links: four names in three directories, then one removed.
    let h = create(c, &a, "h").await;
    write(c, &h, 0, &pattern(10_000, seed + 2), stable_how::FILE_SYNC).await;
    link(c, &h, &ab, "h2").await;
    link(c, &h, &root, "h3").await;
    link(c, &h, &other, "h4").await;
    remove(c, &a, "h").await;
    assert_eq!(getattr(c, &h).await.nlink, 3);

    // Renames: within a directory, across, and over an existing file.
    let r = create(c, &a, "r1").await;
    write(c, &r, 0, b"renamed", stable_how::FILE_SYNC).await;
    rename(c, (&a, "r1"), (&a, "r2")).await;
    rename(c, (&a, "r2"), (&abc, "r3")).await;
    let victim = create(c, &other, "victim").await;
    write(c, &victim, 0, b"replaced", stable_how::FILE_SYNC).await;
    rename(c, (&abc, "r3"), (&other, "victim")).await;
    // A directory with content moved elsewhere.
    let moving = mkdir(c, &root, "moving").await;
    let inside = create(c, &moving, "inside").await;
    write(c, &inside, 0, b"moved along", stable_how::FILE_SYNC).await;
    rename(c, (&root, "moving"), (&other, "moved")).await;

    // Truncates: shrink, then extend past the old size: zeros between.
    let t = create(c, &other, "trunc").await;
    write(
        c,
        &t,
        0,
        &pattern(64 << 10, seed + 3),
        stable_how::FILE_SYNC,
    )
    .await;
    setattr(
        c,
        &t,
        sattr3 {
            size: Nfs3Option::Some(1000),
            ..Default::default()
        },
    )
    .await;
    let a_t = setattr(
        c,
        &t,
        sattr3 {
            size: Nfs3Option::Some(200_000),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(a_t.size, 200_000);
    let content = read_all(c, &t).await;
    assert_eq!(content[..1000], pattern(64 << 10, seed + 3)[..1000]);
    assert!(
        content[1000..].iter().all(|b| *b == 0),
        "bytes past a shrink are not zeros after extending"
    );

    // SETATTR of mode, owner, group and mtime.
    let s = create(c, &ab, "attrs").await;
    write(c, &s, 0, b"attributes", stable_how::FILE_SYNC).await;
    let when = nfstime3 {
        seconds: 1_234_567_890,
        nseconds: 123_456_789,
    };
    let got = setattr(
        c,
        &s,
        sattr3 {
            mode: Nfs3Option::Some(0o640),
            uid: Nfs3Option::Some(1234),
            gid: Nfs3Option::Some(567),
            mtime: set_mtime::SET_TO_CLIENT_TIME(when),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (got.mode & 0o7777, got.uid, got.gid, got.mtime),
        (0o640, 1234, 567, when)
    );
    setattr(
        c,
        &ab,
        sattr3 {
            mode: Nfs3Option::Some(0o700),
            ..Default::default()
        },
    )
    .await;

    // A symlink and a FIFO.
    must(
        "SYMLINK",
        c.symlink(&SYMLINK3args {
            where_: dirop(&root, "link"),
            symlink: symlinkdata3 {
                symlink_attributes: sattr3::default(),
                symlink_data: nfspath3(Opaque::borrowed(b"a/b/mid")),
            },
        }),
    )
    .await;
    must(
        "MKNOD fifo",
        c.mknod(&MKNOD3args {
            where_: dirop(&other, "fifo"),
            what: mknoddata3::NF3FIFO(sattr3 {
                mode: Nfs3Option::Some(0o600),
                ..Default::default()
            }),
        }),
    )
    .await;
}

/// Two paired sites; at `a`, vserver VS at `net`.11 with three file
/// systems and a user.
fn setup(net: &str) -> (TestSite, Daemon, TestSite, Daemon) {
    let (a, a_addr) = site("alpha", &format!("{net}.1"));
    let (b, b_addr) = site("beta", &format!("{net}.2"));
    let da = a.start_daemon();
    let db = b.start_daemon();
    pair_both(&a, &a_addr, &b, &b_addr);
    create_vserver_and_fs(&a, VS, &format!("{net}.11"), "data", "/data");
    create_fs(&a, VS, "home", "/home");
    create_fs(&a, VS, "proj", "/proj");
    let out = a.tandem(&[
        "user", "add", VS, "alice", "--uid", "1000", "--gid", "100", "--groups", "10,20",
    ]);
    assert_success(&out, "user add alice");
    (a, da, b, db)
}

/// Fills /data (big files too) through NFS at `a`.
fn populate_data(rt: &tokio::runtime::Runtime, a: &TestSite, net: &str) {
    rt.block_on(async {
        let mut c = mount_export(a, &format!("{net}.11"), "/data").await;
        populate(&mut c, 1, true).await;
    });
}

/// Data in two file systems, a new file system with data, a new user.
fn change_while_replicating(rt: &tokio::runtime::Runtime, a: &TestSite, net: &str) {
    let ip = format!("{net}.11");
    rt.block_on(async {
        let mut c = mount_export(a, &ip, "/home").await;
        populate(&mut c, 2, false).await;
    });
    create_fs(a, VS, "late", "/late");
    let out = a.tandem(&["user", "add", VS, "bob", "--uid", "2000", "--gid", "2000"]);
    assert_success(&out, "user add bob");
    rt.block_on(async {
        for (export, seed) in [("/proj", 3), ("/late", 4)] {
            let mut c = mount_export(a, &ip, export).await;
            populate(&mut c, seed, false).await;
        }
    });
}

/// Every export read through NFS at the active's address and at the
/// replica address (`net`.12) is the same tree; status shows the same
/// file systems and users.
fn assert_same_at_both(rt: &tokio::runtime::Runtime, a: &TestSite, b: &TestSite, net: &str) {
    for export in ["/data", "/home", "/proj", "/late"] {
        let (at_a, at_b) = rt.block_on(async {
            let mut ca = mount_export(a, &format!("{net}.11"), export).await;
            let mut cb = mount_export(b, &format!("{net}.12"), export).await;
            (snapshot(&mut ca).await, snapshot(&mut cb).await)
        });
        assert!(
            at_a.len() >= 19 && at_a.contains_key("other/moved/inside"),
            "{export}: the walk missed names: {:?}",
            at_a.keys().collect::<Vec<_>>()
        );
        assert_same_tree(&at_a, &at_b, export);
    }
    let (fss, users) = assert_same_config(a, b, VS);
    assert_eq!(
        (fss, users),
        (4, 2),
        "file systems and users at the active site"
    );
}

#[test]
fn replica_shows_the_same_names_handles_attributes_and_bytes() {
    const NET: &str = "127.79.21";
    let (a, da, b, db) = setup(NET);
    let rt = runtime();
    // Before replication starts: shipped from the journal's start.
    populate_data(&rt, &a, NET);
    replicate_to_beta(&a, VS, &format!("{NET}.12"));
    change_while_replicating(&rt, &a, NET);
    let logs = || format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    wait_converged_within(&a, &b, VS, CONVERGE, &logs);
    assert_same_at_both(&rt, &a, &b, NET);
    assert_verify_matches(&a, VS);
}

/// The same through a baseline: the journal no longer holds its start, so
/// the replica is filled by a fuzzy copy of the data files (holes skipped)
/// plus replay, while clients keep changing things.
#[test]
fn replica_filled_by_a_baseline_shows_the_same_tree() {
    const NET: &str = "127.79.23";
    let (a, da, b, db) = setup(NET);
    let rt = runtime();
    populate_data(&rt, &a, NET);
    assert!(da.stop().success(), "clean stop");
    drop_journal_segments(&a, VS);
    let da = a.start_daemon();
    replicate_to_beta(&a, VS, &format!("{NET}.12"));
    change_while_replicating(&rt, &a, NET);
    let logs = || format!("A:\n{}\nB:\n{}", da.log_text(), db.log_text());
    wait_converged_within(&a, &b, VS, CONVERGE, &logs);
    let v = vserver_status(&a, VS).expect("active");
    assert!(
        v["replication"]["baseline_total_bytes"].as_u64() > Some(0),
        "no baseline was taken: {v}"
    );
    assert_same_at_both(&rt, &a, &b, NET);
    assert_verify_matches(&a, VS);
}
