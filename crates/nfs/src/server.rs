//! State shared by every connection of one vserver's service.

use std::sync::Arc;

use tandem_store::Store;

use crate::Endpoint;

pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) endpoints: Vec<Endpoint>,
    /// Largest WRITE accepted and advertised (wtmax): what fits in a record.
    pub(crate) max_write_bytes: u32,
    /// Switchover: changing calls answered JUKEBOX while set.
    pub(crate) pause: Arc<crate::pause::PauseGate>,
    /// Blocked locks, callbacks and the reply cache of NLM.
    pub(crate) nlm: crate::nlm::NlmState,
}
