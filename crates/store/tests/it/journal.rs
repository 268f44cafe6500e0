//! Bad input on disk, locking, group commit and inode numbering. A crash is
//! simulated by dropping a store without `close()`: the journal is flushed
//! but no checkpoint is written, so reopening replays the journal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::*;
use tandem_store::fsck;
use tandem_store::state::State;
use tandem_store::*;

fn root_ctx() -> OpCtx {
    OpCtx::new(Cred::root())
}

fn opts() -> StoreOptions {
    StoreOptions::default()
}

fn small_segments() -> StoreOptions {
    StoreOptions {
        max_segment_bytes: 400,
        ..StoreOptions::default()
    }
}

/// A store with some history: files, a directory, writes (each made
/// durable on its own so frames land in separate batches). Returns the
/// root inode and the inode of file "f".
fn populate(store: &Store, root: Ino) -> Ino {
    let ctx = root_ctx();
    let set = SetAttr::default();
    let f = store
        .create(&ctx, root, b"f", CreateHow::Guarded, &set)
        .unwrap()
        .value
        .ino;
    store.write(&ctx, f, 0, b"first version").unwrap();
    let d = store.mkdir(&ctx, root, b"d", &set).unwrap().value.ino;
    for i in 0..12u8 {
        let name = format!("g{i}");
        let g = store
            .create(&ctx, d, name.as_bytes(), CreateHow::Unchecked, &set)
            .unwrap()
            .value
            .ino;
        store.write(&ctx, g, 0, &[i; 40]).unwrap();
        store.wait_durable_blocking(store.last_lsn()).unwrap();
    }
    // A later overwrite of "f": a partial replay would bring back the first.
    store.write(&ctx, f, 0, b"LATEST VERSION").unwrap();
    store.wait_durable_blocking(store.last_lsn()).unwrap();
    f
}

/// A closed store in a fresh temporary directory, holding `populate`'s
/// records; keep the `TempDir` alive while using the path.
fn populated(o: StoreOptions) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, o);
    populate(&store, fs.root_ino);
    drop(store);
    (tmp, dir)
}

fn last_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().expect("a segment")
}

fn expect_corrupt(dir: &Path, o: StoreOptions) -> String {
    match Store::open(dir, o) {
        Err(StoreError::Corrupt(msg)) => msg,
        Err(e) => panic!("expected Corrupt, got {e:?}"),
        Ok(_) => panic!("a corrupt store opened"),
    }
}

fn fsck_clean(dir: &Path) {
    let report = fsck::check(dir).expect("fsck runs");
    assert!(report.is_clean(), "{report}");
}

#[test]
fn truncated_last_frame_loses_only_the_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    let f = populate(&store, fs.root_ino);
    let before = store.snapshot();
    let before_contents = all_contents(&store);
    // The last record extends "f": its data reaches the data file, its
    // record is then torn.
    store.write(&root_ctx(), f, 4000, b"lost").unwrap();
    store.wait_durable_blocking(store.last_lsn()).unwrap();
    drop(store);

    let seg = last_segment(&dir);
    let len = std::fs::metadata(&seg).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);

    let store = Store::open(&dir, opts()).expect("opens after a torn tail");
    assert_eq!(store.snapshot(), before);
    assert_eq!(all_contents(&store), before_contents);
    // Later writes work and survive another (unclean) reopen.
    let ctx = root_ctx();
    let n = store
        .create(
            &ctx,
            fs.root_ino,
            b"new",
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .unwrap()
        .value
        .ino;
    store.write(&ctx, n, 0, b"after recovery").unwrap();
    store.wait_durable_blocking(store.last_lsn()).unwrap();
    let state = store.snapshot();
    drop(store);
    let store = Store::open(&dir, opts()).unwrap();
    assert_eq!(store.snapshot(), state);
    assert_eq!(file_contents(&store, n), b"after recovery");
    drop(store);
    fsck_clean(&dir);
}

