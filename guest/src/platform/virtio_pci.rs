//! The virtio-over-PCI transport (virtio 1.2 §4.1): finds the device, places its BARs, locates
//! the common configuration, notification, and device configuration structures through the
//! capability list (§4.1.4), and drives the common configuration (§4.1.4.3) and queue
//! notifications (§4.1.4.4) for a device driver such as `virtio_net`.
//!
//! Every structure is an [`Mmio`] window bounded by its capability, which
//! `pupa_guest::virtio_pci` checked against the BAR; a queue's notification register is a
//! 2-byte window inside the notify structure, checked likewise (Linux
//! `vp_modern_map_vq_notify`). The common configuration is addressed by the field offsets of
//! `pupa_spec::virtio::VirtioPciCommonCfg`, one access per field of the field's width (§4.1.3.1;
//! 64-bit fields as two 32-bit halves). The ISR status capability is located and validated but
//! not used: the driver takes MSI-X or polls, never INTx.

use core::mem::offset_of;

use pupa_guest::virtio_pci::{self as logic, CapError, NotifyError, Region};
use pupa_spec::virtio::VirtioPciCommonCfg;

use super::pci::{self, Bar, BarError, Device, Msix, MsixError};
use crate::arch::mmio::{Mmio, MmioError};

/// Offset of a common configuration field (§4.1.4.3).
macro_rules! cc {
    ($field:ident) => {
        offset_of!(VirtioPciCommonCfg, $field) as u64
    };
}

/// Device status bits (§2.1).
pub const STATUS_ACKNOWLEDGE: u8 = 1;
pub const STATUS_DRIVER: u8 = 2;
pub const STATUS_DRIVER_OK: u8 = 4;
pub const STATUS_FEATURES_OK: u8 = 8;
pub const STATUS_FAILED: u8 = 128;
/// "No vector" for config_msix_vector / queue_msix_vector (§4.1.5.1.2).
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xFFFF;

/// Why the transport could not be brought up or driven.
#[derive(Debug)]
pub enum TransportError {
    /// No device with one of the wanted IDs on bus 0.
    NoDevice,
    /// The BARs could not be placed.
    Bar(BarError),
    /// A virtio structure capability is missing or out of bounds.
    Cap(CapError),
    /// A queue's notification address is outside the notify structure.
    Notify(NotifyError),
    /// A register access outside its structure (a structure shorter than the driver needs).
    Mmio(MmioError),
    /// The selected queue does not exist (queue_size 0).
    NoQueue(u16),
}

impl core::fmt::Display for TransportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TransportError::NoDevice => write!(f, "no such device on PCI bus 0"),
            TransportError::Bar(e) => write!(f, "PCI: {e}"),
            TransportError::Cap(e) => write!(f, "{e}"),
            TransportError::Notify(e) => write!(f, "{e}"),
            TransportError::Mmio(e) => write!(f, "{e}"),
            TransportError::NoQueue(q) => write!(f, "queue {q} not available"),
        }
    }
}

impl From<MmioError> for TransportError {
    fn from(e: MmioError) -> Self {
        TransportError::Mmio(e)
    }
}

/// A queue's notification register: the 2-byte window the device watches for this queue.
pub struct Notifier {
    reg: Mmio,
    index: u16,
}

impl Notifier {
    /// Tells the device that the queue has new available buffers (§4.1.5.2).
    pub fn notify(&self) {
        // cannot fail: `reg` is a 2-byte, 2-byte-aligned window (checked by `notify_offset`
        // and `Mmio::sub` when the queue was set up)
        let _ = self.reg.write16(0, self.index);
    }
}

/// A virtio-pci device's transport.
pub struct Transport {
    dev: Device,
    bars: [Bar; 6],
    common: Mmio,
    notify: Mmio,
    notify_off_multiplier: u32,
    device_cfg: Option<Mmio>,
}

