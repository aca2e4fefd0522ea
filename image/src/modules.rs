//! The kernel modules of the Linux payload: the closure of what [`ROOTS`] need, from the
//! kernel's own dependency data, in load order (every module after those it depends on),
//! without what the kernel has built in (`modules.builtin`).
//!
//! Dependency data: `modules.dep` where the module directory has one (depmod writes it; a
//! Debian kernel package does not ship it, its postinst runs depmod), else the `depends=`
//! record modpost wrote into each module's `.modinfo` (the same symbol analysis, per module).
//! Compressed modules (`.ko.xz`, `.ko.zst`, `.ko.gz`) are read through `xz`, `zstd` or `gzip`
//! for their `.modinfo`; the initramfs keeps them compressed (pupa-worker's init hands them to
//! `finit_module` with `MODULE_INIT_COMPRESSED_FILE`; the kernel needs
//! `CONFIG_MODULE_DECOMPRESS`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use object::elf::FileHeader64;
use object::read::elf::{FileHeader, SectionHeader};
use object::LittleEndian as LE;

/// What the payload needs, by module name: the NIC, configfs and configfs-tsm (`tsm`), and
/// the SNP and TDX guest drivers that feed it.
pub const ROOTS: [&str; 5] = ["virtio_net", "configfs", "tsm", "sev_guest", "tdx_guest"];

/// One module to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Module name (`-` as `_`).
    pub name: String,
    /// Path relative to `lib/modules/RELEASE`.
    pub path: String,
}

impl Module {
    /// The file name (what the initramfs and `pupa.order` call it).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// The modules to load, and the needed modules the kernel has built in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSet {
    /// In load order.
    pub load: Vec<Module>,
    /// Needed but built in: nothing to load.
    pub builtin: Vec<String>,
}

/// Why the module set cannot be computed.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("module {0} is needed but neither a module of this kernel nor built in")]
    Missing(String),
    #[error("modules depend on each other in a cycle through {0}")]
    Cycle(String),
    #[error("{path}: {why}")]
    Modinfo { path: PathBuf, why: String },
    #[error(
        "could not run {tool} ({err}): needed to read the compressed module {path} (install {pkg})"
    )]
    MissingTool {
        tool: &'static str,
        pkg: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
}

/// The module name of a path: the file name without `.ko[.xz|.zst|.gz]`, `-` as `_`.
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|c| file.strip_suffix(c))
        .unwrap_or(file);
    let name = stem.strip_suffix(".ko")?;
    (!name.is_empty()).then(|| name.replace('-', "_"))
}

/// `modules.builtin`: the names of the built-in modules.
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| module_name(l.trim())).collect()
}

/// `modules.dep` (`PATH: DEP_PATH …` per line): name → (path, names it depends on).
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let Some(name) = module_name(path.trim()) else {
            continue;
        };
        let deps = deps.split_whitespace().filter_map(module_name).collect();
        out.insert(name, (path.trim().to_string(), deps));
    }
    out
}

/// Where a module lives and what it depends on: `Ok(None)` when the kernel has no such module.
pub type Lookup<'a> = dyn FnMut(&str) -> Result<Option<(String, Vec<String>)>, ModuleError> + 'a;

/// The load order of `roots` and everything they depend on (depth first, dependencies in
/// the order given, then the module), skipping `builtin`.
pub fn load_order(
    roots: &[&str],
    builtin: &BTreeSet<String>,
    lookup: &mut Lookup<'_>,
) -> Result<ModuleSet, ModuleError> {
    let mut set = ModuleSet {
        load: Vec::new(),
        builtin: Vec::new(),
    };
    let mut visiting = BTreeSet::new();
    for r in roots {
        visit(
            &r.replace('-', "_"),
            builtin,
            lookup,
            &mut visiting,
            &mut set,
        )?;
    }
    Ok(set)
}

fn visit(
    name: &str,
    builtin: &BTreeSet<String>,
    lookup: &mut Lookup<'_>,
    visiting: &mut BTreeSet<String>,
    set: &mut ModuleSet,
) -> Result<(), ModuleError> {
    if set.load.iter().any(|m| m.name == name) || set.builtin.iter().any(|b| b == name) {
        return Ok(());
    }
    if builtin.contains(name) {
        set.builtin.push(name.to_string());
        return Ok(());
    }
    if !visiting.insert(name.to_string()) {
        return Err(ModuleError::Cycle(name.to_string()));
    }
    let (path, deps) = lookup(name)?.ok_or_else(|| ModuleError::Missing(name.to_string()))?;
    for d in &deps {
        visit(d, builtin, lookup, visiting, set)?;
    }
    visiting.remove(name);
    set.load.push(Module {
        name: name.to_string(),
        path,
    });
    Ok(())
}

