//! The in-memory list of mounts reported by DUMP. Advisory only (clients
//! do not always UMNT), so it is bounded and oldest entries make way.

use std::collections::VecDeque;

pub(crate) const MAX_MOUNT_ENTRIES: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct MountTable {
    entries: VecDeque<(String, String)>,
}

impl MountTable {
    pub(crate) fn add(&mut self, host: String, path: String) {
        if self.entries.iter().any(|(h, p)| *h == host && *p == path) {
            return;
        }
        if self.entries.len() >= MAX_MOUNT_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back((host, path));
    }

    pub(crate) fn remove(&mut self, host: &str, path: &str) {
        self.entries.retain(|(h, p)| !(h == host && p == path));
    }

    pub(crate) fn remove_host(&mut self, host: &str) {
        self.entries.retain(|(h, _)| h != host);
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &(String, String)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_deduplicated() {
        let mut t = MountTable::default();
        for i in 0..MAX_MOUNT_ENTRIES + 10 {
            t.add(format!("h{i}"), "/d".into());
        }
        t.add("h20".into(), "/d".into());
        assert_eq!(t.entries().count(), MAX_MOUNT_ENTRIES);
        t.remove_host("h20");
        assert_eq!(t.entries().count(), MAX_MOUNT_ENTRIES - 1);
    }
}
