//! Permission semantics with explicit credentials.

use crate::common::*;
use tandem_store::access::*;
use tandem_store::*;

const OWNER: u32 = 1000;
const GROUP: u32 = 100;

fn owner() -> Cred {
    user(OWNER, OWNER, &[GROUP])
}
fn member() -> Cred {
    user(2000, GROUP, &[])
}
fn supplementary() -> Cred {
    user(2001, 2001, &[7, GROUP])
}
fn other() -> Cred {
    user(3000, 3000, &[7])
}
fn root() -> Cred {
    Cred::root()
}
fn ctx(c: &Cred) -> OpCtx {
    OpCtx::new(c.clone())
}

struct Fx {
    _tmp: tempfile::TempDir,
    store: Store,
    fs: FsConfig,
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let (store, fs) = new_store(&tmp.path().join("s"), StoreOptions::default());
        // An open root for everyone, as /tmp without the sticky bit.
        store
            .setattr(&ctx(&root()), fs.root_ino, &mode(0o777), None)
            .unwrap();
        Fx {
            _tmp: tmp,
            store,
            fs,
        }
    }

    fn root_ino(&self) -> Ino {
        self.fs.root_ino
    }

    /// A node made by root, then given to OWNER:GROUP with `m`.
    fn owned(&self, name: &str, dir: bool, m: u32) -> Ino {
        let set = SetAttr {
            uid: Some(OWNER),
            gid: Some(GROUP),
            mode: Some(m),
            ..SetAttr::default()
        };
        let c = ctx(&root());
        let r = if dir {
            self.store.mkdir(&c, self.root_ino(), name.as_bytes(), &set)
        } else {
            self.store.create(
                &c,
                self.root_ino(),
                name.as_bytes(),
                CreateHow::Guarded,
                &set,
            )
        };
        let a = r.unwrap().value;
        assert_eq!((a.uid, a.gid, a.mode), (OWNER, GROUP, m));
        a.ino
    }

    fn new_file(&self, c: &Cred, dir: Ino, name: &str) -> Result<Attr> {
        self.store
            .create(
                &ctx(c),
                dir,
                name.as_bytes(),
                CreateHow::Guarded,
                &SetAttr::default(),
            )
            .map(|m| m.value)
    }
}

fn mode(m: u32) -> SetAttr {
    SetAttr {
        mode: Some(m),
        ..SetAttr::default()
    }
}

fn err<T: std::fmt::Debug>(r: Result<T>) -> &'static str {
    kind(&r.expect_err("expected an error"))
}

#[test]
fn file_read_write_by_owner_group_other() {
    let fx = Fx::new();
    let f = fx.owned("f", false, 0o640);
    fx.store.write(&ctx(&owner()), f, 0, b"data").unwrap();
    let s = &fx.store;
    // Group: read, not write.
    assert_eq!(s.read(&member(), f, 0, 10).unwrap().data, b"data");
    assert_eq!(err(s.write(&ctx(&member()), f, 0, b"x")), "Access");
    // Supplementary group counts as the group.
    assert_eq!(s.read(&supplementary(), f, 0, 10).unwrap().data, b"data");
    assert_eq!(err(s.write(&ctx(&supplementary()), f, 0, b"x")), "Access");
    // Others: nothing.
    assert_eq!(err(s.read(&other(), f, 0, 10)), "Access");
    assert_eq!(err(s.write(&ctx(&other()), f, 0, b"x")), "Access");
    let trunc = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(err(s.setattr(&ctx(&other()), f, &trunc, None)), "Access");
    // Others' bits when set.
    s.setattr(&ctx(&owner()), f, &mode(0o646), None).unwrap();
    s.write(&ctx(&other()), f, 4, b"!").unwrap();
    assert_eq!(err(s.write(&ctx(&member()), f, 0, b"x")), "Access");
    // The owner always reads and writes its file's data (NFS has no open).
    s.setattr(&ctx(&owner()), f, &mode(0o000), None).unwrap();
    assert_eq!(s.read(&owner(), f, 0, 10).unwrap().data, b"data!");
    s.write(&ctx(&owner()), f, 0, b"D").unwrap();
    // Root reads and writes anything.
    assert_eq!(s.read(&root(), f, 0, 10).unwrap().data, b"Data!");
    s.write(&ctx(&root()), f, 0, b"R").unwrap();
}