#[test]
fn truncated_inside_frame_header_and_payload() {
    // Cut at every byte of the last frame: always a torn tail.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    populate(&store, fs.root_ino);
    let before = store.snapshot();
    store
        .mkdir(&root_ctx(), fs.root_ino, b"last", &SetAttr::default())
        .unwrap();
    store.wait_durable_blocking(store.last_lsn()).unwrap();
    drop(store);
    let pristine = tmp.path().join("pristine");
    copy_tree(&dir, &pristine);
    let seg_name = last_segment(&dir).file_name().unwrap().to_owned();
    let bytes = std::fs::read(last_segment(&dir)).unwrap();
    let last = *frame_offsets(&bytes).last().unwrap();
    for cut in (last + 1..bytes.len()).step_by(3) {
        let _ = std::fs::remove_dir_all(&dir);
        copy_tree(&pristine, &dir);
        std::fs::write(dir.join("journal").join(&seg_name), &bytes[..cut]).unwrap();
        let store = Store::open(&dir, opts()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(store.snapshot(), before, "cut at {cut}");
    }
}

#[test]
fn zero_filled_tail_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    populate(&store, fs.root_ino);
    let state = store.snapshot();
    let contents = all_contents(&store);
    drop(store);
    let seg = last_segment(&dir);
    let good = std::fs::read(&seg).unwrap();
    let mut padded = good.clone();
    padded.extend_from_slice(&[0u8; 8192]);
    std::fs::write(&seg, &padded).unwrap();

    let store = Store::open(&dir, opts()).expect("opens with a zero tail");
    assert_eq!(store.snapshot(), state);
    assert_eq!(all_contents(&store), contents);
    assert_eq!(std::fs::read(&seg).unwrap(), good, "zero tail not cut");
    drop(store);
    fsck_clean(&dir);
}

#[test]
fn zero_length_last_segment_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    populate(&store, fs.root_ino);
    let state = store.snapshot();
    drop(store);
    // A crash right after creating the next segment file.
    let next = dir
        .join("journal")
        .join(format!("{:020}.seg", state.lsn + 1));
    let _ = std::fs::remove_file(&next);
    std::fs::write(&next, b"").unwrap();
    let store = Store::open(&dir, opts()).expect("opens");
    assert_eq!(store.snapshot(), state);
}

/// Flips one byte inside the payload of frame `frame` of `seg`.
fn flip_in_frame(seg: &Path, frame: usize) -> usize {
    let mut bytes = std::fs::read(seg).unwrap();
    let offsets = frame_offsets(&bytes);
    assert!(
        offsets.len() > frame + 1,
        "need frames after the damaged one"
    );
    let at = offsets[frame];
    bytes[at + 24 + 2] ^= 0x40;
    std::fs::write(seg, &bytes).unwrap();
    at
}

#[test]
fn flipped_byte_mid_last_segment_is_corruption_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    let f = populate(&store, fs.root_ino);
    assert_eq!(file_contents(&store, f), b"LATEST VERSION");
    drop(store);
    let seg = last_segment(&dir);
    let frames = frame_offsets(&std::fs::read(&seg).unwrap()).len();
    let at = flip_in_frame(&seg, frames / 2);
    let before = dir_bytes(&dir);

    let msg = expect_corrupt(&dir, opts());
    let seg_name = seg.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(seg_name), "{msg}");
    assert!(msg.contains(&format!("at byte {at}")), "{msg}");
    assert_unchanged(&before, &dir_bytes(&dir), "a failed open changed the store");
    // Still corrupt the second time: nothing was "repaired" by cutting.
    expect_corrupt(&dir, opts());
    // fsck refuses too, with the same clear error.
    assert!(matches!(fsck::check(&dir), Err(StoreError::Corrupt(_))));
}

#[test]
fn damaged_frame_header_fields_mid_segment_are_corruption() {
    // Length, checksum, LSN and epoch fields of a middle frame.
    for field in [0usize, 5, 9, 17] {
        let (_tmp, dir) = populated(opts());
        let seg = last_segment(&dir);
        let mut bytes = std::fs::read(&seg).unwrap();
        let offsets = frame_offsets(&bytes);
        let at = offsets[offsets.len() / 2];
        bytes[at + field] ^= 0x01;
        std::fs::write(&seg, &bytes).unwrap();
        let msg = expect_corrupt(&dir, opts());
        assert!(
            msg.contains(&format!("at byte {at}")),
            "field {field}: {msg}"
        );
    }
}

