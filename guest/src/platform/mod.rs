//! Devices and services of the VM platform the firmware finds at boot.

pub mod exit;
pub mod fw_cfg;
pub mod heap;
pub mod idle;
pub mod layout;
pub mod net;
pub mod pci;
pub mod pit;
pub mod serial;
pub mod snp;
pub mod tdx;
pub mod virtio_net;
