//! Checks of names and values that arrive from clients or operators.

use crate::config::MAX_VSERVER_NAME_BYTES;
use crate::error::{Result, StoreError};
use crate::types::MAX_NAME_BYTES;

/// A name to create, remove or rename: not empty, no '/', no NUL, not "."
/// or "..", at most `MAX_NAME_BYTES`.
pub fn entry_name(name: &[u8]) -> Result<()> {
    if name.len() > MAX_NAME_BYTES {
        return Err(StoreError::NameTooLong {
            max_bytes: MAX_NAME_BYTES,
        });
    }
    if name.is_empty() || name == b"." || name == b".." {
        return Err(StoreError::Inval(format!(
            "{:?} cannot name a new or removed entry",
            String::from_utf8_lossy(name)
        )));
    }
    if name.iter().any(|b| *b == b'/' || *b == 0) {
        return Err(StoreError::Inval("name contains '/' or NUL".into()));
    }
    Ok(())
}

/// Names of vservers, file systems, sites and users: 1..=64 of
/// [A-Za-z0-9_.-], the first a letter, digit or '_'. They become directory
/// names and command-line words: a leading '.' hides a directory and makes
/// "." and "..", a leading '-' reads as an option. Returns what is wrong, in
/// words an operator can act on, or `None` for a good name. This is the one
/// rule: the CLI, the control socket and a peer's Replicate all use it.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty name".into());
    }
    let shown = shorten(name);
    if name.len() > MAX_VSERVER_NAME_BYTES {
        return Some(format!(
            "{shown:?} is longer than {MAX_VSERVER_NAME_BYTES} bytes"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return Some(format!("{shown:?} must start with a letter, digit or '_'"));
    }
    let bad = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))?;
    Some(format!(
        "{shown:?} contains {bad:?}; use only letters, digits, '_', '.' and '-'"
    ))
}

/// `name_problem` as a store error.
pub fn vserver_name(name: &str) -> Result<()> {
    match name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(StoreError::Inval(format!("name: {problem}"))),
    }
}

/// Keeps messages short when someone pastes a megabyte as a name.
pub fn shorten(s: &str) -> &str {
    const SHOWN_BYTES: usize = 80;
    if s.len() <= SHOWN_BYTES {
        return s;
    }
    let mut end = SHOWN_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_their_problems() {
        for good in ["a", "_apt", "9a", "vs-1.a_b"] {
            assert_eq!(name_problem(good), None, "{good:?}");
        }
        assert_eq!(name_problem(&"a".repeat(64)), None);
        assert!(name_problem(&"a".repeat(65)).is_some_and(|p| p.contains("longer than 64")));
        assert_eq!(name_problem("").as_deref(), Some("empty name"));
        for hidden_or_option in [".", "..", ".hidden", "-rf"] {
            let problem = name_problem(hidden_or_option).unwrap_or_default();
            assert!(problem.contains("must start with a letter"), "{problem}");
        }
        for bad in ["a/b", "aé", "a b"] {
            let problem = name_problem(bad).unwrap_or_default();
            assert!(problem.contains("use only letters"), "{problem}");
        }
        assert!(vserver_name("a/b").is_err());
    }

    #[test]
    fn shortened_names_end_on_a_character() {
        assert_eq!(shorten(&"é".repeat(100)).len(), 80);
        assert_eq!(shorten("short"), "short");
    }
}
