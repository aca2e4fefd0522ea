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

use pupa_guest::virtqueue::{
    avail_bytes, copy_from_shared, copy_to_shared, desc_bytes, used_bytes, QueueError, SplitQueue,
};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::idle;
use super::pci::MsixError;
use super::virtio_pci::{
    Notifier, Transport, TransportError, STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK,
    STATUS_FAILED, STATUS_FEATURES_OK, VIRTIO_MSI_NO_VECTOR,
};
use pupa_guest::idle::VECTOR_NET;

const VIRTIO_VENDOR: u16 = 0x1AF4;
/// Modern virtio-net (0x1040 + device type 1) and the transitional id.
const VIRTIO_NET_IDS: [(u16, u16); 2] = [(VIRTIO_VENDOR, 0x1041), (VIRTIO_VENDOR, 0x1000)];

// Feature bits (§5.1.3, §6).
const VIRTIO_NET_F_MAC: u64 = 1 << 5;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;

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
    /// No virtio-net device on PCI bus 0.
    NoDevice,
    /// The virtio-pci transport failed (BARs, capabilities, register bounds).
    Transport(TransportError),
    /// VIRTIO_NET_F_MAC was negotiated but there is no device configuration structure.
    NoDeviceConfig,
    Features(&'static str),
    Queue(&'static str),
    NoMemory,
}

impl From<TransportError> for NetError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::NoDevice => NetError::NoDevice,
            e => NetError::Transport(e),
        }
    }
}

/// Why the NIC runs without interrupts (it still works: the idle halt is then capped).
#[derive(Debug)]
pub enum IrqError {
    /// The local APIC is not set up (`idle::init` failed or was not called).
    NoApic,
    /// The device's MSI-X could not be programmed.
    Msix(MsixError),
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
            NetError::Transport(e) => write!(f, "virtio-pci: {e}"),
            NetError::NoDeviceConfig => {
                write!(
                    f,
                    "the device offers a MAC but no device configuration structure"
                )
            }
            NetError::Features(e) => write!(f, "feature negotiation: {e}"),
            NetError::Queue(e) => write!(f, "virtqueue setup: {e}"),
            NetError::NoMemory => write!(f, "out of memory for virtqueues and buffers"),
        }
    }
}

struct Queue {
    q: SplitQueue,
    notifier: Notifier,
}

