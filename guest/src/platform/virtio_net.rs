//! virtio-net over modern virtio-pci (virtio 1.2 spec §4.1 "Virtio Over PCI Bus", §5.1
//! "Network Device"), with split virtqueues, as a smoltcp `Device`.
//!
//! The network loop polls the queues; interrupts only wake the vCPU from its idle halt
//! (`platform::idle`). Both queues signal one MSI-X vector (table entry 0, message from
//! `idle::msi_message`); the configuration-change vector is left unassigned. The driver never
//! sets VIRTQ_AVAIL_F_NO_INTERRUPT and does not negotiate VIRTIO_F_EVENT_IDX (§2.7.7,
//! §2.7.10), so the device interrupts after every batch of used buffers: a packet that
//! arrives, or a transmission that completes, after the loop's last poll leaves the interrupt
//! pending in the local APIC (IF is clear while the loop runs) and the next halt returns at
//! once — no wake-up is lost. Without MSI-X the idle halt is capped at 1 ms instead.
//!
//! Every buffer the device touches (rings, packet buffers) comes from [`DmaPool`]: memory the
//! TEE layer shares with the host (identity memory on a plain VM; converted to shared pages
//! under SNP/TDX by the TEE backend). Packets are copied between those bounce buffers and
//! private memory, so the network stack never hands private memory to the device.

use alloc::vec::Vec;
use core::alloc::Layout;

use pupa_guest::virtqueue::{avail_bytes, desc_bytes, used_bytes, QueueError, SplitQueue};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::idle;
use super::pci::{self, Msix};
use crate::arch::mmio;
use pupa_guest::idle::VECTOR_NET;

const VIRTIO_VENDOR: u16 = 0x1AF4;
/// Modern virtio-net (0x1040 + device type 1) and the transitional id.
const VIRTIO_NET_IDS: [(u16, u16); 2] = [(VIRTIO_VENDOR, 0x1041), (VIRTIO_VENDOR, 0x1000)];

// Virtio PCI capability types (§4.1.4).
const PCI_CAP_VENDOR: u8 = 0x09;
const CAP_COMMON_CFG: u8 = 1;
const CAP_NOTIFY_CFG: u8 = 2;
const CAP_DEVICE_CFG: u8 = 4;

// Device status bits (§2.1).
const STATUS_ACKNOWLEDGE: u8 = 1;
const STATUS_DRIVER: u8 = 2;
const STATUS_DRIVER_OK: u8 = 4;
const STATUS_FEATURES_OK: u8 = 8;
const STATUS_FAILED: u8 = 128;

// Feature bits (§5.1.3, §6).
const VIRTIO_NET_F_MAC: u64 = 1 << 5;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;

// Common configuration structure offsets (§4.1.4.3).
const CC_DEVICE_FEATURE_SELECT: usize = 0x00;
const CC_MSIX_CONFIG: usize = 0x10;
const CC_QUEUE_MSIX_VECTOR: usize = 0x1A;
const CC_DEVICE_FEATURE: usize = 0x04;
const CC_DRIVER_FEATURE_SELECT: usize = 0x08;
const CC_DRIVER_FEATURE: usize = 0x0C;
const CC_DEVICE_STATUS: usize = 0x14;
const CC_QUEUE_SELECT: usize = 0x16;
const CC_QUEUE_SIZE: usize = 0x18;
const CC_QUEUE_ENABLE: usize = 0x1C;
const CC_QUEUE_NOTIFY_OFF: usize = 0x1E;
const CC_QUEUE_DESC: usize = 0x20;
const CC_QUEUE_DRIVER: usize = 0x28;
const CC_QUEUE_DEVICE: usize = 0x30;
/// "No vector" for msix_config / queue_msix_vector (§4.1.5.1.2).
const VIRTIO_MSI_NO_VECTOR: u16 = 0xFFFF;
/// The MSI-X table entry both queues use.
const MSIX_ENTRY_QUEUES: u16 = 0;

