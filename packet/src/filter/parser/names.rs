//! Literals and names of the language: addresses, masks, numbers, named
//! constants (`tcp-syn`, `icmp-echo`), port, protocol and ethertype names.

use super::*;

/// `a op b` (libpcap's `gen_arth`: the result keeps the protocol checks of
/// `a` only, and a constant 0 divisor or a shift by more than 31 is an
/// error when the right side starts with that constant).
pub(super) fn combine(mut a: Arith, alu: Alu, b: Arith, op: Token<'_>) -> Result<Arith, Error> {
    let k = b.first_imm();
    match alu {
        Alu::Div if k == Some(0) => return Err(Error::new(op.col, "division by zero".into())),
        Alu::Mod if k == Some(0) => return Err(Error::new(op.col, "modulus by zero".into())),
        Alu::Lsh | Alu::Rsh if k.is_some_and(|k| k > 31) => {
            return Err(Error::new(op.col, "shift by more than 31 bits".into()))
        }
        _ => {}
    }
    a.code.extend_from_slice(&b.code);
    a.code.push(AOp::Bin(alu));
    Ok(a)
}

pub(super) fn prefix_mask_32(len: u32) -> u32 {
    u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0)
}

pub(super) fn prefix_mask_128(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0)
}

/// 1 to 4 dotted decimal bytes, left-aligned: `10` is 10.0.0.0 with an
/// implied /8, `192.168` 192.168.0.0/16, a full address /32 (libpcap).
pub(super) fn parse_v4_partial(s: &str) -> Option<(u32, u32)> {
    let mut addr = 0u32;
    let mut n = 0u32;
    for part in s.split('.') {
        if n == 4 || part.is_empty() || part.len() > 3 || !part.chars().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let byte: u8 = part.parse().ok()?;
        addr |= u32::from(byte) << (24 - 8 * n);
        n += 1;
    }
    Some((addr, 8 * n))
}

/// `aa:bb:cc:dd:ee:ff` (':' '-' or '.' between 1-2 hex digits),
/// `aabb.ccdd.eeff`, or `aabbccddeeff`.
pub(super) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let hex_byte = |p: &str| {
        (!p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u8::from_str_radix(p, 16).ok())
            .flatten()
    };
    let mut mac = [0u8; 6];
    let groups: Vec<&str> = s.split([':', '-', '.']).collect();
    match groups.len() {
        6 => {
            for (m, g) in mac.iter_mut().zip(&groups) {
                *m = hex_byte(g)?;
            }
        }
        1 | 3 => {
            let digits: String = groups.concat();
            let sizes_ok = groups.iter().all(|g| g.len() == 12 / groups.len());
            if !sizes_ok || !digits.chars().all(|c| c.is_ascii_hexdigit()) || digits.len() != 12 {
                return None;
            }
            for (i, m) in mac.iter_mut().enumerate() {
                *m = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
        }
        _ => return None,
    }
    Some(mac)
}

/// A number as libpcap reads one: decimal, `0x` hexadecimal, or octal
/// with a leading `0`. `Ok(None)`: not a number at all.
pub(super) fn parse_number(s: &str) -> Result<Option<u32>, String> {
    let too_big = || format!("number {s} does not fit in 32 bits");
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        return u32::from_str_radix(hex, 16)
            .map(Some)
            .map_err(|_| too_big());
    }
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    if s.len() > 1 && s.starts_with('0') {
        if s.contains(['8', '9']) {
            return Err(format!("number {s} contains non-octal digit"));
        }
        return u32::from_str_radix(&s[1..], 8)
            .map(Some)
            .map_err(|_| too_big());
    }
    s.parse::<u32>().map(Some).map_err(|_| too_big())
}

