//! Primitives: qualifiers (`src`, `net`, `tcp`, ...), their ids, hosts,
//! networks and ports.

use super::*;

/// What follows the address of `net`: `/LEN` or `mask MASK`.
enum Suffix<'t> {
    None,
    Len(Token<'t>),
    Mask(Token<'t>, Token<'t>),
}

/// A prefix length beyond the address family's width.
fn bad_len(t: Token<'_>, max: u32) -> Error {
    Error::new(
        t.col,
        format!(
            "bad prefix length '{}' (0 to {max} for IPv{})",
            t.text,
            if max == 32 { 4 } else { 6 }
        ),
    )
}

impl<'s> Parser<'s> {
    pub(super) fn primitive(&mut self, t: Token<'s>) -> Result<usize, Error> {
        if ProtoQ::of(&t).is_some()
            || Kind::of(&t).is_some()
            || t.is_word("src")
            || t.is_word("dst")
        {
            return self.qualified();
        }
        if t.is_word("vlan") {
            self.pos += 1;
            self.last = None;
            let id = match self.peek() {
                Some(n) if n.kind == TokKind::Word && !is_keyword(&n) => {
                    self.pos += 1;
                    let id = self.number(n, "VLAN ID")?;
                    if u64::from(id) > MAX_VLAN_ID {
                        return Err(Error::new(
                            n.col,
                            format!("bad VLAN ID '{}' (0 to 4095)", n.text),
                        ));
                    }
                    Some(id as u16)
                }
                _ => None,
            };
            if self.lenient() {
                return Ok(self.prim(Prim::Vlan(id)));
            }
            return self.vlan(id, t.col);
        }
        if t.is_word("less") || t.is_word("greater") {
            self.pos += 1;
            self.last = None;
            let n = match self.peek() {
                Some(n) if n.kind == TokKind::Word && !is_keyword(&n) => n,
                found => {
                    return Err(Error::new(
                        self.col_of(found),
                        format!(
                            "expected a length after '{}', found {}",
                            t.text,
                            describe(found)
                        ),
                    ))
                }
            };
            self.pos += 1;
            let len = self.number(n, "length")?;
            let (cmp, negate) = if t.is_word("less") {
                (Cmp::Gt, true)
            } else {
                (Cmp::Ge, false)
            };
            let b = self.test(Test::Field(Field {
                src: Src::Len,
                mask: u32::MAX,
                cmp,
                k: len,
            }));
            return Ok(if negate { self.not(b) } else { b });
        }
        if t.is_word("broadcast") || t.is_word("multicast") {
            self.pos += 1;
            self.last = None;
            return self.cast(None, t);
        }
        if let Some((k, hint)) = UNSUPPORTED.iter().find(|(k, _)| t.is_word(k)) {
            return Err(Error::new(
                t.col,
                format!("'{k}' is a pcap-filter keyword tapline does not support ({hint})"),
            ));
        }
        if t.is_word("mask") {
            return Err(Error::new(t.col, "'mask' must follow 'net ADDRESS'".into()));
        }
        if t.is_word("len") {
            return Err(Error::new(
                t.col,
                "'len' must be compared ('len > 100'); or use 'less N' / 'greater N'".into(),
            ));
        }
        self.continuation(t)
    }

    /// A bare id: reuses the qualifiers of the previous primitive.
    pub(super) fn continuation(&mut self, t: Token<'s>) -> Result<usize, Error> {
        let Some(q) = self.last else {
            let message = if looks_like_name(t.text) {
                format!("unknown keyword '{}'", t.text)
            } else {
                format!(
                    "'{}' needs a qualifier such as 'host', 'net' or 'port' in front",
                    t.text
                )
            };
            return Err(Error::new(t.col, message));
        };
        let addressy = matches!(q.kind, Kind::Host | Kind::Net) && q.proto != Some(ProtoQ::Ether);
        if addressy && looks_like_name(t.text) {
            return Err(Error::new(t.col, format!("unknown keyword '{}'", t.text)));
        }
        self.pos += 1;
        self.build(&q, t)
    }

