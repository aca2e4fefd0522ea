//! A minimal DHCPv4 client (RFC 2131, options RFC 2132) for `pupa.ip=dhcp`: DISCOVER, OFFER,
//! REQUEST, ACK, once, at boot. The lease is never renewed: the worker VM lives for a job or a
//! session, far shorter than any lease a host hands out; the address simply stays configured.
//!
//! The packet code ([`build_discover`], [`build_request`], [`parse_reply`], [`Lease::from_ack`])
//! is pure (byte slices in, values out, no allocation) and unit-tested; [`obtain`] does the
//! I/O over a UDP socket bound to 0.0.0.0:68 on the interface (SO_BINDTODEVICE, SO_BROADCAST),
//! which Linux lets send to 255.255.255.255 from 0.0.0.0 before the interface has an address.
//!
//! The host (the DHCP server) is not trusted: a reply is accepted only if it is a well-formed
//! BOOTREPLY for our transaction (op 2, htype 1, hlen 6, our xid and MAC, the magic cookie,
//! every option inside the packet, an END option); anything else is dropped and the client
//! keeps waiting until its bounded timeout. A hostile host can deny service (no address:
//! fatal, power off), never make PID 1 panic or loop forever.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Fixed BOOTP header up to (not including) the magic cookie.
const HEADER: usize = 236;
/// Offset of the first option (after the cookie).
const OPTIONS: usize = HEADER + 4;
/// The magic cookie 99.130.83.99 (RFC 2131 §3).
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Length of the packets we send: the BOOTP minimum of 300 bytes (some servers drop less).
pub const PACKET_LEN: usize = 300;
/// The largest reply we read (a longer datagram is truncated, then refused: no END).
const MAX_REPLY: usize = 1500;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHER: u8 = 1;
const FLAG_BROADCAST: u16 = 0x8000;

const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMS: u8 = 55;
const OPT_CLIENT_ID: u8 = 61;
const OPT_END: u8 = 255;

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// DHCPOFFER (2).
    Offer,
    /// DHCPACK (5).
    Ack,
    /// DHCPNAK (6).
    Nak,
}

/// The fields of a well-formed reply that the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Option 53.
    pub kind: Kind,
    /// `yiaddr`: the offered address.
    pub yiaddr: Ipv4Addr,
    /// Option 54 (server identifier).
    pub server: Option<Ipv4Addr>,
    /// Option 1.
    pub netmask: Option<Ipv4Addr>,
    /// Option 3 (the first router).
    pub router: Option<Ipv4Addr>,
    /// Option 51, seconds.
    pub lease_secs: Option<u32>,
}

/// What the ACK gave: the interface configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub addr: Ipv4Addr,
    /// The prefix length of the subnet mask.
    pub prefix: u8,
    /// The default gateway, if the server named one.
    pub router: Option<Ipv4Addr>,
    /// The server that acknowledged.
    pub server: Ipv4Addr,
    /// The lease time in seconds (reported, not acted on: no renewal).
    pub lease_secs: Option<u32>,
}