/// libpcap's named offsets and values (`tcp[tcpflags] & tcp-syn`).
pub(super) fn named_constant(s: &str) -> Option<u32> {
    const NAMES: &[(&str, u32)] = &[
        ("tcpflags", 13),
        ("tcp-fin", 0x01),
        ("tcp-syn", 0x02),
        ("tcp-rst", 0x04),
        ("tcp-push", 0x08),
        ("tcp-ack", 0x10),
        ("tcp-urg", 0x20),
        ("tcp-ece", 0x40),
        ("tcp-cwr", 0x80),
        ("icmptype", 0),
        ("icmpcode", 1),
        ("icmp-echoreply", 0),
        ("icmp-unreach", 3),
        ("icmp-sourcequench", 4),
        ("icmp-redirect", 5),
        ("icmp-echo", 8),
        ("icmp-routeradvert", 9),
        ("icmp-routersolicit", 10),
        ("icmp-timxceed", 11),
        ("icmp-paramprob", 12),
        ("icmp-tstamp", 13),
        ("icmp-tstampreply", 14),
        ("icmp-ireq", 15),
        ("icmp-ireqreply", 16),
        ("icmp-maskreq", 17),
        ("icmp-maskreply", 18),
        ("icmp6type", 0),
        ("icmp6code", 1),
        ("icmp6-destinationunreach", 1),
        ("icmp6-packettoobig", 2),
        ("icmp6-timeexceeded", 3),
        ("icmp6-parameterproblem", 4),
        ("icmp6-echo", 128),
        ("icmp6-echoreply", 129),
        ("icmp6-multicastlistenerquery", 130),
        ("icmp6-multicastlistenerreportv1", 131),
        ("icmp6-multicastlistenerdone", 132),
        ("icmp6-routersolicit", 133),
        ("icmp6-routeradvert", 134),
        ("icmp6-neighborsolicit", 135),
        ("icmp6-neighboradvert", 136),
        ("icmp6-redirect", 137),
        ("icmp6-routerrenum", 138),
        ("icmp6-nodeinformationquery", 139),
        ("icmp6-nodeinformationresponse", 140),
        ("icmp6-ineighbordiscoverysolicit", 141),
        ("icmp6-ineighbordiscoveryadvert", 142),
        ("icmp6-multicastlistenerreportv2", 143),
        ("icmp6-homeagentdiscoveryrequest", 144),
        ("icmp6-homeagentdiscoveryreply", 145),
        ("icmp6-mobileprefixsolicit", 146),
        ("icmp6-mobileprefixadvert", 147),
        ("icmp6-certpathsolicit", 148),
        ("icmp6-certpathadvert", 149),
        ("icmp6-multicastrouteradvert", 151),
        ("icmp6-multicastroutersolicit", 152),
        ("icmp6-multicastrouterterm", 153),
    ];
    NAMES.iter().find(|(n, _)| *n == s).map(|&(_, v)| v)
}

/// The transports a port name is registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PortProtos {
    Tcp,
    Udp,
    /// TCP and UDP with the same number: libpcap then matches TCP, UDP and
    /// SCTP.
    Any,
}

/// Well-known ports with their protocols, as in Debian's /etc/services
/// (netbase), which is what tcpdump resolves them with; tapline reads no
/// /etc/services. vxlan and geneve are not there; tapline knows them as UDP.
pub(super) const PORT_NAMES: &[(&str, u16, PortProtos)] = &[
    ("echo", 7, PortProtos::Any),
    ("discard", 9, PortProtos::Any),
    ("daytime", 13, PortProtos::Any),
    ("ftp-data", 20, PortProtos::Tcp),
    ("ftp", 21, PortProtos::Tcp),
    ("ssh", 22, PortProtos::Tcp),
    ("telnet", 23, PortProtos::Tcp),
    ("smtp", 25, PortProtos::Tcp),
    ("time", 37, PortProtos::Any),
    ("whois", 43, PortProtos::Tcp),
    ("tacacs", 49, PortProtos::Any),
    ("domain", 53, PortProtos::Any),
    ("bootps", 67, PortProtos::Udp),
    ("bootpc", 68, PortProtos::Udp),
    ("tftp", 69, PortProtos::Udp),
    ("gopher", 70, PortProtos::Tcp),
    ("finger", 79, PortProtos::Tcp),
    ("http", 80, PortProtos::Tcp),
    ("www", 80, PortProtos::Tcp),
    ("kerberos", 88, PortProtos::Any),
    ("pop3", 110, PortProtos::Tcp),
    ("sunrpc", 111, PortProtos::Any),
    ("auth", 113, PortProtos::Tcp),
    ("nntp", 119, PortProtos::Tcp),
    ("ntp", 123, PortProtos::Udp),
    ("netbios-ns", 137, PortProtos::Udp),
    ("netbios-dgm", 138, PortProtos::Udp),
    ("netbios-ssn", 139, PortProtos::Tcp),
    ("imap", 143, PortProtos::Tcp),
    ("snmp", 161, PortProtos::Any),
    ("snmp-trap", 162, PortProtos::Any),
    ("bgp", 179, PortProtos::Tcp),
    ("ldap", 389, PortProtos::Any),
    ("https", 443, PortProtos::Any),
    ("microsoft-ds", 445, PortProtos::Tcp),
    ("isakmp", 500, PortProtos::Udp),
    ("syslog", 514, PortProtos::Udp),
    ("submission", 587, PortProtos::Tcp),
    ("ldaps", 636, PortProtos::Any),
    ("rsync", 873, PortProtos::Tcp),
    ("imaps", 993, PortProtos::Tcp),
    ("pop3s", 995, PortProtos::Tcp),
    ("openvpn", 1194, PortProtos::Any),
    ("radius", 1812, PortProtos::Any),
    ("nfs", 2049, PortProtos::Any),
    ("mysql", 3306, PortProtos::Tcp),
    ("ms-wbt-server", 3389, PortProtos::Tcp),
    ("ipsec-nat-t", 4500, PortProtos::Udp),
    ("vxlan", 4789, PortProtos::Udp),
    ("sip", 5060, PortProtos::Any),
    ("postgresql", 5432, PortProtos::Tcp),
    ("amqp", 5672, PortProtos::Tcp),
    ("geneve", 6081, PortProtos::Udp),
    ("redis", 6379, PortProtos::Tcp),
    ("http-alt", 8080, PortProtos::Tcp),
];

