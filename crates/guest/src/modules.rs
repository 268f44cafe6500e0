//! Which kernel modules a guest loads, in what order. The extracted
//! kernel package has no modules.dep (depmod runs at install time), so
//! dependencies come from each module's own `.modinfo` section
//! (`depends=a,b`), the source depmod reads too.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};

use crate::Error;

/// How deep a dependency chain may go (real ones are a few levels).
const MAX_DEPTH: usize = 32;
/// Directory levels searched under lib/modules/VERSION/kernel.
const MAX_DIR_DEPTH: usize = 16;

/// Module name (dashes as underscores, as the kernel names them) to file.
pub struct ModuleTree {
    files: BTreeMap<String, PathBuf>,
}

impl ModuleTree {
    /// Every `*.ko` under `dir` (lib/modules/VERSION).
    pub fn scan(dir: &Path) -> Result<ModuleTree, Error> {
        let mut files = BTreeMap::new();
        let mut todo = vec![(dir.join("kernel"), 0usize)];
        while let Some((d, depth)) = todo.pop() {
            for entry in std::fs::read_dir(&d).map_err(Error::io(&d))? {
                let path = entry.map_err(Error::io(&d))?.path();
                if path.is_dir() && depth < MAX_DIR_DEPTH {
                    todo.push((path, depth + 1));
                } else if let Some(stem) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ko"))
                {
                    files.insert(normalize(stem), path.clone());
                }
            }
        }
        Ok(ModuleTree { files })
    }

    pub fn path(&self, name: &str) -> Result<&Path, Error> {
        self.files
            .get(&normalize(name))
            .map(PathBuf::as_path)
            .ok_or_else(|| Error::Module {
                module: name.into(),
                why: "not in the kernel package".into(),
            })
    }

    /// `wanted` and everything they need, each after its dependencies.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<String>, Error> {
        load_order(wanted, |name| {
            let path = self.path(name)?;
            let data = std::fs::read(path).map_err(Error::io(path))?;
            depends(&data).map_err(|why| Error::Module {
                module: name.into(),
                why,
            })
        })
    }
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Depth-first, dependencies before dependents, each module once.
fn load_order(
    wanted: &[&str],
    mut deps_of: impl FnMut(&str) -> Result<Vec<String>, Error>,
) -> Result<Vec<String>, Error> {
    let mut order = Vec::new();
    let mut done = HashSet::new();
    let mut path = Vec::new();
    fn visit(
        name: String,
        deps_of: &mut dyn FnMut(&str) -> Result<Vec<String>, Error>,
        path: &mut Vec<String>,
        done: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), Error> {
        if done.contains(&name) {
            return Ok(());
        }
        if path.contains(&name) || path.len() >= MAX_DEPTH {
            return Err(Error::Module {
                module: name,
                why: format!("dependency cycle or chain too deep: {}", path.join(" -> ")),
            });
        }
        path.push(name.clone());
        for dep in deps_of(&name)? {
            visit(dep, deps_of, path, done, order)?;
        }
        path.pop();
        done.insert(name.clone());
        order.push(name);
        Ok(())
    }
    for name in wanted {
        visit(
            normalize(name),
            &mut deps_of,
            &mut path,
            &mut done,
            &mut order,
        )?;
    }
    Ok(order)
}

/// The `depends=` list of a module file.
fn depends(ko: &[u8]) -> Result<Vec<String>, String> {
    let file = object::File::parse(ko).map_err(|e| format!("not an ELF object: {e}"))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or("no .modinfo section")?;
    let data = section.data().map_err(|e| format!(".modinfo: {e}"))?;
    Ok(depends_in_modinfo(data))
}

/// `.modinfo` is NUL-separated `key=value` strings.
fn depends_in_modinfo(modinfo: &[u8]) -> Vec<String> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|field| field.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(normalize)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> impl FnMut(&str) -> Result<Vec<String>, Error> {
        let map: BTreeMap<String, Vec<String>> = edges
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        move |name| {
            map.get(name).cloned().ok_or_else(|| Error::Module {
                module: name.into(),
                why: "unknown".into(),
            })
        }
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let g = graph(&[
            ("nfsv3", &["nfs", "lockd", "sunrpc", "nfs_acl"]),
            ("nfs", &["sunrpc", "fscache", "lockd"]),
            ("lockd", &["sunrpc", "grace"]),
            ("nfs_acl", &["sunrpc"]),
            ("fscache", &["netfs"]),
            ("sunrpc", &[]),
            ("grace", &[]),
            ("netfs", &[]),
        ]);
        let order = load_order(&["nfsv3"], g).unwrap();
        assert_eq!(
            order,
            ["sunrpc", "netfs", "fscache", "grace", "lockd", "nfs", "nfs_acl", "nfsv3"]
        );
    }

    #[test]
    fn dashes_are_underscores() {
        let g = graph(&[("virtio_rng", &[])]);
        assert_eq!(load_order(&["virtio-rng"], g).unwrap(), ["virtio_rng"]);
    }

    #[test]
    fn a_cycle_is_an_error() {
        let g = graph(&[("a", &["b"]), ("b", &["a"])]);
        let err = load_order(&["a"], g).unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
    }

    #[test]
    fn an_unknown_dependency_is_an_error() {
        let g = graph(&[("a", &["nosuch"])]);
        let err = load_order(&["a"], g).unwrap_err().to_string();
        assert!(err.contains("nosuch"), "{err}");
    }

    #[test]
    fn modinfo_depends_parsed() {
        let info = b"license=GPL\0depends=sunrpc,grace\0name=lockd\0";
        assert_eq!(depends_in_modinfo(info), ["sunrpc", "grace"]);
        assert!(depends_in_modinfo(b"depends=\0name=grace\0").is_empty());
        assert!(depends_in_modinfo(b"").is_empty());
    }

    #[test]
    fn not_elf_is_an_error() {
        assert!(depends(b"hello").is_err());
    }
}
