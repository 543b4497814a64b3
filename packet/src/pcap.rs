//! The pcap file format (nanosecond variant, LINKTYPE_ETHERNET): a writer
//! for the recorder and the tap, and a reader for tests and tools.
//!
//! Files are written little-endian with the nanosecond magic
//! ([`MAGIC_NS`], version 2.4). The reader takes both magics in both byte
//! orders; microsecond timestamps are returned in nanoseconds. Input is
//! untrusted: a record claiming more than [`MAX_RECORD_LEN`] bytes is an
//! `InvalidData` error, never a large allocation, and a file cut inside a
//! record is an `UnexpectedEof` error.

use std::io::{self, Read, Write};

/// pcap's magic for nanosecond timestamps.
pub const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// pcap's magic for microsecond timestamps.
pub const MAGIC_US: u32 = 0xa1b2_c3d4;
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Length of the file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 16;
/// File format version written (2.4, the only one in use).
pub const VERSION_MAJOR: u16 = 2;
pub const VERSION_MINOR: u16 = 4;
/// The largest captured length the reader accepts in one record (tcpdump's
/// and Wireshark's maximum snap length, 256 KiB). Also the snap length
/// written for "whole packets".
pub const MAX_RECORD_LEN: u32 = 262_144;

const NS_PER_SEC: u64 = 1_000_000_000;
const NS_PER_US: u64 = 1_000;

/// Appends the 24-byte file header (nanosecond magic) to `out`.
pub fn file_header(snaplen: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&file_header_bytes(snaplen));
}

/// The 24-byte file header (nanosecond magic), for writers that need it
/// on the stack.
pub fn file_header_bytes(snaplen: u32) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC_NS.to_le_bytes());
    h[4..6].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
    h[6..8].copy_from_slice(&VERSION_MINOR.to_le_bytes());
    // thiszone (8..12) and sigfigs (12..16) are 0: timestamps are UTC.
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// The 16-byte record header for `incl_len` captured bytes. `orig_len` is
/// raised to `incl_len` if smaller (the format requires orig >= incl).
/// Seconds past 2106 (u32) saturate.
#[inline]
fn record_header(ts_unix_ns: u64, orig_len: u32, incl_len: u32) -> [u8; RECORD_HEADER_LEN] {
    let secs = u32::try_from(ts_unix_ns / NS_PER_SEC).unwrap_or(u32::MAX);
    // < 10^9: always fits.
    let nanos = (ts_unix_ns % NS_PER_SEC) as u32;
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&secs.to_le_bytes());
    h[4..8].copy_from_slice(&nanos.to_le_bytes());
    h[8..12].copy_from_slice(&incl_len.to_le_bytes());
    h[12..16].copy_from_slice(&orig_len.max(incl_len).to_le_bytes());
    h
}

/// `data` cut to what a record header can describe (u32 lengths).
#[inline]
fn describable(data: &[u8]) -> (&[u8], u32) {
    match u32::try_from(data.len()) {
        Ok(n) => (data, n),
        Err(_) => (&data[..u32::MAX as usize], u32::MAX),
    }
}

/// Appends one record (header + `data`) to `out`; `orig_len` is the length
/// on the wire (>= data.len()). Allocates nothing when `out` has room for
/// `RECORD_HEADER_LEN + data.len()` more bytes.
#[inline]
pub fn record(ts_unix_ns: u64, orig_len: u32, data: &[u8], out: &mut Vec<u8>) {
    let (data, incl) = describable(data);
    out.extend_from_slice(&record_header(ts_unix_ns, orig_len, incl));
    out.extend_from_slice(data);
}

