//! The network around a served address: adding it to a device (claim),
//! telling the segment it moved (announce), and asking whether another
//! host answers for it (probe).

pub mod addresses;
pub mod announce;
pub mod probe;
