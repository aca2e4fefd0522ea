//! Virtio 1.2 structures: split-virtqueue rings (§2.7) and the virtio-pci capability and common
//! configuration layouts (§4.1.4).
//!
//! Two kinds of memory hold these, and the field types follow from how each is accessed:
//! - The rings live in guest RAM shared with the device and are read and written with one
//!   volatile access per field; their fields are naturally aligned native integers (the spec's
//!   `le16`/`le32`/`le64`; pupa is x86-only, so native order is little-endian) so that each
//!   index update is a single store the device cannot see torn.
//! - The PCI capability is parsed from config-space bytes, and the common configuration
//!   structure is device MMIO that is only ever addressed by offset (`core::mem::offset_of!`),
//!   never as a Rust value; both use `zerocopy`'s little-endian types, which have the exact spec
//!   layout with no padding.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Descriptor flag: the buffer continues in the `next` descriptor (§2.7.5).
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes the buffer (otherwise it reads it) (§2.7.5).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds a table of indirect descriptors (§2.7.5.3).
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;

/// `struct virtq_desc` (§2.7.5): one entry of the descriptor table, 16-byte aligned table.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VirtqDesc {
    /// Guest-physical address of the buffer.
    pub addr: u64,
    /// Length of the buffer in bytes.
    pub len: u32,
    /// `VIRTQ_DESC_F_*`.
    pub flags: u16,
    /// The next descriptor of the chain when `flags` has `VIRTQ_DESC_F_NEXT`.
    pub next: u16,
}

/// The fixed head of `struct virtq_avail` (§2.7.6); `ring[queue size]` of `u16` descriptor
/// heads and the optional `used_event` `u16` follow it. The ring is 2-byte aligned.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VirtqAvailHeader {
    /// `VIRTQ_AVAIL_F_NO_INTERRUPT` (bit 0).
    pub flags: u16,
    /// Where the driver puts the next descriptor head (free-running, modulo 2^16).
    pub idx: u16,
}

/// `struct virtq_used_elem` (§2.7.8): one used-ring entry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VirtqUsedElem {
    /// Head of the used descriptor chain (`u32` to pad the element to 8 bytes).
    pub id: u32,
    /// Bytes the device wrote into the buffer.
    pub len: u32,
}

/// The fixed head of `struct virtq_used` (§2.7.8); `ring[queue size]` of [`VirtqUsedElem`] and
/// the optional `avail_event` `u16` follow it. The ring is 4-byte aligned.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VirtqUsedHeader {
    /// `VIRTQ_USED_F_NO_NOTIFY` (bit 0).
    pub flags: u16,
    /// Where the device puts the next used element (free-running, modulo 2^16).
    pub idx: u16,
}

/// Alignment of the descriptor table, available ring and used ring (§2.7 table "Virtqueue
/// Part Alignment").
pub const DESC_ALIGN: usize = 16;
/// See [`DESC_ALIGN`].
pub const AVAIL_ALIGN: usize = 2;
/// See [`DESC_ALIGN`].
pub const USED_ALIGN: usize = 4;

/// Bytes of the descriptor table of a queue of `size` entries (§2.7: `16 * Queue Size`).
pub const fn desc_table_bytes(size: u16) -> usize {
    size_of::<VirtqDesc>() * size as usize
}

/// Bytes of the available ring, `used_event` included (§2.7: `6 + 2 * Queue Size`).
pub const fn avail_ring_bytes(size: u16) -> usize {
    size_of::<VirtqAvailHeader>() + size_of::<u16>() * size as usize + size_of::<u16>()
}

/// Bytes of the used ring, `avail_event` included (§2.7: `6 + 8 * Queue Size`).
pub const fn used_ring_bytes(size: u16) -> usize {
    size_of::<VirtqUsedHeader>() + size_of::<VirtqUsedElem>() * size as usize + size_of::<u16>()
}

/// Offset of available-ring entry `slot` from the start of the available ring.
pub const fn avail_ring_entry_offset(slot: u16) -> usize {
    size_of::<VirtqAvailHeader>() + size_of::<u16>() * slot as usize
}

/// Offset of used-ring element `slot` from the start of the used ring.
pub const fn used_ring_elem_offset(slot: u16) -> usize {
    size_of::<VirtqUsedHeader>() + size_of::<VirtqUsedElem>() * slot as usize
}

