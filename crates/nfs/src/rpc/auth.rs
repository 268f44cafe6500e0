//! RPC credentials: AUTH_NONE and AUTH_SYS (RFC 5531 appendix A), parsed
//! with the limits the RFC states so a credential can never be large.

use crate::xdr::XdrReader;

pub(crate) const AUTH_NONE: u32 = 0;
pub(crate) const AUTH_SYS: u32 = 1;

/// RFC 5531: an opaque_auth body is at most 400 bytes.
pub(crate) const MAX_AUTH_BODY_BYTES: usize = 400;
pub(crate) const MAX_MACHINE_NAME_BYTES: usize = 255;
pub(crate) const MAX_AUTH_SYS_GIDS: usize = 16;

/// auth_stat values used in AUTH_ERROR replies.
pub(crate) const AUTH_BADCRED: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthCred {
    None,
    Sys(AuthSys),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthSys {
    pub(crate) machine_name: Vec<u8>,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) gids: Vec<u32>,
}

/// Returns the auth_stat to reject with when the credential is unusable.
pub(crate) fn parse_cred(flavor: u32, body: &[u8]) -> Result<AuthCred, u32> {
    match flavor {
        AUTH_NONE => Ok(AuthCred::None),
        AUTH_SYS => parse_auth_sys(body).map(AuthCred::Sys).ok_or(AUTH_BADCRED),
        _ => Err(AUTH_BADCRED),
    }
}

fn parse_auth_sys(body: &[u8]) -> Option<AuthSys> {
    let mut r = XdrReader::new(body);
    let _stamp = r.u32().ok()?;
    let machine_name = r.opaque(MAX_MACHINE_NAME_BYTES).ok()?.to_vec();
    let uid = r.u32().ok()?;
    let gid = r.u32().ok()?;
    let count = usize::try_from(r.u32().ok()?).ok()?;
    if count > MAX_AUTH_SYS_GIDS {
        return None;
    }
    let mut gids = Vec::with_capacity(count);
    for _ in 0..count {
        gids.push(r.u32().ok()?);
    }
    Some(AuthSys {
        machine_name,
        uid,
        gid,
        gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys_body(name_len: usize, gids: u32) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 7];
        v.extend((name_len as u32).to_be_bytes());
        v.extend(vec![b'h'; name_len]);
        v.extend(vec![0; (4 - name_len % 4) % 4]);
        v.extend(1000u32.to_be_bytes());
        v.extend(100u32.to_be_bytes());
        v.extend(gids.to_be_bytes());
        for g in 0..gids {
            v.extend(g.to_be_bytes());
        }
        v
    }

    #[test]
    fn auth_sys_within_limits() {
        let c = parse_cred(AUTH_SYS, &sys_body(5, 16)).unwrap();
        let AuthCred::Sys(s) = c else { panic!() };
        assert_eq!((s.uid, s.gid, s.gids.len()), (1000, 100, 16));
    }

    #[test]
    fn auth_sys_limits_enforced() {
        assert_eq!(parse_cred(AUTH_SYS, &sys_body(256, 0)), Err(AUTH_BADCRED));
        assert_eq!(parse_cred(AUTH_SYS, &sys_body(5, 17)), Err(AUTH_BADCRED));
        assert_eq!(parse_cred(AUTH_SYS, &[0, 0]), Err(AUTH_BADCRED));
        assert_eq!(parse_cred(6, &[]), Err(AUTH_BADCRED));
    }
}
