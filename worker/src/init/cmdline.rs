//! The options PID 1 reads from the kernel command line (`/proc/cmdline`): `pupa.KEY=VALUE`
//! words; every other word belongs to the kernel and is ignored.
//!
//! | word | meaning | default |
//! |---|---|---|
//! | `pupa.ip=A.B.C.D/N` | static IPv4 address and prefix of the NIC | none (no address: fatal) |
//! | `pupa.ip=dhcp` | address, prefix and default route by DHCP ([`super::dhcp`]; no renewal) | |
//! | `pupa.gw=A.B.C.D` | default gateway (inside the `pupa.ip` subnet; not with `dhcp`) | no default route |
//! | `pupa.iface=NAME` | the NIC to configure | the first non-loopback interface |
//! | `pupa.listen=ADDR:PORT` | where the worker serves | `0.0.0.0:7000` |
//! | `pupa.tee=auto\|dev\|snp\|tdx` | evidence (auto: the configfs-tsm provider, else dev) | none (required) |
//! | `pupa.compute=auto\|cpu\|cuda` | where jobs run | `auto` |
//!
//! With `pupa.ip=dhcp` the lease is taken once at boot and never renewed: the worker VM lives
//! far shorter than a lease. No DHCP answer in about 22 s (4 tries): fatal, power off.

use std::net::{Ipv4Addr, SocketAddr};

use pupa_worker::compute::ComputeChoice;
use pupa_worker::TeeChoice;

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `A.B.C.D/N`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a.parse().map_err(|e| format!("{a:?}: {e}"))?;
        let prefix: u8 = p.parse().map_err(|e| format!("prefix {p:?}: {e}"))?;
        if prefix > 32 {
            return Err(format!("prefix {prefix} > 32"));
        }
        Ok(Cidr { addr, prefix })
    }

    /// The netmask: `prefix` leading one bits.
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & u32::from(self.netmask()))
    }

    /// Whether `other` lies in this subnet.
    pub fn contains(&self, other: Ipv4Addr) -> bool {
        let m = u32::from(self.netmask());
        u32::from(other) & m == u32::from(self.addr) & m
    }
}

/// How the NIC gets its address (`pupa.ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpConfig {
    /// `pupa.ip=A.B.C.D/N`.
    Static(Cidr),
    /// `pupa.ip=dhcp`.
    Dhcp,
}

/// What PID 1 was told on the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOptions {
    /// `pupa.ip`.
    pub ip: IpConfig,
    /// `pupa.gw`.
    pub gateway: Option<Ipv4Addr>,
    /// `pupa.iface`.
    pub iface: Option<String>,
    /// `pupa.listen`.
    pub listen: SocketAddr,
    /// `pupa.tee`.
    pub tee: TeeChoice,
    /// `pupa.compute`.
    pub compute: ComputeChoice,
}

fn value_enum<T: clap::ValueEnum>(key: &str, v: &str) -> Result<T, String> {
    T::from_str(v, false).map_err(|_| format!("pupa.{key}={v}: unknown value"))
}

