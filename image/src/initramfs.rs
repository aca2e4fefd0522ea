//! A deterministic initramfs: an uncompressed "newc" cpio archive (Linux
//! `Documentation/driver-api/early-userspace/buffer-format.rst`; Linux accepts it without
//! compression).
//!
//! The format is written by hand: it is a 110-byte ASCII header per entry and two paddings
//! (about 30 lines), and no well-kept crate writes it deterministically. Determinism: entries
//! in byte order of their paths (a directory before what it holds), inode numbers 1, 2, … in
//! that order, mtime 0, uid/gid 0, fixed modes given by the caller, every parent directory
//! present as an entry, the `TRAILER!!!` entry last, nothing from the host file system's
//! metadata. The same inputs give the same bytes.

use std::collections::BTreeMap;

/// The newc magic.
pub const MAGIC: &[u8; 6] = b"070701";
/// The header: magic and 13 fields of 8 hexadecimal digits.
pub const HEADER_LEN: usize = 110;
/// The name of the last entry.
pub const TRAILER: &str = "TRAILER!!!";
/// Where `/init` finds its module list (one file name per line, relative to `lib/modules`,
/// loaded in that order; see pupa-worker's `init` module).
pub const MODULE_LIST: &str = "lib/modules/pupa.order";

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A character device (major, minor).
    CharDev(u32, u32),
}

/// Why an archive cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Empty, absolute, `.`/`..` or NUL-containing path.
    #[error("{0:?}: not a relative path of plain components")]
    BadPath(String),
    /// Two entries at one path, or an entry under a non-directory.
    #[error("{0:?}: added twice or under a file")]
    Conflict(String),
    /// A file of 4 GiB or more (the size field has 32 bits).
    #[error("{0:?}: too large for newc")]
    TooLarge(String),
}

/// An archive being assembled: path → (permission bits, kind).
#[derive(Debug, Clone, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, (u32, Kind)>,
}

impl Initramfs {
    /// An empty archive.
    pub fn new() -> Initramfs {
        Initramfs::default()
    }

    /// Adds `path` (relative, `/`-separated) with permission bits `perm`; its parent
    /// directories are added with mode 0755 if missing.
    pub fn add(&mut self, path: &str, perm: u32, kind: Kind) -> Result<(), Error> {
        let bad = || Error::BadPath(path.to_string());
        if path.is_empty() || path.contains('\0') || path.starts_with('/') {
            return Err(bad());
        }
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad());
        }
        if let Kind::File(d) = &kind {
            if u32::try_from(d.len()).is_err() {
                return Err(Error::TooLarge(path.to_string()));
            }
        }
        let mut parent = String::new();
        for c in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |s| s.1)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(parent.clone(), (0o755, Kind::Dir));
                }
                Some((_, Kind::Dir)) => {}
                Some(_) => return Err(Error::Conflict(path.to_string())),
            }
        }
        if self.entries.contains_key(path) {
            return Err(Error::Conflict(path.to_string()));
        }
        self.entries.insert(path.to_string(), (perm & 0o7777, kind));
        Ok(())
    }

    /// The archive's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, (perm, kind))) in (1u32..).zip(&self.entries) {
            let (fmt, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match kind {
                Kind::Dir => (S_IFDIR, 2, &[], (0, 0)),
                Kind::File(d) => (S_IFREG, 1, d, (0, 0)),
                Kind::CharDev(maj, min) => (S_IFCHR, 1, &[], (*maj, *min)),
            };
            entry(&mut out, ino, path, fmt | perm, nlink, rdev, data);
        }
        entry(&mut out, 0, TRAILER, 0, 1, (0, 0), &[]);
        out
    }
}