#[test]
fn directory_lookup_list_and_create() {
    let fx = Fx::new();
    let s = &fx.store;
    let d = fx.owned("d", true, 0o750);
    fx.new_file(&owner(), d, "inside").unwrap();
    // Group: search and list, not create.
    s.lookup(&member(), d, b"inside").unwrap();
    s.readdir(&member(), d, 0, 100).unwrap();
    assert_eq!(err(fx.new_file(&member(), d, "g")), "Access");
    assert_eq!(err(s.remove(&ctx(&member()), d, b"inside")), "Access");
    // Others: nothing.
    assert_eq!(err(s.lookup(&other(), d, b"inside")), "Access");
    assert_eq!(err(s.readdir(&other(), d, 0, 100)), "Access");
    // Owner bits apply to the owner even when the group's grant more.
    s.setattr(&ctx(&owner()), d, &mode(0o070), None).unwrap();
    assert_eq!(err(s.lookup(&owner(), d, b"inside")), "Access");
    assert_eq!(err(fx.new_file(&owner(), d, "o")), "Access");
    fx.new_file(&member(), d, "m").unwrap();
    // Search without read: lookup yes, listing no.
    s.setattr(&ctx(&owner()), d, &mode(0o711), None).unwrap();
    s.lookup(&other(), d, b"inside").unwrap();
    assert_eq!(err(s.readdir(&other(), d, 0, 100)), "Access");
    // Read without search: listing yes, lookup no.
    s.setattr(&ctx(&owner()), d, &mode(0o744), None).unwrap();
    assert_eq!(s.readdir(&other(), d, 0, 100).unwrap().entries.len(), 2);
    assert_eq!(err(s.lookup(&other(), d, b"inside")), "Access");
    // Root searches even a 000 directory.
    s.setattr(&ctx(&owner()), d, &mode(0o000), None).unwrap();
    s.lookup(&root(), d, b"inside").unwrap();
    fx.new_file(&root(), d, "r").unwrap();
}

#[test]
fn sticky_directory() {
    let fx = Fx::new();
    let s = &fx.store;
    let t = fx.owned("tmp", true, 0o1777);
    let a = user(2000, 2000, &[]);
    let b = user(2001, 2001, &[]);
    for name in ["a1", "a2", "a3", "a4"] {
        fx.new_file(&a, t, name).unwrap();
    }
    fx.new_file(&b, t, "b1").unwrap();
    // Another user may neither remove nor rename someone else's file ...
    assert_eq!(err(s.remove(&ctx(&b), t, b"a1")), "Access");
    assert_eq!(err(s.rename(&ctx(&b), t, b"a1", t, b"x")), "Access");
    // ... nor replace it by renaming over it.
    assert_eq!(err(s.rename(&ctx(&b), t, b"b1", t, b"a1")), "Access");
    // Moving it out of the sticky directory is refused too.
    assert_eq!(
        err(s.rename(&ctx(&b), t, b"a1", fx.root_ino(), b"stolen")),
        "Access"
    );
    s.lookup(&root(), t, b"a1").unwrap();
    // The file's owner may.
    s.rename(&ctx(&a), t, b"a1", t, b"a1-renamed").unwrap();
    s.remove(&ctx(&a), t, b"a1-renamed").unwrap();
    // The directory's owner may.
    s.remove(&ctx(&owner()), t, b"a2").unwrap();
    s.rename(&ctx(&owner()), t, b"a3", t, b"a3-renamed")
        .unwrap();
    // Root may.
    s.remove(&ctx(&root()), t, b"a3-renamed").unwrap();
    s.rename(&ctx(&root()), t, b"b1", t, b"a4").unwrap();
    // Without the sticky bit, write permission on the directory suffices.
    s.setattr(&ctx(&owner()), t, &mode(0o777), None).unwrap();
    s.remove(&ctx(&b), t, b"a4").unwrap();
}