/// `struct virtio_net_hdr` with VIRTIO_F_VERSION_1 (§5.1.6): 12 bytes, all zero on transmit
/// (no offloads negotiated).
const NET_HDR: usize = 12;
const BUF_SIZE: usize = 2048;
const QUEUE_SIZE: u16 = 128;
const MTU: usize = 1514;
const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;

/// Memory the device may access. The plain-VM implementation hands out heap memory (identity
/// mapped, GPA = address); SNP/TDX implementations share the pages with the host first.
pub trait DmaPool {
    /// Zeroed, page-aligned memory of `bytes`; returns its address (= GPA).
    fn alloc(&mut self, bytes: usize) -> Option<*mut u8>;
}

/// Plain VM: the heap is device-accessible as is.
pub struct PlainDma;

impl DmaPool for PlainDma {
    fn alloc(&mut self, bytes: usize) -> Option<*mut u8> {
        let layout = Layout::from_size_align(bytes.max(1), 4096).ok()?;
        // SAFETY: non-zero size; the memory is never freed (the device may hold it forever).
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        (!p.is_null()).then_some(p)
    }
}

/// Why the NIC could not be brought up.
#[derive(Debug)]
pub enum NetError {
    NoDevice,
    Pci(&'static str),
    MissingCapability(&'static str),
    Features(&'static str),
    Queue(&'static str),
    NoMemory,
}

/// Why the NIC runs without interrupts (it still works: the idle halt is then capped).
#[derive(Debug)]
pub enum IrqError {
    /// The local APIC is not set up (`idle::init` failed or was not called).
    NoApic,
    /// The device's MSI-X could not be programmed.
    Msix(pci::MsixError),
    /// The device refused the queues' MSI-X vector.
    VectorRefused,
}

impl core::fmt::Display for IrqError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IrqError::NoApic => write!(f, "no local APIC set up"),
            IrqError::Msix(e) => write!(f, "{e}"),
            IrqError::VectorRefused => write!(f, "the device refused the MSI-X vector"),
        }
    }
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::NoDevice => write!(f, "no virtio-net device on PCI bus 0"),
            NetError::Pci(e) => write!(f, "PCI: {e}"),
            NetError::MissingCapability(c) => {
                write!(f, "the device lacks the virtio {c} capability")
            }
            NetError::Features(e) => write!(f, "feature negotiation: {e}"),
            NetError::Queue(e) => write!(f, "virtqueue setup: {e}"),
            NetError::NoMemory => write!(f, "out of memory for virtqueues and buffers"),
        }
    }
}

struct Mmio(*mut u8);

impl Mmio {
    fn at(&self, off: usize) -> u64 {
        self.0 as u64 + off as u64
    }
    fn r8(&self, off: usize) -> u8 {
        // SAFETY: `off` lies within the capability's BAR window mapped by `init`.
        unsafe { mmio::read8(self.at(off)) }
    }
    fn r16(&self, off: usize) -> u16 {
        // SAFETY: as above.
        unsafe { mmio::read16(self.at(off)) }
    }
    fn r32(&self, off: usize) -> u32 {
        // SAFETY: as above.
        unsafe { mmio::read32(self.at(off)) }
    }
    fn w8(&self, off: usize, v: u8) {
        // SAFETY: as above.
        unsafe { mmio::write8(self.at(off), v) }
    }
    fn w16(&self, off: usize, v: u16) {
        // SAFETY: as above.
        unsafe { mmio::write16(self.at(off), v) }
    }
    fn w32(&self, off: usize, v: u32) {
        // SAFETY: as above.
        unsafe { mmio::write32(self.at(off), v) }
    }
    fn w64(&self, off: usize, v: u64) {
        self.w32(off, v as u32);
        self.w32(off + 4, (v >> 32) as u32);
    }
}

struct Queue {
    q: SplitQueue,
    notify: *mut u16,
    index: u16,
}

impl Queue {
    fn kick(&self) {
        // SAFETY: the queue's notification address inside the notify capability window.
        unsafe { mmio::write16(self.notify as u64, self.index) }
    }
}

/// Receive half: buffers posted to the device.
struct Rx {
    queue: Queue,
    bufs: Vec<*mut u8>,
}