/// The captured length of the record whose header starts `block`, for
/// records written by [`record`] (little-endian); `None` if `block` is
/// shorter than a record header.
#[inline]
pub fn record_incl_len(block: &[u8]) -> Option<u32> {
    let b: [u8; 4] = block.get(8..12)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// A streaming pcap writer over any `Write` (stdout, a file).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W, snaplen: u32) -> io::Result<Self> {
        out.write_all(&file_header_bytes(snaplen))?;
        Ok(PcapWriter { out })
    }

    /// Writes one record. `data` is written whole (the caller cuts it to
    /// the snap length); `orig_len` is the length on the wire.
    pub fn write(&mut self, ts_unix_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let (data, incl) = describable(data);
        self.out
            .write_all(&record_header(ts_unix_ns, orig_len, incl))?;
        self.out.write_all(data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapRecord {
    pub ts_unix_ns: u64,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// A pcap reader (both magics, both byte orders).
#[derive(Debug)]
pub struct PcapReader<R: Read> {
    inp: R,
    pub snaplen: u32,
    pub linktype: u32,
    pub nanos: bool,
    /// The file is big-endian (written on a big-endian host).
    pub big_endian: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Fills `buf` from `inp`; `Ok(false)` when the input ended before the
/// first byte, `UnexpectedEof` when it ended inside `buf`.
fn read_full_or_nothing(inp: &mut impl Read, buf: &mut [u8], what: &str) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match inp.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("pcap {what} cut after {got} of {} bytes", buf.len()),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the file header.
    pub fn new(mut inp: R) -> io::Result<Self> {
        let mut h = [0u8; FILE_HEADER_LEN];
        if !read_full_or_nothing(&mut inp, &mut h, "file header")? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "empty input: no pcap file header",
            ));
        }
        let magic_le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (nanos, big_endian) = match magic_le {
            MAGIC_NS => (true, false),
            MAGIC_US => (false, false),
            m if m.swap_bytes() == MAGIC_NS => (true, true),
            m if m.swap_bytes() == MAGIC_US => (false, true),
            m => return Err(invalid(format!("not a pcap file (magic {m:#010x})"))),
        };
        let u16_at = |i: usize| {
            let b = [h[i], h[i + 1]];
            if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let u32_at = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let major = u16_at(4);
        if major != VERSION_MAJOR {
            return Err(invalid(format!(
                "unsupported pcap version {major}.{}",
                u16_at(6)
            )));
        }
        Ok(PcapReader {
            inp,
            snaplen: u32_at(16),
            linktype: u32_at(20),
            nanos,
            big_endian,
        })
    }

    fn u32_of(&self, b: &[u8]) -> u32 {
        let b = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// The next record, or `None` at a clean end of file. A truncated last
    /// record is an error (`UnexpectedEof`); a record longer than
    /// [`MAX_RECORD_LEN`] is `InvalidData`.
    pub fn next_record(&mut self) -> io::Result<Option<PcapRecord>> {
        let mut h = [0u8; RECORD_HEADER_LEN];
        if !read_full_or_nothing(&mut self.inp, &mut h, "record header")? {
            return Ok(None);
        }
        let secs = u64::from(self.u32_of(&h[0..4]));
        let frac = u64::from(self.u32_of(&h[4..8]));
        let incl_len = self.u32_of(&h[8..12]);
        let orig_len = self.u32_of(&h[12..16]);
        if incl_len > MAX_RECORD_LEN {
            return Err(invalid(format!(
                "pcap record of {incl_len} bytes (at most {MAX_RECORD_LEN})"
            )));
        }
        let ts_unix_ns = secs * NS_PER_SEC + if self.nanos { frac } else { frac * NS_PER_US };
        // At most MAX_RECORD_LEN bytes: checked above.
        let mut data = vec![0u8; incl_len as usize];
        if !data.is_empty() && !read_full_or_nothing(&mut self.inp, &mut data, "record data")? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("pcap record data cut after 0 of {incl_len} bytes"),
            ));
        }
        Ok(Some(PcapRecord {
            ts_unix_ns,
            orig_len,
            data,
        }))
    }
}