/// The `depends=` names of a module's ELF bytes (`.modinfo`: NUL-separated `key=value`).
pub fn modinfo_depends(elf: &[u8]) -> Result<Vec<String>, String> {
    let hdr = FileHeader64::<LE>::parse(elf).map_err(|e| e.to_string())?;
    let e = hdr.endian().map_err(|e| e.to_string())?;
    let sections = hdr.sections(e, elf).map_err(|e| e.to_string())?;
    let (_, sh) = sections
        .section_by_name(e, b".modinfo")
        .ok_or("no .modinfo section")?;
    let data = sh.data(e, elf).map_err(|e| e.to_string())?;
    let deps = data
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"depends="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    Ok(deps
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect())
}

/// A module file's bytes, decompressed with the tool its suffix names.
pub fn read_module(path: &Path) -> Result<Vec<u8>, ModuleError> {
    let name = path.to_string_lossy();
    let tool = [
        (".xz", "xz", "xz-utils"),
        (".zst", "zstd", "zstd"),
        (".gz", "gzip", "gzip"),
    ]
    .into_iter()
    .find(|(s, _, _)| name.ends_with(s));
    let Some((_, tool, pkg)) = tool else {
        return std::fs::read(path).map_err(|err| ModuleError::Io {
            path: path.to_path_buf(),
            err,
        });
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|err| ModuleError::MissingTool {
            tool,
            pkg,
            path: path.to_path_buf(),
            err,
        })?;
    if !out.status.success() {
        return Err(ModuleError::Modinfo {
            path: path.to_path_buf(),
            why: format!(
                "{tool} -dc: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out.stdout)
}

/// Every module file under `dir` (recursively): name → path relative to `base`.
fn index(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<(), ModuleError> {
    let io = |err| ModuleError::Io {
        path: dir.to_path_buf(),
        err,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            index(base, &p, out)?;
        } else if let Some(rel) = p.strip_prefix(base).ok().and_then(|r| r.to_str()) {
            if let Some(name) = module_name(rel) {
                out.entry(name).or_insert_with(|| rel.to_string());
            }
        }
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<Option<String>, ModuleError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(ModuleError::Io {
            path: path.to_path_buf(),
            err,
        }),
    }
}

/// The module set of [`ROOTS`] for the kernel whose `lib/modules/RELEASE` is `moddir`.
pub fn resolve(moddir: &Path) -> Result<ModuleSet, ModuleError> {
    let builtin = parse_builtin(&read_text(&moddir.join("modules.builtin"))?.unwrap_or_default());
    if let Some(dep) = read_text(&moddir.join("modules.dep"))? {
        let map = parse_modules_dep(&dep);
        return load_order(&ROOTS, &builtin, &mut |n: &str| Ok(map.get(n).cloned()));
    }
    let mut files = BTreeMap::new();
    index(moddir, &moddir.join("kernel"), &mut files)?;
    load_order(&ROOTS, &builtin, &mut |n: &str| {
        let Some(rel) = files.get(n) else {
            return Ok(None);
        };
        let path = moddir.join(rel);
        let deps = modinfo_depends(&read_module(&path)?)
            .map_err(|why| ModuleError::Modinfo { path, why })?;
        Ok(Some((rel.clone(), deps)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small modules.dep in depmod's form (full dependency lists, compressed names).
    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz
kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz
kernel/net/core/failover.ko.xz:
kernel/fs/configfs/configfs.ko.xz:
kernel/drivers/virt/coco/tsm.ko.xz: kernel/fs/configfs/configfs.ko.xz
kernel/drivers/virt/coco/sev-guest/sev-guest.ko.xz: kernel/drivers/virt/coco/tsm.ko.xz kernel/fs/configfs/configfs.ko.xz
kernel/drivers/virt/coco/tdx-guest/tdx-guest.ko.xz: kernel/drivers/virt/coco/tsm.ko.xz kernel/fs/configfs/configfs.ko.xz
kernel/drivers/unrelated.ko.xz: kernel/fs/configfs/configfs.ko.xz
";

    fn resolve_dep(dep: &str, builtin: &str) -> Result<ModuleSet, ModuleError> {
        let map = parse_modules_dep(dep);
        load_order(&ROOTS, &parse_builtin(builtin), &mut |n: &str| {
            Ok(map.get(n).cloned())
        })
    }

    fn names(s: &ModuleSet) -> Vec<&str> {
        s.load.iter().map(Module::file_name).collect()
    }

    /// A minimal ELF64 relocatable file with one `.modinfo` section holding `modinfo`.
    fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let (info_at, str_at) = (64, 64 + modinfo.len());
        let shoff = (str_at + shstrtab.len()).next_multiple_of(8);
        let mut e = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        e.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
        e.extend_from_slice(&62u16.to_le_bytes()); // x86-64
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&[0; 16]); // entry, phoff
        e.extend_from_slice(&(shoff as u64).to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        for v in [64u16, 0, 0, 64, 3, 2] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e.extend_from_slice(modinfo);
        e.extend_from_slice(shstrtab);
        e.resize(shoff, 0);
        e.extend_from_slice(&[0; 64]);
        for (name, ty, at, len) in [
            (1u32, 1u32, info_at, modinfo.len()),
            (10, 3, str_at, shstrtab.len()),
        ] {
            e.extend_from_slice(&name.to_le_bytes());
            e.extend_from_slice(&ty.to_le_bytes());
            e.extend_from_slice(&[0; 16]); // flags, addr
            e.extend_from_slice(&(at as u64).to_le_bytes());
            e.extend_from_slice(&(len as u64).to_le_bytes());
            e.extend_from_slice(&[0; 8]); // link, info
            e.extend_from_slice(&1u64.to_le_bytes());
            e.extend_from_slice(&0u64.to_le_bytes());
        }
        e
    }

    #[test]
    fn depends_from_modinfo() {
        let elf = elf_with_modinfo(b"license=GPL\0depends=tsm,configfs,sev-x\0name=sev_guest\0");
        assert_eq!(modinfo_depends(&elf).unwrap(), ["tsm", "configfs", "sev_x"]);
        let none = elf_with_modinfo(b"license=GPL\0depends=\0name=configfs\0");
        assert!(modinfo_depends(&none).unwrap().is_empty());
        assert!(modinfo_depends(b"not an elf").is_err());
    }

    #[test]
    fn names_of_paths() {
        assert_eq!(
            module_name("kernel/a/sev-guest.ko.xz").as_deref(),
            Some("sev_guest")
        );
        assert_eq!(module_name("virtio.ko").as_deref(), Some("virtio"));
        assert_eq!(module_name("x.ko.zst").as_deref(), Some("x"));
        assert_eq!(module_name("kernel/a/readme.txt"), None);
        assert_eq!(module_name(".ko"), None);
    }

    #[test]
    fn closure_in_load_order() {
        let s = resolve_dep(DEP, "").unwrap();
        assert_eq!(
            names(&s),
            [
                "failover.ko.xz",
                "net_failover.ko.xz",
                "virtio_net.ko.xz",
                "configfs.ko.xz",
                "tsm.ko.xz",
                "sev-guest.ko.xz",
                "tdx-guest.ko.xz",
            ]
        );
        // every module after all it depends on
        let map = parse_modules_dep(DEP);
        for (i, m) in s.load.iter().enumerate() {
            for d in &map[&m.name].1 {
                let at = s.load.iter().position(|x| &x.name == d).unwrap();
                assert!(at < i, "{d} after {}", m.name);
            }
        }
        assert!(!names(&s).contains(&"unrelated.ko.xz"));
        assert_eq!(s.load.len(), 7);
        assert!(s.builtin.is_empty());
    }

    #[test]
    fn builtins_are_skipped_and_named() {
        let s = resolve_dep(
            DEP,
            "kernel/fs/configfs/configfs.ko\nkernel/net/core/failover.ko\n",
        )
        .unwrap();
        assert_eq!(
            names(&s),
            [
                "net_failover.ko.xz",
                "virtio_net.ko.xz",
                "tsm.ko.xz",
                "sev-guest.ko.xz",
                "tdx-guest.ko.xz"
            ]
        );
        assert_eq!(s.builtin, ["failover", "configfs"]);
        assert_eq!(
            s.load[3].path,
            "kernel/drivers/virt/coco/sev-guest/sev-guest.ko.xz"
        );
    }

    #[test]
    fn missing_and_cyclic_modules_are_errors() {
        let no_tdx: String = DEP
            .lines()
            .filter(|l| !l.contains("tdx"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            matches!(resolve_dep(&no_tdx, ""), Err(ModuleError::Missing(n)) if n == "tdx_guest")
        );
        // built in instead of missing: fine
        assert!(resolve_dep(&no_tdx, "kernel/drivers/virt/coco/tdx-guest/tdx-guest.ko\n").is_ok());
        let cyclic = DEP.replace(
            "kernel/fs/configfs/configfs.ko.xz:\n",
            "kernel/fs/configfs/configfs.ko.xz: kernel/drivers/virt/coco/tsm.ko.xz\n",
        );
        assert!(matches!(
            resolve_dep(&cyclic, ""),
            Err(ModuleError::Cycle(_))
        ));
    }
}
