//! fsck finds what is wrong, precisely: states damaged by hand, one problem
//! at a time, each must give exactly one report naming the culprit.

use crate::common::*;
use tandem_store::fsck::{self, check_state, FsckReport};
use tandem_store::state::{Body, DirSlot, Inode, State};
use tandem_store::*;

struct Built {
    _tmp: tempfile::TempDir,
    state: State,
    root: Ino,
    file: Ino,
    dir: Ino,
}

/// A clean state: /f (2 links: /f and /d/f2), /d, /d/sub, /s -> "t".
fn build() -> Built {
    let tmp = tempfile::tempdir().unwrap();
    let dir_path = tmp.path().join("s");
    let (store, fs) = new_store(&dir_path, StoreOptions::default());
    let c = OpCtx::new(Cred::root());
    let set = SetAttr::default();
    let r = fs.root_ino;
    let f = store
        .create(&c, r, b"f", CreateHow::Guarded, &set)
        .unwrap()
        .value
        .ino;
    store.write(&c, f, 0, b"contents").unwrap();
    let d = store.mkdir(&c, r, b"d", &set).unwrap().value.ino;
    store.mkdir(&c, d, b"sub", &set).unwrap();
    store.link(&c, f, d, b"f2").unwrap();
    store.symlink(&c, r, b"s", b"t", &set).unwrap();
    store.close().unwrap();
    let state = store.snapshot();
    drop(store);
    let report = fsck::check(&dir_path).unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(report.records_checked > 0 && report.inodes == 5, "{report}");
    Built {
        _tmp: tmp,
        state,
        root: r,
        file: f,
        dir: d,
    }
}

fn problems(st: &State) -> Vec<String> {
    let mut report = FsckReport::default();
    check_state(st, &mut report);
    assert_eq!(report.more_problems, 0);
    report.problems
}

fn dir_mut(st: &mut State, ino: Ino) -> &mut tandem_store::state::Dir {
    match &mut st.inodes.get_mut(&ino).unwrap().body {
        Body::Dir(d) => d,
        _ => panic!("not a dir"),
    }
}

/// Adds entry `name` -> `ino` to `dir`, cookies kept consistent.
fn add_entry(st: &mut State, dir: Ino, name: &[u8], ino: Ino) {
    let d = dir_mut(st, dir);
    let cookie = d.next_cookie;
    d.next_cookie += 1;
    d.entries.insert(name.to_vec(), DirSlot { ino, cookie });
    d.by_cookie.insert(cookie, name.to_vec());
}

fn one_problem(st: &State) -> String {
    let p = problems(st);
    assert_eq!(p.len(), 1, "expected exactly one problem, got {p:#?}");
    p.into_iter().next().unwrap()
}

#[test]
fn clean_state_has_no_problems() {
    let b = build();
    assert_eq!(problems(&b.state), Vec::<String>::new());
}

#[test]
fn dangling_entry() {
    let b = build();
    let mut st = b.state.clone();
    let missing = st.next_ino + 10;
    add_entry(&mut st, b.dir, b"ghost", missing);
    let p = one_problem(&st);
    assert!(
        p.contains("dangling")
            && p.contains("\"ghost\"")
            && p.contains(&format!("directory {}", b.dir))
            && p.contains(&missing.to_string()),
        "{p}"
    );
}

#[test]
fn wrong_link_count_of_a_file() {
    let b = build();
    let mut st = b.state.clone();
    st.inodes.get_mut(&b.file).unwrap().attr.nlink = 5;
    let p = one_problem(&st);
    assert_eq!(
        p,
        format!("inode {}: link count 5 but 2 expected", b.file),
        "{p}"
    );
}

#[test]
fn wrong_link_count_of_a_directory() {
    let b = build();
    let mut st = b.state.clone();
    // /d holds one subdirectory: 3 links, not 2.
    st.inodes.get_mut(&b.dir).unwrap().attr.nlink = 2;
    let p = one_problem(&st);
    assert_eq!(p, format!("inode {}: link count 2 but 3 expected", b.dir));
    // The root holds one subdirectory (/d) as well.
    let mut st = b.state.clone();
    st.inodes.get_mut(&b.root).unwrap().attr.nlink = 7;
    let p = one_problem(&st);
    assert_eq!(p, format!("inode {}: link count 7 but 3 expected", b.root));
}

