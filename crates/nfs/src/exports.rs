//! Export rules applied before any store call: which clients may use an
//! export and which identity their calls run as.

use std::net::IpAddr;

use tandem_store::{Cred, Export};

use crate::rpc::auth::AuthCred;

pub(crate) fn client_allowed(export: &Export, ip: IpAddr) -> bool {
    // A v4 client reaching a v6 socket shows up as ::ffff:a.b.c.d; rules are
    // written with plain v4 networks.
    let ip = ip.to_canonical();
    export.clients.is_empty() || export.clients.iter().any(|net| net.contains(&ip))
}

/// The identity the store checks permissions against.
pub(crate) fn map_cred(export: &Export, auth: &AuthCred) -> Cred {
    let anon = Cred {
        uid: export.anon_uid,
        gid: export.anon_gid,
        gids: Vec::new(),
    };
    match auth {
        AuthCred::None => anon,
        AuthCred::Sys(sys) if sys.uid == 0 && export.root_squash => anon,
        // Root squash covers group 0 too (as knfsd): a user claiming gid 0,
        // primary or supplementary, would otherwise reach root's group files.
        AuthCred::Sys(sys) if export.root_squash => Cred {
            uid: sys.uid,
            gid: squash_gid(sys.gid, export.anon_gid),
            gids: sys
                .gids
                .iter()
                .map(|&g| squash_gid(g, export.anon_gid))
                .collect(),
        },
        AuthCred::Sys(sys) => Cred {
            uid: sys.uid,
            gid: sys.gid,
            gids: sys.gids.clone(),
        },
    }
}

fn squash_gid(gid: u32, anon_gid: u32) -> u32 {
    if gid == 0 {
        anon_gid
    } else {
        gid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::auth::AuthSys;

    fn export(clients: &[&str], root_squash: bool) -> Export {
        Export {
            path: "/data".into(),
            clients: clients.iter().map(|c| c.parse().unwrap()).collect(),
            read_only: false,
            root_squash,
            anon_uid: 65534,
            anon_gid: 65533,
        }
    }

    fn sys(uid: u32) -> AuthCred {
        AuthCred::Sys(AuthSys {
            machine_name: b"h".to_vec(),
            uid,
            gid: 5,
            gids: vec![1, 2],
        })
    }

    #[test]
    fn clients_rules() {
        let ip = "127.0.0.5".parse().unwrap();
        assert!(client_allowed(&export(&[], false), ip));
        assert!(client_allowed(&export(&["127.0.0.0/8"], false), ip));
        assert!(!client_allowed(&export(&["10.0.0.0/8"], false), ip));
        let mapped: IpAddr = "::ffff:127.0.0.5".parse().unwrap();
        assert!(client_allowed(&export(&["127.0.0.0/8"], false), mapped));
    }

    #[test]
    fn squash_rules() {
        let squashed = map_cred(&export(&[], true), &sys(0));
        assert_eq!(
            (squashed.uid, squashed.gid, squashed.gids.len()),
            (65534, 65533, 0)
        );
        assert_eq!(map_cred(&export(&[], false), &sys(0)).uid, 0);
        assert_eq!(map_cred(&export(&[], true), &sys(7)).gids, vec![1, 2]);
        assert_eq!(map_cred(&export(&[], false), &AuthCred::None).uid, 65534);
        // Group 0 is squashed too, primary and supplementary, for any uid.
        let wheel = AuthCred::Sys(AuthSys {
            machine_name: b"h".to_vec(),
            uid: 7,
            gid: 0,
            gids: vec![0, 3],
        });
        let c = map_cred(&export(&[], true), &wheel);
        assert_eq!((c.uid, c.gid, c.gids), (7, 65533, vec![65533, 3]));
        let c = map_cred(&export(&[], false), &wheel);
        assert_eq!((c.gid, c.gids), (0, vec![0, 3]));
    }
}
