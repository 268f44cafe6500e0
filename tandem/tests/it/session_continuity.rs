//! Session continuity across `tandem failover` (kill -9 of the active site,
//! failover at the DR site, same address and ports on loopback):
//!
//! * CREATE, REMOVE, RENAME and LINK retransmitted by the same client (same
//!   xid and credentials, on a new connection, so from a new source port)
//!   get the reply of the original request from the duplicate-request
//!   cache that travelled in the journal, not EEXIST/ENOENT; the same
//!   requests under new xids do conflict, so the cache is what answered.
//! * The MOUNT list (DUMP) travelled too: the DR site lists the client;
//!   UMNT there takes it off. Before the failover, a MOUNT at the
//!   read-only replica writes nothing there.
//! * A client with UNSTABLE writes not yet committed sees the write
//!   verifier change at COMMIT, resends, and reads its bytes back.

use crate::common::drc::*;
use crate::common::failover::*;
use crate::common::nfs::*;
use crate::common::replication::*;
use nfs3_client::nfs3_types::mount::{dirpath, mountlist};
use nfs3_client::nfs3_types::nfs3::*;
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::MountClient;
use tokio::net::TcpStream;

async fn dump(ip: &str, mount_port: u16) -> Vec<(String, String)> {
    let mut m = MountClient::new(Tcp(connect_until_served(ip, mount_port).await));
    let list: mountlist = m.dump().await.expect("DUMP");
    list.into_inner()
        .into_iter()
        .map(|e| {
            (
                String::from_utf8_lossy(e.ml_hostname.0.as_ref()).into_owned(),
                String::from_utf8_lossy(e.ml_directory.0.as_ref()).into_owned(),
            )
        })
        .collect()
}

#[test]
fn a_session_carries_on_across_a_failover() {
    let s = failover_sites("127.87.1", true, true);
    let (ip, nfs_port, mount_port) = (s.vs_addr.clone(), s.a.nfs_port, s.a.mount_port);
    let rt = runtime();
    let unstable = pattern(50_000, 87);
    let (req, made, fh, old_verf, mounts_at_a) = rt.block_on(async {
        let mut c = mount(&s.a, &ip).await;
        let root = c.root_nfs_fh3();
        create_file(&mut c, "gone").await;
        create_file(&mut c, "old").await;
        let req = Requests { root };
        let mut raw = TcpStream::connect((ip.as_str(), nfs_port)).await.unwrap();
        let made = req.send(&mut raw).await;
        // UNSTABLE writes whose COMMIT never comes before the crash.
        let fh = create_file(&mut c, "unstable.bin").await;
        let verf = write_once(&mut c, &fh, 0, &unstable, stable_how::UNSTABLE)
            .await
            .verf;
        let mounts = dump(&ip, mount_port).await;
        (req, made, fh, verf, mounts)
    });
    assert!(
        mounts_at_a.iter().any(|(_, path)| path == "/data"),
        "DUMP at the active site: {mounts_at_a:?}"
    );
    // A MOUNT at the read-only replica writes nothing there; its DUMP is
    // the list replicated from the active site.
    wait_converged(&s.a, &s.b, "vs", &|| s.db.log_text());
    let lsn_at_b = || vserver_status(&s.b, "vs").unwrap()["last_lsn"].clone();
    let before = lsn_at_b();
    let replica_ip = "127.87.1.12";
    rt.block_on(async {
        mount(&s.b, replica_ip).await;
        assert_eq!(dump(replica_ip, mount_port).await, mounts_at_a);
    });
    assert_eq!(lsn_at_b(), before, "a MOUNT at the replica wrote a record");

    s.da.kill9();
    failover(&s.b, &["--yes"]);

    rt.block_on(async {
        // Retransmissions on a new connection (a new source port).
        let mut raw = connect_until_served(&ip, nfs_port).await;
        req.assert_retransmissions_answered(&mut raw, &made).await;

        // Nothing ran twice: the names are as the originals left them.
        let mut c = reconnect(&ip, nfs_port).await;
        for (name, there) in [
            ("made", true),
            ("made-link", true),
            ("new", true),
            ("old", false),
            ("gone", false),
        ] {
            let r = call(
                "LOOKUP",
                c.lookup(&LOOKUP3args {
                    what: dirop(&req.root, name),
                }),
            )
            .await;
            assert_eq!(r.is_ok(), there, "{name} after the retransmissions");
        }

        // The mount list came along; UMNT at the new active site works.
        assert_eq!(dump(&ip, mount_port).await, mounts_at_a);
        let mut m = MountClient::new(Tcp(connect_until_served(&ip, mount_port).await));
        m.umnt(dirpath(Opaque::borrowed(b"/data")))
            .await
            .expect("UMNT");
        assert!(dump(&ip, mount_port).await.is_empty());

        // The UNSTABLE writes: COMMIT shows a new verifier, so resend them.
        let commit = must("COMMIT", c.commit(&commit_args(&fh))).await;
        assert_ne!(commit.verf, old_verf, "a new write verifier after failover");
        let verf = write_once(&mut c, &fh, 0, &unstable, stable_how::UNSTABLE)
            .await
            .verf;
        let commit = must("COMMIT", c.commit(&commit_args(&fh))).await;
        assert_eq!(commit.verf, verf, "the resent writes are committed");
        assert_eq!(read_whole(&mut c, &fh).await, unstable);
    });
    drop(s.db);
}