#[test]
fn setgid_directory() {
    let fx = Fx::new();
    let s = &fx.store;
    let d = fx.owned("shared", true, 0o2777);
    let outsider = user(4000, 4000, &[]);
    // New files get the directory's group, not the creator's.
    let f = fx.new_file(&outsider, d, "f").unwrap();
    assert_eq!((f.uid, f.gid), (4000, GROUP));
    // New subdirectories get the group and the setgid bit.
    let sub = s
        .mkdir(&ctx(&outsider), d, b"sub", &mode(0o755))
        .unwrap()
        .value;
    assert_eq!(sub.gid, GROUP);
    assert_eq!(sub.mode, 0o2755);
    let subsub = s
        .mkdir(&ctx(&outsider), sub.ino, b"subsub", &SetAttr::default())
        .unwrap();
    assert_eq!(subsub.value.gid, GROUP);
    assert_ne!(subsub.value.mode & S_ISGID, 0);
    // A file asked setgid by someone outside its group loses the bit.
    let g = s
        .create(&ctx(&outsider), d, b"g", CreateHow::Guarded, &mode(0o2755))
        .unwrap()
        .value;
    assert_eq!(g.mode, 0o755);
    // A member of the group keeps it.
    let h = s
        .create(&ctx(&member()), d, b"h", CreateHow::Guarded, &mode(0o2755))
        .unwrap()
        .value;
    assert_eq!(h.mode, 0o2755);
    // Outside a setgid directory, the creator's group.
    let plain = fx.new_file(&outsider, fx.root_ino(), "plain").unwrap();
    assert_eq!(plain.gid, 4000);
}