impl Queue {
    fn kick(&self) {
        self.notifier.notify();
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
    /// Private memory the network stack writes a frame into before it is copied to a bounce
    /// buffer (the stack never gets a reference into host-shared memory).
    scratch: Vec<u8>,
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
    /// Find, reset and bring up the first virtio-net device (§3.1.1 driver initialisation).
    pub fn init(dma: &mut dyn DmaPool) -> Result<VirtioNet, NetError> {
        let t = Transport::probe(&VIRTIO_NET_IDS)?;
        // MSI-X entry 0 → this CPU's VECTOR_NET; the queues are pointed at it below (after the
        // reset, which unassigns every vector).
        let msix = arm_msix(&t);
        let queue_vector = if msix.is_ok() {
            MSIX_ENTRY_QUEUES
        } else {
            VIRTIO_MSI_NO_VECTOR
        };
        t.reset()?;
        t.set_status(STATUS_ACKNOWLEDGE)?;
        t.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER)?;
        let (features, st) = negotiate(&t)?;
        let mac = read_mac(&t, features)?;
        t.set_config_msix_vector(VIRTIO_MSI_NO_VECTOR)?;
        let (rxq, rx_vector) = setup_queue(&t, dma, RX_QUEUE, queue_vector)?;
        let (txq, tx_vector) = setup_queue(&t, dma, TX_QUEUE, queue_vector)?;
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
            scratch: alloc::vec![0; BUF_SIZE],
            free: (0..n).collect(),
            slot_of: alloc::vec![usize::MAX; n],
        };
        for _ in 0..n {
            tx.bufs.push(dma.alloc(BUF_SIZE).ok_or(NetError::NoMemory)?);
        }
        t.set_status(st | STATUS_DRIVER_OK)?;
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
        let dev = t.device();
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

/// Points MSI-X table entry [`MSIX_ENTRY_QUEUES`] at this CPU's [`VECTOR_NET`] and enables
/// MSI-X.
fn arm_msix(t: &Transport) -> Result<(), IrqError> {
    let msg = idle::msi_message(VECTOR_NET).ok_or(IrqError::NoApic)?;
    let m = t.msix().map_err(IrqError::Msix)?;
    m.set_entry(MSIX_ENTRY_QUEUES, msg)
        .map_err(IrqError::Msix)?;
    m.enable(t.device());
    Ok(())
}

/// Feature negotiation (§3.1.1 steps 4–6): VERSION_1 required, MAC and ACCESS_PLATFORM taken
/// when offered. Returns the features and the device status so far.
fn negotiate(t: &Transport) -> Result<(u64, u8), NetError> {
    let offered = t.device_features()?;
    if offered & VIRTIO_F_VERSION_1 == 0 {
        t.set_status(STATUS_FAILED)?;
        return Err(NetError::Features(
            "the device does not offer VIRTIO_F_VERSION_1",
        ));
    }
    let wanted = VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_F_ACCESS_PLATFORM;
    let features = offered & wanted;
    t.set_driver_features(features)?;
    let st = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
    t.set_status(st)?;
    if t.status()? & STATUS_FEATURES_OK == 0 {
        t.set_status(STATUS_FAILED)?;
        return Err(NetError::Features(
            "the device refused the negotiated features",
        ));
    }
    Ok((features, st))
}

/// The MAC from the device configuration (`struct virtio_net_config.mac`, §5.1.4) when
/// VIRTIO_NET_F_MAC was negotiated, else QEMU's default.
fn read_mac(t: &Transport, features: u64) -> Result<[u8; 6], NetError> {
    let mut mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    if features & VIRTIO_NET_F_MAC != 0 {
        let cfg = t.device_cfg().ok_or(NetError::NoDeviceConfig)?;
        for (i, b) in mac.iter_mut().enumerate() {
            *b = cfg.read8(i as u64).map_err(TransportError::from)?;
        }
    }
    Ok(mac)
}

/// Sets up queue `index` with the largest power-of-two size up to [`QUEUE_SIZE`] the device
/// allows, its areas from `dma`. Returns the queue and whether the device took `vector`.
fn setup_queue(
    t: &Transport,
    dma: &mut dyn DmaPool,
    index: u16,
    vector: u16,
) -> Result<(Queue, bool), NetError> {
    let max = t.queue_max_size(index)?;
    let pow2 = 1u16 << (15 - max.leading_zeros()); // largest power of two <= max (max > 0)
    let size = QUEUE_SIZE.min(pow2);
    let desc = dma.alloc(desc_bytes(size)).ok_or(NetError::NoMemory)?;
    let avail = dma.alloc(avail_bytes(size)).ok_or(NetError::NoMemory)?;
    let used = dma.alloc(used_bytes(size)).ok_or(NetError::NoMemory)?;
    let areas = (desc as u64, avail as u64, used as u64);
    let (notifier, vector_ok) = t.setup_queue(index, size, areas, vector)?;
    // SAFETY: the three areas were just allocated zeroed, page-aligned and large enough, and
    // belong to this queue only.
    let q = unsafe { SplitQueue::new(size, desc, avail, used) };
    Ok((Queue { q, notifier }, vector_ok))
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
        // the zeroed virtio_net_hdr, then the frame the stack writes into private memory
        let frame = &mut tx.scratch[..NET_HDR + len];
        frame[..NET_HDR].fill(0);
        let r = f(&mut frame[NET_HDR..]);
        // SAFETY: `buf` is a BUF_SIZE bounce buffer of DMA memory owned by this slot and not in
        // flight; NET_HDR + len <= BUF_SIZE.
        unsafe { copy_to_shared(frame, buf) };
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
            let mut f = alloc::vec![0; len - NET_HDR];
            // SAFETY: `buf` is a BUF_SIZE bounce buffer of DMA memory and len ≤ BUF_SIZE
            // (checked by the queue against the posted length).
            unsafe { copy_from_shared(buf.add(NET_HDR), &mut f) };
            Some(f)
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
