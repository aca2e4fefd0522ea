//! The guests `pupa-host run` supervises: a VM launched from a profile, or a guest run by
//! someone else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::supervise::{GuestBackend, StartError};
use crate::profile::{self, Accel, LaunchConfig, LinuxPayload, Network, TeeKind, Vmm};
use crate::vm;

/// The unikernel's ready line.
pub const UNIKERNEL_READY: &str = "pupa: ready";
/// The start of pupa-worker's ready line (`pupa-worker: listening on ADDR`).
pub const LINUX_READY: &str = "pupa-worker: listening on ";

/// A guest VM launched from a profile (`profile::command`) and watched through `vm::Guest`.
pub struct VmBackend {
    /// The firmware image.
    pub image: PathBuf,
    /// TEE kind.
    pub tee: TeeKind,
    /// VMM.
    pub vmm: Vmm,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// Networking.
    pub network: Network,
    /// Where the job port is reached once the guest is up.
    pub guest_addr: SocketAddr,
    /// How long to wait for the ready line ([`Self::ready_marker`]).
    pub ready_timeout: Duration,
    /// A Linux kernel for the firmware to boot instead of its own runtime.
    pub payload: Option<LinuxPayload>,
    /// The accelerator; `None`: KVM if a probe boot of the image works under it, else TCG
    /// (decided at the first start). TEE launches always use KVM.
    pub accel: Option<Accel>,
    guest: Option<vm::Guest>,
    /// The console tail of the last guest, kept after it was stopped.
    last_tail: Vec<String>,
}

impl VmBackend {
    /// A backend that boots `image` with these settings.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        image: PathBuf,
        tee: TeeKind,
        vmm: Vmm,
        memory_mib: u32,
        vcpus: u32,
        network: Network,
        guest_addr: SocketAddr,
        ready_timeout: Duration,
    ) -> VmBackend {
        VmBackend {
            image,
            tee,
            vmm,
            memory_mib,
            vcpus,
            network,
            guest_addr,
            ready_timeout,
            payload: None,
            accel: None,
            guest: None,
            last_tail: Vec::new(),
        }
    }

    /// The console line that says the guest serves: the unikernel's `pupa: ready`, or
    /// pupa-worker's `pupa-worker: listening on ADDR` under the Linux payload.
    pub fn ready_marker(&self) -> &'static str {
        if self.payload.is_some() {
            LINUX_READY
        } else {
            UNIKERNEL_READY
        }
    }

    fn accel(&mut self, stop: &AtomicBool) -> Result<Accel, StartError> {
        if self.tee != TeeKind::Dev {
            return Ok(Accel::Kvm);
        }
        if let Some(a) = self.accel {
            return Ok(a);
        }
        let kvm = profile::kvm_works_or_stop(&self.image, Duration::from_secs(20), Some(stop));
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StartError::Stopped);
        }
        let a = if kvm {
            Accel::Kvm
        } else {
            tracing::info!("KVM does not run the image here; using TCG");
            Accel::Tcg
        };
        self.accel = Some(a);
        Ok(a)
    }
}

impl GuestBackend for VmBackend {
    fn start(&mut self, stop: &AtomicBool) -> Result<SocketAddr, StartError> {
        if let Network::UserForward { host_port, .. } = self.network {
            vm::check_port_free(host_port)?;
        }
        let accel = self.accel(stop)?;
        let cfg = LaunchConfig {
            tee: self.tee,
            vmm: self.vmm,
            image: &self.image,
            memory_mib: self.memory_mib,
            vcpus: self.vcpus,
            accel,
            network: self.network.clone(),
            debug_exit: false,
            fw_cfg: vec![],
            payload: self.payload.clone(),
        };
        let marker = self.ready_marker();
        let t = std::time::Instant::now();
        let mut g = vm::Guest::start(&cfg)?;
        let ready = g.wait_for_or_stop(
            marker.trim_end(),
            self.ready_timeout,
            Some(stop),
            |l| l.contains(marker),
            |_| {},
        );
        self.last_tail = g.console_tail();
        self.guest = Some(g);
        match ready {
            Ok(_) => {
                tracing::info!(
                    ms = t.elapsed().as_millis() as u64,
                    ?accel,
                    "guest printed its ready line"
                );
                Ok(self.guest_addr)
            }
            Err(vm::VmError::Stopped { .. }) => Err(StartError::Stopped),
            Err(e) => Err(e.into()),
        }
    }

    fn is_running(&mut self) -> bool {
        self.guest.as_mut().is_some_and(|g| g.is_running())
    }

    fn stop(&mut self) {
        if let Some(mut g) = self.guest.take() {
            g.stop();
            self.last_tail = g.console_tail();
        }
    }

    fn console_tail(&self) -> Vec<String> {
        match &self.guest {
            Some(g) => g.console_tail(),
            None => self.last_tail.clone(),
        }
    }
}

/// A guest run by someone else: the supervisor only probes it (it cannot restart it).
pub struct ExternalGuest(pub SocketAddr);

impl GuestBackend for ExternalGuest {
    fn start(&mut self, _stop: &AtomicBool) -> Result<SocketAddr, StartError> {
        Ok(self.0)
    }
    fn is_running(&mut self) -> bool {
        true
    }
    fn stop(&mut self) {}
}
