use crate::rpc::message::ReplyStatus;

pub(super) fn call() -> ReplyStatus {
    ReplyStatus::Success(Vec::new())
}
