//! NLM v4 and NSM v1 over raw RPC: conflicts, blocked locks granted by a
//! callback to a test client's lock manager, CANCEL, FREE_ALL, SM_NOTIFY,
//! the _MSG forms, retransmissions, limits and malformed arguments.

use std::time::{Duration, Instant};

use crate::common::*;
use tandem_store::locks::LockOwner;
use tandem_store::{CreateHow, Cred, OpCtx, SetAttr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const NLM: u32 = 100_021;
const NSM: u32 = 100_024;
const GRANTED: u32 = 0;
const DENIED: u32 = 1;
const DENIED_NOLOCKS: u32 = 2;
const BLOCKED: u32 = 3;
const STALE_FH: u32 = 7;
const GARBAGE_ARGS: u32 = 4;

#[derive(Default)]
struct X(Vec<u8>);

impl X {
    fn u32(mut self, v: u32) -> Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn opaque(mut self, b: &[u8]) -> Self {
        self.0.extend((b.len() as u32).to_be_bytes());
        self.0.extend(b);
        self.0.resize(self.0.len() + (4 - b.len() % 4) % 4, 0);
        self
    }
}

#[derive(Clone)]
struct L {
    host: &'static str,
    fh: Vec<u8>,
    svid: u32,
    offset: u64,
    len: u64,
}

impl L {
    fn oh(&self) -> Vec<u8> {
        format!("{}-{}", self.host, self.svid).into_bytes()
    }
    fn put(&self, x: X) -> X {
        x.opaque(self.host.as_bytes())
            .opaque(&self.fh)
            .opaque(&self.oh())
            .u32(self.svid)
            .u64(self.offset)
            .u64(self.len)
    }
    fn owner(&self) -> LockOwner {
        LockOwner {
            host: self.host.into(),
            svid: self.svid,
            oh: self.oh(),
        }
    }
}

fn lock_args(l: &L, block: bool, exclusive: bool) -> Vec<u8> {
    let x = X::default()
        .opaque(b"ck")
        .u32(block as u32)
        .u32(exclusive as u32);
    l.put(x).u32(0).u32(1).0
}

fn cancel_args(l: &L, exclusive: bool) -> Vec<u8> {
    let x = X::default().opaque(b"ck").u32(1).u32(exclusive as u32);
    l.put(x).0
}

fn test_args(l: &L, exclusive: bool) -> Vec<u8> {
    l.put(X::default().opaque(b"ck").u32(exclusive as u32)).0
}

fn unlock_args(l: &L) -> Vec<u8> {
    l.put(X::default().opaque(b"ck")).0
}

async fn call(srv: &Server, xid: u32, prog: u32, proc_num: u32, args: Vec<u8>) -> RawReply {
    let mut c = RawCall::new(xid, prog, if prog == NLM { 4 } else { 1 }, proc_num);
    c.args = args;
    raw_call(srv.ep.mount_port, &c).await
}

/// The nlm4_res status of a reply (cookie, then status).
fn nlm_stat(r: &RawReply) -> u32 {
    match r {
        RawReply::Accepted { stat: 0, rest, .. } => {
            let clen = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
            let at = 4 + clen.div_ceil(4) * 4;
            u32::from_be_bytes(rest[at..at + 4].try_into().unwrap())
        }
        other => panic!("not a successful reply: {other:?}"),
    }
}

async fn nlm(srv: &Server, xid: u32, proc_num: u32, args: Vec<u8>) -> u32 {
    nlm_stat(&call(srv, xid, NLM, proc_num, args).await)
}

/// A file "f" in the first file system, and its handle bytes.
fn new_file(srv: &Server, name: &[u8]) -> Vec<u8> {
    let fs = srv.store.fs_by_fsid(srv.fsids[0]).unwrap();
    let ctx = OpCtx::new(Cred::root());
    let attr = srv
        .store
        .create(
            &ctx,
            fs.root_ino,
            name,
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .unwrap()
        .value;
    make_handle(attr.fsid, attr.ino, attr.generation)
        .data
        .to_vec()
}

fn lk(host: &'static str, fh: &[u8], svid: u32, offset: u64, len: u64) -> L {
    L {
        host,
        fh: fh.to_vec(),
        svid,
        offset,
        len,
    }
}

/// A client's portmapper and lock manager in one listener: GETPORT
/// answers its own port, every NLM call is reported (procedure and
/// arguments) and answered with nlm4_res GRANTED.
async fn client_lock_manager() -> (u16, mpsc::Receiver<(u32, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut h = [0u8; 4];
                if s.read_exact(&mut h).await.is_err() {
                    return;
                }
                let mut body = vec![0u8; (u32::from_be_bytes(h) & 0x7fff_ffff) as usize];
                s.read_exact(&mut body).await.unwrap();
                let w = |i: usize| u32::from_be_bytes(body[i * 4..i * 4 + 4].try_into().unwrap());
                let (xid, prog, proc_num) = (w(0), w(3), w(5));
                let args = body[40..].to_vec();
                let result = if prog == 100_000 {
                    X::default().u32(u32::from(port)).0
                } else {
                    tx.send((proc_num, args)).await.ok();
                    X::default().opaque(b"cb").u32(GRANTED).0
                };
                let reply = X::default().u32(xid).u32(1).u32(0).u32(0).u32(0).u32(0);
                let mut reply = reply.0;
                reply.extend(result);
                let mut rec = (reply.len() as u32 | 0x8000_0000).to_be_bytes().to_vec();
                rec.extend(reply);
                s.write_all(&rec).await.ok();
            });
        }
    });
    (port, rx)
}