    /// `[proto] [dir] [kind] id`, or a protocol alone.
    pub(super) fn qualified(&mut self) -> Result<usize, Error> {
        let mut q = Quals {
            proto: None,
            proto_col: 0,
            dir: None,
            dir_col: 0,
            kind: Kind::Host,
            kind_given: false,
        };
        // The last qualifier read, for "expected ... after 'X'".
        let mut prev = None;

        if let Some(t) = self.peek() {
            if let Some(pq) = ProtoQ::of(&t) {
                self.pos += 1;
                q.proto = Some(pq);
                q.proto_col = t.col;
                prev = Some(t);
                let next = self.peek();
                let qualifies = next.is_some_and(|n| {
                    Kind::of(&n).is_some() || n.is_word("src") || n.is_word("dst")
                });
                if let Some(n) = next.filter(|n| n.is_word("broadcast") || n.is_word("multicast")) {
                    self.pos += 1;
                    self.last = None;
                    return self.cast(Some((pq, t)), n);
                }
                if !qualifies {
                    self.last = None;
                    return self.proto_alone(pq, t, next);
                }
            }
        }

        if let Some(t) = self.peek().filter(|t| t.is_word("src") || t.is_word("dst")) {
            self.pos += 1;
            let is_src = t.is_word("src");
            let mut dir = if is_src { Dir::Src } else { Dir::Dst };
            prev = Some(t);
            // `src or dst`, `dst and src`, ...: only when the other
            // direction follows the operator at once.
            if let (Some(op), Some(other)) = (self.peek(), self.peek_at(1)) {
                let opposite = if is_src { "dst" } else { "src" };
                if matches!(op.kind, TokKind::And | TokKind::Or) && other.is_word(opposite) {
                    self.pos += 2;
                    dir = if op.kind == TokKind::Or {
                        Dir::SrcOrDst
                    } else {
                        Dir::SrcAndDst
                    };
                    prev = Some(other);
                }
            }
            q.dir = Some(dir);
            q.dir_col = t.col;
        }

        if let Some(t) = self.peek() {
            if let Some(kind) = Kind::of(&t) {
                self.pos += 1;
                q.kind = kind;
                q.kind_given = true;
                prev = Some(t);
            }
        }
        // Without a kind, a direction implies `host` (`src 10.0.0.1`).

        self.check_quals(&q)?;

        let prev_text = prev.map_or("", |p| p.text);
        let id = match self.peek() {
            Some(t) if t.kind == TokKind::Word && (q.kind == Kind::Proto || !is_keyword(&t)) => t,
            found => {
                let what = match (q.kind, q.proto) {
                    (Kind::Host, Some(ProtoQ::Ether)) => "a MAC address",
                    (Kind::Host, _) => "an address",
                    (Kind::Net, _) => "a network",
                    (Kind::Port, _) => "a port",
                    (Kind::Portrange, _) => "a port range",
                    (Kind::Proto, _) => "a protocol",
                };
                return Err(Error::new(
                    self.col_of(found),
                    format!(
                        "expected {what} after '{prev_text}', found {}",
                        describe(found)
                    ),
                ));
            }
        };
        self.pos += 1;
        let node = self.build(&q, id)?;
        self.last = Some(q);
        Ok(node)
    }

    /// Rejects qualifier combinations that mean nothing.
    pub(super) fn check_quals(&self, q: &Quals) -> Result<(), Error> {
        let Some(proto) = q.proto else {
            if q.kind == Kind::Proto && q.dir.is_some() {
                return Err(Error::new(
                    q.dir_col,
                    "a direction cannot qualify 'proto'".into(),
                ));
            }
            return Ok(());
        };
        let ok = match q.kind {
            Kind::Host => matches!(
                proto,
                ProtoQ::Ether | ProtoQ::Ip | ProtoQ::Ip6 | ProtoQ::Arp | ProtoQ::Rarp
            ),
            Kind::Net => matches!(proto, ProtoQ::Ip | ProtoQ::Ip6 | ProtoQ::Arp | ProtoQ::Rarp),
            Kind::Port | Kind::Portrange => proto.transport().is_some(),
            Kind::Proto => matches!(proto, ProtoQ::Ether | ProtoQ::Ip | ProtoQ::Ip6),
        };
        if ok {
            if q.kind == Kind::Proto && q.dir.is_some() {
                return Err(Error::new(
                    q.dir_col,
                    "a direction cannot qualify 'proto'".into(),
                ));
            }
            return Ok(());
        }
        let message = if !q.kind_given && proto.transport().is_some() {
            format!(
                "'{}' with a direction needs 'port' or 'portrange' (e.g. '{} src port 80')",
                proto.name(),
                proto.name()
            )
        } else {
            format!("'{}' cannot qualify '{}'", proto.name(), q.kind.name())
        };
        Err(Error::new(q.proto_col, message))
    }

