//! NSM v1 (program 100024, the status monitor), one file per procedure.
//! Its job here is the server's side: a client host that restarted sends
//! SM_NOTIFY, and its locks are freed. Monitor registrations (SM_MON) are
//! kept in the store's lock state like the locks themselves.
//!
//! This vserver's own NSM state number is `2 * epoch + 1`: odd (NSM's
//! "up"), the same at every site holding the same copy, and changing when
//! a failover raises the epoch.

mod mon;
mod notify;
mod stat;
mod unmon;
mod unmon_all;

use std::sync::Arc;

use tandem_store::locks::MonitorId;

use crate::dispatch::Call;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;
use crate::xdr::{XdrError, XdrReader};

pub(crate) const PROGRAM: u32 = 100_024;
pub(crate) const VERSION: u32 = 1;
/// SM_MAXSTRLEN.
const MAX_NAME_BYTES: usize = 1024;
const STAT_SUCC: u32 = 0;
const STAT_FAIL: u32 = 1;

pub(crate) async fn dispatch(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    match call.proc_num {
        0 => ReplyStatus::Success(Vec::new()),
        1 => stat::call(shared, args).await,
        2 => mon::call(shared, args).await,
        3 => unmon::call(shared, args).await,
        4 => unmon_all::call(shared, args).await,
        6 => notify::call(shared, args).await,
        _ => ReplyStatus::ProcUnavail,
    }
}

fn our_state(shared: &Shared) -> u32 {
    (shared.store.epoch().wrapping_mul(2) as u32) | 1
}

fn name(r: &mut XdrReader<'_>) -> Result<String, XdrError> {
    Ok(String::from_utf8_lossy(r.opaque(MAX_NAME_BYTES)?).into_owned())
}

/// my_id: who is to be told.
fn my_id(r: &mut XdrReader<'_>) -> Result<MonitorId, XdrError> {
    Ok(MonitorId {
        my_name: name(r)?,
        prog: r.u32()?,
        vers: r.u32()?,
        proc_: r.u32()?,
    })
}

/// sm_stat_res: result and our state.
fn stat_res(ok: bool, state: u32) -> ReplyStatus {
    let res = if ok { STAT_SUCC } else { STAT_FAIL };
    let mut out = res.to_be_bytes().to_vec();
    out.extend_from_slice(&state.to_be_bytes());
    ReplyStatus::Success(out)
}

/// sm_stat: our state alone.
fn state_only(state: u32) -> ReplyStatus {
    ReplyStatus::Success(state.to_be_bytes().to_vec())
}
