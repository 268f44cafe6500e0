//! MOUNT v3 and PORTMAP v2 procedures.

use crate::common::*;
use nfs3_client::nfs3_types::mount::{dirpath, PROGRAM as MOUNT_PROGRAM, VERSION as MOUNT_VERSION};
use nfs3_client::nfs3_types::nfs3::{PROGRAM as NFS_PROGRAM, VERSION as NFS_VERSION};
use nfs3_client::nfs3_types::portmap::{IPPROTO_TCP, IPPROTO_UDP, PROGRAM as PMAP_PROGRAM};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::TokioIo;
use nfs3_client::{MountClient, PortmapperClient};
use tokio::net::TcpStream;

async fn mount_client(srv: &Server) -> MountClient<TokioIo<TcpStream>> {
    let s = TcpStream::connect(("127.0.0.1", srv.ep.mount_port))
        .await
        .unwrap();
    MountClient::new_with_auth(TokioIo::new(s), root(), Default::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mnt_dump_umnt_umntall_export() {
    let mut fenced = export("/fenced");
    fenced.clients = vec![
        "10.0.0.0/8".parse().unwrap(),
        "192.168.1.0/24".parse().unwrap(),
    ];
    let srv = start_with(vec![("data", export("/data")), ("fenced", fenced)]).await;
    let mut m = mount_client(&srv).await;
    m.null().await.unwrap();

    let ok = m.mnt(dirpath(Opaque::borrowed(b"/data/"))).await.unwrap();
    assert_eq!(ok.fhandle.0.len(), 32);
    assert_eq!(ok.auth_flavors, vec![1], "AUTH_SYS");

    let missing = m
        .mnt(dirpath(Opaque::borrowed(b"/nothing")))
        .await
        .unwrap_err();
    assert!(
        format!("{missing:?}").contains("MNT3ERR_NOENT"),
        "{missing:?}"
    );
    let fenced = m
        .mnt(dirpath(Opaque::borrowed(b"/fenced")))
        .await
        .unwrap_err();
    assert!(
        format!("{fenced:?}").contains("MNT3ERR_ACCES"),
        "{fenced:?}"
    );

    let dump = m.dump().await.unwrap().into_inner();
    assert_eq!(dump.len(), 1);
    assert_eq!(dump[0].ml_hostname.0.as_ref(), b"127.0.0.1");
    assert_eq!(dump[0].ml_directory.0.as_ref(), b"/data");

    m.umnt(dirpath(Opaque::borrowed(b"/data"))).await.unwrap();
    assert!(m.dump().await.unwrap().is_empty());
    m.mnt(dirpath(Opaque::borrowed(b"/data"))).await.unwrap();
    m.umntall().await.unwrap();
    assert!(m.dump().await.unwrap().is_empty());

    let mut exports: Vec<(Vec<u8>, Vec<Vec<u8>>)> = m
        .export()
        .await
        .unwrap()
        .into_inner()
        .into_iter()
        .map(|e| {
            let groups = e
                .ex_groups
                .into_inner()
                .into_iter()
                .map(|g| g.0.to_vec())
                .collect();
            (e.ex_dir.0.to_vec(), groups)
        })
        .collect();
    exports.sort();
    assert_eq!(
        exports,
        vec![
            (b"/data".to_vec(), vec![]),
            (
                b"/fenced".to_vec(),
                vec![b"10.0.0.0/8".to_vec(), b"192.168.1.0/24".to_vec()]
            ),
        ]
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portmap_getport_and_dump_report_bound_ports() {
    let srv = start().await;
    let pmap_port = srv.ep.portmap_port.expect("portmap enabled");
    let s = TcpStream::connect(("127.0.0.1", pmap_port)).await.unwrap();
    let mut p = PortmapperClient::new(TokioIo::new(s));
    p.null().await.unwrap();
    assert_eq!(
        p.getport(NFS_PROGRAM, NFS_VERSION, IPPROTO_TCP)
            .await
            .unwrap(),
        srv.ep.nfs_port
    );
    assert_eq!(
        p.getport(MOUNT_PROGRAM, MOUNT_VERSION, IPPROTO_TCP)
            .await
            .unwrap(),
        srv.ep.mount_port
    );
    assert!(
        p.getport(NFS_PROGRAM, NFS_VERSION, IPPROTO_UDP)
            .await
            .is_err(),
        "no UDP"
    );
    assert!(
        p.getport(NFS_PROGRAM, 4, IPPROTO_TCP).await.is_err(),
        "no NFSv4"
    );
    let dump = p.dump().await.unwrap();
    assert!(dump
        .iter()
        .any(|m| m.prog == NFS_PROGRAM && m.port == u32::from(srv.ep.nfs_port)));
    assert!(dump
        .iter()
        .any(|m| m.prog == PMAP_PROGRAM && m.port == u32::from(pmap_port)));

    // The whole connect path through the portmapper, as a real client does it.
    let c = nfs3_client::Nfs3ConnectionBuilder::new(
        nfs3_client::tokio::TokioConnector,
        "127.0.0.1",
        "/data",
    )
    .connect_from_privileged_port(false)
    .portmapper_port(pmap_port)
    .credential(root())
    .mount()
    .await
    .unwrap();
    assert_eq!(c.nfs3_port, srv.ep.nfs_port);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portmap_is_off_unless_configured() {
    let cfg = tandem_nfs::ServerConfig {
        nfs_port: 0,
        mount_port: 0,
        ..Default::default()
    };
    let srv = start_with_config(vec![("data", export("/data"))], cfg).await;
    assert_eq!(srv.ep.portmap_port, None);
    srv.stop().await;
}