/// The fixed part shared by DISCOVER and REQUEST; returns the offset after the cookie.
fn header(p: &mut [u8; PACKET_LEN], xid: u32, mac: &[u8; 6]) -> usize {
    p.fill(0);
    p[0] = BOOTREQUEST;
    p[1] = HTYPE_ETHER;
    p[2] = 6; // hlen
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    // no address yet: ask the server to broadcast its replies
    p[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
    p[28..34].copy_from_slice(mac);
    p[HEADER..OPTIONS].copy_from_slice(&COOKIE);
    OPTIONS
}

/// Appends option `code` with `data` at `*at`.
fn put(p: &mut [u8; PACKET_LEN], at: &mut usize, code: u8, data: &[u8]) {
    p[*at] = code;
    p[*at + 1] = data.len() as u8;
    p[*at + 2..*at + 2 + data.len()].copy_from_slice(data);
    *at += 2 + data.len();
}

/// Options 61 (client id: htype + MAC) and 55 (mask, router, lease time, server id), then END.
fn common_tail(p: &mut [u8; PACKET_LEN], at: &mut usize, mac: &[u8; 6]) {
    let mut id = [HTYPE_ETHER; 7];
    id[1..].copy_from_slice(mac);
    put(p, at, OPT_CLIENT_ID, &id);
    put(
        p,
        at,
        OPT_PARAMS,
        &[OPT_SUBNET_MASK, OPT_ROUTER, OPT_LEASE_TIME, OPT_SERVER_ID],
    );
    p[*at] = OPT_END;
}

/// A DHCPDISCOVER for transaction `xid` from `mac`.
pub fn build_discover(xid: u32, mac: &[u8; 6]) -> [u8; PACKET_LEN] {
    let mut p = [0; PACKET_LEN];
    let mut at = header(&mut p, xid, mac);
    put(&mut p, &mut at, OPT_MESSAGE_TYPE, &[1]);
    common_tail(&mut p, &mut at, mac);
    p
}

/// A DHCPREQUEST (SELECTING state: ciaddr 0, options 50 and 54) for the offer of `server`.
pub fn build_request(
    xid: u32,
    mac: &[u8; 6],
    requested: Ipv4Addr,
    server: Ipv4Addr,
) -> [u8; PACKET_LEN] {
    let mut p = [0; PACKET_LEN];
    let mut at = header(&mut p, xid, mac);
    put(&mut p, &mut at, OPT_MESSAGE_TYPE, &[3]);
    put(&mut p, &mut at, OPT_REQUESTED_IP, &requested.octets());
    put(&mut p, &mut at, OPT_SERVER_ID, &server.octets());
    common_tail(&mut p, &mut at, mac);
    p
}

fn ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
}

/// Parses `p` as a reply to transaction `xid` of `mac`. `None` for anything that is not a
/// well-formed BOOTREPLY of that transaction carrying an OFFER, ACK or NAK (the caller drops
/// it and keeps waiting). Option overloading (52) is not honoured: sname and file are ignored.
/// A repeated option: the last one counts.
pub fn parse_reply(p: &[u8], xid: u32, mac: &[u8; 6]) -> Option<Reply> {
    if p.len() < OPTIONS + 1
        || p[0] != BOOTREPLY
        || p[1] != HTYPE_ETHER
        || p[2] != 6
        || p[4..8] != xid.to_be_bytes()
        || p[28..34] != mac[..]
        || p[HEADER..OPTIONS] != COOKIE
    {
        return None;
    }
    let yiaddr = ipv4(&p[16..20])?;
    let (mut kind, mut server, mut netmask, mut router, mut lease_secs) =
        (None, None, None, None, None);
    let mut at = OPTIONS;
    loop {
        let code = *p.get(at)?; // ran off the end without END: malformed
        match code {
            OPT_PAD => {
                at += 1;
                continue;
            }
            OPT_END => break,
            _ => {}
        }
        let len = usize::from(*p.get(at + 1)?);
        let data = p.get(at + 2..at + 2 + len)?;
        at += 2 + len;
        match code {
            OPT_MESSAGE_TYPE => {
                kind = Some(match data {
                    [2] => Kind::Offer,
                    [5] => Kind::Ack,
                    [6] => Kind::Nak,
                    _ => return None,
                })
            }
            OPT_SERVER_ID => server = Some(ipv4(data)?),
            OPT_SUBNET_MASK => netmask = Some(ipv4(data)?),
            OPT_ROUTER if !data.is_empty() && data.len() % 4 == 0 => router = ipv4(&data[..4]),
            OPT_ROUTER => return None,
            OPT_LEASE_TIME => lease_secs = Some(u32::from_be_bytes(data.try_into().ok()?)),
            _ => {}
        }
    }
    Some(Reply {
        kind: kind?,
        yiaddr,
        server,
        netmask,
        router,
        lease_secs,
    })
}

