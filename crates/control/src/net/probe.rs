//! Is an address in use on the network? Before a failover claims an
//! address, the DR site asks the link: an RFC 5227 ARP probe for IPv4
//! (sender IP 0.0.0.0, so no neighbour caches it), a neighbour
//! solicitation for IPv6; any answer within the timeout means another host
//! holds the address (the old site still alive, or someone else).
//! Blocking: it runs with the other checks on the blocking pool.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::net::announce::{
    mac_text, neighbour_solicitation, parse_advertisement, Arp, ArpSocket, Icmp6Socket, ARP_REPLY,
    ARP_REQUEST,
};

/// How long a probe listens for an answer.
pub const PROBE_TIMEOUT_MS: u64 = 300;
/// Probes sent within that time (one may be lost).
pub const PROBE_SENDS: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    /// Another host answered, from this MAC ("unknown" when it gave none).
    Answered {
        mac: String,
    },
    Silent,
}

/// Probes `ip` on the device with interface index `ifindex`.
pub fn probe(ifindex: u32, ip: IpAddr, timeout: Duration) -> io::Result<Probed> {
    match ip {
        IpAddr::V4(v4) => probe_v4(ifindex, v4, timeout),
        IpAddr::V6(v6) => probe_v6(ifindex, v6, timeout),
    }
}

/// Whether an ARP frame from another host says it holds `ip`: a reply
/// from it, or a request it sent as `ip` (an announcement). Probes of
/// others (sender 0.0.0.0) are not.
pub fn arp_claims(arp: &Arp, ip: Ipv4Addr, own_mac: [u8; 6]) -> bool {
    arp.sender_ip == ip
        && arp.sender_mac != own_mac
        && (arp.op == ARP_REPLY || arp.op == ARP_REQUEST)
}

fn probe_v4(ifindex: u32, ip: Ipv4Addr, timeout: Duration) -> io::Result<Probed> {
    let s = ArpSocket::open(ifindex)?;
    let start = Instant::now();
    let step = timeout / PROBE_SENDS;
    for i in 0..PROBE_SENDS {
        s.send(&Arp::probe(s.mac, ip))?;
        let until = step * (i + 1);
        loop {
            let left = until.saturating_sub(start.elapsed());
            match s.recv(left)? {
                None => break,
                Some(arp) if arp_claims(&arp, ip, s.mac) => {
                    return Ok(Probed::Answered {
                        mac: mac_text(&arp.sender_mac),
                    })
                }
                Some(_) => {}
            }
        }
    }
    Ok(Probed::Silent)
}

/// The solicited-node multicast group of `ip` (RFC 4291 §2.7.1).
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

fn probe_v6(ifindex: u32, ip: Ipv6Addr, timeout: Duration) -> io::Result<Probed> {
    let mac = crate::net::announce::device_mac(ifindex)?;
    let s = Icmp6Socket::open(ifindex, None)?;
    let start = Instant::now();
    let step = timeout / PROBE_SENDS;
    for i in 0..PROBE_SENDS {
        s.send_to(&neighbour_solicitation(mac, ip), solicited_node(ip))?;
        let until = step * (i + 1);
        loop {
            let left = until.saturating_sub(start.elapsed());
            let Some(packet) = s.recv(left)? else {
                break;
            };
            match parse_advertisement(&packet) {
                Some((target, from)) if target == ip && from != Some(mac) => {
                    return Ok(Probed::Answered {
                        mac: from.map_or_else(|| "unknown".to_string(), |m| mac_text(&m)),
                    })
                }
                _ => {}
            }
        }
    }
    Ok(Probed::Silent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicited_node_group() {
        let ip: Ipv6Addr = "fd00:200::1:2345:6789".parse().unwrap();
        assert_eq!(
            solicited_node(ip),
            "ff02::1:ff45:6789".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn only_another_holder_counts() {
        let ip = Ipv4Addr::new(10, 200, 1, 11);
        let (me, them) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut reply = Arp::gratuitous(them, ip);
        reply.op = ARP_REPLY;
        assert!(arp_claims(&reply, ip, me));
        assert!(arp_claims(&Arp::gratuitous(them, ip), ip, me));
        // Our own frame, another host's probe, another address.
        assert!(!arp_claims(&Arp::gratuitous(me, ip), ip, me));
        assert!(!arp_claims(&Arp::probe(them, ip), ip, me));
        assert!(!arp_claims(
            &Arp::gratuitous(them, Ipv4Addr::new(10, 200, 1, 12)),
            ip,
            me
        ));
    }
}
