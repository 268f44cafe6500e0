//! The switchover pause over the wire: while paused, every procedure that
//! changes state answers NFS3ERR_JUKEBOX (with a body the client library
//! decodes, so its failure arm is well formed) and changes nothing; reads
//! and COMMIT go on; once resumed the same calls succeed.

use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_changes_get_jukebox_and_reads_go_on() {
    let srv = start().await;
    let gate = srv.svc.as_ref().unwrap().pause_gate();
    let mut c = mount(&srv, "/data", root()).await;
    let root = c.root_nfs_fh3();
    let made = c
        .create(&CREATE3args {
            where_: dirop(&root, "f"),
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(fh) = made.obj else {
        panic!("CREATE without a handle");
    };
    let lsn = srv.store.last_lsn();

    gate.pause();
    let write = |stable| WRITE3args {
        file: fh.clone(),
        offset: 0,
        count: 5,
        stable,
        data: Opaque::borrowed(b"hello"),
    };
    let jukebox = nfsstat3::NFS3ERR_JUKEBOX;
    assert_eq!(
        err_status(c.write(&write(stable_how::FILE_SYNC)).await.unwrap()),
        jukebox
    );
    let create = c
        .create(&CREATE3args {
            where_: dirop(&root, "g"),
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .unwrap();
    assert_eq!(err_status(create), jukebox);
    let rename = c
        .rename(&RENAME3args {
            from: dirop(&root, "f"),
            to: dirop(&root, "h"),
        })
        .await
        .unwrap();
    assert_eq!(err_status(rename), jukebox);
    let link = c
        .link(&LINK3args {
            file: fh.clone(),
            link: dirop(&root, "l"),
        })
        .await
        .unwrap();
    assert_eq!(err_status(link), jukebox);
    let rm = c
        .remove(&REMOVE3args {
            object: dirop(&root, "f"),
        })
        .await
        .unwrap();
    assert_eq!(err_status(rm), jukebox);
    // Reads and COMMIT are answered; nothing was written.
    c.getattr(&GETATTR3args { object: fh.clone() })
        .await
        .unwrap()
        .unwrap();
    c.commit(&COMMIT3args {
        file: fh.clone(),
        offset: 0,
        count: 0,
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(srv.store.last_lsn(), lsn);

    gate.resume();
    let w = c
        .write(&write(stable_how::FILE_SYNC))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.count, 5);
    assert!(srv.store.last_lsn() > lsn);
    srv.stop().await;
}
