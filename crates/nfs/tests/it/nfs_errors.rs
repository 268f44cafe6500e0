//! Error statuses: each one the client must be able to rely on.

use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;

fn mkdir_args<'a>(dir: &nfs_fh3, name: &'a str) -> MKDIR3args<'a> {
    MKDIR3args {
        where_: dirop(dir, name),
        attributes: sattr3::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noent_exist_notempty() {
    let srv = start().await;
    let mut c = mount(&srv, "/data", root()).await;
    let root = c.root_nfs_fh3();
    let missing = c
        .lookup(&LOOKUP3args {
            what: dirop(&root, "nope"),
        })
        .await
        .unwrap();
    assert_eq!(err_status(missing), nfsstat3::NFS3ERR_NOENT);

    c.mkdir(&mkdir_args(&root, "d")).await.unwrap().unwrap();
    assert_eq!(
        err_status(c.mkdir(&mkdir_args(&root, "d")).await.unwrap()),
        nfsstat3::NFS3ERR_EXIST
    );

    let d = c
        .lookup(&LOOKUP3args {
            what: dirop(&root, "d"),
        })
        .await
        .unwrap()
        .unwrap()
        .object;
    c.mkdir(&mkdir_args(&d, "inner")).await.unwrap().unwrap();
    let rm = c
        .rmdir(&RMDIR3args {
            object: dirop(&root, "d"),
        })
        .await
        .unwrap();
    assert_eq!(err_status(rm), nfsstat3::NFS3ERR_NOTEMPTY);

    let rm = c
        .remove(&REMOVE3args {
            object: dirop(&root, "nope"),
        })
        .await
        .unwrap();
    assert_eq!(err_status(rm), nfsstat3::NFS3ERR_NOENT);

    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_root_cannot_write_root_owned_dir() {
    let srv = start().await;
    let mut c = mount(&srv, "/data", auth_sys(1000, 1000)).await;
    let root = c.root_nfs_fh3();
    let res = c
        .create(&CREATE3args {
            where_: dirop(&root, "f"),
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .unwrap();
    assert_eq!(err_status(res), nfsstat3::NFS3ERR_ACCES);
    let acc = c
        .access(&ACCESS3args {
            object: root.clone(),
            access: ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_LOOKUP,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acc.access, ACCESS3_READ | ACCESS3_LOOKUP);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_squash_maps_root_to_anonymous() {
    let mut squashed = export("/sq");
    squashed.root_squash = true;
    let srv = start_with(vec![("data", export("/data")), ("sq", squashed)]).await;
    let mut c = mount(&srv, "/sq", root()).await;
    let root = c.root_nfs_fh3();
    let res = c.mkdir(&mkdir_args(&root, "d")).await.unwrap();
    assert_eq!(
        err_status(res),
        nfsstat3::NFS3ERR_ACCES,
        "squashed root cannot write a 0755 root dir"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_export_refuses_every_change() {
    let mut ro = export("/ro");
    ro.read_only = true;
    let srv = start_with(vec![("data", export("/data")), ("ro", ro)]).await;
    let mut c = mount(&srv, "/ro", root()).await;
    let root = c.root_nfs_fh3();
    assert_eq!(
        err_status(c.mkdir(&mkdir_args(&root, "d")).await.unwrap()),
        nfsstat3::NFS3ERR_ROFS
    );
    let create = c
        .create(&CREATE3args {
            where_: dirop(&root, "f"),
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .unwrap();
    assert_eq!(err_status(create), nfsstat3::NFS3ERR_ROFS);
    let setattr = c
        .setattr(&SETATTR3args {
            object: root.clone(),
            new_attributes: sattr3 {
                mode: Nfs3Option::Some(0o777),
                ..Default::default()
            },
            guard: Nfs3Option::None,
        })
        .await
        .unwrap();
    assert_eq!(err_status(setattr), nfsstat3::NFS3ERR_ROFS);
    let rm = c
        .remove(&REMOVE3args {
            object: dirop(&root, "x"),
        })
        .await
        .unwrap();
    assert_eq!(err_status(rm), nfsstat3::NFS3ERR_ROFS);
    // Reads still work and ACCESS grants no change rights.
    c.getattr(&GETATTR3args {
        object: root.clone(),
    })
    .await
    .unwrap()
    .unwrap();
    let acc = c
        .access(&ACCESS3args {
            object: root.clone(),
            access: 0x3f,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        acc.access & (ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE),
        0
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_file_handle_is_stale() {
    let srv = start().await;
    let mut c = mount(&srv, "/data", root()).await;
    let root = c.root_nfs_fh3();
    let res = c
        .create(&CREATE3args {
            where_: dirop(&root, "gone"),
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(fh) = res.obj else {
        panic!("no handle")
    };
    c.remove(&REMOVE3args {
        object: dirop(&root, "gone"),
    })
    .await
    .unwrap()
    .unwrap();
    let r = c
        .getattr(&GETATTR3args { object: fh.clone() })
        .await
        .unwrap();
    assert_eq!(err_status(r), nfsstat3::NFS3ERR_STALE);
    let r = c
        .read(&READ3args {
            file: fh,
            offset: 0,
            count: 10,
        })
        .await
        .unwrap();
    assert_eq!(err_status(r), nfsstat3::NFS3ERR_STALE);
    // A handle for a file system that does not exist is stale too.
    let r = c
        .getattr(&GETATTR3args {
            object: make_handle(9999, 1, 1),
        })
        .await
        .unwrap();
    assert_eq!(err_status(r), nfsstat3::NFS3ERR_STALE);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_too_long() {
    let srv = start().await;
    let mut c = mount(&srv, "/data", root()).await;
    let root = c.root_nfs_fh3();
    let long = "n".repeat(256);
    let r = c
        .create(&CREATE3args {
            where_: dirop(&root, &long),
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .unwrap();
    assert_eq!(err_status(r), nfsstat3::NFS3ERR_NAMETOOLONG);
    let r = c
        .lookup(&LOOKUP3args {
            what: dirop(&root, &long),
        })
        .await
        .unwrap();
    assert_eq!(err_status(r), nfsstat3::NFS3ERR_NAMETOOLONG);
    // 255 bytes is fine.
    let ok = "n".repeat(255);
    c.create(&CREATE3args {
        where_: dirop(&root, &ok),
        how: createhow3::UNCHECKED(sattr3::default()),
    })
    .await
    .unwrap()
    .unwrap();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_link_across_file_systems_is_xdev() {
    let srv = start_with(vec![("data", export("/data")), ("other", export("/other"))]).await;
    let mut a = mount(&srv, "/data", root()).await;
    let b = mount(&srv, "/other", root()).await;
    let (ra, rb) = (a.root_nfs_fh3(), b.root_nfs_fh3());
    let res = a
        .create(&CREATE3args {
            where_: dirop(&ra, "f"),
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(f) = res.obj else {
        panic!("no handle")
    };
    let r = a
        .rename(&RENAME3args {
            from: dirop(&ra, "f"),
            to: dirop(&rb, "f"),
        })
        .await
        .unwrap();
    assert_eq!(err_status(r), nfsstat3::NFS3ERR_XDEV);
    let r = a
        .link(&LINK3args {
            file: f,
            link: dirop(&rb, "l"),
        })
        .await
        .unwrap();
    assert_eq!(err_status(r), nfsstat3::NFS3ERR_XDEV);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_handles_are_badhandle() {
    let srv = start().await;
    let mut c = mount(&srv, "/data", root()).await;
    let root = c.root_nfs_fh3();
    let short = nfs_fh3 {
        data: Opaque::owned(root.data[..31].to_vec()),
    };
    let r = c.getattr(&GETATTR3args { object: short }).await.unwrap();
    assert_eq!(err_status(r), nfsstat3::NFS3ERR_BADHANDLE);
    let mut flipped = root.data.to_vec();
    flipped[10] ^= 0xff;
    let r = c
        .getattr(&GETATTR3args {
            object: nfs_fh3 {
                data: Opaque::owned(flipped),
            },
        })
        .await
        .unwrap();
    assert_eq!(
        err_status(r),
        nfsstat3::NFS3ERR_BADHANDLE,
        "checksum mismatch"
    );
    let empty = nfs_fh3::default();
    let r = c
        .lookup(&LOOKUP3args {
            what: dirop(&empty, "x"),
        })
        .await
        .unwrap();
    assert_eq!(err_status(r), nfsstat3::NFS3ERR_BADHANDLE);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_outside_export_networks_is_refused() {
    let mut fenced = export("/fenced");
    fenced.clients = vec!["10.0.0.0/8".parse().unwrap()];
    let srv = start_with(vec![("data", export("/data")), ("fenced", fenced)]).await;
    let err = try_mount(&srv, "/fenced", root())
        .await
        .err()
        .expect("mount must fail");
    assert!(format!("{err:?}").contains("MNT3ERR_ACCES"), "{err:?}");
    // A handle obtained elsewhere does not help.
    let mut c = mount(&srv, "/data", root()).await;
    let fenced_root = srv.store.root_handle(srv.fsids[1]).unwrap();
    let fh = make_handle(fenced_root.fsid, fenced_root.ino, fenced_root.generation);
    let r = c.getattr(&GETATTR3args { object: fh }).await.unwrap();
    assert_eq!(err_status(r), nfsstat3::NFS3ERR_ACCES);
    srv.stop().await;
}