/// Transmit half: a bounce buffer per descriptor.
struct Tx {
    queue: Queue,
    bufs: Vec<*mut u8>,
    free: Vec<usize>,
    /// descriptor id -> buffer index
    slot_of: Vec<usize>,
}

/// The NIC.
pub struct VirtioNet {
    rx: Rx,
    tx: Tx,
    mac: [u8; 6],
    pci_id: (u16, u16),
    /// The device broke the virtqueue protocol; the NIC is dead from then on.
    pub fault: Option<QueueError>,
    /// Frames dropped because they did not fit (oversized) or the device misbehaved.
    pub dropped: u64,
}

impl VirtioNet {
    /// Find, reset and bring up the first virtio-net device.
    pub fn init(dma: &mut dyn DmaPool) -> Result<VirtioNet, NetError> {
        let dev = pci::find(&VIRTIO_NET_IDS).ok_or(NetError::NoDevice)?;
        let mut next = pci::mmio_window_start();
        let bars = pci::assign_bars(&dev, &mut next).map_err(NetError::Pci)?;
        crate::arch::paging::map_uncached(pci::mmio_window_start(), next);
        let (mut common, mut notify, mut device_cfg) = (None, None, None);
        let mut notify_mult = 0u32;
        for (off, id) in pci::capabilities(&dev) {
            if id != PCI_CAP_VENDOR {
                continue;
            }
            let cfg_type = dev.read8(off + 3);
            let bar = dev.read8(off + 4) as usize;
            let offset = dev.read(off + 8) as u64;
            if bar >= 6 || bars[bar] == 0 {
                continue;
            }
            let addr = (bars[bar] + offset) as *mut u8;
            match cfg_type {
                CAP_COMMON_CFG => common = Some(Mmio(addr)),
                CAP_NOTIFY_CFG => {
                    notify = Some(addr);
                    notify_mult = dev.read(off + 16);
                }
                CAP_DEVICE_CFG => device_cfg = Some(Mmio(addr)),
                _ => {}
            }
        }
        let cc = common.ok_or(NetError::MissingCapability("common configuration"))?;
        let notify = notify.ok_or(NetError::MissingCapability("notification"))?;
        let devcfg = device_cfg.ok_or(NetError::MissingCapability("device configuration"))?;
        // MSI-X entry 0 → this CPU's VECTOR_NET; the queues are pointed at it below (after the
        // reset, which unassigns every vector).
        let msix = idle::msi_message(VECTOR_NET)
            .ok_or(IrqError::NoApic)
            .and_then(|msg| {
                let m = Msix::find(&dev, &bars).map_err(IrqError::Msix)?;
                m.set_entry(MSIX_ENTRY_QUEUES, msg)
                    .map_err(IrqError::Msix)?;
                m.enable(&dev);
                Ok(())
            });
        let queue_vector = if msix.is_ok() {
            MSIX_ENTRY_QUEUES
        } else {
            VIRTIO_MSI_NO_VECTOR
        };

        // §3.1.1 driver initialisation
        cc.w8(CC_DEVICE_STATUS, 0);
        while cc.r8(CC_DEVICE_STATUS) != 0 {
            core::hint::spin_loop();
        }
        cc.w8(CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE);
        cc.w8(CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        cc.w32(CC_DEVICE_FEATURE_SELECT, 0);
        let lo = cc.r32(CC_DEVICE_FEATURE) as u64;
        cc.w32(CC_DEVICE_FEATURE_SELECT, 1);
        let offered = lo | (cc.r32(CC_DEVICE_FEATURE) as u64) << 32;
        if offered & VIRTIO_F_VERSION_1 == 0 {
            cc.w8(CC_DEVICE_STATUS, STATUS_FAILED);
            return Err(NetError::Features(
                "the device does not offer VIRTIO_F_VERSION_1",
            ));
        }
        let wanted = VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_F_ACCESS_PLATFORM;
        let features = offered & wanted;
        cc.w32(CC_DRIVER_FEATURE_SELECT, 0);
        cc.w32(CC_DRIVER_FEATURE, features as u32);
        cc.w32(CC_DRIVER_FEATURE_SELECT, 1);
        cc.w32(CC_DRIVER_FEATURE, (features >> 32) as u32);
        let st = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
        cc.w8(CC_DEVICE_STATUS, st);
        if cc.r8(CC_DEVICE_STATUS) & STATUS_FEATURES_OK == 0 {
            cc.w8(CC_DEVICE_STATUS, STATUS_FAILED);
            return Err(NetError::Features(
                "the device refused the negotiated features",
            ));
        }
        let mut mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        if features & VIRTIO_NET_F_MAC != 0 {
            for (i, b) in mac.iter_mut().enumerate() {
                *b = devcfg.r8(i);
            }
        }

        cc.w16(CC_MSIX_CONFIG, VIRTIO_MSI_NO_VECTOR);
        // Returns the queue and whether the device took its MSI-X vector.
        let mut setup = |index: u16| -> Result<(Queue, bool), NetError> {
            cc.w16(CC_QUEUE_SELECT, index);
            let max = cc.r16(CC_QUEUE_SIZE);
            if max == 0 {
                return Err(NetError::Queue("queue not available"));
            }
            let pow2 = 1u16 << (15 - max.leading_zeros()); // largest power of two <= max
            let size = QUEUE_SIZE.min(pow2);
            cc.w16(CC_QUEUE_SIZE, size);
            let desc = dma.alloc(desc_bytes(size)).ok_or(NetError::NoMemory)?;
            let avail = dma.alloc(avail_bytes(size)).ok_or(NetError::NoMemory)?;
            let used = dma.alloc(used_bytes(size)).ok_or(NetError::NoMemory)?;
            cc.w64(CC_QUEUE_DESC, desc as u64);
            cc.w64(CC_QUEUE_DRIVER, avail as u64);
            cc.w64(CC_QUEUE_DEVICE, used as u64);
            let off = cc.r16(CC_QUEUE_NOTIFY_OFF) as usize * notify_mult as usize;
            // §4.1.5.1.2: the device answers VIRTIO_MSI_NO_VECTOR if it cannot use the vector.
            cc.w16(CC_QUEUE_MSIX_VECTOR, queue_vector);
            let vector_ok = cc.r16(CC_QUEUE_MSIX_VECTOR) == queue_vector;
            cc.w16(CC_QUEUE_ENABLE, 1);
            // SAFETY: the three areas were just allocated zeroed, page-aligned and large
            // enough, and belong to this queue only.
            let q = unsafe { SplitQueue::new(size, desc, avail, used) };
            // SAFETY: `off` lies within the notify capability's window.
            let notify_at = unsafe { notify.add(off) } as *mut u16;
            let queue = Queue {
                q,
                notify: notify_at,
                index,
            };
            Ok((queue, vector_ok))
        };
        let (rxq, rx_vector) = setup(RX_QUEUE)?;
        let (txq, tx_vector) = setup(TX_QUEUE)?;
        let irq = msix.and_then(|()| {
            (rx_vector && tx_vector)
                .then_some(())
                .ok_or(IrqError::VectorRefused)
        });

        let mut rx = Rx {
            bufs: Vec::new(),
            queue: rxq,
        };
        for _ in 0..rx.queue.q.size() {
            let b = dma.alloc(BUF_SIZE).ok_or(NetError::NoMemory)?;
            let id = rx
                .queue
                .q
                .push(b as u64, BUF_SIZE as u32, true)
                .ok_or(NetError::Queue("rx queue full"))?;
            if rx.bufs.len() <= id as usize {
                rx.bufs.resize(id as usize + 1, core::ptr::null_mut());
            }
            rx.bufs[id as usize] = b;
        }
        let n = txq.q.size() as usize;
        let mut tx = Tx {
            queue: txq,
            bufs: Vec::new(),
            free: (0..n).collect(),
            slot_of: alloc::vec![usize::MAX; n],
        };
        for _ in 0..n {
            tx.bufs.push(dma.alloc(BUF_SIZE).ok_or(NetError::NoMemory)?);
        }
        cc.w8(CC_DEVICE_STATUS, st | STATUS_DRIVER_OK);
        rx.queue.kick();
        match &irq {
            Ok(()) => {
                idle::device_interrupts_armed();
                crate::println!(
                    "pupa: nic interrupts msi-x (rx and tx queues, vector {VECTOR_NET:#x})"
                );
            }
            Err(e) => {
                crate::println!("pupa: nic interrupts none ({e}): idle halts poll every 1 ms")
            }
        }
        Ok(VirtioNet {
            rx,
            tx,
            mac,
            pci_id: (dev.vendor, dev.device),
            fault: None,
            dropped: 0,
        })
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// PCI vendor and device id.
    pub fn pci_id(&self) -> (u16, u16) {
        self.pci_id
    }

    fn reclaim_tx(&mut self) {
        loop {
            match self.tx.queue.q.pop() {
                Ok(Some((id, _))) => {
                    let slot = core::mem::replace(&mut self.tx.slot_of[id as usize], usize::MAX);
                    if slot != usize::MAX {
                        self.tx.free.push(slot);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.fault = Some(e);
                    break;
                }
            }
        }
    }
}

/// A received frame, copied out of the bounce buffer.
pub struct RxToken(Vec<u8>);

/// Permission to send one frame.
pub struct TxToken<'a>(&'a mut Tx);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let tx = self.0;
        let len = len.min(BUF_SIZE - NET_HDR);
        let slot = tx
            .free
            .pop()
            .expect("transmit() only hands out a token when a buffer is free");
        let buf = tx.bufs[slot];
        // SAFETY: `buf` is a BUF_SIZE bounce buffer owned by this slot, not in flight.
        let frame = unsafe {
            core::ptr::write_bytes(buf, 0, NET_HDR);
            core::slice::from_raw_parts_mut(buf.add(NET_HDR), len)
        };
        let r = f(frame);
        match tx.queue.q.push(buf as u64, (NET_HDR + len) as u32, false) {
            Some(id) => {
                tx.slot_of[id as usize] = slot;
                tx.queue.kick();
            }
            None => tx.free.push(slot), // cannot happen: as many descriptors as buffers
        }
        r
    }
}