/// Appends one entry: header, name and NUL padded to 4 bytes, data padded to 4 bytes.
fn entry(
    out: &mut Vec<u8>,
    ino: u32,
    name: &str,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    data: &[u8],
) {
    let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let fields = [
        ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ];
    out.extend_from_slice(MAGIC);
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// pupa's payload initramfs: `/dev/console` (so that `/init` has a console), the mount points
/// `/proc`, `/sys`, `/dev`, `/init` (mode 0755), each module as `lib/modules/NAME` (0644) and
/// [`MODULE_LIST`] naming them in the order given (the load order).
pub fn payload(init: &[u8], modules: &[(String, Vec<u8>)]) -> Result<Vec<u8>, Error> {
    payload_with_files(init, modules, &[])
}

/// Where [`payload_with_files`] may put files: firmware (the kernel's loader looks under
/// `/lib/firmware` directly), the glibc loader and libraries, pupa's CUDA kernels.
pub const EXTRA_PREFIXES: [&str; 5] = [
    "lib/firmware/",
    "lib64/",
    "lib/x86_64-linux-gnu/",
    "usr/lib/x86_64-linux-gnu/",
    "lib/pupa/",
];

/// The mode [`payload_with_files`] gives a file: 0755 for shared libraries and the loader
/// (`*.so*`), 0644 otherwise.
pub fn file_mode(path: &str) -> u32 {
    if path.contains(".so") {
        0o755
    } else {
        0o644
    }
}

/// [`payload`] with more files: `(path relative to the root, bytes)` under one of
/// [`EXTRA_PREFIXES`], e.g. `lib/firmware/nvidia/535.261.03/gsp_ga10x.bin`. Without them the
/// bytes are those of [`payload`]. Shared libraries and the loader get mode 0755.
pub fn payload_with_files(
    init: &[u8],
    modules: &[(String, Vec<u8>)],
    files: &[(String, Vec<u8>)],
) -> Result<Vec<u8>, Error> {
    let mut a = Initramfs::new();
    for (path, bytes) in files {
        if !EXTRA_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Err(Error::BadPath(path.clone()));
        }
        a.add(path, file_mode(path), Kind::File(bytes.clone()))?;
    }
    a.add("dev", 0o755, Kind::Dir)?;
    a.add("dev/console", 0o600, Kind::CharDev(5, 1))?;
    a.add("proc", 0o755, Kind::Dir)?;
    a.add("sys", 0o755, Kind::Dir)?;
    a.add("init", 0o755, Kind::File(init.to_vec()))?;
    let mut list = String::new();
    for (name, bytes) in modules {
        if name.contains('/') {
            return Err(Error::BadPath(name.clone()));
        }
        a.add(
            &format!("lib/modules/{name}"),
            0o644,
            Kind::File(bytes.clone()),
        )?;
        list.push_str(name);
        list.push('\n');
    }
    if !modules.is_empty() {
        a.add(MODULE_LIST, 0o644, Kind::File(list.into_bytes()))?;
    }
    Ok(a.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(b: &[u8], at: usize, i: usize) -> u32 {
        let s = std::str::from_utf8(&b[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap();
        u32::from_str_radix(s, 16).unwrap()
    }

    /// (name, mode, data) of every entry, read back as the kernel's unpacker does.
    fn parse(b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let (mut at, mut v) = (0, Vec::new());
        loop {
            assert_eq!(&b[at..at + 6], MAGIC, "magic at {at}");
            let (size, namesize) = (field(b, at, 6) as usize, field(b, at, 11) as usize);
            let name_at = at + HEADER_LEN;
            let name = std::str::from_utf8(&b[name_at..name_at + namesize - 1]).unwrap();
            assert_eq!(b[name_at + namesize - 1], 0);
            let data_at = (name_at + namesize).next_multiple_of(4);
            let data = b[data_at..data_at + size].to_vec();
            v.push((name.to_string(), field(b, at, 1), data));
            at = (data_at + size).next_multiple_of(4);
            if name == TRAILER {
                assert_eq!(at, b.len());
                return v;
            }
        }
    }

    fn sample() -> Vec<u8> {
        let modules = vec![
            ("virtio.ko".to_string(), b"mod-a".to_vec()),
            ("failover.ko".to_string(), b"mod-b!".to_vec()),
        ];
        payload(b"\x7fELF-init", &modules).unwrap()
    }

    #[test]
    fn two_builds_are_identical() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn header_fields_and_padding_at_their_offsets() {
        let mut a = Initramfs::new();
        a.add("init", 0o755, Kind::File(b"hello".to_vec())).unwrap();
        let b = a.to_bytes();
        // entry 1: header 0..110, "init\0" 110..115, padded to 116, data 116..121, padded to 124
        assert_eq!(&b[..6], b"070701");
        let fields = [1, 0o100755, 0, 0, 1, 0, 5, 0, 0, 0, 0, 5, 0];
        for (i, want) in fields.into_iter().enumerate() {
            assert_eq!(field(&b, 0, i), want, "field {i}");
        }
        assert_eq!(&b[6..14], b"00000001");
        assert_eq!(&b[14..22], b"000081ED");
        assert_eq!(&b[110..116], b"init\0\0");
        assert_eq!(&b[116..121], b"hello");
        assert_eq!(&b[121..124], [0, 0, 0]);
        // the trailer at 124: ino 0, mode 0, nlink 1, namesize 11, no data; 124+110+11=245 → 248
        assert_eq!(&b[124..130], b"070701");
        assert_eq!(field(&b, 124, 0), 0);
        assert_eq!(field(&b, 124, 4), 1);
        assert_eq!(field(&b, 124, 11), 11);
        assert_eq!(&b[234..245], b"TRAILER!!!\0");
        assert_eq!(b.len(), 248);
    }

    #[test]
    fn payload_layout() {
        let e = parse(&sample());
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/failover.ko",
                "lib/modules/pupa.order",
                "lib/modules/virtio.ko",
                "proc",
                "sys",
                TRAILER
            ]
        );
        let get = |n: &str| e.iter().find(|x| x.0 == n).unwrap();
        assert_eq!(get("dev").1, 0o040755);
        assert_eq!(get("dev/console").1, 0o020600);
        assert_eq!(get("init").1, 0o100755);
        assert_eq!(get("init").2, b"\x7fELF-init");
        assert_eq!(get("lib/modules/failover.ko").1, 0o100644);
        // the list keeps the load order given, not the archive's name order
        assert_eq!(get("lib/modules/pupa.order").2, b"virtio.ko\nfailover.ko\n");
        let b = sample();
        let console = b.windows(12).position(|w| w == b"dev/console\0").unwrap() - HEADER_LEN;
        assert_eq!((field(&b, console, 9), field(&b, console, 10)), (5, 1));
        // nothing from the host: uid, gid, mtime, check are zero everywhere
        let mut at = 0;
        for (name, _, data) in &e {
            for i in [2, 3, 5, 12] {
                assert_eq!(field(&b, at, i), 0, "{name} field {i}");
            }
            at = ((at + HEADER_LEN + name.len() + 1).next_multiple_of(4) + data.len())
                .next_multiple_of(4);
        }
    }

    #[test]
    fn refuses_bad_paths() {
        let mut a = Initramfs::new();
        for p in ["", "/init", "a//b", "a/./b", "../x", "a\0b"] {
            assert_eq!(a.add(p, 0o644, Kind::Dir), Err(Error::BadPath(p.into())));
        }
        a.add("f", 0o644, Kind::File(vec![])).unwrap();
        assert!(a.add("f", 0o644, Kind::File(vec![])).is_err());
        assert!(a.add("f/g", 0o644, Kind::File(vec![])).is_err());
        assert!(payload(b"", &[("a/b.ko".into(), vec![])]).is_err());
        assert!(payload(b"", &[("a.ko".into(), vec![]), ("a.ko".into(), vec![])]).is_err());
    }

    #[test]
    fn firmware_files() {
        let modules = vec![
            ("virtio.ko".to_string(), b"mod-a".to_vec()),
            ("failover.ko".to_string(), b"mod-b!".to_vec()),
        ];
        // no firmware: the bytes of `payload`
        assert_eq!(
            payload_with_files(b"\x7fELF-init", &modules, &[]).unwrap(),
            sample()
        );
        let fw = vec![(
            "lib/firmware/nvidia/535.261.03/gsp_ga10x.bin".to_string(),
            b"gsp".to_vec(),
        )];
        let with = payload_with_files(b"\x7fELF-init", &modules, &fw).unwrap();
        assert!(with.len() > sample().len());
        let names = String::from_utf8_lossy(&with).into_owned();
        for p in [
            "lib/firmware\0",
            "lib/firmware/nvidia/535.261.03\0",
            "lib/firmware/nvidia/535.261.03/gsp_ga10x.bin\0",
            "lib/modules/pupa.order\0",
        ] {
            assert!(names.contains(p), "{p}");
        }
        let bad = vec![("etc/gsp.bin".to_string(), vec![])];
        assert!(payload_with_files(b"", &[], &bad).is_err());
    }
}
