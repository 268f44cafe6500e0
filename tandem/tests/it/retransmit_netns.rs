//! Retransmitted non-idempotent requests after a failover, on a real
//! (virtual) network: the namespaces of common/netns.rs, alpha in A
//! holding the vserver at 10.201.1.11/32@front, replicated in commit-sync
//! to beta in B. The client host sends CREATE, REMOVE, RENAME and LINK
//! raw with fixed xids (common/drc.rs); A is killed (`kill -9`) and cut
//! off; `failover` at B moves the address; the same client, from the same
//! host address on a new connection, retransmits them and gets the
//! original replies from the duplicate-request cache that travelled in
//! the journal, while the same requests under new xids conflict.
//!
//! Needs root and iproute2: skipped without them, failed in CI.

use std::sync::mpsc;

use crate::common::drc::*;
use crate::common::netns::*;
use crate::common::netns_sites::*;
use crate::common::nfs::*;
use crate::common::replication::*;
use crate::common::*;
use tokio::net::TcpStream;

#[test]
fn retransmissions_after_a_failover_get_the_original_replies() {
    let Some(s) = setup_routed() else {
        return;
    };
    s.net.wait_address(&s.net.a, VS_CIDR, true);
    let ports = (s.a.mount_port, s.a.nfs_port);
    let (sent_tx, sent) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let client = client_task(&s.net, move || async move {
        let mut c = mount_at(VS_IP, "/data", ports, DEADLINE).await;
        let root = c.root_nfs_fh3();
        create_file(&mut c, "gone").await;
        create_file(&mut c, "old").await;
        let req = Requests { root };
        let mut raw = TcpStream::connect((VS_IP, ports.1)).await.expect("connect");
        let made = req.send(&mut raw).await;
        sent_tx.send(()).expect("test waits");
        go_rx.recv_timeout(DEADLINE * 4).expect("failover done");
        let mut raw = connect_until_served(VS_IP, ports.1).await;
        req.assert_retransmissions_answered(&mut raw, &made).await;
        let mut c = reconnect(VS_IP, ports.1).await;
        for (name, there) in [
            ("made", true),
            ("made-link", true),
            ("new", true),
            ("old", false),
        ] {
            let r = call(
                "LOOKUP",
                c.lookup(&nfs3_client::nfs3_types::nfs3::LOOKUP3args {
                    what: dirop(&req.root, name),
                }),
            )
            .await;
            assert_eq!(r.is_ok(), there, "{name} after the retransmissions");
        }
    });
    sent.recv_timeout(DEADLINE * 2).expect("client sent");
    wait_converged(&s.a, &s.b, "vs", &|| s.logs());

    // A's host dies and leaves the network; B takes over.
    let Sites { net, da, b, db, .. } = s;
    da.kill9();
    net.ip_in(&net.a, &["link", "del", DEV]);
    assert_success(&b.tandem(&["failover", "vs", "--yes"]), "failover");
    net.wait_address(&net.b, VS_CIDR, true);
    go.send(()).expect("client waits");
    if let Err(panic) = client.join() {
        std::panic::resume_unwind(panic);
    }
    drop(db);
}
