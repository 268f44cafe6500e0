//! Telling the network an address moved here: after a claim, gratuitous
//! ARP for IPv4 (an ARP request from the address for the address,
//! broadcast) and an unsolicited neighbour advertisement for IPv6 (to
//! ff02::1, override flag set), so hosts and switches that cached the old
//! site's MAC update at once instead of when their entry times out.
//!
//! Needs CAP_NET_RAW; without it the announcement is skipped with a
//! warning (clients then find the new MAC when their cache expires).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Announcements sent per claim.
pub const ANNOUNCE_REPEATS: u32 = 3;
/// Time between two announcements.
pub const ANNOUNCE_INTERVAL_MS: u64 = 100;

pub const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;
/// Ethernet header (14) + ARP for IPv4 over Ethernet (28).
pub const ARP_FRAME_BYTES: usize = 42;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
pub const ICMPV6_NEIGHBOUR_SOLICITATION: u8 = 135;
pub const ICMPV6_NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// NA flag: the advertised MAC replaces a cached one.
const NA_OVERRIDE: u8 = 0x20;
/// NDP option types: source and target link-layer address.
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// NDP packets must carry hop limit 255 (RFC 4861 §7.1.1, §7.1.2).
const NDP_HOP_LIMIT: libc::c_int = 255;

/// An ARP packet for IPv4 over Ethernet, in an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// A gratuitous ARP: a request from `ip` for `ip`.
    pub fn gratuitous(mac: [u8; 6], ip: Ipv4Addr) -> Arp {
        Arp {
            op: ARP_REQUEST,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: [0; 6],
            target_ip: ip,
        }
    }

    /// An RFC 5227 probe: sender IP 0.0.0.0, so no host caches it.
    pub fn probe(mac: [u8; 6], ip: Ipv4Addr) -> Arp {
        Arp {
            op: ARP_REQUEST,
            sender_mac: mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: [0; 6],
            target_ip: ip,
        }
    }

    /// The frame, broadcast.
    pub fn frame(&self) -> [u8; ARP_FRAME_BYTES] {
        let mut f = [0u8; ARP_FRAME_BYTES];
        f[0..6].copy_from_slice(&BROADCAST_MAC);
        f[6..12].copy_from_slice(&self.sender_mac);
        f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
        f[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes());
        f[18] = 6;
        f[19] = 4;
        f[20..22].copy_from_slice(&self.op.to_be_bytes());
        f[22..28].copy_from_slice(&self.sender_mac);
        f[28..32].copy_from_slice(&self.sender_ip.octets());
        f[32..38].copy_from_slice(&self.target_mac);
        f[38..42].copy_from_slice(&self.target_ip.octets());
        f
    }

    /// Parses an Ethernet frame holding ARP for IPv4; None for anything
    /// else or a short frame.
    pub fn parse(f: &[u8]) -> Option<Arp> {
        let f = f.get(..ARP_FRAME_BYTES)?;
        let be16 = |at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
        let mac = |at: usize| -> [u8; 6] {
            let mut m = [0u8; 6];
            m.copy_from_slice(&f[at..at + 6]);
            m
        };
        let ip = |at: usize| Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]);
        if be16(12) != ETH_P_ARP
            || be16(14) != 1
            || be16(16) != ETH_P_IP
            || f[18] != 6
            || f[19] != 4
        {
            return None;
        }
        Some(Arp {
            op: be16(20),
            sender_mac: mac(22),
            sender_ip: ip(28),
            target_mac: mac(32),
            target_ip: ip(38),
        })
    }
}