async fn start_with_callbacks(port: u16, max_waiters_per_host: usize) -> Server {
    let mut cfg = test_config();
    cfg.nlm.callback_portmap_port = port;
    cfg.nlm.callback_timeout_ms = 5_000;
    cfg.nlm.callback_retry_delay_ms = 50;
    cfg.nlm.max_waiters_per_host = max_waiters_per_host;
    start_with_config(vec![("data", export("/data"))], cfg).await
}

async fn poll_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_denied_and_test_names_the_holder() {
    let srv = start().await;
    let fh = new_file(&srv, b"f");
    let a = lk("hosta", &fh, 1, 0, 10);
    let b = lk("hostb", &fh, 2, 5, 0);
    assert_eq!(nlm(&srv, 1, 2, lock_args(&a, false, true)).await, GRANTED);
    assert_eq!(nlm(&srv, 2, 2, lock_args(&b, false, false)).await, DENIED);
    let r = call(&srv, 3, NLM, 1, test_args(&b, false)).await;
    assert_eq!(nlm_stat(&r), DENIED);
    let RawReply::Accepted { rest, .. } = r else {
        unreachable!()
    };
    // cookie (4 + 4), stat, exclusive, svid, oh ("hosta-1": 4 + 8), offset, len
    let holder = &rest[12..];
    assert_eq!(&holder[0..4], &1u32.to_be_bytes(), "exclusive");
    assert_eq!(&holder[4..8], &1u32.to_be_bytes(), "svid");
    assert_eq!(&holder[8..20], &X::default().opaque(b"hosta-1").0[..], "oh");
    assert_eq!(&holder[20..28], &0u64.to_be_bytes(), "offset");
    assert_eq!(&holder[28..36], &10u64.to_be_bytes(), "length");
    // Shared locks share; the holder itself may upgrade and split.
    let c = lk("hostc", &fh, 3, 20, 5);
    assert_eq!(nlm(&srv, 4, 2, lock_args(&c, false, false)).await, GRANTED);
    assert_eq!(nlm(&srv, 5, 2, lock_args(&b, false, false)).await, DENIED);
    assert_eq!(nlm(&srv, 6, 4, unlock_args(&a)).await, GRANTED);
    assert_eq!(nlm(&srv, 7, 2, lock_args(&b, false, false)).await, GRANTED);
    assert_eq!(nlm(&srv, 8, 1, test_args(&a, true)).await, DENIED);
    assert_eq!(nlm(&srv, 9, 1, test_args(&a, false)).await, GRANTED);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_lock_is_granted_by_callback_after_unlock() {
    let (port, mut calls) = client_lock_manager().await;
    let srv = start_with_callbacks(port, 16).await;
    let fh = new_file(&srv, b"f");
    let a = lk("hosta", &fh, 1, 0, 0);
    let b = lk("hostb", &fh, 7, 100, 50);
    assert_eq!(nlm(&srv, 1, 2, lock_args(&a, false, true)).await, GRANTED);
    assert_eq!(nlm(&srv, 2, 2, lock_args(&b, true, true)).await, BLOCKED);
    // A retransmission of the blocked request is queued once.
    assert_eq!(nlm(&srv, 3, 2, lock_args(&b, true, true)).await, BLOCKED);
    assert_eq!(nlm(&srv, 4, 4, unlock_args(&a)).await, GRANTED);
    let (proc_num, args) = tokio::time::timeout(Duration::from_secs(20), calls.recv())
        .await
        .expect("a GRANTED callback")
        .unwrap();
    assert_eq!(proc_num, 5, "NLM4_GRANTED");
    // testargs: cookie (8 bytes here), exclusive, then the lock as asked.
    let lock = &args[16..];
    assert_eq!(&lock[0..4], &5u32.to_be_bytes());
    assert_eq!(&lock[4..9], b"hostb");
    let store = srv.store.clone();
    poll_until("b holding its lock", || {
        store.with_lock_state(|s| s.host_lock_count("hostb") == 1)
    })
    .await;
    assert_eq!(nlm(&srv, 5, 2, lock_args(&a, false, true)).await, DENIED);
    assert!(calls.try_recv().is_err(), "one callback only");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_withdraws_a_blocked_lock() {
    let (port, mut calls) = client_lock_manager().await;
    let srv = start_with_callbacks(port, 1).await;
    let fh = new_file(&srv, b"f");
    let a = lk("hosta", &fh, 1, 0, 0);
    let b = lk("hostb", &fh, 2, 0, 1);
    let b2 = lk("hostb", &fh, 3, 0, 1);
    assert_eq!(nlm(&srv, 1, 2, lock_args(&a, false, true)).await, GRANTED);
    assert_eq!(nlm(&srv, 2, 2, lock_args(&b, true, true)).await, BLOCKED);
    // The host's waiter limit (1 here) refuses another.
    assert_eq!(
        nlm(&srv, 3, 2, lock_args(&b2, true, true)).await,
        DENIED_NOLOCKS
    );
    assert_eq!(nlm(&srv, 4, 3, cancel_args(&b, true)).await, GRANTED);
    assert_eq!(nlm(&srv, 5, 3, cancel_args(&b, true)).await, DENIED);
    assert_eq!(nlm(&srv, 6, 4, unlock_args(&a)).await, GRANTED);
    // Nobody holds anything: a third host gets the whole file at once.
    let c = lk("hostc", &fh, 1, 0, 0);
    assert_eq!(nlm(&srv, 7, 2, lock_args(&c, false, true)).await, GRANTED);
    assert_eq!(srv.store.lock_state().host_lock_count("hostb"), 0);
    assert!(calls.try_recv().is_err());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_all_and_sm_notify_release_a_host() {
    let srv = start().await;
    let fh = new_file(&srv, b"f");
    let a = lk("hosta", &fh, 1, 0, 0);
    let b = lk("hostb", &fh, 1, 0, 0);
    assert_eq!(nlm(&srv, 1, 2, lock_args(&a, false, true)).await, GRANTED);
    let free = X::default().opaque(b"hosta").u32(3).0;
    let r = call(&srv, 2, NLM, 23, free).await;
    assert_eq!(r.accept_stat(), Some(0));
    assert_eq!(nlm(&srv, 3, 2, lock_args(&b, false, true)).await, GRANTED);

    // NSM: SM_STAT answers an odd state; SM_MON registers; SM_NOTIFY from
    // the rebooted hostb frees its lock.
    let r = call(&srv, 4, NSM, 1, X::default().opaque(b"x").0).await;
    let RawReply::Accepted { stat: 0, rest, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(&rest[0..4], &0u32.to_be_bytes());
    assert_eq!(u32::from_be_bytes(rest[4..8].try_into().unwrap()) % 2, 1);
    let mon = X::default()
        .opaque(b"hostb")
        .opaque(b"server")
        .u32(NLM)
        .u32(4)
        .u32(16)
        .0;
    let mut with_priv = mon.clone();
    with_priv.extend([9u8; 16]);
    let r = call(&srv, 5, NSM, 2, with_priv).await;
    let RawReply::Accepted { stat: 0, rest, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(&rest[0..4], &0u32.to_be_bytes(), "STAT_SUCC");
    assert_eq!(srv.store.lock_state().monitored()["hostb"].regs.len(), 1);
    let notify = X::default().opaque(b"hostb").u32(7).0;
    assert_eq!(call(&srv, 6, NSM, 6, notify).await.accept_stat(), Some(0));
    let st = srv.store.lock_state();
    assert_eq!(st.host_lock_count("hostb"), 0);
    assert_eq!(st.monitored()["hostb"].state, 7);
    assert_eq!(call(&srv, 7, NSM, 3, mon).await.accept_stat(), Some(0));
    assert!(srv.store.lock_state().monitored().is_empty(), "SM_UNMON");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_forms_answer_by_calling_the_client_back() {
    let (port, mut calls) = client_lock_manager().await;
    let srv = start_with_callbacks(port, 16).await;
    let fh = new_file(&srv, b"f");
    let a = lk("hosta", &fh, 1, 0, 10);
    let r = call(&srv, 1, NLM, 7, lock_args(&a, false, true)).await;
    assert_eq!(r.accept_stat(), Some(0));
    let (proc_num, args) = tokio::time::timeout(Duration::from_secs(20), calls.recv())
        .await
        .expect("a LOCK_RES callback")
        .unwrap();
    assert_eq!(proc_num, 12, "NLM4_LOCK_RES");
    assert_eq!(&args[0..8], &X::default().opaque(b"ck").0[..]);
    assert_eq!(&args[8..12], &GRANTED.to_be_bytes());
    assert_eq!(srv.store.lock_state().host_lock_count("hosta"), 1);
    srv.stop().await;
}

/// A LOCK resent after the client's UNLOCK gets the first reply and does
/// not take the lock again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_lock_gets_the_original_reply() {
    let srv = start().await;
    let fh = new_file(&srv, b"f");
    let a = lk("hosta", &fh, 1, 0, 10);
    let first = call(&srv, 77, NLM, 2, lock_args(&a, false, true)).await;
    assert_eq!(nlm_stat(&first), GRANTED);
    assert_eq!(nlm(&srv, 78, 4, unlock_args(&a)).await, GRANTED);
    let again = call(&srv, 77, NLM, 2, lock_args(&a, false, true)).await;
    assert_eq!(again, first);
    assert_eq!(srv.store.lock_state().lock_count(), 0);
    let owner = a.owner();
    assert!(srv.store.lock_state().locks().all(|(_, o, _)| *o != owner));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_arguments_get_clean_errors() {
    let srv = start().await;
    let fh = new_file(&srv, b"f");
    let a = lk("hosta", &fh, 1, 0, 10);
    for proc_num in [1, 2, 3, 4, 15, 20, 21, 22, 23] {
        let r = call(&srv, proc_num, NLM, proc_num, vec![0, 0, 0]).await;
        assert_eq!(r.accept_stat(), Some(GARBAGE_ARGS), "NLM proc {proc_num}");
    }
    for proc_num in [1, 2, 3, 4, 6] {
        let r = call(&srv, proc_num, NSM, proc_num, vec![0, 0, 0, 9]).await;
        assert_eq!(r.accept_stat(), Some(GARBAGE_ARGS), "NSM proc {proc_num}");
    }
    // A caller name past LM_MAXSTRLEN.
    let long = X::default()
        .opaque(b"ck")
        .u32(0)
        .u32(1)
        .opaque(&[b'h'; 1025])
        .0;
    let r = call(&srv, 30, NLM, 2, long).await;
    assert_eq!(r.accept_stat(), Some(GARBAGE_ARGS));
    // A bad boolean.
    let mut bad_bool = lock_args(&a, false, true);
    bad_bool[8..12].copy_from_slice(&2u32.to_be_bytes());
    assert_eq!(
        call(&srv, 31, NLM, 2, bad_bool).await.accept_stat(),
        Some(GARBAGE_ARGS)
    );
    // A share mode out of range.
    let share = X::default()
        .opaque(b"ck")
        .opaque(b"hosta")
        .opaque(&fh)
        .opaque(b"oh")
        .u32(7)
        .u32(1)
        .u32(0)
        .0;
    assert_eq!(
        call(&srv, 32, NLM, 20, share).await.accept_stat(),
        Some(GARBAGE_ARGS)
    );
    // A handle that is not ours, one whose file is gone.
    let alien = lk("hosta", b"not a handle", 1, 0, 1);
    assert_eq!(
        nlm(&srv, 33, 2, lock_args(&alien, false, true)).await,
        STALE_FH
    );
    let gone = lk("hosta", &make_handle(srv.fsids[0], 9999, 1).data, 1, 0, 1);
    assert_eq!(nlm(&srv, 34, 1, test_args(&gone, true)).await, STALE_FH);
    assert_eq!(nlm(&srv, 35, 4, unlock_args(&gone)).await, GRANTED);
    // Unknown procedure, wrong version.
    assert_eq!(call(&srv, 36, NLM, 99, vec![]).await.accept_stat(), Some(3));
    let mut v3 = RawCall::new(37, NLM, 3, 0);
    v3.args = vec![];
    assert_eq!(
        raw_call(srv.ep.mount_port, &v3).await.accept_stat(),
        Some(2)
    );
    // Nothing was locked by any of it.
    assert_eq!(srv.store.lock_state().lock_count(), 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_and_portmap() {
    let srv = start().await;
    let fh = new_file(&srv, b"f");
    let share = |host: &[u8], deny: u32, access: u32| {
        X::default()
            .opaque(b"ck")
            .opaque(host)
            .opaque(&fh)
            .opaque(b"oh")
            .u32(deny)
            .u32(access)
            .u32(0)
            .0
    };
    assert_eq!(nlm(&srv, 1, 20, share(b"hosta", 2, 3)).await, GRANTED);
    assert_eq!(nlm(&srv, 2, 20, share(b"hostb", 0, 2)).await, DENIED);
    assert_eq!(nlm(&srv, 3, 21, share(b"hosta", 2, 3)).await, GRANTED);
    assert_eq!(nlm(&srv, 4, 20, share(b"hostb", 0, 2)).await, GRANTED);

    let port = srv.ep.portmap_port.unwrap();
    for prog_vers in [(NLM, 4), (NSM, 1)] {
        let mut c = RawCall::new(5, 100_000, 2, 3);
        c.args = X::default()
            .u32(prog_vers.0)
            .u32(prog_vers.1)
            .u32(6)
            .u32(0)
            .0;
        let RawReply::Accepted { stat: 0, rest, .. } = raw_call(port, &c).await else {
            panic!("GETPORT failed")
        };
        assert_eq!(rest, u32::from(srv.ep.mount_port).to_be_bytes());
    }
    srv.stop().await;
}

/// A granted waiter whose client's lock manager cannot be reached is
/// released after the bounded attempts, and the next waiter gets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_nobody_takes_is_released() {
    // A port with nothing listening: every callback attempt fails at once.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let srv = start_with_callbacks(port, 16).await;
    let fh = new_file(&srv, b"f");
    let a = lk("hosta", &fh, 1, 0, 0);
    let b = lk("hostb", &fh, 1, 0, 0);
    assert_eq!(nlm(&srv, 1, 2, lock_args(&a, false, true)).await, GRANTED);
    assert_eq!(nlm(&srv, 2, 2, lock_args(&b, true, true)).await, BLOCKED);
    // A waiter is memory only; from here the journal takes a's unlock, b's
    // grant and b's release, a record each at least. No locks right after
    // the unlock is not the end: b's grant may not have come yet.
    let before = srv.store.last_lsn();
    assert_eq!(nlm(&srv, 3, 4, unlock_args(&a)).await, GRANTED);
    let store = srv.store.clone();
    poll_until("b's unwanted lock released", || {
        store.last_lsn() >= before + 3 && store.with_lock_state(|s| s.lock_count() == 0)
    })
    .await;
    assert_eq!(nlm(&srv, 4, 2, lock_args(&a, false, true)).await, GRANTED);
    srv.stop().await;
}
