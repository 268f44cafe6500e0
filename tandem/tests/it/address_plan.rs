//! Tests run in parallel, and two tests that serve the same loopback
//! address fight over its ports: one of them then fails now and again with
//! "connection refused". Each /24 of 127.0.0.0/8 (written "127.A.B") and
//! each templated prefix ("127.A.{net}") therefore belongs to one test
//! module (one file in tests/it/, or a helper in tests/it/common/); this
//! test fails when two files claim the same one. 127.0.0.x is shared: it is
//! where free ports come from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The test modules and the helpers they share, as paths relative to
/// tests/it/.
fn test_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut files = Vec::new();
    for dir in [PathBuf::new(), PathBuf::from("common")] {
        let entries = std::fs::read_dir(root.join(&dir))
            .unwrap_or_else(|e| panic!("read {:?}: {e}", root.join(&dir)));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                files.push(dir.join(path.file_name().expect("file name")));
            }
        }
    }
    files.sort();
    assert!(files.len() > 5, "found too few test files in {root:?}");
    files
}

/// The "127.A.B" and "127.A.{" prefixes written in `text`.
fn prefixes(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("127.") {
        let start = from + at;
        from = start + 4;
        let inside_another_address =
            start > 0 && (bytes[start - 1].is_ascii_digit() || bytes[start - 1] == b'.');
        if inside_another_address {
            continue;
        }
        let rest = &text[start + 4..];
        let a: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if a.is_empty() || a == "0" {
            continue;
        }
        let after_a = &rest[a.len()..];
        let Some(after_dot) = after_a.strip_prefix('.') else {
            continue;
        };
        if after_dot.starts_with('{') {
            found.push(format!("127.{a}.{{"));
            continue;
        }
        let b: String = after_dot.chars().take_while(char::is_ascii_digit).collect();
        if !b.is_empty() {
            found.push(format!("127.{a}.{b}"));
        }
    }
    found
}

#[test]
fn each_loopback_prefix_belongs_to_one_test_file() {
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut templated: BTreeMap<String, String> = BTreeMap::new();
    let mut clashes = std::collections::BTreeSet::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    for file in test_files() {
        let name = file.to_string_lossy().to_string();
        if name == "address_plan.rs" || name == "main.rs" {
            continue;
        }
        let text = std::fs::read_to_string(root.join(&file)).expect("read test file");
        for p in prefixes(&text) {
            let map = if p.ends_with('{') {
                &mut templated
            } else {
                &mut owners
            };
            match map.get(&p) {
                Some(owner) if owner != &name => {
                    clashes.insert(format!("{p} in {owner} and {name}"));
                }
                _ => {
                    map.insert(p, name.clone());
                }
            }
        }
    }
    // A templated "127.A.{net}" claims all of 127.A.0.0/16.
    for (t, owner) in &templated {
        let second = t.trim_end_matches('{');
        for (p, other) in &owners {
            if p.starts_with(second) && other != owner {
                clashes.insert(format!("{p} in {other} is inside {t}net}} of {owner}"));
            }
        }
    }
    assert!(
        clashes.is_empty(),
        "loopback prefixes used by two test files:\n{}",
        clashes.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn prefixes_are_found_in_literals_and_templates() {
    let text = r#"site("a", "127.79.22.1"); format!("127.81.{net}.11"); "127.0.0.1"; 10.127.3.4"#;
    assert_eq!(prefixes(text), vec!["127.79.22", "127.81.{"]);
}