    /// `ip`, `tcp`, ...: a protocol alone.
    pub(super) fn proto_alone(
        &mut self,
        pq: ProtoQ,
        t: Token<'s>,
        next: Option<Token<'s>>,
    ) -> Result<usize, Error> {
        if pq == ProtoQ::Ether {
            return Err(Error::new(
                self.col_of(next),
                format!(
                    "expected 'host', 'src', 'dst', 'proto', 'broadcast', 'multicast' or \
                     '[' after '{}', found {}",
                    t.text,
                    describe(next)
                ),
            ));
        }
        Ok(self.proto_abbrev(pq))
    }

    /// `[ether|ip|ip6] broadcast|multicast`.
    pub(super) fn cast(
        &mut self,
        proto: Option<(ProtoQ, Token<'s>)>,
        t: Token<'s>,
    ) -> Result<usize, Error> {
        let broadcast = t.is_word("broadcast");
        let lenient = self.lenient();
        let pl = self.pl();
        Ok(match (proto.map(|(p, _)| p), broadcast) {
            (None | Some(ProtoQ::Ether), true) => self.ehostop([0xff; 6], Dir::Dst),
            (None | Some(ProtoQ::Ether), false) => {
                if lenient {
                    self.prim(Prim::EtherMulticast)
                } else {
                    self.ncmp(0, 1, u32::MAX, Cmp::Set, 1)
                }
            }
            (Some(ProtoQ::Ip), false) => {
                let b0 = self.linktype(u32::from(ETHERTYPE_IPV4));
                let b1 = self.ncmp(pl + 16, 1, u32::MAX, Cmp::Ge, 224);
                self.and(b0, b1)
            }
            (Some(ProtoQ::Ip6), false) if lenient => self.prim(Prim::V6Net {
                dir: Dir::Dst,
                net: 0xff << 120,
                mask: 0xff << 120,
            }),
            (Some(ProtoQ::Ip6), false) => {
                let b0 = self.linktype(u32::from(ETHERTYPE_IPV6));
                let b1 = self.cmp(pl + 24, 1, 255);
                self.and(b0, b1)
            }
            (Some(ProtoQ::Ip), true) => {
                // tcpdump reading a file uses netmask 0: the host part is
                // the whole address, so 0.0.0.0 or 255.255.255.255.
                let b0 = self.linktype(u32::from(ETHERTYPE_IPV4));
                let b1 = self.ncmp(pl + 16, 4, u32::MAX, Cmp::Eq, 0);
                let b2 = self.ncmp(pl + 16, 4, u32::MAX, Cmp::Eq, u32::MAX);
                let b2 = self.or(b1, b2);
                self.and(b0, b2)
            }
            (Some(p), _) => {
                let col = proto.map_or(t.col, |(_, pt)| pt.col);
                return Err(Error::new(
                    col,
                    format!("'{}' cannot qualify '{}'", p.name(), t.text),
                ));
            }
        })
    }

    /// The test for qualifiers `q` and the id token `id` (and, for a
    /// network, the `/len` or `mask M` that follows).
    pub(super) fn build(&mut self, q: &Quals, id: Token<'s>) -> Result<usize, Error> {
        let dir = q.dir.unwrap_or(Dir::SrcOrDst);
        let lenient = self.lenient();
        match q.kind {
            Kind::Host if q.proto == Some(ProtoQ::Ether) => {
                let mac = parse_mac(id.text)
                    .ok_or_else(|| Error::new(id.col, format!("bad MAC address '{}'", id.text)))?;
                if lenient {
                    return Ok(self.prim(Prim::EtherAddr { dir, mac }));
                }
                Ok(self.ehostop(mac, dir))
            }
            Kind::Host | Kind::Net => {
                if q.kind == Kind::Host {
                    if let Some(t) = self
                        .peek()
                        .filter(|t| t.kind == TokKind::Slash || t.is_word("mask"))
                    {
                        return Err(Error::new(
                            t.col,
                            "a host has no prefix length or mask; use 'net'".into(),
                        ));
                    }
                }
                self.net(q, id, dir)
            }
            Kind::Port => {
                let (port, proto) = self.port_id(q, id)?;
                Ok(self.port_test(q, dir, port, port, proto))
            }
            Kind::Portrange => {
                let (lo, hi, proto) = self.portrange_id(q, id)?;
                Ok(self.port_test(q, dir, lo, hi, proto))
            }
            Kind::Proto => {
                if q.proto == Some(ProtoQ::Ether) {
                    let t = match parse_number(id.text) {
                        Ok(Some(n)) => n,
                        Err(m) => return Err(Error::new(id.col, m)),
                        Ok(None) => ethertype_name(id.text).map(u32::from).ok_or_else(|| {
                            Error::new(id.col, format!("unknown ethertype name '{}'", id.text))
                        })?,
                    };
                    if t > 0xffff {
                        return Err(Error::new(id.col, format!("bad ethertype '{}'", id.text)));
                    }
                    return Ok(self.linktype(t));
                }
                let proto = match parse_number(id.text) {
                    Ok(Some(n)) => u8::try_from(n).map_err(|_| {
                        Error::new(
                            id.col,
                            format!("bad protocol number '{}' (0 to 255)", id.text),
                        )
                    })?,
                    Err(m) => return Err(Error::new(id.col, m)),
                    Ok(None) => ip_proto_name(id.text).ok_or_else(|| {
                        Error::new(id.col, format!("unknown protocol name '{}'", id.text))
                    })?,
                };
                let version = match q.proto {
                    Some(ProtoQ::Ip) => IpVersion::V4,
                    Some(ProtoQ::Ip6) => IpVersion::V6,
                    _ => IpVersion::Any,
                };
                Ok(self.ip_proto(proto, version))
            }
        }
    }

    /// A port number or name, and the protocol a name implies (libpcap
    /// checks the protocol of a named port: `port http` is TCP only).
    pub(super) fn port_id(&self, q: &Quals, id: Token<'_>) -> Result<(u16, Option<u8>), Error> {
        let want = q.proto.and_then(ProtoQ::transport);
        if id.text.starts_with(|c: char| c.is_ascii_digit()) && !id.text.contains('-') {
            let n = self.number(id, "port")?;
            let port = u16::try_from(n)
                .map_err(|_| Error::new(id.col, format!("bad port '{}' (0 to 65535)", id.text)))?;
            return Ok((port, want));
        }
        if id.text.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(Error::new(
                id.col,
                format!("'{}' is a range; use 'portrange {}'", id.text, id.text),
            ));
        }
        let (port, protos) = port_name(id.text)
            .ok_or_else(|| Error::new(id.col, format!("unknown port name '{}'", id.text)))?;
        Ok((port, name_proto(protos, want, id)?))
    }

