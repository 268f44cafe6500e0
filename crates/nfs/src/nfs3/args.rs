//! Decoders for the NFSv3 argument pieces, over the bounded reader.

use nfs3_types::nfs3::{nfstime3, NFS3_FHSIZE};
use tandem_store::SetAttr;

use super::convert::set_time;
use crate::xdr::{XdrError, XdrReader};

/// Names and paths are unbounded strings in RFC 1813; the record limit
/// bounds them here, and the length rules (NAMETOOLONG) apply afterwards
/// so the client gets a meaningful status instead of GARBAGE_ARGS.
const UNBOUNDED: usize = usize::MAX;

pub(super) fn fh<'a>(r: &mut XdrReader<'a>) -> Result<&'a [u8], XdrError> {
    r.opaque(NFS3_FHSIZE)
}

pub(super) fn name<'a>(r: &mut XdrReader<'a>) -> Result<&'a [u8], XdrError> {
    r.opaque(UNBOUNDED)
}

pub(super) fn path<'a>(r: &mut XdrReader<'a>) -> Result<&'a [u8], XdrError> {
    r.opaque(UNBOUNDED)
}

pub(super) struct DirOp {
    pub(super) dir: Vec<u8>,
    pub(super) name: Vec<u8>,
}

pub(super) fn dirop(r: &mut XdrReader<'_>) -> Result<DirOp, XdrError> {
    Ok(DirOp {
        dir: fh(r)?.to_vec(),
        name: name(r)?.to_vec(),
    })
}

pub(super) fn nfstime(r: &mut XdrReader<'_>) -> Result<nfstime3, XdrError> {
    Ok(nfstime3 {
        seconds: r.u32()?,
        nseconds: r.u32()?,
    })
}

fn opt_u32(r: &mut XdrReader<'_>) -> Result<Option<u32>, XdrError> {
    Ok(if r.bool()? { Some(r.u32()?) } else { None })
}

fn set_how(r: &mut XdrReader<'_>) -> Result<Option<tandem_store::SetTime>, XdrError> {
    match r.u32()? {
        0 => Ok(None),
        1 => Ok(set_time(1, None)),
        2 => Ok(set_time(2, Some(nfstime(r)?))),
        other => Err(XdrError::BadDiscriminant(other)),
    }
}

pub(super) fn sattr(r: &mut XdrReader<'_>) -> Result<SetAttr, XdrError> {
    Ok(SetAttr {
        mode: opt_u32(r)?,
        uid: opt_u32(r)?,
        gid: opt_u32(r)?,
        size: if r.bool()? { Some(r.u64()?) } else { None },
        atime: set_how(r)?,
        mtime: set_how(r)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sattr_decodes_all_fields() {
        let mut v = Vec::new();
        for x in [1u32, 0o644, 0, 1, 7, 1, 0, 5, 1, 2, 10, 20] {
            v.extend(x.to_be_bytes());
        }
        let s = sattr(&mut XdrReader::new(&v)).unwrap();
        assert_eq!(s.mode, Some(0o644));
        assert_eq!(s.uid, None);
        assert_eq!(s.gid, Some(7));
        assert_eq!(s.size, Some(5));
        assert_eq!(s.atime, Some(tandem_store::SetTime::ServerNow));
        assert!(
            matches!(s.mtime, Some(tandem_store::SetTime::Client(t)) if t.secs == 10 && t.nsecs == 20)
        );
    }

    #[test]
    fn oversized_handle_is_garbage() {
        let mut v = 65u32.to_be_bytes().to_vec();
        v.extend([0u8; 68]);
        assert!(fh(&mut XdrReader::new(&v)).is_err());
    }
}
