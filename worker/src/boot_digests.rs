//! The firmware's boot digests (`pupa_protocol::boot_digests`), read from the `setup_data`
//! nodes Linux lists under `/sys/kernel/boot_params/setup_data/N/` (`type`: "0x%x\n", `data`:
//! the payload; `arch/x86/kernel/ksysfs.c`). pupa's firmware adds one when it boots a Linux
//! payload; pupa-worker's dev evidence then names the firmware and the payload it loaded
//! ([`BootDigests::dev_measurement`]) instead of the worker binary alone.

use std::path::{Path, PathBuf};

use pupa_protocol::boot_digests::{BootDigests, SETUP_PUPA_BOOT_DIGESTS};

/// Where Linux lists the boot parameters' setup_data nodes.
pub const DEFAULT_BOOT_PARAMS: &str = "/sys/kernel/boot_params";
/// Most nodes looked at (Linux lists a handful).
const MAX_NODES: usize = 64;

/// Why the node could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BootDigestsError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{0}: not a version-1 pupa boot-digests payload ({1} bytes)")]
    Malformed(PathBuf, usize),
}

/// The firmware's boot digests under `boot_params` (normally [`DEFAULT_BOOT_PARAMS`]):
/// `Ok(None)` when there is no such node (not booted by pupa's firmware, or no sysfs).
pub fn read(boot_params: &Path) -> Result<Option<BootDigests>, BootDigestsError> {
    let dir = boot_params.join("setup_data");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    let mut nodes: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .take(MAX_NODES)
        .collect();
    nodes.sort();
    for node in nodes {
        let Ok(t) = std::fs::read_to_string(node.join("type")) else {
            continue;
        };
        let t = t.trim();
        let typ = u32::from_str_radix(t.trim_start_matches("0x"), 16).ok();
        if typ != Some(SETUP_PUPA_BOOT_DIGESTS) {
            continue;
        }
        let path = node.join("data");
        let data = std::fs::read(&path).map_err(|err| BootDigestsError::Io {
            path: path.clone(),
            err,
        })?;
        return BootDigests::from_bytes(&data)
            .map(Some)
            .ok_or(BootDigestsError::Malformed(path, data.len()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(root: &Path, n: u32, typ: &str, data: &[u8]) {
        let d = root.join("setup_data").join(n.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("type"), typ).unwrap();
        std::fs::write(d.join("data"), data).unwrap();
    }

    #[test]
    fn finds_the_pupa_node_among_others_and_refuses_a_bad_one() {
        let root = std::env::temp_dir().join(format!("pupa-bootparams-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        assert!(read(&root).unwrap().is_none(), "no sysfs: none");
        let d = BootDigests {
            magic: BootDigests::MAGIC,
            firmware: [1; 48],
            kernel: [2; 48],
            initrd: [3; 48],
            cmdline: [4; 48],
        };
        node(&root, 0, "0x7\n", &[0; 4]); // SETUP_CC_BLOB
        assert!(read(&root).unwrap().is_none());
        node(&root, 1, "0x61707570\n", &d.to_bytes());
        assert_eq!(read(&root).unwrap(), Some(d));
        node(&root, 1, "0x61707570\n", &d.to_bytes()[..100]);
        assert!(matches!(
            read(&root),
            Err(BootDigestsError::Malformed(_, 100))
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
