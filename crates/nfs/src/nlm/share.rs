//! NLM4_SHARE: a DOS-style share reservation (access and deny modes).

use std::sync::Arc;

use tandem_store::locks::{ShareMode, ShareOutcome, ShareOwner};
use tandem_store::{Ino, Store, StoreError};

use super::args::{self, encode_share_res};
use super::{open_file, settle, stat_of, Stat};
use crate::dispatch::Call;
use crate::nfs3::common::{blocking, parse_args};
use crate::rpc::message::ReplyStatus;
use crate::server::Shared;

pub(super) async fn call(shared: &Arc<Shared>, call: &Call, args: &[u8]) -> ReplyStatus {
    run(shared, call, args, Stat::StaleFh, |s, ino, owner, mode| {
        s.share(ino, &owner, mode)
    })
    .await
}

/// SHARE and UNSHARE: decode, pause, open the file, change, wait for the
/// record; `on_stale` is the answer for a file that is gone.
pub(super) async fn run(
    shared: &Arc<Shared>,
    call: &Call,
    args: &[u8],
    on_stale: Stat,
    change: impl FnOnce(&Store, Ino, ShareOwner, ShareMode) -> Result<ShareOutcome, StoreError>
        + Send
        + 'static,
) -> ReplyStatus {
    let a = match parse_args(args, args::share_args) {
        Ok(a) => a,
        Err(status) => return status,
    };
    let stat = async {
        let Some(_passed) = shared.pause.enter() else {
            return Stat::DeniedGracePeriod;
        };
        let ino = match open_file(shared, call, &a.fh).await {
            Ok(ino) => ino,
            Err(Stat::StaleFh) => return on_stale,
            Err(stat) => return stat,
        };
        let (owner, mode) = (a.owner(), a.mode);
        match blocking(shared, move |s| change(s, ino, owner, mode)).await {
            Ok(Ok(ShareOutcome::Granted(lsn))) => settle(shared, lsn).await,
            Ok(Ok(ShareOutcome::Denied)) => Stat::Denied,
            Ok(Err(e)) => stat_of(&e),
            Err(_) => Stat::Failed,
        }
    }
    .await;
    ReplyStatus::Success(encode_share_res(&a.cookie, stat))
}
