//! The NVIDIA device nodes. The driver registers its character devices but creates no nodes
//! (a desktop has `nvidia-modprobe` or udev do it; the payload has neither), and libcuda and
//! NVML open them by name. As NVIDIA's CUDA installation guide ("Device Node Verification")
//! lays them out:
//!
//! - `/dev/nvidiactl`: major 195 (`nvidia-frontend`, or `nvidia`, in `/proc/devices`), minor 255;
//! - `/dev/nvidiaN`: major 195, minor N for each GPU, N being the `Device Minor:` line of
//!   `/proc/driver/nvidia/gpus/<PCI address>/information`;
//! - `/dev/nvidia-uvm` and `/dev/nvidia-uvm-tools`: the `nvidia-uvm` major, minors 0 and 1.
//!
//! Not executed with a GPU on any machine of this project; the parsing is tested on the
//! formats above.

use std::path::Path;

use super::sys;

/// One character device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Where.
    pub path: String,
    /// Device major.
    pub major: u32,
    /// Device minor.
    pub minor: u32,
}

/// The major of the character device named `name` in `/proc/devices` (its "Character
/// devices:" section: `MAJOR NAME` per line).
pub fn char_major(proc_devices: &str, name: &str) -> Option<u32> {
    proc_devices
        .lines()
        .skip_while(|l| l.trim() != "Character devices:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .find_map(|l| {
            let mut w = l.split_whitespace();
            let major = w.next()?.parse().ok()?;
            (w.next()? == name).then_some(major)
        })
}

/// The `Device Minor:` of a GPU's `information` file.
pub fn gpu_minor(information: &str) -> Option<u32> {
    information.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "Device Minor").then(|| value.trim().parse().ok())?
    })
}

/// The nodes for a driver whose `/proc/devices` is `proc_devices`, with GPUs of minors
/// `gpus`; none when the `nvidia` driver is not loaded.
pub fn nodes(proc_devices: &str, gpus: &[u32]) -> Vec<Node> {
    let node = |path: String, major, minor| Node { path, major, minor };
    let Some(nv) =
        char_major(proc_devices, "nvidia-frontend").or(char_major(proc_devices, "nvidia"))
    else {
        return Vec::new();
    };
    let mut v = vec![node("/dev/nvidiactl".into(), nv, 255)];
    v.extend(gpus.iter().map(|&m| node(format!("/dev/nvidia{m}"), nv, m)));
    if let Some(uvm) = char_major(proc_devices, "nvidia-uvm") {
        v.push(node("/dev/nvidia-uvm".into(), uvm, 0));
        v.push(node("/dev/nvidia-uvm-tools".into(), uvm, 1));
    }
    v
}

/// Creates the nodes for the loaded driver (none without it); returns how many GPUs it has.
pub fn create_nodes() -> Result<usize, String> {
    let devices =
        std::fs::read_to_string("/proc/devices").map_err(|e| format!("/proc/devices: {e}"))?;
    let mut gpus = Vec::new();
    let dir = Path::new("/proc/driver/nvidia/gpus");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let info = e.path().join("information");
            let text = std::fs::read_to_string(&info)
                .map_err(|err| format!("{}: {err}", info.display()))?;
            let minor = gpu_minor(&text)
                .ok_or_else(|| format!("{}: no Device Minor line", info.display()))?;
            gpus.push(minor);
        }
    }
    gpus.sort_unstable();
    for n in nodes(&devices, &gpus) {
        match sys::mknod_char(&n.path, n.major, n.minor, 0o600) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(format!("mknod {} ({}:{}): {e}", n.path, n.major, n.minor)),
        }
    }
    Ok(gpus.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/devices` of a machine with both modules loaded (the driver's names).
    const DEVICES: &str = "Character devices:\n  1 mem\n  4 /dev/vc/0\n  5 /dev/tty\n\
        195 nvidia-frontend\n236 nvidia-uvm\n254 gpiochip\n\nBlock devices:\n  8 sd\n195 nvidia\n";

    #[test]
    fn nodes_follow_the_installation_guide() {
        let n = nodes(DEVICES, &[0, 1]);
        let got: Vec<(&str, u32, u32)> = n
            .iter()
            .map(|n| (n.path.as_str(), n.major, n.minor))
            .collect();
        assert_eq!(
            got,
            [
                ("/dev/nvidiactl", 195, 255),
                ("/dev/nvidia0", 195, 0),
                ("/dev/nvidia1", 195, 1),
                ("/dev/nvidia-uvm", 236, 0),
                ("/dev/nvidia-uvm-tools", 236, 1),
            ]
        );
    }

    #[test]
    fn names_are_matched_whole_and_only_among_character_devices() {
        // "nvidia" of the block section and "nvidia-uvm" as a prefix do not count.
        let only_block = "Character devices:\n  1 mem\n\nBlock devices:\n195 nvidia\n";
        assert_eq!(nodes(only_block, &[0]), []);
        let newer = "Character devices:\n195 nvidia\n";
        assert_eq!(char_major(newer, "nvidia"), Some(195));
        assert_eq!(char_major(newer, "nvidia-uvm"), None);
        assert_eq!(nodes(newer, &[]).len(), 1, "nvidiactl only, no uvm");
        assert_eq!(char_major("garbage\n1 x", "x"), None);
    }

    #[test]
    fn gpu_minor_lines() {
        let info = "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 35\nGPU UUID: \t GPU-1\n\
            Video BIOS: \t 96.00.5e.00.01\nBus Type: \t PCIe\nDevice Minor: \t 3\n";
        assert_eq!(gpu_minor(info), Some(3));
        assert_eq!(gpu_minor("Device Minor: x"), None);
        assert_eq!(gpu_minor("Model: H100"), None);
    }
}