const _: () = {
    assert!(size_of::<VirtqDesc>() == 16);
    assert!(core::mem::offset_of!(VirtqDesc, addr) == 0);
    assert!(core::mem::offset_of!(VirtqDesc, len) == 8);
    assert!(core::mem::offset_of!(VirtqDesc, flags) == 12);
    assert!(core::mem::offset_of!(VirtqDesc, next) == 14);
    assert!(size_of::<VirtqAvailHeader>() == 4);
    assert!(core::mem::offset_of!(VirtqAvailHeader, idx) == 2);
    assert!(size_of::<VirtqUsedElem>() == 8);
    assert!(core::mem::offset_of!(VirtqUsedElem, len) == 4);
    assert!(size_of::<VirtqUsedHeader>() == 4);
    assert!(core::mem::offset_of!(VirtqUsedHeader, idx) == 2);
    // the spec's formulas
    assert!(desc_table_bytes(256) == 16 * 256);
    assert!(avail_ring_bytes(256) == 6 + 2 * 256);
    assert!(used_ring_bytes(256) == 6 + 8 * 256);
    // the ring entries are naturally aligned when each part is at its required alignment
    assert!(avail_ring_entry_offset(1).is_multiple_of(align_of::<u16>()));
    assert!(used_ring_elem_offset(1).is_multiple_of(align_of::<VirtqUsedElem>()));
    assert!(align_of::<VirtqDesc>() <= DESC_ALIGN);
    assert!(align_of::<VirtqAvailHeader>() <= AVAIL_ALIGN);
    assert!(align_of::<VirtqUsedElem>() <= USED_ALIGN);
};

/// `cfg_type` of a virtio PCI capability (§4.1.4): the common configuration structure.
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// `cfg_type`: notifications (§4.1.4.4).
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
/// `cfg_type`: the ISR status byte (§4.1.4.5).
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
/// `cfg_type`: device-specific configuration (§4.1.4.6).
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
/// `cfg_type`: the PCI configuration access window (§4.1.4.9).
pub const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;
/// `cfg_type`: a shared memory region (§4.1.4.7).
pub const VIRTIO_PCI_CAP_SHARED_MEMORY_CFG: u8 = 8;
/// `cfg_type`: vendor-specific data (§4.1.4.8).
pub const VIRTIO_PCI_CAP_VENDOR_CFG: u8 = 9;
/// The PCI capability ID of every virtio structure: vendor-specific (PCI 3.0 appendix H).
pub const PCI_CAP_ID_VNDR: u8 = 0x09;

/// `struct virtio_pci_cap` (§4.1.4): where one virtio structure lives. Everything in it is
/// device-supplied: `bar` may name a BAR that does not exist, and `offset`/`length` may reach
/// beyond the BAR.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VirtioPciCap {
    /// PCI capability ID: [`PCI_CAP_ID_VNDR`].
    pub cap_vndr: u8,
    /// Config-space offset of the next capability.
    pub cap_next: u8,
    /// Length of this capability structure (≥ 16; ≥ 20 for the notify capability).
    pub cap_len: u8,
    /// `VIRTIO_PCI_CAP_*`.
    pub cfg_type: u8,
    /// BAR index 0–5 (other values are reserved and the capability is ignored).
    pub bar: u8,
    /// Distinguishes several capabilities of one type (shared memory).
    pub id: u8,
    /// Reserved.
    pub padding: [u8; 2],
    /// Offset of the structure within the BAR.
    pub offset: U32,
    /// Length of the structure in bytes.
    pub length: U32,
}

/// `struct virtio_pci_notify_cap` (§4.1.4.4): the notify capability, which adds the
/// multiplier for each queue's `queue_notify_off`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VirtioPciNotifyCap {
    /// The generic part.
    pub cap: VirtioPciCap,
    /// Queue `q`'s notification address is `cap.offset + queue_notify_off(q) *
    /// notify_off_multiplier` within the BAR (0: all queues share one address).
    pub notify_off_multiplier: U32,
}

