//! Every NFSv3 procedure through a client nobody on the team wrote.

use std::collections::HashSet;

use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;

fn sattr_mode(mode: u32) -> sattr3 {
    sattr3 {
        mode: Nfs3Option::Some(mode),
        ..Default::default()
    }
}

async fn create_file(c: &mut Conn, dir: &nfs_fh3, name: &str) -> nfs_fh3 {
    let res = c
        .create(&CREATE3args {
            where_: dirop(dir, name),
            how: createhow3::UNCHECKED(sattr_mode(0o644)),
        })
        .await
        .unwrap()
        .unwrap();
    match res.obj {
        Nfs3Option::Some(fh) => fh,
        Nfs3Option::None => panic!("CREATE returned no handle"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_getattr_fsinfo_fsstat_pathconf_on_root() {
    let srv = start().await;
    let mut c = mount(&srv, "/data", root()).await;
    let root = c.root_nfs_fh3();
    assert_eq!(root.data.len(), 32);
    c.null().await.unwrap();

    let attr = c
        .getattr(&GETATTR3args {
            object: root.clone(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attr.obj_attributes.type_, ftype3::NF3DIR);
    assert_eq!(attr.obj_attributes.mode & 0o7777, 0o755);
    assert_eq!(attr.obj_attributes.fsid, srv.fsids[0]);

    let info = c
        .fsinfo(&FSINFO3args {
            fsroot: root.clone(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.rtmax, 1 << 20);
    assert_eq!(info.wtmax, 1 << 20);
    assert_eq!(info.dtpref, 64 * 1024);
    assert_eq!(
        info.time_delta,
        nfstime3 {
            seconds: 0,
            nseconds: 1
        }
    );
    assert_eq!(
        info.properties,
        FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME
    );

    let stat = c
        .fsstat(&FSSTAT3args {
            fsroot: root.clone(),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(stat.tbytes >= stat.fbytes);

    let pc = c
        .pathconf(&PATHCONF3args {
            object: root.clone(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pc.name_max, 255);
    assert!(pc.no_trunc && pc.chown_restricted && pc.case_preserving && !pc.case_insensitive);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_write_read_setattr_commit() {
    let srv = start().await;
    let mut c = mount(&srv, "/data", root()).await;
    let root = c.root_nfs_fh3();
    let fh = create_file(&mut c, &root, "f.txt").await;

    let looked = c
        .lookup(&LOOKUP3args {
            what: dirop(&root, "f.txt"),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(looked.object, fh);

    let mut verfs = HashSet::new();
    for (i, stable) in [
        stable_how::UNSTABLE,
        stable_how::DATA_SYNC,
        stable_how::FILE_SYNC,
    ]
    .into_iter()
    .enumerate()
    {
        let data = vec![b'a' + i as u8; 100];
        let w = c
            .write(&WRITE3args {
                file: fh.clone(),
                offset: (i * 100) as u64,
                count: 100,
                stable,
                data: Opaque::borrowed(&data),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(w.count, 100);
        if stable == stable_how::UNSTABLE {
            assert_eq!(w.committed, stable_how::UNSTABLE);
        } else {
            assert_eq!(w.committed, stable_how::FILE_SYNC);
            // Stable reply: the record must already be durable.
            assert_eq!(srv.store.durable_lsn(), srv.store.last_lsn());
        }
        assert!(w.file_wcc.before.is_some() && w.file_wcc.after.is_some());
        verfs.insert(w.verf.0);
    }
    let commit = c
        .commit(&COMMIT3args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        })
        .await
        .unwrap()
        .unwrap();
    verfs.insert(commit.verf.0);
    assert_eq!(verfs.len(), 1, "one verifier per store open");
    assert_eq!(commit.verf.0, srv.store.write_verifier());

    let r = c
        .read(&READ3args {
            file: fh.clone(),
            offset: 50,
            count: 1000,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.count, 250);
    assert!(r.eof);
    assert_eq!(&r.data[..50], &[b'a'; 50][..]);
    assert_eq!(&r.data[50..150], &[b'b'; 100][..]);

    // ACCESS as root on a 0644 file: read/modify/extend granted.
    let acc = c
        .access(&ACCESS3args {
            object: fh.clone(),
            access: ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acc.access, ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND);

    // SETATTR: truncate with a matching guard, then a stale guard.
    let ctime = c
        .getattr(&GETATTR3args { object: fh.clone() })
        .await
        .unwrap()
        .unwrap()
        .obj_attributes
        .ctime;
    let set = c
        .setattr(&SETATTR3args {
            object: fh.clone(),
            new_attributes: sattr3 {
                size: Nfs3Option::Some(10),
                mode: Nfs3Option::Some(0o600),
                ..Default::default()
            },
            guard: Nfs3Option::Some(ctime),
        })
        .await
        .unwrap()
        .unwrap();
    match set.obj_wcc.after {
        Nfs3Option::Some(a) => {
            assert_eq!(a.size, 10);
            assert_eq!(a.mode & 0o7777, 0o600);
        }
        Nfs3Option::None => panic!("no post-op attributes"),
    }
    let stale_guard = c
        .setattr(&SETATTR3args {
            object: fh.clone(),
            new_attributes: sattr3 {
                size: Nfs3Option::Some(5),
                ..Default::default()
            },
            guard: Nfs3Option::Some(nfstime3 {
                seconds: 1,
                nseconds: 0,
            }),
        })
        .await
        .unwrap();
    assert_eq!(err_status(stale_guard), nfsstat3::NFS3ERR_NOT_SYNC);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_guarded_and_exclusive() {
    let srv = start().await;
    let mut c = mount(&srv, "/data", root()).await;
    let root = c.root_nfs_fh3();
    let guarded = || CREATE3args {
        where_: dirop(&root, "g"),
        how: createhow3::GUARDED(sattr_mode(0o644)),
    };
    c.create(&guarded()).await.unwrap().unwrap();
    assert_eq!(
        err_status(c.create(&guarded()).await.unwrap()),
        nfsstat3::NFS3ERR_EXIST
    );

    let excl = |v: u8| CREATE3args {
        where_: dirop(&root, "x"),
        how: createhow3::EXCLUSIVE(createverf3([v; 8])),
    };
    let first = c.create(&excl(1)).await.unwrap().unwrap();
    let retry = c.create(&excl(1)).await.unwrap().unwrap();
    assert_eq!(
        first.obj, retry.obj,
        "a retransmitted exclusive create succeeds"
    );
    assert_eq!(
        err_status(c.create(&excl(2)).await.unwrap()),
        nfsstat3::NFS3ERR_EXIST
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_procedures() {
    let srv = start().await;
    let mut c = mount(&srv, "/data", root()).await;
    let root = c.root_nfs_fh3();

    let d = c
        .mkdir(&MKDIR3args {
            where_: dirop(&root, "d"),
            attributes: sattr_mode(0o755),
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(dfh) = d.obj else {
        panic!("no handle")
    };
    assert!(d.dir_wcc.before.is_some() && d.dir_wcc.after.is_some());

    let s = c
        .symlink(&SYMLINK3args {
            where_: dirop(&dfh, "ln"),
            symlink: symlinkdata3 {
                symlink_attributes: sattr3::default(),
                symlink_data: nfspath3::from(&b"../target"[..]),
            },
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(sfh) = s.obj else {
        panic!("no handle")
    };
    let rl = c
        .readlink(&READLINK3args { symlink: sfh })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rl.data.0.as_ref(), b"../target");

    for (name, what, ty) in [
        (
            "fifo",
            mknoddata3::NF3FIFO(sattr_mode(0o644)),
            ftype3::NF3FIFO,
        ),
        (
            "sock",
            mknoddata3::NF3SOCK(sattr_mode(0o644)),
            ftype3::NF3SOCK,
        ),
        (
            "chr",
            mknoddata3::NF3CHR(devicedata3 {
                dev_attributes: sattr_mode(0o600),
                spec: specdata3 {
                    specdata1: 1,
                    specdata2: 3,
                },
            }),
            ftype3::NF3CHR,
        ),
        (
            "blk",
            mknoddata3::NF3BLK(devicedata3 {
                dev_attributes: sattr_mode(0o600),
                spec: specdata3 {
                    specdata1: 8,
                    specdata2: 0,
                },
            }),
            ftype3::NF3BLK,
        ),
    ] {
        let m = c
            .mknod(&MKNOD3args {
                where_: dirop(&dfh, name),
                what,
            })
            .await
            .unwrap()
            .unwrap();
        let Nfs3Option::Some(a) = m.obj_attributes else {
            panic!("no attributes")
        };
        assert_eq!(a.type_, ty, "{name}");
        if ty == ftype3::NF3CHR {
            assert_eq!(
                a.rdev,
                specdata3 {
                    specdata1: 1,
                    specdata2: 3
                }
            );
        }
    }

    let f = create_file(&mut c, &dfh, "f").await;
    let l = c
        .link(&LINK3args {
            file: f.clone(),
            link: dirop(&root, "hard"),
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(la) = l.file_attributes else {
        panic!("no attributes")
    };
    assert_eq!(la.nlink, 2);

    c.rename(&RENAME3args {
        from: dirop(&dfh, "f"),
        to: dirop(&root, "moved"),
    })
    .await
    .unwrap()
    .unwrap();
    let moved = c
        .lookup(&LOOKUP3args {
            what: dirop(&root, "moved"),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.object, f, "rename keeps the handle");
    assert_eq!(
        err_status(
            c.lookup(&LOOKUP3args {
                what: dirop(&dfh, "f")
            })
            .await
            .unwrap()
        ),
        nfsstat3::NFS3ERR_NOENT
    );

    for name in ["ln", "fifo", "sock", "chr", "blk"] {
        c.remove(&REMOVE3args {
            object: dirop(&dfh, name),
        })
        .await
        .unwrap()
        .unwrap();
    }
    c.remove(&REMOVE3args {
        object: dirop(&root, "moved"),
    })
    .await
    .unwrap()
    .unwrap();
    c.remove(&REMOVE3args {
        object: dirop(&root, "hard"),
    })
    .await
    .unwrap()
    .unwrap();
    let rm = c
        .rmdir(&RMDIR3args {
            object: dirop(&root, "d"),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(rm.dir_wcc.after.is_some());
    // Every namespace change above replied only once durable.
    assert_eq!(srv.store.durable_lsn(), srv.store.last_lsn());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readdir_and_readdirplus_paginate() {
    let srv = start().await;
    let mut c = mount(&srv, "/data", root()).await;
    let root = c.root_nfs_fh3();
    let mut expected: HashSet<Vec<u8>> = HashSet::new();
    for i in 0..60 {
        let name = format!("file-{i:03}");
        create_file(&mut c, &root, &name).await;
        expected.insert(name.into_bytes());
    }

    // READDIR in small pages.
    let (mut cookie, mut seen, mut first) = (0u64, Vec::new(), true);
    loop {
        let r = c
            .readdir(&READDIR3args {
                dir: root.clone(),
                cookie,
                cookieverf: cookieverf3::default(),
                count: 512,
            })
            .await
            .unwrap()
            .unwrap();
        let entries = r.reply.entries.into_inner();
        if first {
            assert_eq!(entries[0].name.0.as_ref(), b".");
            assert_eq!(entries[0].cookie, 1);
            assert_eq!(entries[1].name.0.as_ref(), b"..");
            assert_eq!(entries[1].cookie, 2);
            first = false;
        }
        assert!(!entries.is_empty() || r.reply.eof);
        for e in &entries {
            seen.push(e.name.0.to_vec());
            cookie = e.cookie;
        }
        if r.reply.eof {
            break;
        }
        assert!(seen.len() < 1000, "READDIR never reached eof");
    }
    let names: HashSet<Vec<u8>> = seen
        .iter()
        .filter(|n| n.as_slice() != b"." && n.as_slice() != b"..")
        .cloned()
        .collect();
    assert_eq!(names, expected);
    assert_eq!(seen.len(), 62, "no entry twice");

    // READDIRPLUS: handles and attributes usable.
    let (mut cookie, mut count) = (0u64, 0usize);
    loop {
        let r = c
            .readdirplus(&READDIRPLUS3args {
                dir: root.clone(),
                cookie,
                cookieverf: cookieverf3::default(),
                dircount: 512,
                maxcount: 4096,
            })
            .await
            .unwrap()
            .unwrap();
        for e in r.reply.entries.into_inner() {
            count += 1;
            cookie = e.cookie;
            let (Nfs3Option::Some(fh), Nfs3Option::Some(attr)) = (e.name_handle, e.name_attributes)
            else {
                panic!("entry without handle or attributes")
            };
            assert_eq!(attr.fileid, e.fileid);
            if e.name.0.starts_with(b"file-") {
                let got = c
                    .getattr(&GETATTR3args { object: fh })
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got.obj_attributes.fileid, e.fileid);
            }
        }
        if r.reply.eof {
            break;
        }
    }
    assert_eq!(count, 62);

    // A count too small for a single entry.
    let small = c
        .readdir(&READDIR3args {
            dir: root.clone(),
            cookie: 0,
            cookieverf: cookieverf3::default(),
            count: 50,
        })
        .await
        .unwrap();
    assert_eq!(err_status(small), nfsstat3::NFS3ERR_TOOSMALL);
    srv.stop().await;
}