/// The prefix length of a contiguous netmask (`None` for 255.0.255.0 and the like).
pub fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Whether `a` can be a unicast host address.
fn usable(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

impl Lease {
    /// The configuration an ACK from `server` gives, or why it cannot be used: the address must
    /// be a unicast one, the subnet mask (option 1) present and contiguous, the router (if any)
    /// a unicast address inside the subnet.
    pub fn from_ack(r: &Reply, server: Ipv4Addr) -> Result<Lease, String> {
        if !usable(r.yiaddr) {
            return Err(format!("the ACK from {server} offers {}", r.yiaddr));
        }
        let mask = r
            .netmask
            .ok_or_else(|| format!("the ACK from {server} has no subnet mask (option 1)"))?;
        let prefix = prefix_of(mask)
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("the ACK from {server} has subnet mask {mask}"))?;
        if let Some(gw) = r.router {
            let m = u32::from(mask);
            if !usable(gw) || u32::from(gw) & m != u32::from(r.yiaddr) & m {
                return Err(format!(
                    "the ACK from {server} names router {gw}, outside {}/{prefix}",
                    r.yiaddr
                ));
            }
        }
        Ok(Lease {
            addr: r.yiaddr,
            prefix,
            router: r.router,
            server,
            lease_secs: r.lease_secs,
        })
    }
}

/// How long each try waits for its reply (the request is resent before each).
const TRIES: [u64; 4] = [2, 4, 8, 8];
/// How many times a NAK sends the client back to DISCOVER.
const ROUNDS: usize = 3;

/// Sends `packet` to 255.255.255.255:67 and waits for a reply that `want` accepts, resending
/// after each timeout of [`TRIES`]. `Ok(None)`: no such reply in time.
fn exchange(
    sock: &UdpSocket,
    packet: &[u8],
    xid: u32,
    mac: &[u8; 6],
    want: impl Fn(&Reply) -> bool,
) -> io::Result<Option<Reply>> {
    let mut buf = [0u8; MAX_REPLY];
    for secs in TRIES {
        sock.send_to(packet, (Ipv4Addr::BROADCAST, 67))?;
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            if !matches!(from, SocketAddr::V4(f) if f.port() == 67) {
                continue;
            }
            if let Some(r) = parse_reply(&buf[..n], xid, mac) {
                if want(&r) {
                    return Ok(Some(r));
                }
            }
        }
    }
    Ok(None)
}