/// `struct virtio_pci_common_cfg` (§4.1.4.3), as virtio 1.2 defines it. Device MMIO: accessed
/// by field offset, one natural-width access per field (64-bit fields as two 32-bit halves,
/// §4.1.3.1). `queue_notify_data` and `queue_reset` exist only when VIRTIO_F_NOTIF_CONFIG_DATA /
/// VIRTIO_F_RING_RESET are negotiated, so a device may present a structure of only
/// [`COMMON_CFG_MIN_LEN`] bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct VirtioPciCommonCfg {
    /// Selects which 32 feature bits `device_feature` shows.
    pub device_feature_select: U32,
    /// The selected 32 bits of the device's features (read-only).
    pub device_feature: U32,
    /// Selects which 32 feature bits `driver_feature` takes.
    pub driver_feature_select: U32,
    /// The selected 32 bits of the driver's accepted features.
    pub driver_feature: U32,
    /// MSI-X vector for configuration changes.
    pub config_msix_vector: U16,
    /// Number of queues the device supports (read-only).
    pub num_queues: U16,
    /// Device status (§2.1); writing 0 resets the device.
    pub device_status: u8,
    /// Changes whenever the device configuration changes (read-only).
    pub config_generation: u8,
    /// Selects the queue the `queue_*` fields below refer to.
    pub queue_select: U16,
    /// Queue size: maximum on reset, may be lowered by the driver.
    pub queue_size: U16,
    /// MSI-X vector of the selected queue.
    pub queue_msix_vector: U16,
    /// 1 enables the selected queue.
    pub queue_enable: U16,
    /// Multiplied by the notify capability's multiplier: the queue's notification offset.
    pub queue_notify_off: U16,
    /// Guest-physical address of the descriptor table.
    pub queue_desc: U64,
    /// Guest-physical address of the available ring.
    pub queue_driver: U64,
    /// Guest-physical address of the used ring.
    pub queue_device: U64,
    /// VIRTIO_F_NOTIF_CONFIG_DATA only.
    pub queue_notify_data: U16,
    /// VIRTIO_F_RING_RESET only.
    pub queue_reset: U16,
}

/// The common configuration a virtio 1.0 device must present: everything up to and including
/// `queue_device` (Linux `vp_modern_probe` requires `sizeof(struct virtio_pci_common_cfg)`,
/// the same 56 bytes).
pub const COMMON_CFG_MIN_LEN: usize = core::mem::offset_of!(VirtioPciCommonCfg, queue_notify_data);

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<VirtioPciCap>() == 16);
    assert!(offset_of!(VirtioPciCap, cfg_type) == 3);
    assert!(offset_of!(VirtioPciCap, bar) == 4);
    assert!(offset_of!(VirtioPciCap, offset) == 8);
    assert!(offset_of!(VirtioPciCap, length) == 12);
    assert!(size_of::<VirtioPciNotifyCap>() == 20);
    assert!(offset_of!(VirtioPciNotifyCap, notify_off_multiplier) == 16);
    assert!(size_of::<VirtioPciCommonCfg>() == 0x3C);
    assert!(offset_of!(VirtioPciCommonCfg, device_feature_select) == 0x00);
    assert!(offset_of!(VirtioPciCommonCfg, device_feature) == 0x04);
    assert!(offset_of!(VirtioPciCommonCfg, driver_feature_select) == 0x08);
    assert!(offset_of!(VirtioPciCommonCfg, driver_feature) == 0x0C);
    assert!(offset_of!(VirtioPciCommonCfg, config_msix_vector) == 0x10);
    assert!(offset_of!(VirtioPciCommonCfg, num_queues) == 0x12);
    assert!(offset_of!(VirtioPciCommonCfg, device_status) == 0x14);
    assert!(offset_of!(VirtioPciCommonCfg, config_generation) == 0x15);
    assert!(offset_of!(VirtioPciCommonCfg, queue_select) == 0x16);
    assert!(offset_of!(VirtioPciCommonCfg, queue_size) == 0x18);
    assert!(offset_of!(VirtioPciCommonCfg, queue_msix_vector) == 0x1A);
    assert!(offset_of!(VirtioPciCommonCfg, queue_enable) == 0x1C);
    assert!(offset_of!(VirtioPciCommonCfg, queue_notify_off) == 0x1E);
    assert!(offset_of!(VirtioPciCommonCfg, queue_desc) == 0x20);
    assert!(offset_of!(VirtioPciCommonCfg, queue_driver) == 0x28);
    assert!(offset_of!(VirtioPciCommonCfg, queue_device) == 0x30);
    assert!(offset_of!(VirtioPciCommonCfg, queue_notify_data) == 0x38);
    assert!(offset_of!(VirtioPciCommonCfg, queue_reset) == 0x3A);
    assert!(COMMON_CFG_MIN_LEN == 0x38);
};
