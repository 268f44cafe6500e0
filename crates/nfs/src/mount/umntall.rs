//! UMNTALL: forget every mount of the calling client.

use super::{client_name, lock_table};
use crate::dispatch::Call;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) fn call(shared: &Shared, call: &Call) -> ReplyStatus {
    lock_table(shared).remove_host(&client_name(call));
    ReplyStatus::Success(Vec::new())
}