#[test]
fn flipped_byte_in_older_segment_is_corruption() {
    let (_tmp, dir) = populated(small_segments());
    let segs = segments(&dir);
    assert!(segs.len() >= 3, "want several segments, got {}", segs.len());
    // The last frame of an older segment: in the last segment that would
    // pass for a torn tail, here it must not.
    let older = &segs[segs.len() - 2];
    let mut bytes = std::fs::read(older).unwrap();
    let at = *frame_offsets(&bytes).last().unwrap();
    bytes[at + 24] ^= 0xff;
    std::fs::write(older, &bytes).unwrap();
    let before = dir_bytes(&dir);
    let msg = expect_corrupt(&dir, small_segments());
    assert!(
        msg.contains(older.file_name().unwrap().to_str().unwrap()),
        "{msg}"
    );
    assert!(msg.contains(&format!("at byte {at}")), "{msg}");
    assert_unchanged(&before, &dir_bytes(&dir), "a failed open changed the store");
}

#[test]
fn truncated_older_segment_is_corruption() {
    let (_tmp, dir) = populated(small_segments());
    let segs = segments(&dir);
    let older = &segs[1];
    let len = std::fs::metadata(older).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(older).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    expect_corrupt(&dir, small_segments());
}

#[test]
fn corrupt_checkpoint_is_corruption() {
    for damage in ["flip", "truncate", "garbage"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let (store, fs) = new_store(&dir, opts());
        populate(&store, fs.root_ino);
        store.close().unwrap();
        drop(store);
        let cp = dir.join("checkpoint");
        let mut bytes = std::fs::read(&cp).unwrap();
        match damage {
            "flip" => {
                let i = bytes.len() - 10;
                bytes[i] ^= 0x10;
            }
            "truncate" => bytes.truncate(bytes.len() / 2),
            _ => bytes = b"not a checkpoint at all".to_vec(),
        }
        std::fs::write(&cp, &bytes).unwrap();
        let before = dir_bytes(&dir);
        let msg = expect_corrupt(&dir, opts());
        assert!(msg.contains("checkpoint"), "{damage}: {msg}");
        assert_unchanged(&before, &dir_bytes(&dir), "{damage}: store changed");
    }
}

#[test]
fn missing_middle_segment_is_corruption() {
    let (_tmp, dir) = populated(small_segments());
    let segs = segments(&dir);
    assert!(segs.len() >= 3);
    std::fs::remove_file(&segs[segs.len() / 2]).unwrap();
    let before = dir_bytes(&dir);
    let msg = expect_corrupt(&dir, small_segments());
    assert!(msg.contains("gap"), "{msg}");
    assert_unchanged(&before, &dir_bytes(&dir), "a failed open changed the store");
}

#[test]
fn missing_first_segment_without_checkpoint_is_corruption() {
    let (_tmp, dir) = populated(small_segments());
    std::fs::remove_file(&segments(&dir)[0]).unwrap();
    expect_corrupt(&dir, small_segments());
}

#[test]
fn bad_segment_header_is_corruption() {
    let (_tmp, dir) = populated(small_segments());
    let seg = &segments(&dir)[1];
    let mut bytes = std::fs::read(seg).unwrap();
    bytes[3] ^= 1;
    std::fs::write(seg, &bytes).unwrap();
    let msg = expect_corrupt(&dir, small_segments());
    assert!(msg.contains("magic"), "{msg}");
}

