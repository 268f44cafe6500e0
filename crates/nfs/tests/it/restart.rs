//! File handles survive a restart of the service and of the store; the
//! write verifier does not ("The verifier changes").

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use tandem_nfs::VserverService;
use tandem_store::{Store, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_survive_restart_and_verifier_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("vs");
    let store = Store::init(&store_dir, "vs1", StoreOptions::default()).unwrap();
    store.create_fs("data", export("/data")).unwrap();
    let store = Arc::new(store);
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let svc = VserverService::start(store.clone(), vec![ip], test_config())
        .await
        .unwrap();
    let ep = svc.endpoints()[0];

    let connect = |nfs_port: u16, mount_port: u16| {
        nfs3_client::Nfs3ConnectionBuilder::new(
            nfs3_client::tokio::TokioConnector,
            "127.0.0.1",
            "/data",
        )
        .connect_from_privileged_port(false)
        .mount_port(mount_port)
        .nfs3_port(nfs_port)
        .credential(root())
        .mount()
    };
    let mut c = connect(ep.nfs_port, ep.mount_port).await.unwrap();
    let root_fh = c.root_nfs_fh3();
    let created = c
        .create(&CREATE3args {
            where_: dirop(&root_fh, "keep"),
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(fh) = created.obj else {
        panic!("no handle")
    };
    // A full-size (1 MiB) FILE_SYNC write fits the default record limit.
    let data = vec![7u8; 1 << 20];
    let w = c
        .write(&WRITE3args {
            file: fh.clone(),
            offset: 0,
            count: data.len() as u32,
            stable: stable_how::FILE_SYNC,
            data: Opaque::borrowed(&data),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.count as usize, data.len());
    let old_verf = w.verf;
    drop(c);
    svc.shutdown().await;
    store.close().unwrap();
    drop(store);

    let store = Arc::new(Store::open(&store_dir, StoreOptions::default()).unwrap());
    let svc = VserverService::start(store.clone(), vec![ip], test_config())
        .await
        .unwrap();
    let ep = svc.endpoints()[0];
    let mut c = connect(ep.nfs_port, ep.mount_port).await.unwrap();
    assert_eq!(
        c.root_nfs_fh3(),
        root_fh,
        "root handle is the same after restart"
    );
    let attr = c
        .getattr(&GETATTR3args { object: fh.clone() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attr.obj_attributes.size, 1 << 20);
    let r = c
        .read(&READ3args {
            file: fh.clone(),
            offset: 0,
            count: 1 << 20,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(r.data.as_ref() == data.as_slice());
    let commit = c
        .commit(&COMMIT3args {
            file: fh,
            offset: 0,
            count: 0,
        })
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        commit.verf, old_verf,
        "verifier changes at every store open"
    );
    svc.shutdown().await;
    store.close().unwrap();
}