#[test]
fn chmod_and_chown_rules() {
    let fx = Fx::new();
    let s = &fx.store;
    let f = fx.owned("f", false, 0o644);
    // chmod: the owner and root only.
    assert_eq!(
        err(s.setattr(&ctx(&member()), f, &mode(0o777), None)),
        "Perm"
    );
    assert_eq!(
        err(s.setattr(&ctx(&other()), f, &mode(0o777), None)),
        "Perm"
    );
    assert_eq!(
        s.setattr(&ctx(&owner()), f, &mode(0o600), None)
            .unwrap()
            .value
            .mode,
        0o600
    );
    assert_eq!(
        s.setattr(&ctx(&root()), f, &mode(0o4711), None)
            .unwrap()
            .value
            .mode,
        0o4711
    );
    // The owner outside the file's group cannot set setgid.
    let lonely = user(OWNER, OWNER, &[]);
    assert_eq!(
        s.setattr(&ctx(&lonely), f, &mode(0o2755), None)
            .unwrap()
            .value
            .mode,
        0o755
    );

    let chown = |uid: Option<u32>, gid: Option<u32>| SetAttr {
        uid,
        gid,
        ..SetAttr::default()
    };
    // chown to someone else: root only.
    assert_eq!(
        err(s.setattr(&ctx(&owner()), f, &chown(Some(2000), None), None)),
        "Perm"
    );
    assert_eq!(
        err(s.setattr(&ctx(&other()), f, &chown(Some(3000), None), None)),
        "Perm"
    );
    // "Changing" to the same owner is no change.
    s.setattr(&ctx(&owner()), f, &chown(Some(OWNER), None), None)
        .unwrap();
    // ... but only for the owner: as Linux's chown_ok and chgrp_ok, a
    // non-owner may not "change" the owner or group to the current ones,
    // and the refusal writes nothing.
    let lsn = s.last_lsn();
    assert_eq!(
        err(s.setattr(&ctx(&other()), f, &chown(Some(OWNER), None), None)),
        "Perm"
    );
    assert_eq!(
        err(s.setattr(&ctx(&member()), f, &chown(None, Some(GROUP)), None)),
        "Perm"
    );
    assert_eq!(s.last_lsn(), lsn);
    // chgrp by the owner to a group it is in: allowed.
    let a = s
        .setattr(&ctx(&owner()), f, &chown(None, Some(OWNER)), None)
        .unwrap()
        .value;
    assert_eq!(a.gid, OWNER);
    let a = s
        .setattr(&ctx(&owner()), f, &chown(None, Some(GROUP)), None)
        .unwrap()
        .value;
    assert_eq!(a.gid, GROUP);
    // ... to a group it is not in: refused; by a non-owner: refused.
    assert_eq!(
        err(s.setattr(&ctx(&owner()), f, &chown(None, Some(7)), None)),
        "Perm"
    );
    assert_eq!(
        err(s.setattr(&ctx(&supplementary()), f, &chown(None, Some(7)), None)),
        "Perm"
    );
    // Root gives the file away; set-id bits do not travel with it.
    s.setattr(&ctx(&root()), f, &mode(0o6755), None).unwrap();
    let a = s
        .setattr(&ctx(&root()), f, &chown(Some(2000), Some(2000)), None)
        .unwrap()
        .value;
    assert_eq!((a.uid, a.gid, a.mode), (2000, 2000, 0o755));
    // A non-root write drops setuid (and setgid with group exec).
    s.setattr(&ctx(&root()), f, &mode(0o6777), None).unwrap();
    let a = s.write(&ctx(&other()), f, 0, b"x").unwrap().value;
    assert_eq!(a.mode, 0o777);
    // Times: a client-chosen time needs ownership; "now" needs write access.
    let client_time = SetAttr {
        mtime: Some(SetTime::Client(Timestamp { secs: 5, nsecs: 0 })),
        ..SetAttr::default()
    };
    assert_eq!(
        err(s.setattr(&ctx(&other()), f, &client_time, None)),
        "Perm"
    );
    let now = SetAttr {
        mtime: Some(SetTime::ServerNow),
        ..SetAttr::default()
    };
    s.setattr(&ctx(&other()), f, &now, None).unwrap();
    s.setattr(&ctx(&root()), f, &mode(0o755), None).unwrap();
    assert_eq!(err(s.setattr(&ctx(&other()), f, &now, None)), "Access");
    // Device nodes are root's to make.
    let dev = NodeKind::Char { major: 1, minor: 3 };
    assert_eq!(
        err(s.mknod(
            &ctx(&owner()),
            fx.root_ino(),
            b"null",
            dev,
            &SetAttr::default()
        )),
        "Perm"
    );
    let n = s
        .mknod(
            &ctx(&root()),
            fx.root_ino(),
            b"null",
            dev,
            &SetAttr::default(),
        )
        .unwrap()
        .value;
    assert_eq!((n.ftype, n.rdev), (FileType::CharDevice, (1, 3)));
}

#[test]
fn access_bits() {
    let fx = Fx::new();
    let s = &fx.store;
    let all = READ | LOOKUP | MODIFY | EXTEND | DELETE | EXECUTE;
    let f = fx.owned("f", false, 0o640);
    let bits = |c: &Cred, ino: Ino, want: u32| s.access(c, ino, want).unwrap().0;
    assert_eq!(bits(&owner(), f, all), READ | MODIFY | EXTEND);
    assert_eq!(bits(&member(), f, all), READ);
    assert_eq!(bits(&supplementary(), f, all), READ);
    assert_eq!(bits(&other(), f, all), 0);
    assert_eq!(bits(&root(), f, all), READ | MODIFY | EXTEND);
    // Only what was asked is answered.
    assert_eq!(bits(&owner(), f, READ), READ);
    assert_eq!(bits(&owner(), f, EXECUTE), 0);
    s.setattr(&ctx(&owner()), f, &mode(0o710), None).unwrap();
    assert_eq!(bits(&owner(), f, all), READ | MODIFY | EXTEND | EXECUTE);
    assert_eq!(bits(&member(), f, all), EXECUTE);
    assert_eq!(bits(&root(), f, all), READ | MODIFY | EXTEND | EXECUTE);

    // ACCESS follows the mode for the owner too: the owner override that
    // READ and WRITE apply (NFS has no open) must not tell a client that
    // open() for reading or writing would succeed.
    for (m, want) in [
        (0o000, 0),
        (0o444, READ),
        (0o077, 0),
        (0o177, EXECUTE),
        (0o277, MODIFY | EXTEND),
        (0o477, READ),
        (0o644, READ | MODIFY | EXTEND),
    ] {
        s.setattr(&ctx(&owner()), f, &mode(m), None).unwrap();
        assert_eq!(bits(&owner(), f, all), want, "mode {m:o}");
    }

    let d = fx.owned("d", true, 0o755);
    assert_eq!(
        bits(&owner(), d, all),
        READ | LOOKUP | MODIFY | EXTEND | DELETE
    );
    assert_eq!(bits(&member(), d, all), READ | LOOKUP);
    assert_eq!(bits(&other(), d, all), READ | LOOKUP);
    s.setattr(&ctx(&owner()), d, &mode(0o000), None).unwrap();
    assert_eq!(bits(&owner(), d, all), 0);
    assert_eq!(
        bits(&root(), d, all),
        READ | LOOKUP | MODIFY | EXTEND | DELETE
    );
    assert_eq!(err(s.access(&root(), 999_999, READ)), "Stale");
}