#[test]
fn garbage_format_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _) = new_store(&dir, opts());
    store.close().unwrap();
    drop(store);
    std::fs::write(dir.join("FORMAT"), b"\x00\xffsomething else\n").unwrap();
    let msg = expect_corrupt(&dir, opts());
    assert!(msg.contains("FORMAT") && msg.contains("format"), "{msg}");

    std::fs::write(dir.join("FORMAT"), b"tandem-store 999\n").unwrap();
    let msg = expect_corrupt(&dir, opts());
    assert!(msg.contains("tandem-store 999"), "{msg}");

    std::fs::remove_file(dir.join("FORMAT")).unwrap();
    match Store::open(&dir, opts()) {
        Err(StoreError::Io { path, .. }) => assert!(path.ends_with("FORMAT")),
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("opened without FORMAT"),
    }
    // Not a store at all, and init refuses a non-empty directory.
    assert!(Store::open(tmp.path(), opts()).is_err());
    assert!(matches!(
        Store::init(&dir, "vs", opts()),
        Err(StoreError::Exist)
    ));
}

#[test]
fn second_open_of_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _) = new_store(&dir, opts());
    let segs_before = segments(&dir);
    match Store::open(&dir, opts()) {
        Err(StoreError::ReadOnly(msg)) => assert!(msg.contains("in use"), "{msg}"),
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("two stores open on one directory"),
    }
    // The refused open touched no segment of the live store.
    assert_eq!(segments(&dir), segs_before);
    store.close().unwrap();
    drop(store);
    Store::open(&dir, opts()).expect("open after the first closed");
}

#[test]
fn group_commit_many_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    let store = Arc::new(store);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let root = fs.root_ino;
            std::thread::spawn(move || {
                let ctx = root_ctx();
                let name = format!("t{t}");
                let f = store
                    .create(
                        &ctx,
                        root,
                        name.as_bytes(),
                        CreateHow::Guarded,
                        &SetAttr::default(),
                    )
                    .unwrap()
                    .value
                    .ino;
                let mut last = 0;
                for i in 0..40u64 {
                    let m = store.write(&ctx, f, i * 8, &i.to_le_bytes()).unwrap();
                    assert!(m.lsn > last, "LSNs must grow");
                    last = m.lsn;
                    store.wait_durable_blocking(m.lsn).unwrap();
                    assert!(store.durable_lsn() >= m.lsn);
                }
                f
            })
        })
        .collect();
    let files: Vec<Ino> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(store.durable_lsn(), store.last_lsn());
    let state = store.snapshot();
    for &f in &files {
        let data = file_contents(&store, f);
        let want: Vec<u8> = (0..40u64).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(data, want);
    }
    drop(store);
    let reopened = Store::open(&dir, opts()).unwrap();
    assert_eq!(reopened.snapshot(), state);
}

#[test]
fn async_wait_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    let m = store
        .mkdir(&root_ctx(), fs.root_ino, b"x", &SetAttr::default())
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(store.wait_durable(m.lsn)).unwrap();
    assert!(store.durable_lsn() >= m.lsn);
}

fn handle(a: &Attr) -> Handle {
    Handle {
        fsid: a.fsid,
        ino: a.ino,
        generation: a.generation,
    }
}

#[test]
fn inode_numbers_are_never_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    let ctx = root_ctx();
    let set = SetAttr::default();
    let mk = |store: &Store| {
        store
            .create(&ctx, fs.root_ino, b"n", CreateHow::Guarded, &set)
            .unwrap()
            .value
    };
    let a = mk(&store);
    assert_eq!(store.resolve(&handle(&a)).unwrap().ino, a.ino);
    store.remove(&ctx, fs.root_ino, b"n").unwrap();
    assert!(matches!(store.resolve(&handle(&a)), Err(StoreError::Stale)));
    let b = mk(&store);
    assert!(b.ino > a.ino, "{} reused after {}", b.ino, a.ino);
    // Right inode number, wrong generation or file system: stale too.
    let mut wrong = handle(&b);
    wrong.generation ^= 2;
    assert!(matches!(store.resolve(&wrong), Err(StoreError::Stale)));
    let mut wrong = handle(&b);
    wrong.fsid += 1;
    assert!(matches!(store.resolve(&wrong), Err(StoreError::Stale)));

    // The highest number removed, then an unclean restart (replay) ...
    store.remove(&ctx, fs.root_ino, b"n").unwrap();
    store.wait_durable_blocking(store.last_lsn()).unwrap();
    drop(store);
    let store = Store::open(&dir, opts()).unwrap();
    let c = mk(&store);
    assert!(c.ino > b.ino, "{} reused after replay", c.ino);
    for old in [&a, &b] {
        assert!(matches!(
            store.resolve(&handle(old)),
            Err(StoreError::Stale)
        ));
    }
    // ... and a clean one (checkpoint).
    store.remove(&ctx, fs.root_ino, b"n").unwrap();
    store.close().unwrap();
    drop(store);
    let store = Store::open(&dir, opts()).unwrap();
    let d = mk(&store);
    assert!(d.ino > c.ino, "{} reused after checkpoint", d.ino);
    for old in [&a, &b, &c] {
        assert!(matches!(
            store.resolve(&handle(old)),
            Err(StoreError::Stale)
        ));
    }
    assert_eq!(store.resolve(&handle(&d)).unwrap(), d);
    assert!(store.root_handle(fs.fsid).is_ok());
}