/// An unsolicited neighbour advertisement for `ip` at `mac` (ICMPv6 body;
/// the kernel fills in the checksum of raw ICMPv6 sockets).
pub fn neighbour_advertisement(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = ICMPV6_NEIGHBOUR_ADVERTISEMENT;
    p[4] = NA_OVERRIDE;
    p[8..24].copy_from_slice(&ip.octets());
    p[24] = OPT_TARGET_LL;
    p[25] = 1; // in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

/// A neighbour solicitation for `ip`, with our MAC as source link-layer
/// address option.
pub fn neighbour_solicitation(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut p = neighbour_advertisement(mac, ip);
    p[0] = ICMPV6_NEIGHBOUR_SOLICITATION;
    p[4] = 0;
    p[24] = OPT_SOURCE_LL;
    p
}

/// The target of a neighbour advertisement and the MAC it carries (its
/// target link-layer option, if any).
pub fn parse_advertisement(p: &[u8]) -> Option<(Ipv6Addr, Option<[u8; 6]>)> {
    if p.len() < 24 || p[0] != ICMPV6_NEIGHBOUR_ADVERTISEMENT || p[1] != 0 {
        return None;
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&p[8..24]);
    let mut mac = None;
    let mut opts = &p[24..];
    // Each option is at least 8 bytes; a zero length would never end.
    while opts.len() >= 8 && opts[1] != 0 {
        let len = usize::from(opts[1]) * 8;
        if len > opts.len() {
            break;
        }
        if opts[0] == OPT_TARGET_LL {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            mac = Some(m);
        }
        opts = &opts[len..];
    }
    Some((Ipv6Addr::from(target), mac))
}

pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn socket(domain: libc::c_int, kind: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned from here on.
    let fd = check(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ll_addr(ifindex: u32, proto: u16, mac: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; zeroed is valid.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = proto.to_be();
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&mac);
    sa
}

/// An AF_PACKET socket for ARP bound to one device, and the device's MAC.
pub struct ArpSocket {
    fd: OwnedFd,
    ifindex: u32,
    pub mac: [u8; 6],
}

impl ArpSocket {
    pub fn open(ifindex: u32) -> io::Result<ArpSocket> {
        let fd = socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(ETH_P_ARP.to_be()),
        )?;
        let sa = ll_addr(ifindex, ETH_P_ARP, [0; 6]);
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `sa` is a valid sockaddr_ll of `len` bytes.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                len,
            )
        })?;
        // A bound packet socket's own address carries the device's MAC.
        // SAFETY: zeroed sockaddr_ll is valid; the kernel writes at most `len`.
        let mut me: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut me_len = len;
        check(unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut me as *mut libc::sockaddr_ll).cast(),
                &mut me_len,
            )
        })?;
        if me.sll_halen != 6 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "not an Ethernet device ({}-byte hardware address)",
                    me.sll_halen
                ),
            ));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&me.sll_addr[..6]);
        Ok(ArpSocket { fd, ifindex, mac })
    }

    pub fn send(&self, arp: &Arp) -> io::Result<()> {
        let frame = arp.frame();
        let sa = ll_addr(self.ifindex, ETH_P_ARP, BROADCAST_MAC);
        // SAFETY: `frame` and `sa` are valid for the lengths given.
        check(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ) as libc::c_int
        })?;
        Ok(())
    }

    /// The next ARP frame another host sent (our own outgoing frames are
    /// skipped), waiting at most `wait`; None when the wait ran out.
    pub fn recv(&self, wait: Duration) -> io::Result<Option<Arp>> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !wait_readable(&self.fd, left)? {
                return Ok(None);
            }
            let mut buf = [0u8; 128];
            // SAFETY: zeroed sockaddr_ll is valid; the kernel writes at most `len`.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            let n = check(unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                ) as libc::c_int
            });
            let n = match n {
                Ok(n) => n as usize,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if let Some(arp) = Arp::parse(&buf[..n]) {
                return Ok(Some(arp));
            }
        }
    }
}

/// Waits until `fd` is readable or `wait` has passed (false then).
pub fn wait_readable(fd: &OwnedFd, wait: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd.
    match check(unsafe { libc::poll(&mut p, 1, ms) }) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a valid c_int for the call's duration.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn sockaddr6(ip: Ipv6Addr, scope: u32) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain data; zeroed is valid.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = ip.octets();
    sa.sin6_scope_id = scope;
    sa
}

/// A raw ICMPv6 socket sending on one device with hop limit 255 (NDP),
/// optionally bound to a source address.
pub struct Icmp6Socket {
    fd: OwnedFd,
    ifindex: u32,
}