pub(super) fn port_name(s: &str) -> Option<(u16, PortProtos)> {
    PORT_NAMES
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(s))
        .map(|&(_, p, k)| (p, k))
}

/// The protocol to check for a named port under qualifier `want` (libpcap's
/// `gen_scode`: `udp port http` is an error, `port http` is TCP only).
pub(super) fn name_proto(
    protos: PortProtos,
    want: Option<u8>,
    id: Token<'_>,
) -> Result<Option<u8>, Error> {
    let is = |what: &str| Err(Error::new(id.col, format!("port '{}' is {what}", id.text)));
    match (want, protos) {
        (None, PortProtos::Tcp) => Ok(Some(IPPROTO_TCP)),
        (None, PortProtos::Udp) => Ok(Some(IPPROTO_UDP)),
        (None, PortProtos::Any) => Ok(None),
        (Some(IPPROTO_TCP), PortProtos::Udp) => is("udp"),
        (Some(IPPROTO_UDP) | Some(IPPROTO_SCTP), PortProtos::Tcp) => is("tcp"),
        (Some(IPPROTO_SCTP), PortProtos::Udp) => is("udp"),
        (Some(p), _) => Ok(Some(p)),
    }
}

pub(super) fn ip_proto_name(s: &str) -> Option<u8> {
    const NAMES: &[(&str, u8)] = &[
        ("icmp", 1),
        ("igmp", 2),
        ("ipip", 4),
        ("tcp", 6),
        ("egp", 8),
        ("igrp", 9),
        ("udp", 17),
        ("ipv6", 41),
        ("rsvp", 46),
        ("gre", 47),
        ("esp", 50),
        ("ah", 51),
        ("icmp6", 58),
        ("ipv6-icmp", 58),
        ("ospf", 89),
        ("pim", 103),
        ("vrrp", 112),
        ("l2tp", 115),
        ("sctp", 132),
        ("udplite", 136),
    ];
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|&(_, p)| p)
}

pub(super) fn ethertype_name(s: &str) -> Option<u16> {
    const NAMES: &[(&str, u16)] = &[
        ("ip", ETHERTYPE_IPV4),
        ("ip6", ETHERTYPE_IPV6),
        ("arp", ETHERTYPE_ARP),
        ("rarp", ETHERTYPE_RARP),
        ("aarp", 0x80f3),
        ("atalk", 0x809b),
        ("decnet", 0x6003),
        ("lat", 0x6004),
        ("loopback", 0x9000),
        ("mopdl", 0x6001),
        ("moprc", 0x6002),
        ("sca", 0x6007),
    ];
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|&(_, t)| t)
}