#[test]
fn write_verifier_changes_at_every_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _) = new_store(&dir, opts());
    let v1 = store.write_verifier();
    drop(store);
    let store = Store::open(&dir, opts()).unwrap();
    assert_ne!(store.write_verifier(), v1);
}

#[test]
fn unclean_stop_trims_data_past_the_size() {
    // A write whose record never became durable may leave bytes past the
    // file's size in its data file; recovery trims them and fsck agrees.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    let f = populate(&store, fs.root_ino);
    let size = store.getattr(f).unwrap().size;
    store.wait_durable_blocking(store.last_lsn()).unwrap();
    drop(store);
    let data = dir
        .join("data")
        .join(format!("{:02x}", f & 0xff))
        .join(format!("{f:016x}"));
    let file = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    file.set_len(size + 10_000).unwrap();
    drop(file);
    let store = Store::open(&dir, opts()).unwrap();
    assert_eq!(std::fs::metadata(&data).unwrap().len(), size);
    drop(store);
    fsck_clean(&dir);
}

#[test]
fn journal_stops_at_checkpoint_and_old_segments_go() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, small_segments());
    populate(&store, fs.root_ino);
    assert!(segments(&dir).len() >= 3);
    store.checkpoint().unwrap();
    assert!(segments(&dir).len() <= 1, "{:?}", segments(&dir));
    let state: State = store.snapshot();
    store.close().unwrap();
    drop(store);
    let store = Store::open(&dir, small_segments()).unwrap();
    assert_eq!(store.snapshot(), state);
}

/// Data changes reach the data files only once their record is durable
/// (pending.rs): a write whose record a crash could still lose leaves no
/// bytes there, and a truncation or removal whose record could be lost
/// destroys nothing. Reads meanwhile see the overlay.
#[test]
fn data_files_change_only_after_their_record_is_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, fs) = new_store(&dir, opts());
    let ctx = root_ctx();
    let r = fs.root_ino;
    let f = store
        .create(&ctx, r, b"f", CreateHow::Guarded, &SetAttr::default())
        .unwrap()
        .value
        .ino;
    let path = dir
        .join("data")
        .join(format!("{:02x}", f & 0xff))
        .join(format!("{f:016x}"));
    let on_disk = || std::fs::read(&path).unwrap_or_default();
    let m = store.write(&ctx, f, 0, b"precious data").unwrap();
    store.wait_durable_blocking(m.lsn).unwrap();
    poll_until(
        || on_disk() == b"precious data",
        "durable write reaches the data file",
    );

    let trunc = store
        .setattr(
            &ctx,
            f,
            &SetAttr {
                size: Some(4),
                ..SetAttr::default()
            },
            None,
        )
        .unwrap();
    let late = store.write(&ctx, f, 20, b"XYZ").unwrap();
    assert!(store.durable_lsn() < trunc.lsn, "nobody asked for a sync");
    assert_eq!(
        on_disk(),
        b"precious data",
        "undurable changes reached the file"
    );
    let mut expected = b"prec".to_vec();
    expected.resize(20, 0);
    expected.extend_from_slice(b"XYZ");
    assert_eq!(file_contents(&store, f), expected, "reads see the overlay");

    store.wait_durable_blocking(late.lsn).unwrap();
    poll_until(|| on_disk() == expected, "durable changes reach the file");
    assert_eq!(store.pending_data_bytes(), 0);

    let m = store.remove(&ctx, r, b"f").unwrap();
    assert!(store.durable_lsn() < m.lsn);
    assert!(path.exists(), "an undurable removal destroyed data");
    store.wait_durable_blocking(m.lsn).unwrap();
    poll_until(|| !path.exists(), "a durable removal deletes the data file");

    let state = store.snapshot();
    drop(store);
    let store = Store::open(&dir, opts()).unwrap();
    assert_eq!(store.snapshot(), state);
}