    /// `A-B` (numbers or names; A > B is swapped, as in libpcap).
    pub(super) fn portrange_id(
        &self,
        q: &Quals,
        id: Token<'_>,
    ) -> Result<(u16, u16, Option<u8>), Error> {
        let want = q.proto.and_then(ProtoQ::transport);
        let s = id.text;
        let Some(i) = s.find('-') else {
            return Err(Error::new(
                id.col,
                format!("expected a port range such as '6000-6010', found '{s}'"),
            ));
        };
        // Names may contain '-' (ftp-data): take the first split where
        // both sides are ports.
        let i = s
            .match_indices('-')
            .map(|(j, _)| j)
            .find(|&j| {
                let ok = |t: &str| {
                    (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
                        || port_name(t).is_some()
                };
                ok(&s[..j]) && ok(&s[j + 1..])
            })
            .unwrap_or(i);
        let (a, b) = (&s[..i], &s[i + 1..]);
        let hi_col = id.col + a.chars().count() + 1;
        let decimal = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
        if decimal(a) && decimal(b) {
            let num = |t: &str, col| {
                t.parse::<u16>()
                    .map_err(|_| Error::new(col, format!("bad port '{t}' (0 to 65535)")))
            };
            return Ok((num(a, id.col)?, num(b, hi_col)?, want));
        }
        let named = |t: &str, col| {
            port_name(t).ok_or_else(|| Error::new(col, format!("unknown port name '{t}'")))
        };
        let (lo, pa) = named(a, id.col)?;
        let (hi, pb) = named(b, hi_col)?;
        let protos = if pa == pb { pa } else { PortProtos::Any };
        Ok((lo, hi, name_proto(protos, want, id)?))
    }

    pub(super) fn port_test(
        &mut self,
        q: &Quals,
        dir: Dir,
        lo: u16,
        hi: u16,
        proto: Option<u8>,
    ) -> usize {
        let _ = q;
        if self.lenient() {
            let proto = match proto {
                Some(p) => PortProto::Only(p),
                None => PortProto::Any,
            };
            return self.prim(Prim::Port {
                dir,
                proto,
                lo: lo.min(hi),
                hi: lo.max(hi),
            });
        }
        self.port(lo, hi, proto, dir)
    }

    /// `host ADDR`, `net ADDR`, `net ADDR/LEN`, `net ADDR mask MASK`; IPv4
    /// networks may be written short (`net 10`, `net 192.168`).
    pub(super) fn net(&mut self, q: &Quals, id: Token<'s>, dir: Dir) -> Result<usize, Error> {
        let suffix = self.net_suffix()?;
        let is_name = !id.text.contains(':')
            && id.text.contains(|c: char| c.is_ascii_alphabetic())
            && matches!(parse_number(id.text), Ok(None))
            && parse_mac(id.text).is_none();
        if is_name {
            return Err(Error::new(
                id.col,
                format!(
                    "'{}' is a name: tapline does not resolve host or network names; \
                     use an IPv4 or IPv6 address",
                    id.text
                ),
            ));
        }
        if id.text.contains(':') {
            self.net6(q, id, suffix, dir)
        } else {
            self.net4(q, id, suffix, dir)
        }
    }

    /// What follows a network address: `/LEN`, `mask MASK` or nothing.
    fn net_suffix(&mut self) -> Result<Suffix<'s>, Error> {
        Ok(match self.peek() {
            Some(s) if s.kind == TokKind::Slash || s.is_word("mask") => {
                self.pos += 1;
                let what = if s.kind == TokKind::Slash {
                    "a prefix length"
                } else {
                    "a netmask"
                };
                let arg = match self.peek() {
                    Some(a) if a.kind == TokKind::Word && !is_keyword(&a) => a,
                    found => {
                        return Err(Error::new(
                            self.col_of(found),
                            format!(
                                "expected {what} after '{}', found {}",
                                s.text,
                                describe(found)
                            ),
                        ))
                    }
                };
                self.pos += 1;
                if s.kind == TokKind::Slash {
                    Suffix::Len(arg)
                } else {
                    Suffix::Mask(s, arg)
                }
            }
            _ => Suffix::None,
        })
    }