#[test]
fn orphan_inode() {
    let b = build();
    let mut st = b.state.clone();
    let ino = st.next_ino;
    st.next_ino += 1;
    let mut inode: Inode = st.inodes[&b.file].clone();
    inode.attr.ino = ino;
    inode.attr.nlink = 1;
    st.inodes.insert(ino, inode);
    let p = one_problem(&st);
    assert!(
        p.contains(&format!("orphan inode {ino}")) && p.contains("Regular"),
        "{p}"
    );
}

#[test]
fn removed_entry_shows_as_link_count_and_orphan() {
    let b = build();
    // Take "/f" out: the file still has /d/f2, so its count is off by one.
    let mut st = b.state.clone();
    let slot = dir_mut(&mut st, b.root).entries.remove(&b"f"[..]).unwrap();
    dir_mut(&mut st, b.root).by_cookie.remove(&slot.cookie);
    let p = one_problem(&st);
    assert_eq!(p, format!("inode {}: link count 2 but 1 expected", b.file));
    // Take "/d/f2" out as well: nothing names the file any more.
    let slot = dir_mut(&mut st, b.dir).entries.remove(&b"f2"[..]).unwrap();
    dir_mut(&mut st, b.dir).by_cookie.remove(&slot.cookie);
    let p = one_problem(&st);
    assert!(p.contains(&format!("orphan inode {}", b.file)), "{p}");
}

#[test]
fn other_damage_is_named() {
    let b = build();
    // An inode number at or past next_ino (would be handed out again).
    let mut st = b.state.clone();
    st.next_ino = b.file;
    let p = problems(&st);
    assert!(
        p.iter()
            .any(|p| p.contains(&format!("inode {} is not below next inode", b.file))),
        "{p:#?}"
    );
    // A cookie index out of step with the entries.
    let mut st = b.state.clone();
    dir_mut(&mut st, b.dir).by_cookie.clear();
    let p = problems(&st);
    assert!(
        p.iter().any(|p| p.contains("entries but 0 cookies")),
        "{p:#?}"
    );
    assert!(p.iter().any(|p| p.contains("not indexed")), "{p:#?}");
    // A directory entered twice.
    let mut st = b.state.clone();
    add_entry(&mut st, b.root, b"again", b.dir);
    let p = problems(&st);
    assert!(
        p.iter()
            .any(|p| p.contains(&format!("directory {} is entered 2 times", b.dir))),
        "{p:#?}"
    );
    // A missing root.
    let mut st = b.state.clone();
    st.inodes.remove(&b.root);
    let p = problems(&st);
    assert!(
        p.iter()
            .any(|p| p.contains(&format!("root inode {} is missing", b.root))),
        "{p:#?}"
    );
}

#[test]
fn fsck_of_a_store_on_disk_reports_stray_data_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, StoreOptions::default());
    let c = OpCtx::new(Cred::root());
    let d = store
        .mkdir(&c, fs.root_ino, b"d", &SetAttr::default())
        .unwrap()
        .value
        .ino;
    store.close().unwrap();
    drop(store);
    // A data file for a directory and one for an inode that never was.
    for ino in [d, 4242u64] {
        let shard = dir.join("data").join(format!("{:02x}", ino & 0xff));
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::write(shard.join(format!("{ino:016x}")), b"stray").unwrap();
    }
    // Opening after a clean close trims nothing, so fsck sees both.
    let report = fsck::check(&dir).unwrap();
    let p = &report.problems;
    assert_eq!(p.len(), 2, "{report}");
    assert!(
        p.iter()
            .any(|p| p == &format!("data file of non-regular inode {d}")),
        "{report}"
    );
    assert!(
        p.iter().any(|p| p == "data file of missing inode 4242"),
        "{report}"
    );
}
