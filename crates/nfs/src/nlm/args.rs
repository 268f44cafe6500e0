//! NLM v4 argument and result types (the X/Open NLM specification, v4 for
//! NFSv3) with their bounded XDR decoding and their encoding.

use tandem_store::locks::{ByteRange, LockOwner, ShareMode, ShareOwner};

use crate::xdr::{XdrError, XdrReader};

/// LM_MAXSTRLEN: longest caller name.
pub(crate) const MAX_CALLER_NAME_BYTES: usize = 1024;
/// LM_MAXNAMELEN: longest host name in FREE_ALL.
pub(crate) const MAX_NOTIFY_NAME_BYTES: usize = 1025;
/// MAXNETOBJ_SZ: longest cookie, file handle or owner handle.
pub(crate) const MAX_NETOBJ_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stat {
    Granted = 0,
    Denied = 1,
    DeniedNoLocks = 2,
    Blocked = 3,
    DeniedGracePeriod = 4,
    StaleFh = 7,
    Failed = 9,
}

/// nlm4_lock: the lock a call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lock {
    pub(crate) caller_name: String,
    pub(crate) fh: Vec<u8>,
    pub(crate) oh: Vec<u8>,
    pub(crate) svid: u32,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl Lock {
    pub(crate) fn owner(&self) -> LockOwner {
        LockOwner {
            host: self.caller_name.clone(),
            svid: self.svid,
            oh: self.oh.clone(),
        }
    }

    pub(crate) fn range(&self) -> ByteRange {
        ByteRange::from_offset_len(self.offset, self.len)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LockArgs {
    pub(crate) cookie: Vec<u8>,
    pub(crate) block: bool,
    pub(crate) exclusive: bool,
    pub(crate) lock: Lock,
}

#[derive(Debug, Clone)]
pub(crate) struct TestArgs {
    pub(crate) cookie: Vec<u8>,
    pub(crate) exclusive: bool,
    pub(crate) lock: Lock,
}

#[derive(Debug, Clone)]
pub(crate) struct UnlockArgs {
    pub(crate) cookie: Vec<u8>,
    pub(crate) lock: Lock,
}

#[derive(Debug, Clone)]
pub(crate) struct ShareArgs {
    pub(crate) cookie: Vec<u8>,
    pub(crate) caller_name: String,
    pub(crate) fh: Vec<u8>,
    pub(crate) oh: Vec<u8>,
    pub(crate) mode: ShareMode,
}

impl ShareArgs {
    pub(crate) fn owner(&self) -> ShareOwner {
        ShareOwner {
            host: self.caller_name.clone(),
            oh: self.oh.clone(),
        }
    }
}

fn string(r: &mut XdrReader<'_>, max_bytes: usize) -> Result<String, XdrError> {
    let b = r.opaque(max_bytes)?;
    // Host names are ASCII in practice; anything else is kept readable.
    Ok(String::from_utf8_lossy(b).into_owned())
}

fn netobj(r: &mut XdrReader<'_>) -> Result<Vec<u8>, XdrError> {
    Ok(r.opaque(MAX_NETOBJ_BYTES)?.to_vec())
}

fn lock(r: &mut XdrReader<'_>) -> Result<Lock, XdrError> {
    Ok(Lock {
        caller_name: string(r, MAX_CALLER_NAME_BYTES)?,
        fh: netobj(r)?,
        oh: netobj(r)?,
        svid: r.u32()?,
        offset: r.u64()?,
        len: r.u64()?,
    })
}

/// nlm4_lockargs (LOCK, NM_LOCK); `reclaim` and `state` are read and not
/// used (no grace period).
pub(crate) fn lock_args(r: &mut XdrReader<'_>) -> Result<LockArgs, XdrError> {
    let cookie = netobj(r)?;
    let block = r.bool()?;
    let exclusive = r.bool()?;
    let lock = lock(r)?;
    let _reclaim = r.bool()?;
    let _state = r.u32()?;
    Ok(LockArgs {
        cookie,
        block,
        exclusive,
        lock,
    })
}

/// nlm4_cancargs: as lockargs without reclaim and state.
pub(crate) fn cancel_args(r: &mut XdrReader<'_>) -> Result<LockArgs, XdrError> {
    Ok(LockArgs {
        cookie: netobj(r)?,
        block: r.bool()?,
        exclusive: r.bool()?,
        lock: lock(r)?,
    })
}

pub(crate) fn test_args(r: &mut XdrReader<'_>) -> Result<TestArgs, XdrError> {
    Ok(TestArgs {
        cookie: netobj(r)?,
        exclusive: r.bool()?,
        lock: lock(r)?,
    })
}

pub(crate) fn unlock_args(r: &mut XdrReader<'_>) -> Result<UnlockArgs, XdrError> {
    Ok(UnlockArgs {
        cookie: netobj(r)?,
        lock: lock(r)?,
    })
}

/// nlm4_shareargs: fsh4_mode (deny) 0..=3, fsh4_access 0..=3.
pub(crate) fn share_args(r: &mut XdrReader<'_>) -> Result<ShareArgs, XdrError> {
    let cookie = netobj(r)?;
    let caller_name = string(r, MAX_CALLER_NAME_BYTES)?;
    let fh = netobj(r)?;
    let oh = netobj(r)?;
    let deny = small_enum(r)?;
    let access = small_enum(r)?;
    let _reclaim = r.bool()?;
    Ok(ShareArgs {
        cookie,
        caller_name,
        fh,
        oh,
        mode: ShareMode { access, deny },
    })
}

fn small_enum(r: &mut XdrReader<'_>) -> Result<u8, XdrError> {
    match r.u32()? {
        v @ 0..=3 => Ok(v as u8),
        other => Err(XdrError::BadDiscriminant(other)),
    }
}

/// nlm4_notify (FREE_ALL): host name and its NSM state.
pub(crate) fn notify_args(r: &mut XdrReader<'_>) -> Result<(String, u32), XdrError> {
    Ok((string(r, MAX_NOTIFY_NAME_BYTES)?, r.u32()?))
}

/// nlm4_res: cookie and status (GRANTED_RES and the replies to callbacks).
pub(crate) fn res(r: &mut XdrReader<'_>) -> Result<(Vec<u8>, u32), XdrError> {
    Ok((netobj(r)?, r.u32()?))
}

/// An XDR encoder for replies and callback arguments.
#[derive(Default)]
pub(crate) struct Out(pub(crate) Vec<u8>);

impl Out {
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn opaque(&mut self, b: &[u8]) -> &mut Self {
        // Every opaque we send came in bounded by a u32 length or is ours.
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self.0.resize(self.0.len() + (4 - b.len() % 4) % 4, 0);
        self
    }

    pub(crate) fn lock(&mut self, l: &Lock) -> &mut Self {
        self.opaque(l.caller_name.as_bytes())
            .opaque(&l.fh)
            .opaque(&l.oh)
            .u32(l.svid)
            .u64(l.offset)
            .u64(l.len)
    }
}

/// nlm4_res.
pub(crate) fn encode_res(cookie: &[u8], stat: Stat) -> Vec<u8> {
    let mut o = Out::default();
    o.opaque(cookie).u32(stat as u32);
    o.0
}

/// nlm4_shareres (sequence is always 0).
pub(crate) fn encode_share_res(cookie: &[u8], stat: Stat) -> Vec<u8> {
    let mut o = Out::default();
    o.opaque(cookie).u32(stat as u32).u32(0);
    o.0
}
