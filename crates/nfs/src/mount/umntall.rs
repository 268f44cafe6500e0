//! UMNTALL: forget every mount of the calling client.

use std::sync::Arc;

use super::{client_name, journal_mount_change};
use crate::dispatch::Call;
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call) -> ReplyStatus {
    let host = client_name(call);
    journal_mount_change(shared, move |store| store.mount_removed(&host, None)).await;
    ReplyStatus::Success(Vec::new())
}