/// Parses the `pupa.*` words of a kernel command line.
pub fn parse(cmdline: &str) -> Result<BootOptions, String> {
    let (mut ip, mut gateway, mut iface, mut tee) = (None, None, None, None);
    let mut listen = SocketAddr::from(([0, 0, 0, 0], 7000));
    let mut compute = ComputeChoice::Auto;
    for word in cmdline.split_ascii_whitespace() {
        let Some(kv) = word.strip_prefix("pupa.") else {
            continue;
        };
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("{word}: expected pupa.KEY=VALUE"))?;
        match k {
            "ip" if v == "dhcp" => ip = Some(IpConfig::Dhcp),
            "ip" => {
                let c = Cidr::parse(v).map_err(|e| format!("pupa.ip: {e} (or pupa.ip=dhcp)"))?;
                ip = Some(IpConfig::Static(c))
            }
            "gw" => gateway = Some(v.parse().map_err(|e| format!("pupa.gw={v}: {e}"))?),
            "iface" if !v.is_empty() && v.len() < 16 => iface = Some(v.to_string()),
            "iface" => return Err(format!("pupa.iface={v}: 1 to 15 bytes")),
            "listen" => listen = v.parse().map_err(|e| format!("pupa.listen={v}: {e}"))?,
            "tee" => tee = Some(value_enum(k, v)?),
            "compute" => compute = value_enum(k, v)?,
            _ => return Err(format!("{word}: unknown pupa option")),
        }
    }
    let ip = ip.ok_or("no pupa.ip=ADDRESS/PREFIX or pupa.ip=dhcp")?;
    match (ip, gateway) {
        (IpConfig::Static(c), Some(gw)) if !c.contains(gw) => {
            return Err(format!(
                "pupa.gw={gw} is outside {}/{}",
                c.network(),
                c.prefix
            ));
        }
        (IpConfig::Dhcp, Some(gw)) => {
            return Err(format!(
                "pupa.gw={gw} with pupa.ip=dhcp: the router comes from DHCP"
            ));
        }
        _ => {}
    }
    Ok(BootOptions {
        ip,
        gateway,
        iface,
        listen,
        tee: tee.ok_or("no pupa.tee=auto|dev|snp|tdx")?,
        compute,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "console=ttyS0 panic=-1 pupa.ip=10.0.2.15/24 pupa.gw=10.0.2.2 \
                        pupa.listen=0.0.0.0:7000 pupa.tee=dev\n";

    #[test]
    fn parses_the_test_command_line() {
        let o = parse(LINE).unwrap();
        let want = Cidr {
            addr: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
        };
        assert_eq!(o.ip, IpConfig::Static(want));
        assert_eq!(o.gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(o.iface, None);
        assert_eq!(o.listen, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(o.tee, TeeChoice::Dev);
        assert_eq!(o.compute, ComputeChoice::Auto);
    }

    #[test]
    fn optional_words() {
        let o =
            parse("pupa.ip=192.168.1.9/16 pupa.tee=snp pupa.iface=eth1 pupa.compute=cpu").unwrap();
        assert_eq!(o.iface.as_deref(), Some("eth1"));
        assert_eq!(o.tee, TeeChoice::Snp);
        assert_eq!(o.compute, ComputeChoice::Cpu);
        assert_eq!(o.gateway, None);
        assert_eq!(o.listen.port(), 7000);
    }

    #[test]
    fn dhcp() {
        let o = parse("console=ttyS0 pupa.ip=dhcp pupa.tee=auto pupa.iface=eth0").unwrap();
        assert_eq!(o.ip, IpConfig::Dhcp);
        assert_eq!(o.gateway, None);
        assert_eq!(o.iface.as_deref(), Some("eth0"));
        let e = parse("pupa.ip=dhcp pupa.gw=10.0.2.2 pupa.tee=dev").unwrap_err();
        assert!(e.contains("comes from DHCP"), "{e}");
        assert!(parse("pupa.ip=DHCP pupa.tee=dev").is_err());
        assert!(parse("pupa.ip= pupa.tee=dev").is_err());
    }

    #[test]
    fn refuses_bad_lines() {
        for bad in [
            "pupa.tee=dev",                                       // no address
            "pupa.ip=10.0.2.15/24",                               // no tee
            "pupa.ip=10.0.2.15 pupa.tee=dev",                     // no prefix
            "pupa.ip=10.0.2.15/33 pupa.tee=dev",                  // prefix too long
            "pupa.ip=10.0.2.300/24 pupa.tee=dev",                 // not an address
            "pupa.ip=10.0.2.15/24 pupa.tee=sgx",                  // unknown tee
            "pupa.ip=10.0.2.15/24 pupa.tee=dev pupa.gw=10.0.3.1", // gateway off-subnet
            "pupa.ip=10.0.2.15/24 pupa.tee=dev pupa.nope=1",      // unknown option
            "pupa.ip=10.0.2.15/24 pupa.tee=dev pupa.listen",      // no value
            "pupa.ip=10.0.2.15/24 pupa.tee=dev pupa.iface=aaaaaaaaaaaaaaaa",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn address_math() {
        let c = |s| Cidr::parse(s).unwrap();
        assert_eq!(c("10.0.2.15/24").netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c("10.0.2.15/24").network(), Ipv4Addr::new(10, 0, 2, 0));
        assert_eq!(c("10.0.2.15/0").netmask(), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(
            c("10.0.2.15/32").netmask(),
            Ipv4Addr::new(255, 255, 255, 255)
        );
        assert_eq!(c("172.16.5.4/12").netmask(), Ipv4Addr::new(255, 240, 0, 0));
        assert_eq!(c("172.31.5.4/12").network(), Ipv4Addr::new(172, 16, 0, 0));
        assert_eq!(
            c("10.0.2.15/31").netmask(),
            Ipv4Addr::new(255, 255, 255, 254)
        );
        assert!(c("10.0.2.15/24").contains(Ipv4Addr::new(10, 0, 2, 2)));
        assert!(!c("10.0.2.15/24").contains(Ipv4Addr::new(10, 0, 3, 2)));
        assert!(c("10.0.2.15/0").contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!(!c("10.0.2.15/32").contains(Ipv4Addr::new(10, 0, 2, 14)));
    }
}