impl phy::Device for VirtioNet {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _t: Instant) -> Option<(RxToken, TxToken<'_>)> {
        if self.fault.is_some() {
            return None;
        }
        self.reclaim_tx();
        let (id, len) = match self.rx.queue.q.pop() {
            Ok(Some(x)) => x,
            Ok(None) => return None,
            Err(e) => {
                self.fault = Some(e);
                return None;
            }
        };
        let buf = self.rx.bufs[id as usize];
        let len = len as usize;
        let frame = if len > NET_HDR && len - NET_HDR <= MTU + 4 {
            // SAFETY: the device wrote `len` ≤ BUF_SIZE bytes (checked by the queue) into `buf`.
            Some(unsafe { core::slice::from_raw_parts(buf.add(NET_HDR), len - NET_HDR) }.to_vec())
        } else {
            None
        };
        // repost the buffer at once
        if let Some(nid) = self.rx.queue.q.push(buf as u64, BUF_SIZE as u32, true) {
            if self.rx.bufs.len() <= nid as usize {
                self.rx.bufs.resize(nid as usize + 1, core::ptr::null_mut());
            }
            self.rx.bufs[nid as usize] = buf;
            self.rx.queue.kick();
        }
        match frame {
            Some(f) if !self.tx.free.is_empty() => Some((RxToken(f), TxToken(&mut self.tx))),
            _ => {
                self.dropped += 1;
                None
            }
        }
    }

    fn transmit(&mut self, _t: Instant) -> Option<TxToken<'_>> {
        if self.fault.is_some() {
            return None;
        }
        self.reclaim_tx();
        if self.tx.free.is_empty() {
            return None;
        }
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = MTU;
        c.max_burst_size = Some(self.tx.queue.q.size() as usize / 2);
        c
    }
}