impl<R: Read> Iterator for PcapReader<R> {
    type Item = io::Result<PcapRecord>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Reads a whole file.
pub fn read_file(path: &std::path::Path) -> io::Result<Vec<PcapRecord>> {
    let f = std::fs::File::open(path)?;
    let mut r = PcapReader::new(io::BufReader::new(f))?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<PcapRecord> {
        vec![
            PcapRecord {
                ts_unix_ns: 1_700_000_000_123_456_789,
                orig_len: 60,
                data: (0..60u8).collect(),
            },
            PcapRecord {
                ts_unix_ns: 1_700_000_001_000_000_001,
                orig_len: 1514,
                data: vec![0xab; 96],
            },
            PcapRecord {
                ts_unix_ns: 5,
                orig_len: 0,
                data: vec![],
            },
        ]
    }

    fn read_all(bytes: &[u8]) -> io::Result<Vec<PcapRecord>> {
        PcapReader::new(bytes)?.collect()
    }

    #[test]
    fn header_is_the_documented_bytes() {
        let mut v = Vec::new();
        file_header(65535, &mut v);
        assert_eq!(
            v,
            [
                0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
        let mut r = Vec::new();
        record(3_000_000_007, 100, &[9, 8], &mut r);
        assert_eq!(r, [3, 0, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0, 100, 0, 0, 0, 9, 8]);
        assert_eq!(record_incl_len(&r), Some(2));
        assert_eq!(record_incl_len(&r[..11]), None);
    }

    #[test]
    fn round_trip_through_record_and_writer() {
        let recs = sample();
        let mut a = Vec::new();
        file_header(256, &mut a);
        for r in &recs {
            record(r.ts_unix_ns, r.orig_len, &r.data, &mut a);
        }
        let mut w = PcapWriter::new(Vec::new(), 256).unwrap();
        for r in &recs {
            w.write(r.ts_unix_ns, r.orig_len, &r.data).unwrap();
        }
        w.flush().unwrap();
        let b = w.into_inner();
        assert_eq!(a, b);
        let rd = PcapReader::new(&a[..]).unwrap();
        assert_eq!(
            (rd.snaplen, rd.linktype, rd.nanos),
            (256, LINKTYPE_ETHERNET, true)
        );
        let back = read_all(&a).unwrap();
        // orig_len is raised to the captured length (the last sample).
        let mut want = recs;
        want[2].orig_len = 0;
        assert_eq!(back, want);
    }

    #[test]
    fn record_appends_without_reallocating_when_there_is_room() {
        let mut v = Vec::with_capacity(RECORD_HEADER_LEN + 64);
        let cap = v.capacity();
        let ptr = v.as_ptr();
        record(1, 64, &[1u8; 64], &mut v);
        assert_eq!((v.capacity(), v.as_ptr()), (cap, ptr));
        assert_eq!(v.len(), RECORD_HEADER_LEN + 64);
    }

    #[test]
    fn orig_len_is_never_below_the_captured_length() {
        let mut v = Vec::new();
        file_header(0, &mut v);
        record(1, 3, &[1, 2, 3, 4, 5], &mut v);
        assert_eq!(read_all(&v).unwrap()[0].orig_len, 5);
    }

    /// Builds a file by hand: `big` selects the byte order, `nanos` the
    /// magic.
    fn handmade(big: bool, nanos: bool, recs: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let p32 = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let p16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = Vec::new();
        f.extend(p32(if nanos { MAGIC_NS } else { MAGIC_US }));
        f.extend(p16(2));
        f.extend(p16(4));
        f.extend(p32(0));
        f.extend(p32(0));
        f.extend(p32(1500));
        f.extend(p32(LINKTYPE_ETHERNET));
        for (s, frac, d) in recs {
            f.extend(p32(*s));
            f.extend(p32(*frac));
            f.extend(p32(d.len() as u32));
            f.extend(p32(d.len() as u32 + 10));
            f.extend_from_slice(d);
        }
        f
    }

    #[test]
    fn both_magics_in_both_byte_orders() {
        for big in [false, true] {
            for nanos in [false, true] {
                let f = handmade(big, nanos, &[(7, 123, &[1, 2, 3]), (8, 0, &[])]);
                let r = PcapReader::new(&f[..]).unwrap();
                assert_eq!(
                    (r.snaplen, r.linktype, r.nanos, r.big_endian),
                    (1500, 1, nanos, big)
                );
                let back = read_all(&f).unwrap();
                let frac_ns = if nanos { 123 } else { 123_000 };
                assert_eq!(
                    back,
                    vec![
                        PcapRecord {
                            ts_unix_ns: 7 * NS_PER_SEC + frac_ns,
                            orig_len: 13,
                            data: vec![1, 2, 3]
                        },
                        PcapRecord {
                            ts_unix_ns: 8 * NS_PER_SEC,
                            orig_len: 10,
                            data: vec![]
                        },
                    ],
                    "big {big} nanos {nanos}"
                );
            }
        }
    }

    #[test]
    fn truncated_input_is_unexpected_eof_at_every_cut() {
        let mut f = Vec::new();
        file_header(1500, &mut f);
        record(1, 40, &[7u8; 40], &mut f);
        let whole = f.len();
        record(2, 40, &[8u8; 40], &mut f);
        for cut in 0..f.len() {
            let res = read_all(&f[..cut]);
            if cut == FILE_HEADER_LEN || cut == whole {
                assert!(res.is_ok(), "cut at {cut}: a record boundary");
                continue;
            }
            let e = res.expect_err("cut inside a header or record");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}: {e}");
        }
        assert_eq!(read_all(&f).unwrap().len(), 2);
    }

    #[test]
    fn garbage_is_invalid_data() {
        // Not a pcap magic.
        let e = read_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // Unknown version.
        let mut f = handmade(false, true, &[]);
        f[4] = 9;
        let e = read_all(&f).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // A record claiming 4 GiB: an error, not an allocation.
        let mut f = handmade(false, true, &[]);
        f.extend([
            0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        let e = read_all(&f).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // Just over the limit, in a big-endian file.
        let mut f = handmade(true, false, &[]);
        f.extend([0u8; 8]);
        f.extend((MAX_RECORD_LEN + 1).to_be_bytes());
        f.extend((MAX_RECORD_LEN + 1).to_be_bytes());
        let e = read_all(&f).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // The limit itself is fine (then cut: no data follows).
        let mut f = handmade(false, true, &[]);
        f.extend([0u8; 8]);
        f.extend(MAX_RECORD_LEN.to_le_bytes());
        f.extend(MAX_RECORD_LEN.to_le_bytes());
        let e = read_all(&f).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[test]
    fn deterministic_garbage_never_panics() {
        // A small xorshift so the test needs no dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..2000 {
            let len = (next() % 200) as usize;
            let mut f = if i % 2 == 0 {
                handmade(i % 4 == 0, i % 3 == 0, &[])
            } else {
                Vec::new()
            };
            f.extend((0..len).map(|_| next() as u8));
            let _ = read_all(&f);
        }
    }

    #[test]
    fn read_file_reads_a_file_and_reports_missing_ones() {
        let dir = std::env::temp_dir().join(format!("tapline-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.pcap");
        let mut w = PcapWriter::new(std::fs::File::create(&p).unwrap(), 65535).unwrap();
        for r in sample().iter().take(2) {
            w.write(r.ts_unix_ns, r.orig_len, &r.data).unwrap();
        }
        drop(w);
        assert_eq!(read_file(&p).unwrap(), sample()[..2].to_vec());
        let e = read_file(&dir.join("missing.pcap")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