    /// `host`/`net` with an IPv6 address.
    fn net6(
        &mut self,
        q: &Quals,
        id: Token<'s>,
        suffix: Suffix<'s>,
        dir: Dir,
    ) -> Result<usize, Error> {
        if parse_mac(id.text).is_some() && !id.text.contains("::") {
            return Err(Error::new(
                id.col,
                format!("'{}' is a MAC address: use 'ether host'", id.text),
            ));
        }
        let a: Ipv6Addr = id
            .text
            .parse()
            .map_err(|_| Error::new(id.col, format!("bad IPv6 address '{}'", id.text)))?;
        let len = match suffix {
            Suffix::None => 128,
            Suffix::Len(t) => match parse_number(t.text) {
                Ok(Some(n)) if n <= 128 => n,
                _ => return Err(bad_len(t, 128)),
            },
            Suffix::Mask(m, _) => {
                return Err(Error::new(
                    m.col,
                    "'mask' is for IPv4 networks; write 'net ADDRESS/LENGTH'".into(),
                ))
            }
        };
        let mask = prefix_mask_128(len);
        let a = u128::from(a);
        if a & !mask != 0 {
            return Err(Error::new(
                id.col,
                format!(
                    "'{}/{len}' has bits set outside the prefix (the network is {}/{len})",
                    id.text,
                    Ipv6Addr::from(a & mask)
                ),
            ));
        }
        match q.proto {
            None | Some(ProtoQ::Ip6) => Ok(if self.lenient() {
                self.prim(Prim::V6Net { dir, net: a, mask })
            } else {
                self.hostop6(a, mask, dir)
            }),
            Some(p) => Err(Error::new(
                id.col,
                format!(
                    "'{}' is an IPv6 address; '{}' needs an IPv4 one",
                    id.text,
                    p.name()
                ),
            )),
        }
    }

