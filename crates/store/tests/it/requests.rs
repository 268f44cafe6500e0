//! Retransmitted requests (same client, same xid, same target) are answered
//! from what the journal says was done, not run twice; and that memory
//! survives restarts and checkpoints because it is part of the state.

use crate::common::*;
use tandem_store::*;

fn ctx(xid: u32) -> OpCtx {
    OpCtx {
        cred: Cred::root(),
        req: Some(ReqId {
            client: "127.0.0.9 client9".into(),
            xid,
        }),
    }
}

#[test]
fn retransmissions_get_the_original_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, StoreOptions::default());
    let root = fs.root_ino;
    let set = SetAttr::default();

    let first = store
        .create(&ctx(1), root, b"f", CreateHow::Guarded, &set)
        .unwrap();
    let lsn = store.last_lsn();
    let again = store
        .create(&ctx(1), root, b"f", CreateHow::Guarded, &set)
        .expect("a retransmitted GUARDED create succeeds as the original did");
    assert_eq!(again.value.ino, first.value.ino);
    assert_eq!(again.lsn, first.lsn);
    assert_eq!(store.last_lsn(), lsn, "nothing was journaled twice");
    // A new request (new xid) for the same name is a real conflict.
    assert!(matches!(
        store.create(&ctx(2), root, b"f", CreateHow::Guarded, &set),
        Err(StoreError::Exist)
    ));

    let d = store.mkdir(&ctx(3), root, b"d", &set).unwrap().value.ino;
    store.rename(&ctx(4), root, b"f", d, b"g").unwrap();
    store
        .rename(&ctx(4), root, b"f", d, b"g")
        .expect("retransmitted rename");
    store.link(&ctx(5), first.value.ino, root, b"h").unwrap();
    store
        .link(&ctx(5), first.value.ino, root, b"h")
        .expect("retransmitted link");
    store.remove(&ctx(6), d, b"g").unwrap();
    let lsn = store.last_lsn();

    // Survives an unclean restart (replay) ...
    drop(store);
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    store
        .remove(&ctx(6), d, b"g")
        .expect("retransmitted remove after restart");
    assert_eq!(store.last_lsn(), lsn);
    // ... and a checkpoint plus a clean restart.
    store.close().unwrap();
    drop(store);
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    let m = store
        .mkdir(&ctx(3), root, b"d", &set)
        .expect("retransmitted mkdir after checkpoint");
    assert_eq!(m.value.ino, d);
    // Same xid, different target: not a retransmission.
    assert!(matches!(
        store.remove(&ctx(6), root, b"nothing-here"),
        Err(StoreError::NoEnt)
    ));
    // Another client with the same xid is not confused with this one.
    let other = OpCtx {
        cred: Cred::root(),
        req: Some(ReqId {
            client: "127.0.0.10 client9".into(),
            xid: 3,
        }),
    };
    assert!(matches!(
        store.mkdir(&other, root, b"d", &set),
        Err(StoreError::Exist)
    ));
}

#[test]
fn the_request_log_is_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, StoreOptions::default());
    let n = tandem_store::requests::MAX_REMEMBERED_REQUESTS as u32 + 10;
    for xid in 0..n {
        let name = format!("f{xid}");
        store
            .create(
                &ctx(xid),
                fs.root_ino,
                name.as_bytes(),
                CreateHow::Guarded,
                &SetAttr::default(),
            )
            .unwrap();
    }
    let snap = store.snapshot();
    assert_eq!(
        snap.requests.len(),
        tandem_store::requests::MAX_REMEMBERED_REQUESTS
    );
    // The oldest is forgotten: its retransmission now really conflicts.
    assert!(matches!(
        store.create(
            &ctx(0),
            fs.root_ino,
            b"f0",
            CreateHow::Guarded,
            &SetAttr::default()
        ),
        Err(StoreError::Exist)
    ));
}