#[test]
fn names_longer_than_255_bytes() {
    let fx = Fx::new();
    let s = &fx.store;
    let c = ctx(&root());
    let r = fx.root_ino();
    let long = vec![b'n'; 256];
    let max = vec![b'm'; 255];
    let set = SetAttr::default();
    let f = s
        .create(&c, r, &max, CreateHow::Guarded, &set)
        .unwrap()
        .value
        .ino;
    s.lookup(&root(), r, &max).unwrap();
    let too_long = |res: Result<()>| assert_eq!(err(res), "NameTooLong");
    too_long(s.create(&c, r, &long, CreateHow::Unchecked, &set).map(drop));
    too_long(s.mkdir(&c, r, &long, &set).map(drop));
    too_long(s.symlink(&c, r, &long, b"t", &set).map(drop));
    too_long(s.mknod(&c, r, &long, NodeKind::Fifo, &set).map(drop));
    too_long(s.lookup(&root(), r, &long).map(drop));
    too_long(s.remove(&c, r, &long).map(drop));
    too_long(s.rmdir(&c, r, &long).map(drop));
    too_long(s.rename(&c, r, &max, r, &long).map(drop));
    too_long(s.rename(&c, r, &long, r, b"x").map(drop));
    too_long(s.link(&c, f, r, &long).map(drop));
    // Other bad names are invalid.
    for bad in [&b""[..], b".", b"..", b"a/b", b"nul\0"] {
        assert_eq!(
            err(s.create(&c, r, bad, CreateHow::Unchecked, &set)),
            "Inval",
            "{bad:?}"
        );
    }
}

#[test]
fn cross_file_system_rename_and_link() {
    let fx = Fx::new();
    let s = &fx.store;
    let c = ctx(&root());
    let fs2 = s.create_fs("fs2", export("/fs2")).unwrap().value;
    assert_ne!(fs2.fsid, fx.fs.fsid);
    let f = fx.new_file(&root(), fx.root_ino(), "f").unwrap();
    assert_eq!(
        err(s.rename(&c, fx.root_ino(), b"f", fs2.root_ino, b"f")),
        "XDev"
    );
    assert_eq!(err(s.link(&c, f.ino, fs2.root_ino, b"f")), "XDev");
    // Nothing moved.
    s.lookup(&root(), fx.root_ino(), b"f").unwrap();
    assert_eq!(err(s.lookup(&root(), fs2.root_ino, b"f")), "NoEnt");
    assert_eq!(s.getattr(f.ino).unwrap().nlink, 1);
    // A handle names its file system: the right inode with the other
    // fsid is stale.
    let h = Handle {
        fsid: fs2.fsid,
        ino: f.ino,
        generation: f.generation,
    };
    assert_eq!(err(s.resolve(&h)), "Stale");
}