/// Obtains a lease on `iface` (which must be up) whose MAC is `mac`, through `sock` (UDP,
/// bound to 0.0.0.0:68 on `iface`, SO_BROADCAST). Errors are one line, `dhcp: …`.
pub fn obtain(sock: &UdpSocket, iface: &str, mac: &[u8; 6]) -> Result<Lease, String> {
    let total: u64 = TRIES.iter().sum();
    let io_err = |e: io::Error| format!("dhcp: {iface}: {e}");
    for _ in 0..ROUNDS {
        let xid = getrandom::u32().map_err(|e| format!("dhcp: getrandom: {e}"))?;
        let offer = exchange(sock, &build_discover(xid, mac), xid, mac, |r| {
            r.kind == Kind::Offer && usable(r.yiaddr) && r.server.is_some_and(usable)
        })
        .map_err(io_err)?
        .ok_or_else(|| {
            format!(
                "dhcp: no DHCPOFFER on {iface} after {} tries ({total} s)",
                TRIES.len()
            )
        })?;
        let server = offer.server.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let request = build_request(xid, mac, offer.yiaddr, server);
        let reply = exchange(sock, &request, xid, mac, |r| {
            matches!(r.kind, Kind::Ack | Kind::Nak) && r.server == Some(server)
        })
        .map_err(io_err)?
        .ok_or_else(|| {
            format!(
                "dhcp: no DHCPACK from {server} on {iface} for {} after {} tries ({total} s)",
                offer.yiaddr,
                TRIES.len()
            )
        })?;
        match reply.kind {
            Kind::Ack => return Lease::from_ack(&reply, server).map_err(|e| format!("dhcp: {e}")),
            _ => super::say(&format!(
                "dhcp: {server} refused (DHCPNAK) {}; starting over",
                offer.yiaddr
            )),
        }
    }
    Err(format!(
        "dhcp: {ROUNDS} DHCPNAKs on {iface}, no address leased"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const XID: u32 = 0xdead_beef;
    const SLIRP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

    /// The options of `p` as (code, data) pairs, up to END (the test's own walker).
    fn options(p: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = OPTIONS;
        while p[at] != OPT_END {
            if p[at] == OPT_PAD {
                at += 1;
                continue;
            }
            let len = p[at + 1] as usize;
            out.push((p[at], p[at + 2..at + 2 + len].to_vec()));
            at += 2 + len;
        }
        out
    }

    /// A reply as QEMU's slirp sends it (bootp.c): server 10.0.2.2, yiaddr 10.0.2.15, mask
    /// /24, router 10.0.2.2, DNS 10.0.2.3, lease 86400 s, padded to 548 bytes.
    fn slirp_reply(kind: u8) -> Vec<u8> {
        let mut p = vec![0u8; 548];
        p[0] = BOOTREPLY;
        p[1] = 1;
        p[2] = 6;
        p[4..8].copy_from_slice(&XID.to_be_bytes());
        p[16..20].copy_from_slice(&GUEST.octets());
        p[20..24].copy_from_slice(&SLIRP.octets());
        p[28..34].copy_from_slice(&MAC);
        p[HEADER..OPTIONS].copy_from_slice(&COOKIE);
        let opts: &[u8] = &[
            53, 1, kind, //
            54, 4, 10, 0, 2, 2, //
            1, 4, 255, 255, 255, 0, //
            3, 4, 10, 0, 2, 2, //
            6, 4, 10, 0, 2, 3, //
            51, 4, 0, 1, 0x51, 0x80, //
            255,
        ];
        p[OPTIONS..OPTIONS + opts.len()].copy_from_slice(opts);
        p
    }

    fn check_header(p: &[u8]) {
        assert_eq!(p.len(), PACKET_LEN);
        assert_eq!(p[0], 1, "op BOOTREQUEST");
        assert_eq!(p[1], 1, "htype ethernet");
        assert_eq!(p[2], 6, "hlen");
        assert_eq!(p[3], 0, "hops");
        assert_eq!(p[4..8], XID.to_be_bytes(), "xid");
        assert_eq!(p[8..10], [0, 0], "secs");
        assert_eq!(p[10..12], [0x80, 0], "flags: broadcast");
        assert_eq!(p[12..28], [0; 16], "ciaddr yiaddr siaddr giaddr");
        assert_eq!(p[28..34], MAC, "chaddr");
        assert_eq!(p[34..44], [0; 10], "chaddr padding");
        assert!(p[44..236].iter().all(|&b| b == 0), "sname, file");
        assert_eq!(p[236..240], [99, 130, 83, 99], "cookie");
    }

    #[test]
    fn discover_fields_at_their_rfc2131_offsets() {
        let p = build_discover(XID, &MAC);
        check_header(&p);
        let o = options(&p);
        assert_eq!(o[0], (53, vec![1]), "DHCPDISCOVER first");
        assert!(o.contains(&(61, [&[1u8][..], &MAC].concat())));
        assert!(o.contains(&(55, vec![1, 3, 51, 54])));
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn request_fields_at_their_rfc2131_offsets() {
        let p = build_request(XID, &MAC, GUEST, SLIRP);
        check_header(&p);
        let o = options(&p);
        assert_eq!(o[0], (53, vec![3]), "DHCPREQUEST first");
        assert!(o.contains(&(50, vec![10, 0, 2, 15])));
        assert!(o.contains(&(54, vec![10, 0, 2, 2])));
        assert!(o.contains(&(61, [&[1u8][..], &MAC].concat())));
        assert_eq!(o.len(), 5);
    }

    #[test]
    fn parses_slirp_offer_and_ack() {
        let offer = parse_reply(&slirp_reply(2), XID, &MAC).unwrap();
        let want = Reply {
            kind: Kind::Offer,
            yiaddr: GUEST,
            server: Some(SLIRP),
            netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            router: Some(SLIRP),
            lease_secs: Some(86400),
        };
        assert_eq!(offer, want);
        let ack = parse_reply(&slirp_reply(5), XID, &MAC).unwrap();
        assert_eq!(ack.kind, Kind::Ack);
        assert_eq!(
            Lease::from_ack(&ack, SLIRP),
            Ok(Lease {
                addr: GUEST,
                prefix: 24,
                router: Some(SLIRP),
                server: SLIRP,
                lease_secs: Some(86400),
            })
        );
        assert_eq!(
            parse_reply(&slirp_reply(6), XID, &MAC).unwrap().kind,
            Kind::Nak
        );
        // PAD before options, no padding after END, a second router: fine
        let mut p = slirp_reply(5);
        p.truncate(OPTIONS);
        p.extend_from_slice(&[0, 0, 53, 1, 5, 3, 8, 10, 0, 2, 1, 10, 0, 2, 9, 255]);
        let r = parse_reply(&p, XID, &MAC).unwrap();
        assert_eq!(r.router, Some(Ipv4Addr::new(10, 0, 2, 1)));
        assert_eq!(r.server, None);
    }

    #[test]
    fn refuses_malformed_replies() {
        let good = slirp_reply(5);
        let bad = |f: &dyn Fn(&mut Vec<u8>), why: &str| {
            let mut p = good.clone();
            f(&mut p);
            assert_eq!(parse_reply(&p, XID, &MAC), None, "{why}");
        };
        bad(&|p| p[0] = 1, "op=1 (a request)");
        bad(&|p| p[1] = 6, "htype");
        bad(&|p| p[2] = 16, "hlen");
        bad(&|p| p[7] ^= 1, "wrong xid");
        bad(&|p| p[33] ^= 1, "wrong chaddr");
        bad(&|p| p[236..240].fill(0), "missing cookie");
        bad(&|p| p.truncate(OPTIONS), "no options");
        bad(&|p| p.truncate(200), "shorter than the header");
        bad(&|p| p.clear(), "empty");
        // truncated in the middle of the subnet mask option
        bad(&|p| p.truncate(OPTIONS + 3 + 6 + 4), "truncated options");
        // the lease-time option claims more bytes than the packet holds
        bad(
            &|p| {
                p.truncate(OPTIONS + 3 + 6 + 6 + 6 + 6);
                p.extend_from_slice(&[51, 200, 0, 1]);
            },
            "option past the end",
        );
        // only the length byte of an option is missing
        bad(
            &|p| {
                p.truncate(OPTIONS + 3);
                p.push(54);
            },
            "option without its length",
        );
        bad(
            &|p| p.iter_mut().skip(OPTIONS + 30).for_each(|b| *b = 0),
            "no END",
        );
        bad(&|p| p[OPTIONS..OPTIONS + 3].fill(0), "no message type");
        bad(&|p| p[OPTIONS + 2] = 1, "a DISCOVER as a reply");
        bad(&|p| p[OPTIONS + 1] = 2, "message type of length 2");
        bad(&|p| p[OPTIONS + 4] = 3, "server id of length 3");
        bad(&|p| p[OPTIONS + 16] = 0, "router of length 0");
        // every truncation and every single-byte corruption: no panic
        for n in 0..good.len() {
            let _ = parse_reply(&good[..n], XID, &MAC);
        }
        for i in 0..OPTIONS + 40 {
            for v in [0, 1, 2, 4, 5, 6, 53, 54, 128, 255] {
                let mut p = good.clone();
                p[i] = v;
                let _ = parse_reply(&p, XID, &MAC);
            }
        }
    }

    #[test]
    fn acks_that_cannot_configure_the_nic() {
        let ack = parse_reply(&slirp_reply(5), XID, &MAC).unwrap();
        let err = |r: Reply| Lease::from_ack(&r, SLIRP).unwrap_err();
        assert!(err(Reply {
            netmask: None,
            ..ack
        })
        .contains("no subnet mask"));
        let holes = Some(Ipv4Addr::new(255, 0, 255, 0));
        assert!(err(Reply {
            netmask: holes,
            ..ack
        })
        .contains("subnet mask 255.0.255.0"));
        let router = Some(Ipv4Addr::new(10, 0, 3, 1));
        assert!(err(Reply { router, ..ack }).contains("outside 10.0.2.15/24"));
        for yiaddr in [Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST] {
            assert!(err(Reply { yiaddr, ..ack }).contains("offers"));
        }
        let no_router = Lease::from_ack(
            &Reply {
                router: None,
                ..ack
            },
            SLIRP,
        )
        .unwrap();
        assert_eq!(no_router.router, None);
    }

    #[test]
    fn prefix_lengths() {
        let p = |a: [u8; 4]| prefix_of(Ipv4Addr::from(a));
        assert_eq!(p([255, 255, 255, 0]), Some(24));
        assert_eq!(p([255, 255, 255, 255]), Some(32));
        assert_eq!(p([255, 240, 0, 0]), Some(12));
        assert_eq!(p([0, 0, 0, 0]), Some(0));
        assert_eq!(p([255, 255, 0, 255]), None);
        assert_eq!(p([0, 0, 0, 255]), None);
    }
}