impl Transport {
    /// Finds the first device with one of `ids`, places its BARs, maps them uncached and
    /// locates its virtio structures.
    pub fn probe(ids: &[(u16, u16)]) -> Result<Transport, TransportError> {
        let dev = pci::find(ids).ok_or(TransportError::NoDevice)?;
        let mut next = pci::mmio_window_start();
        let bars = pci::assign_bars(&dev, &mut next).map_err(TransportError::Bar)?;
        crate::arch::paging::map_uncached(pci::mmio_window_start(), next);
        let r = logic::find_virtio_regions(&dev, &bars).map_err(TransportError::Cap)?;
        let window = |r: Region| {
            // SAFETY: `r` lies inside a BAR of `dev` (bounded by `find_virtio_regions`),
            // placed by `assign_bars` in the MMIO window that was just mapped uncached.
            unsafe { Mmio::new(r.addr, r.len) }
        };
        Ok(Transport {
            dev,
            bars,
            common: window(r.common),
            notify: window(r.notify),
            notify_off_multiplier: r.notify_off_multiplier,
            device_cfg: r.device.map(window),
        })
    }

    /// The PCI function.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// The device's MSI-X table.
    pub fn msix(&self) -> Result<Msix, MsixError> {
        Msix::find(&self.dev, &self.bars)
    }

    /// The device-specific configuration structure, if the device presents one.
    pub fn device_cfg(&self) -> Option<&Mmio> {
        self.device_cfg.as_ref()
    }

    /// Resets the device and waits until it reads back status 0 (§4.1.4.3.2).
    pub fn reset(&self) -> Result<(), TransportError> {
        self.set_status(0)?;
        while self.status()? != 0 {
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// The device status (§2.1).
    pub fn status(&self) -> Result<u8, TransportError> {
        Ok(self.common.read8(cc!(device_status))?)
    }

    /// Writes the device status.
    pub fn set_status(&self, status: u8) -> Result<(), TransportError> {
        Ok(self.common.write8(cc!(device_status), status)?)
    }

    /// The 64 feature bits the device offers (§2.2; bits 0–63).
    pub fn device_features(&self) -> Result<u64, TransportError> {
        let mut f = 0u64;
        for half in 0..2u32 {
            self.common.write32(cc!(device_feature_select), half)?;
            f |= (self.common.read32(cc!(device_feature))? as u64) << (32 * half);
        }
        Ok(f)
    }

    /// Writes the feature bits the driver accepts.
    pub fn set_driver_features(&self, features: u64) -> Result<(), TransportError> {
        for half in 0..2u32 {
            self.common.write32(cc!(driver_feature_select), half)?;
            let bits = (features >> (32 * half)) as u32;
            self.common.write32(cc!(driver_feature), bits)?;
        }
        Ok(())
    }

    /// Sets the configuration-change MSI-X vector.
    pub fn set_config_msix_vector(&self, vector: u16) -> Result<(), TransportError> {
        Ok(self.common.write16(cc!(config_msix_vector), vector)?)
    }

    /// Selects queue `index` and returns its maximum size (§4.1.5.1.3).
    pub fn queue_max_size(&self, index: u16) -> Result<u16, TransportError> {
        self.common.write16(cc!(queue_select), index)?;
        match self.common.read16(cc!(queue_size))? {
            0 => Err(TransportError::NoQueue(index)),
            n => Ok(n),
        }
    }

    /// Configures queue `index` (§4.1.5.1.3): `size` entries, the three areas at the given
    /// guest-physical addresses, MSI-X `vector`; then enables it. Returns the queue's
    /// notification register and whether the device accepted the vector (§4.1.5.1.2: it
    /// reads back VIRTIO_MSI_NO_VECTOR otherwise).
    pub fn setup_queue(
        &self,
        index: u16,
        size: u16,
        (desc, driver, device): (u64, u64, u64),
        vector: u16,
    ) -> Result<(Notifier, bool), TransportError> {
        let cc = &self.common;
        cc.write16(cc!(queue_select), index)?;
        cc.write16(cc!(queue_size), size)?;
        for (field, addr) in [
            (cc!(queue_desc), desc),
            (cc!(queue_driver), driver),
            (cc!(queue_device), device),
        ] {
            cc.write32(field, addr as u32)?;
            cc.write32(field + 4, (addr >> 32) as u32)?;
        }
        let queue_notify_off = cc.read16(cc!(queue_notify_off))?;
        let off = logic::notify_offset(
            queue_notify_off,
            self.notify_off_multiplier,
            self.notify.len(),
        )
        .map_err(TransportError::Notify)?;
        let reg = self.notify.sub(off, 2)?;
        cc.write16(cc!(queue_msix_vector), vector)?;
        let vector_ok = cc.read16(cc!(queue_msix_vector))? == vector;
        cc.write16(cc!(queue_enable), 1)?;
        Ok((Notifier { reg, index }, vector_ok))
    }
}
