//! Node builders: libpcap's `gen_*` for Ethernet, as methods of the
//! parser.

use super::*;

/// Node builders: libpcap's `gen_*` for Ethernet.
impl Parser<'_> {
    pub(super) fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub(super) fn test(&mut self, test: Test) -> usize {
        self.push(Node::Test(test))
    }

    pub(super) fn prim(&mut self, prim: Prim) -> usize {
        self.test(Test::Prim(prim))
    }

    pub(super) fn lenient(&self) -> bool {
        self.mode == Mode::Lenient
    }

    /// `a` then `b`, both true (libpcap's `gen_and(a, b)`).
    pub(super) fn and(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::And(a, b))
    }

    /// `a` or else `b` (libpcap's `gen_or(a, b)`: `a` is tested first).
    pub(super) fn or(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Or(a, b))
    }

    pub(super) fn not(&mut self, a: usize) -> usize {
        self.push(Node::Not(a))
    }

    /// Offset of the ethertype (OR_LINKTYPE).
    pub(super) fn lt(&self) -> u32 {
        12 + self.shift
    }

    /// Offset of the link-layer payload (OR_LINKPL).
    pub(super) fn pl(&self) -> u32 {
        14 + self.shift
    }

    pub(super) fn at(&self, k: u32, size: u8) -> Load {
        Load {
            k,
            size,
            shifted: self.lenient(),
            iphdr: None,
        }
    }

    /// `(frame[k:size] & mask) cmp v`.
    pub(super) fn ncmp(&mut self, k: u32, size: u8, mask: u32, cmp: Cmp, v: u32) -> usize {
        let load = self.at(k, size);
        self.test(Test::Field(Field {
            src: Src::Frame(load),
            mask,
            cmp,
            k: v,
        }))
    }

    pub(super) fn cmp(&mut self, k: u32, size: u8, v: u32) -> usize {
        self.ncmp(k, size, u32::MAX, Cmp::Eq, v)
    }

    /// A field of the transport header after an IPv4 header of any length
    /// (OR_TRAN_IPV4).
    pub(super) fn tran4(&mut self, off: u32, cmp: Cmp, v: u32) -> usize {
        let pl = self.pl();
        let load = Load {
            k: pl + off,
            size: 2,
            shifted: self.lenient(),
            iphdr: Some(pl),
        };
        self.test(Test::Field(Field {
            src: Src::Frame(load),
            mask: u32::MAX,
            cmp,
            k: v,
        }))
    }

    /// Bytes `v` at `k` (libpcap's `gen_bcmp`: words from the end, then a
    /// half word, then a byte).
    pub(super) fn bcmp(&mut self, k: u32, v: &[u8]) -> usize {
        let mut size = v.len();
        let mut b: Option<usize> = None;
        let mut chain = |this: &mut Self, t: usize| match b {
            Some(prev) => b = Some(this.and(prev, t)),
            None => b = Some(t),
        };
        while size >= 4 {
            let w = u32::from_be_bytes([v[size - 4], v[size - 3], v[size - 2], v[size - 1]]);
            let t = self.cmp(k + size as u32 - 4, 4, w);
            chain(self, t);
            size -= 4;
        }
        while size >= 2 {
            let h = u32::from(u16::from_be_bytes([v[size - 2], v[size - 1]]));
            let t = self.cmp(k + size as u32 - 2, 2, h);
            chain(self, t);
            size -= 2;
        }
        if size > 0 {
            let t = self.cmp(k, 1, u32::from(v[0]));
            chain(self, t);
        }
        b.unwrap_or_else(|| self.cmp(0, 1, 0))
    }

    /// `frame[lt] <= 1500` (an 802.3 length, so an LLC frame).
    pub(super) fn is_llc(&mut self) -> usize {
        let lt = self.lt();
        let gt = self.ncmp(lt, 2, u32::MAX, Cmp::Gt, ETHERMTU);
        self.not(gt)
    }

    pub(super) fn snap(&mut self, org: u32, ptype: u32) -> usize {
        let pl = self.pl();
        let v = [
            0xaa,
            0xaa,
            0x03,
            (org >> 16) as u8,
            (org >> 8) as u8,
            org as u8,
            (ptype >> 8) as u8,
            ptype as u8,
        ];
        self.bcmp(pl, &v)
    }

    /// libpcap's `gen_linktype` for Ethernet (`ether proto v`).
    pub(super) fn linktype(&mut self, v: u32) -> usize {
        let common = [
            ETHERTYPE_IPV4,
            ETHERTYPE_IPV6,
            ETHERTYPE_ARP,
            ETHERTYPE_RARP,
        ];
        if self.lenient() && common.iter().any(|&t| u32::from(t) == v) {
            return self.prim(Prim::EtherType(v as u16));
        }
        let (lt, pl) = (self.lt(), self.pl());
        match v {
            0xfe | 0x06 | 0xf0 => {
                let b0 = self.is_llc();
                let b1 = self.cmp(pl, 2, (v << 8) | v);
                self.and(b0, b1)
            }
            0xe0 => {
                let b0 = self.cmp(pl, 1, 0xe0);
                let b1 = self.cmp(pl, 2, 0xffff);
                let b1 = self.or(b0, b1);
                let b0 = self.snap(0, 0x8137);
                let b1 = self.or(b0, b1);
                let b0 = self.is_llc();
                let b1 = self.and(b0, b1);
                let b0 = self.cmp(lt, 2, 0x8137);
                self.or(b0, b1)
            }
            0x809b | 0x80f3 => {
                let b0 = self.is_llc();
                let org = if v == 0x809b { 0x080007 } else { 0 };
                let b1 = self.snap(org, v);
                let b1 = self.and(b0, b1);
                let b0 = self.cmp(lt, 2, v);
                self.or(b0, b1)
            }
            v if v <= ETHERMTU => {
                let b0 = self.is_llc();
                let b1 = self.cmp(lt + 2, 1, v);
                self.and(b0, b1)
            }
            v => self.cmp(lt, 2, v),
        }
    }

    /// libpcap's `gen_ipfrag`: not a later fragment (offset 0).
    pub(super) fn ipfrag(&mut self) -> usize {
        let pl = self.pl();
        let t = self.ncmp(pl + 6, 2, u32::MAX, Cmp::Set, 0x1fff);
        self.not(t)
    }

    /// `ip proto v` / `ip6 proto v` / `proto v` (libpcap's `gen_proto`).
    pub(super) fn ip_proto(&mut self, v: u8, version: IpVersion) -> usize {
        if self.lenient() {
            return self.prim(Prim::IpProto { version, proto: v });
        }
        let pl = self.pl();
        let v = u32::from(v);
        match version {
            IpVersion::V4 => {
                let b0 = self.linktype(u32::from(ETHERTYPE_IPV4));
                let b1 = self.cmp(pl + 9, 1, v);
                self.and(b0, b1)
            }
            IpVersion::V6 => {
                let b0 = self.linktype(u32::from(ETHERTYPE_IPV6));
                let b2 = self.cmp(pl + 6, 1, IPPROTO_FRAGMENT);
                let b1 = self.cmp(pl + 40, 1, v);
                let b1 = self.and(b2, b1);
                let b2 = self.cmp(pl + 6, 1, v);
                let b1 = self.or(b2, b1);
                self.and(b0, b1)
            }
            IpVersion::Any => {
                let b0 = self.ip_proto(v as u8, IpVersion::V4);
                let b1 = self.ip_proto(v as u8, IpVersion::V6);
                self.or(b0, b1)
            }
        }
    }

    /// A protocol alone (libpcap's `gen_proto_abbrev`).
    pub(super) fn proto_abbrev(&mut self, pq: ProtoQ) -> usize {
        match pq {
            ProtoQ::Ip => self.linktype(u32::from(ETHERTYPE_IPV4)),
            ProtoQ::Ip6 => self.linktype(u32::from(ETHERTYPE_IPV6)),
            ProtoQ::Arp => self.linktype(u32::from(ETHERTYPE_ARP)),
            ProtoQ::Rarp => self.linktype(u32::from(ETHERTYPE_RARP)),
            _ => {
                let (v, version) = pq.ip_abbrev().unwrap_or((0, IpVersion::Any));
                self.ip_proto(v, version)
            }
        }
    }

    /// libpcap's `gen_hostop`: IPv4 address `addr/mask` at `src_off` /
    /// `dst_off` of a payload of ethertype `ethertype`.
    pub(super) fn hostop(
        &mut self,
        addr: u32,
        mask: u32,
        dir: Dir,
        ethertype: u16,
        offs: (u32, u32),
    ) -> usize {
        let one = |this: &mut Self, off: u32| {
            let b0 = this.linktype(u32::from(ethertype));
            let pl = this.pl();
            let b1 = this.ncmp(pl + off, 4, mask, Cmp::Eq, addr);
            this.and(b0, b1)
        };
        match dir {
            Dir::Src => one(self, offs.0),
            Dir::Dst => one(self, offs.1),
            Dir::SrcOrDst | Dir::SrcAndDst => {
                let b0 = one(self, offs.0);
                let b1 = one(self, offs.1);
                if dir == Dir::SrcOrDst {
                    self.or(b0, b1)
                } else {
                    self.and(b0, b1)
                }
            }
        }
    }

    /// libpcap's `gen_hostop6`.
    pub(super) fn hostop6(&mut self, addr: u128, mask: u128, dir: Dir) -> usize {
        let one = |this: &mut Self, off: u32| {
            let pl = this.pl();
            let word = |x: u128, i: u32| (x >> (96 - 32 * i)) as u32;
            let mut b1 = this.ncmp(pl + off + 12, 4, word(mask, 3), Cmp::Eq, word(addr, 3));
            for i in (0..3).rev() {
                let b0 = this.ncmp(pl + off + 4 * i, 4, word(mask, i), Cmp::Eq, word(addr, i));
                b1 = this.and(b0, b1);
            }
            let b0 = this.linktype(u32::from(ETHERTYPE_IPV6));
            this.and(b0, b1)
        };
        match dir {
            Dir::Src => one(self, 8),
            Dir::Dst => one(self, 24),
            Dir::SrcOrDst | Dir::SrcAndDst => {
                let b0 = one(self, 8);
                let b1 = one(self, 24);
                if dir == Dir::SrcOrDst {
                    self.or(b0, b1)
                } else {
                    self.and(b0, b1)
                }
            }
        }
    }

    /// libpcap's `gen_ehostop`.
    pub(super) fn ehostop(&mut self, mac: [u8; 6], dir: Dir) -> usize {
        match dir {
            Dir::Src => self.bcmp_abs(6, &mac),
            Dir::Dst => self.bcmp_abs(0, &mac),
            Dir::SrcOrDst | Dir::SrcAndDst => {
                let b0 = self.bcmp_abs(6, &mac);
                let b1 = self.bcmp_abs(0, &mac);
                if dir == Dir::SrcOrDst {
                    self.or(b0, b1)
                } else {
                    self.and(b0, b1)
                }
            }
        }
    }

    /// `bcmp` on the link header: never moved by VLAN tags.
    pub(super) fn bcmp_abs(&mut self, k: u32, v: &[u8]) -> usize {
        let mode = self.mode;
        self.mode = Mode::Libpcap;
        let b = self.bcmp(k, v);
        self.mode = mode;
        b
    }

    /// libpcap's `gen_port` + `gen_port6` (and the range versions): the
    /// IPv6 test first, then IPv4. `proto` None: TCP, UDP or SCTP.
    pub(super) fn port(&mut self, lo: u16, hi: u16, proto: Option<u8>, dir: Dir) -> usize {
        let (lo, hi) = (u32::from(lo.min(hi)), u32::from(lo.max(hi)));
        let range = lo != hi;
        let pl = self.pl();
        // One port field: `== lo`, or `>= lo and <= hi`.
        let atom = |this: &mut Self, v6: bool, off: u32| {
            let t = |this: &mut Self, cmp: Cmp, v: u32| {
                if v6 {
                    this.ncmp(pl + 40 + off, 2, u32::MAX, cmp, v)
                } else {
                    this.tran4(off, cmp, v)
                }
            };
            if range {
                let b1 = t(this, Cmp::Ge, lo);
                let gt = t(this, Cmp::Gt, hi);
                let b2 = this.not(gt);
                this.and(b1, b2)
            } else {
                t(this, Cmp::Eq, lo)
            }
        };
        let dirs = |this: &mut Self, v6: bool| match dir {
            Dir::Src => atom(this, v6, 0),
            Dir::Dst => atom(this, v6, 2),
            Dir::SrcOrDst | Dir::SrcAndDst => {
                let a = atom(this, v6, 0);
                let b = atom(this, v6, 2);
                if dir == Dir::SrcOrDst {
                    this.or(a, b)
                } else {
                    this.and(a, b)
                }
            }
        };
        let op = |this: &mut Self, v6: bool, p: u8| {
            let b0 = if v6 {
                this.cmp(pl + 6, 1, u32::from(p))
            } else {
                let tmp = this.cmp(pl + 9, 1, u32::from(p));
                let frag = this.ipfrag();
                this.and(tmp, frag)
            };
            let b1 = dirs(this, v6);
            this.and(b0, b1)
        };
        let family = |this: &mut Self, v6: bool| {
            let b0 = this.linktype(u32::from(if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 }));
            let b1 = match proto {
                Some(p) => op(this, v6, p),
                None => {
                    let tcp = op(this, v6, IPPROTO_TCP);
                    let udp = op(this, v6, IPPROTO_UDP);
                    let b1 = this.or(tcp, udp);
                    let sctp = op(this, v6, IPPROTO_SCTP);
                    this.or(sctp, b1)
                }
            };
            this.and(b0, b1)
        };
        let v6 = family(self, true);
        let v4 = family(self, false);
        self.or(v6, v4)
    }

    /// `[proto] host/net` for IPv4 (libpcap's `gen_host`).
    pub(super) fn host4(&mut self, addr: u32, mask: u32, proto: Option<ProtoQ>, dir: Dir) -> usize {
        let ip = |this: &mut Self| this.hostop(addr, mask, dir, ETHERTYPE_IPV4, (12, 16));
        let arp = |this: &mut Self| this.hostop(addr, mask, dir, ETHERTYPE_ARP, (14, 24));
        let rarp = |this: &mut Self| this.hostop(addr, mask, dir, ETHERTYPE_RARP, (14, 24));
        match proto {
            Some(ProtoQ::Ip) => ip(self),
            Some(ProtoQ::Arp) => arp(self),
            Some(ProtoQ::Rarp) => rarp(self),
            _ => {
                let b0 = ip(self);
                let b1 = arp(self);
                let b1 = self.or(b0, b1);
                let b0 = rarp(self);
                self.or(b1, b0)
            }
        }
    }

    /// `vlan [id]` in the libpcap mode: the TPID test, the ID test, then
    /// every later offset moves by one tag.
    pub(super) fn vlan(&mut self, id: Option<u16>, col: usize) -> Result<usize, Error> {
        if self.vlans >= MAX_VLANS {
            return Err(Error::new(
                col,
                format!("more than {MAX_VLANS} 'vlan' primitives"),
            ));
        }
        let b0 = self.linktype(0x8100);
        let b1 = self.linktype(0x88a8);
        let b0 = self.or(b0, b1);
        let b1 = self.linktype(0x9100);
        let mut b = self.or(b0, b1);
        if let Some(id) = id {
            let pl = self.pl();
            let vid = self.ncmp(pl, 2, 0x0fff, Cmp::Eq, u32::from(id));
            b = self.and(b, vid);
        }
        self.shift += 4;
        self.vlans += 1;
        Ok(b)
    }
}