impl Icmp6Socket {
    pub fn open(ifindex: u32, source: Option<Ipv6Addr>) -> io::Result<Icmp6Socket> {
        let fd = socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6)?;
        set_int(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_HOPS,
            NDP_HOP_LIMIT,
        )?;
        set_int(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            NDP_HOP_LIMIT,
        )?;
        set_int(
            &fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            ifindex as libc::c_int,
        )?;
        if let Some(src) = source {
            let sa = sockaddr6(src, 0);
            // SAFETY: `sa` is a valid sockaddr_in6.
            check(unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            })?;
        }
        Ok(Icmp6Socket { fd, ifindex })
    }

    /// The next ICMPv6 message (its body, from the type byte), waiting at
    /// most `wait`; None when the wait ran out.
    pub fn recv(&self, wait: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !wait_readable(&self.fd, left)? {
                return Ok(None);
            }
            let mut buf = [0u8; 256];
            // SAFETY: `buf` is valid for its length.
            let n = check(unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                ) as libc::c_int
            });
            match n {
                Ok(n) => return Ok(Some(buf[..n as usize].to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn send_to(&self, packet: &[u8], dest: Ipv6Addr) -> io::Result<()> {
        let sa = sockaddr6(dest, self.ifindex);
        // SAFETY: `packet` and `sa` are valid for the lengths given.
        check(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&sa as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ) as libc::c_int
        })
        .map(drop)
    }
}

/// The device's MAC, as its packet socket reports it.
pub fn device_mac(ifindex: u32) -> io::Result<[u8; 6]> {
    ArpSocket::open(ifindex).map(|s| s.mac)
}

/// Sends one announcement of `ip` on the device.
pub fn announce_once(ifindex: u32, ip: IpAddr) -> io::Result<()> {
    match ip {
        IpAddr::V4(v4) => {
            let s = ArpSocket::open(ifindex)?;
            s.send(&Arp::gratuitous(s.mac, v4))
        }
        IpAddr::V6(v6) => {
            let mac = device_mac(ifindex)?;
            let s = Icmp6Socket::open(ifindex, Some(v6))?;
            s.send_to(
                &neighbour_advertisement(mac, v6),
                Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            )
        }
    }
}

/// Announces `ip` ANNOUNCE_REPEATS times, ANNOUNCE_INTERVAL_MS apart, in
/// a background task (serving does not wait for it). A failure is logged
/// and ends the task: the address is served either way.
pub fn spawn_announce(device: String, ifindex: u32, ip: IpAddr) {
    tokio::spawn(async move {
        for i in 0..ANNOUNCE_REPEATS {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(ANNOUNCE_INTERVAL_MS)).await;
            }
            if let Err(e) = announce_once(ifindex, ip) {
                tracing::warn!(%device, %ip, error = %e, "cannot announce the address (needs CAP_NET_RAW); neighbours learn it when their caches expire");
                return;
            }
        }
        tracing::info!(%device, %ip, repeats = ANNOUNCE_REPEATS, "address announced");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_frames_round_trip() {
        let mac = [2, 0, 0, 0, 0, 9];
        let ip = Ipv4Addr::new(10, 200, 1, 11);
        let g = Arp::gratuitous(mac, ip);
        let f = g.frame();
        assert_eq!(&f[0..6], &BROADCAST_MAC);
        assert_eq!(Arp::parse(&f), Some(g));
        let p = Arp::probe(mac, ip);
        assert_eq!(
            Arp::parse(&p.frame()).unwrap().sender_ip,
            Ipv4Addr::UNSPECIFIED
        );
        // Short, not ARP, not IPv4-over-Ethernet.
        assert_eq!(Arp::parse(&f[..41]), None);
        let mut other = f;
        other[12] = 0x08;
        other[13] = 0x00;
        assert_eq!(Arp::parse(&other), None);
        let mut v6 = f;
        v6[19] = 16;
        assert_eq!(Arp::parse(&v6), None);
    }

    #[test]
    fn neighbour_packets_parse() {
        let mac = [2, 0, 0, 0, 0, 7];
        let ip: Ipv6Addr = "fd00:200::11".parse().unwrap();
        let na = neighbour_advertisement(mac, ip);
        assert_eq!(na[4] & NA_OVERRIDE, NA_OVERRIDE);
        assert_eq!(parse_advertisement(&na), Some((ip, Some(mac))));
        // A solicitation is not an advertisement.
        assert_eq!(parse_advertisement(&neighbour_solicitation(mac, ip)), None);
        // Without options; with a zero-length option (must not loop).
        assert_eq!(parse_advertisement(&na[..24]), Some((ip, None)));
        let mut bad = na;
        bad[25] = 0;
        assert_eq!(parse_advertisement(&bad), Some((ip, None)));
        let mut long = na;
        long[25] = 9;
        assert_eq!(parse_advertisement(&long), Some((ip, None)));
        assert_eq!(parse_advertisement(&na[..20]), None);
        assert_eq!(mac_text(&mac), "02:00:00:00:00:07");
    }
}
