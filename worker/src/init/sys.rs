//! Thin wrappers over the Linux system calls PID 1 needs: mount, finit_module, the classic
//! mknod, network ioctls (SIOCSIFADDR, SIOCSIFNETMASK, SIOCGIFFLAGS/SIOCSIFFLAGS, SIOCADDRT,
//! SIOCGIFHWADDR), the DHCP client's socket options, reboot and the SIGCHLD disposition. Every
//! `unsafe` block of the init code is here.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a string"))
}

fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mount(source, target, fstype, 0, NULL)`.
pub fn mount(source: &str, target: &str, fstype: &str) -> io::Result<()> {
    let (s, t, f) = (cstr(source)?, cstr(target)?, cstr(fstype)?);
    // SAFETY: three valid NUL-terminated strings that outlive the call; no data argument.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    check(rc.into())
}

/// `mknod(path, S_IFCHR | mode, makedev(major, minor))`: a character device node.
pub fn mknod_char(path: &str, major: u32, minor: u32, mode: u32) -> io::Result<()> {
    let p = cstr(path)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: a valid NUL-terminated path that outlives the call; mode and device are values.
    let rc = unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | mode as libc::mode_t, dev) };
    check(rc.into())
}

/// `finit_module` flag: the file is compressed (xz, zstd or gzip, whichever the kernel was
/// built to decompress: `CONFIG_MODULE_DECOMPRESS`, Linux >= 6.1); the kernel decompresses it.
pub const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;

/// Loads the kernel module in `file` (finit_module, no parameters, `flags`).
pub fn finit_module(file: &File, flags: libc::c_int) -> io::Result<()> {
    let params = c"";
    // SAFETY: finit_module(fd, const char *params, int flags): `file` is an open descriptor
    // for the duration of the call and `params` a static NUL-terminated string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    check(rc)
}

/// Ignores SIGCHLD: children (there are none) are reaped by the kernel, no zombies remain.
pub fn ignore_sigchld() -> io::Result<()> {
    // SAFETY: installs the SIG_IGN disposition; no handler code runs.
    let prev = unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    if prev == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Powers the machine off (never returns: if the kernel refuses, halts this thread forever).
pub fn power_off() -> ! {
    // SAFETY: sync() has no arguments and no preconditions.
    unsafe { libc::sync() };
    // SAFETY: reboot(2) with a valid command; on success it does not return.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// `struct ifreq`: the name and the 24-byte union (a sockaddr or the flags).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(iface: &str) -> io::Result<IfReq> {
        let mut name = [0u8; libc::IFNAMSIZ];
        if iface.is_empty() || iface.len() >= name.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface name",
            ));
        }
        name[..iface.len()].copy_from_slice(iface.as_bytes());
        Ok(IfReq {
            name,
            data: [0; 24],
        })
    }
}

/// A `struct sockaddr_in` for `a` (port 0), as the 16 bytes of a `struct sockaddr`.
fn sockaddr(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16-byte plain-data C structs.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn sockaddr_bytes(a: Ipv4Addr) -> [u8; 16] {
    // SAFETY: sockaddr is a 16-byte plain-data C struct without padding.
    unsafe { std::mem::transmute::<libc::sockaddr, [u8; 16]>(sockaddr(a)) }
}

/// A datagram socket, the handle the interface ioctls go through.
pub struct NetCtl(OwnedFd);

impl NetCtl {
    /// Opens an AF_INET datagram socket.
    pub fn open() -> io::Result<NetCtl> {
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        Ok(NetCtl(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ioctl<T>(&self, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
        // SAFETY: `arg` is the exclusive reference to the C struct this request reads or
        // writes (ifreq or rtentry), valid for the call; the socket is open.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), request as _, arg as *mut T) };
        check(rc.into())
    }

    /// SIOCSIFADDR / SIOCSIFNETMASK: sets an IPv4 address field of `iface`.
    fn set_addr(&self, iface: &str, request: libc::c_ulong, a: Ipv4Addr) -> io::Result<()> {
        let mut r = IfReq::new(iface)?;
        r.data[..16].copy_from_slice(&sockaddr_bytes(a));
        self.ioctl(request, &mut r)
    }

    /// Gives `iface` the address `addr` with netmask `mask`.
    pub fn set_ipv4(&self, iface: &str, addr: Ipv4Addr, mask: Ipv4Addr) -> io::Result<()> {
        self.set_addr(iface, libc::SIOCSIFADDR, addr)?;
        self.set_addr(iface, libc::SIOCSIFNETMASK, mask)
    }

    /// Sets IFF_UP on `iface` (keeping its other flags).
    pub fn up(&self, iface: &str) -> io::Result<()> {
        let mut r = IfReq::new(iface)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut r)?;
        let flags = i16::from_ne_bytes([r.data[0], r.data[1]]) | libc::IFF_UP as i16;
        r.data[..2].copy_from_slice(&flags.to_ne_bytes());
        self.ioctl(libc::SIOCSIFFLAGS, &mut r)
    }

    /// SIOCGIFHWADDR: the Ethernet MAC address of `iface`.
    pub fn hwaddr(&self, iface: &str) -> io::Result<[u8; 6]> {
        let mut r = IfReq::new(iface)?;
        self.ioctl(libc::SIOCGIFHWADDR, &mut r)?;
        // a struct sockaddr: sa_family (native u16), then sa_data with the address
        let family = u16::from_ne_bytes([r.data[0], r.data[1]]);
        if family != libc::ARPHRD_ETHER {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("hardware type {family}, not Ethernet"),
            ));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&r.data[2..8]);
        Ok(mac)
    }

    /// Adds the default route through `gateway` (SIOCADDRT, RTF_UP | RTF_GATEWAY).
    pub fn default_route(&self, gateway: Ipv4Addr) -> io::Result<()> {
        // SAFETY: rtentry is a plain C struct; all-zero is its "unset" value (null rt_dev).
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gateway);
        rt.rt_flags = (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort;
        self.ioctl(libc::SIOCADDRT, &mut rt)
    }
}

fn setsockopt(fd: &OwnedFd, name: libc::c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is a readable buffer of the length passed; the descriptor is open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    check(rc.into())
}

/// The DHCP client's socket: UDP, SO_BROADCAST, SO_BINDTODEVICE `iface` (so that broadcasts
/// leave through it before it has an address), bound to 0.0.0.0:68.
pub fn dhcp_socket(iface: &str) -> io::Result<UdpSocket> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt(&fd, libc::SO_BROADCAST, &1i32.to_ne_bytes())?;
    let name = IfReq::new(iface)?.name;
    setsockopt(&fd, libc::SO_BINDTODEVICE, &name[..iface.len()])?;
    let mut addr = sockaddr(Ipv4Addr::UNSPECIFIED);
    addr.sa_data[..2].copy_from_slice(&68u16.to_be_bytes().map(|b| b as libc::c_char));
    // SAFETY: `addr` is a 16-byte struct sockaddr (a sockaddr_in for 0.0.0.0:68) valid for
    // the call; the descriptor is open.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    check(rc.into())?;
    Ok(UdpSocket::from(fd))
}