fn poll_until(mut ok: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A complete last frame with a bad checksum is damage, not a torn write:
/// a crash interrupts a write (cut-short frame) or leaves zeros, it never
/// leaves a whole frame of wrong bytes. Treating it as torn would drop an
/// acknowledged record silently.
#[test]
fn flipped_byte_in_the_very_last_frame_is_corruption() {
    let (_tmp, dir) = populated(opts());
    let seg = last_segment(&dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = *frame_offsets(&bytes).last().unwrap();
    bytes[last + 24 + 1] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let before = dir_bytes(&dir);
    let msg = expect_corrupt(&dir, opts());
    assert!(msg.contains(&format!("at byte {last}")), "{msg}");
    assert_unchanged(&before, &dir_bytes(&dir), "a failed open changed the store");
}

/// Checkpoints past `checkpoint_every_bytes` happen in the background while
/// writes go on, old segments go, and recovery from such a checkpoint plus
/// the journal after it gives the same state.
#[test]
fn background_checkpoint_bounds_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let o = StoreOptions {
        max_segment_bytes: 64 << 10,
        checkpoint_every_bytes: 256 << 10,
        ..StoreOptions::default()
    };
    let (store, fs) = new_store(&dir, o.clone());
    let ctx = root_ctx();
    let f = create_file(&store, fs.root_ino, b"f");
    let ckpt = dir.join("checkpoint");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut i = 0u64;
    while !ckpt.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no background checkpoint"
        );
        let m = store
            .write(&ctx, f, (i % 64) * 4096, &[i as u8; 4096])
            .unwrap();
        store.wait_durable_blocking(m.lsn).unwrap();
        i += 1;
    }
    // Keep writing past the checkpoint, then "crash" (no close).
    for j in 0..32u64 {
        store.write(&ctx, f, j * 4096, &[0xAB; 4096]).unwrap();
    }
    store.wait_durable_blocking(store.last_lsn()).unwrap();
    let state = store.snapshot();
    let contents = file_contents(&store, f);
    drop(store);
    let first = segments(&dir)[0].clone();
    assert_ne!(
        first.file_name().unwrap().to_str().unwrap(),
        format!("{:020}.seg", 1),
        "segments before the checkpoint should be gone"
    );
    let store = Store::open(&dir, o).unwrap();
    assert_eq!(store.snapshot(), state);
    assert_eq!(file_contents(&store, f), contents);
}

/// A well-formed frame at LSN u64::MAX (only a crafted file holds one) is
/// reported as corruption, not an arithmetic overflow.
#[test]
fn frame_at_the_last_possible_lsn_is_corruption_not_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (store, _fs) = new_store(&dir, opts());
    drop(store);
    for seg in segments(&dir) {
        std::fs::remove_file(seg).unwrap();
    }
    let _ = std::fs::remove_file(dir.join("checkpoint"));
    let mut bytes = tandem_store::journal::segment::header_bytes(u64::MAX).to_vec();
    let record = tandem_store::record::Record {
        req: None,
        op: tandem_store::record::Op::VserverCreated { name: "x".into() },
    };
    tandem_store::journal::encode_frame(&mut bytes, u64::MAX, 1, &record).unwrap();
    std::fs::write(
        dir.join("journal").join(format!("{:020}.seg", u64::MAX)),
        &bytes,
    )
    .unwrap();
    expect_corrupt(&dir, opts());
}