    /// `host`/`net` with an IPv4 address, possibly short (`net 10`).
    fn net4(
        &mut self,
        q: &Quals,
        id: Token<'s>,
        suffix: Suffix<'s>,
        dir: Dir,
    ) -> Result<usize, Error> {
        // A plain number: libpcap's NUM (octal and hex too); `host 10` is
        // 0.0.0.10, `net 10` 10.0.0.0/8.
        let (a, mask) = if !id.text.contains('.') {
            let v = self.number(id, "address")?;
            if q.kind == Kind::Net {
                let (mut v, mut m) = (v, u32::MAX);
                while v != 0 && v & 0xff00_0000 == 0 {
                    v <<= 8;
                    m <<= 8;
                }
                (v, m)
            } else {
                (v, u32::MAX)
            }
        } else {
            let (a, implied) = parse_v4_partial(id.text)
                .ok_or_else(|| Error::new(id.col, format!("bad IPv4 address '{}'", id.text)))?;
            (a, prefix_mask_32(implied))
        };
        let (mask, shown) = match suffix {
            Suffix::None => (mask, String::new()),
            Suffix::Len(t) => {
                let len = match parse_number(t.text) {
                    Ok(Some(n)) if n <= 32 => n,
                    _ => return Err(bad_len(t, 32)),
                };
                (prefix_mask_32(len), format!("/{len}"))
            }
            Suffix::Mask(_, m) => {
                let (mask, _) = parse_v4_partial(m.text)
                    .ok_or_else(|| Error::new(m.col, format!("bad netmask '{}'", m.text)))?;
                (mask, format!(" mask {}", m.text))
            }
        };
        if a & !mask != 0 {
            return Err(Error::new(
                id.col,
                format!(
                    "'{}{shown}' has bits set outside the mask (the network is {}{shown})",
                    id.text,
                    std::net::Ipv4Addr::from(a & mask)
                ),
            ));
        }
        match q.proto {
            None | Some(ProtoQ::Ip) | Some(ProtoQ::Arp) | Some(ProtoQ::Rarp) => {}
            Some(p) => {
                return Err(Error::new(
                    id.col,
                    format!(
                        "'{}' is an IPv4 address; '{}' needs an IPv6 one",
                        id.text,
                        p.name()
                    ),
                ))
            }
        }
        if self.lenient() {
            let layers = match q.proto {
                Some(ProtoQ::Ip) => V4Layers {
                    ip: true,
                    arp: false,
                    rarp: false,
                },
                Some(ProtoQ::Arp) => V4Layers {
                    ip: false,
                    arp: true,
                    rarp: false,
                },
                Some(ProtoQ::Rarp) => V4Layers {
                    ip: false,
                    arp: false,
                    rarp: true,
                },
                _ => V4Layers {
                    ip: true,
                    arp: true,
                    rarp: true,
                },
            };
            return Ok(self.prim(Prim::V4Net {
                dir,
                net: a,
                mask,
                layers,
            }));
        }
        Ok(self.host4(a, mask, q.proto, dir))
    }
}
