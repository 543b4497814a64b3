//! The peer DUTs (tcpdump, netsniff-ng, the AF_PACKET reader): their
//! command lines, the statistics they print, and counting the pcap records a DUT wrote.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tapline_packet::pcap::PcapReader;

use crate::afpacket::ReadCounts;
use crate::traffic::is_ours;

use super::{CaptureDut, PCAP_READ_BUF_BYTES, SENDER};

/// Records in a pcap stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcapCount {
    pub records: u64,
    /// Records whose frame the generator built (`is_ours`).
    pub ours: u64,
    /// The stream ended inside the file header or a record.
    pub truncated: bool,
}

/// Counts the records of a pcap stream (either magic, either byte order),
/// and those built by `sender`. A stream cut inside a record (a capture
/// killed mid-write) counts the records before the cut and says so; an
/// empty stream or one cut inside the file header counts nothing.
pub fn count_pcap(inp: impl Read, sender: u8) -> io::Result<PcapCount> {
    let mut count = PcapCount::default();
    let mut r = match PcapReader::new(inp) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            count.truncated = true;
            return Ok(count);
        }
        Err(e) => return Err(e),
    };
    loop {
        match r.next_record() {
            Ok(Some(rec)) => {
                count.records += 1;
                count.ours += u64::from(is_ours(&rec.data, sender));
            }
            Ok(None) => return Ok(count),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                count.truncated = true;
                return Ok(count);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The pcap files in a directory, counted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DirCount {
    pub(crate) records: u64,
    pub(crate) ours: u64,
    pub(crate) files: usize,
    pub(crate) bytes: u64,
    pub(crate) truncated_files: usize,
}

/// Counts every `*.pcap` and `*.pcap.part` file in `dir`.
pub(crate) fn count_dir(dir: &Path) -> Result<DirCount> {
    let mut total = DirCount::default();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            p.is_file() && (n.ends_with(".pcap") || n.ends_with(".pcap.part"))
        })
        .collect();
    paths.sort();
    for p in paths {
        let f = std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        total.bytes += f.metadata()?.len();
        let c = count_pcap(BufReader::with_capacity(PCAP_READ_BUF_BYTES, f), SENDER)
            .with_context(|| format!("reading {}", p.display()))?;
        total.records += c.records;
        total.ours += c.ours;
        total.files += 1;
        total.truncated_files += usize::from(c.truncated);
    }
    Ok(total)
}

/// What a peer printed about its capture when it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Frames its socket received (tcpdump "packets received by filter",
    /// netsniff-ng "packets incoming").
    pub received: Option<u64>,
    /// Its drop counters, by the label it printed.
    pub drops: BTreeMap<String, u64>,
}

/// Parses the statistics tcpdump (`N packets dropped by kernel`) or
/// netsniff-ng (`N  packets failed filter (out of space)`) print on exit.
pub fn parse_peer_stats(dut: CaptureDut, lines: &[String]) -> PeerStats {
    let mut s = PeerStats::default();
    for line in lines {
        let line = line.trim();
        let Some((n, label)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        let label = label.trim();
        match dut {
            CaptureDut::Tcpdump => {
                if label == "packets received by filter" {
                    s.received = Some(n);
                } else if let Some(what) = label.strip_prefix("packets dropped by ") {
                    s.drops.insert(format!("dropped by {what}"), n);
                }
            }
            CaptureDut::NetsniffNg => {
                if label.starts_with("packets incoming") {
                    s.received = Some(n);
                } else if label == "packets failed filter (out of space)" {
                    s.drops.insert("out of space".into(), n);
                }
            }
            CaptureDut::Tapline => {}
        }
    }
    s
}

/// Whether `line` is the reader's JSON event `event` (`{"event":"ready"}`).
pub(crate) fn is_reader_event(line: &str, event: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["event"] == event)
}

/// The reader's `{"event":"done",...}` line among its output, if any.
pub fn parse_reader_done(lines: &[String]) -> Option<ReadCounts> {
    lines
        .iter()
        .rev()
        .find(|l| is_reader_event(l, "done"))
        .and_then(|l| serde_json::from_str(l).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::build_frame;
    use crate::traffic::FrameKind;
    use tapline_packet::pcap::PcapWriter;

    fn pcap_bytes(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), 65_535).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write(i as u64, f.len() as u32, f).unwrap();
        }
        w.into_inner()
    }

    #[test]
    fn counts_records_and_the_generators_frames() {
        let frames = vec![
            build_frame(FrameKind::Udp4, 512, SENDER, 1, 1),
            build_frame(FrameKind::Udp4, 60, SENDER, 2, 2),
            build_frame(FrameKind::Udp4, 60, SENDER + 1, 3, 3),
            vec![0xff; 14],
        ];
        let c = count_pcap(&pcap_bytes(&frames)[..], SENDER).unwrap();
        assert_eq!(
            c,
            PcapCount {
                records: 4,
                ours: 2,
                truncated: false
            }
        );
        // A file header alone: no record.
        assert_eq!(
            count_pcap(&pcap_bytes(&[])[..], SENDER).unwrap(),
            PcapCount::default()
        );
    }

    #[test]
    fn a_cut_file_counts_the_records_before_the_cut() {
        let frames: Vec<Vec<u8>> = (0..3)
            .map(|i| build_frame(FrameKind::Udp4, 100, SENDER, i, 0))
            .collect();
        let bytes = pcap_bytes(&frames);
        // Inside the third record's data, then inside its header.
        for cut in [bytes.len() - 1, bytes.len() - 100 - 8] {
            let c = count_pcap(&bytes[..cut], SENDER).unwrap();
            assert_eq!(
                (c.records, c.ours, c.truncated),
                (2, 2, true),
                "cut at {cut}"
            );
        }
        for cut in [0, 10] {
            let c = count_pcap(&bytes[..cut], SENDER).unwrap();
            assert_eq!((c.records, c.truncated), (0, true), "cut at {cut}");
        }
        assert!(count_pcap(&b"not a pcap file at all.."[..], SENDER).is_err());
    }

    #[test]
    fn microsecond_big_endian_files_count_too() {
        // tcpdump/netsniff-ng default: microsecond magic; here big-endian.
        let frame = build_frame(FrameKind::Udp4, 64, SENDER, 7, 7);
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65_535u32.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        for _ in 0..2 {
            b.extend_from_slice(&1u32.to_be_bytes());
            b.extend_from_slice(&2u32.to_be_bytes());
            b.extend_from_slice(&64u32.to_be_bytes());
            b.extend_from_slice(&64u32.to_be_bytes());
            b.extend_from_slice(&frame);
        }
        let c = count_pcap(&b[..], SENDER).unwrap();
        assert_eq!((c.records, c.ours, c.truncated), (2, 2, false));
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn peer_statistics_parse() {
        let td = lines(
            "tcpdump: listening on p1, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n\
             1000 packets captured\n1200 packets received by filter\n200 packets dropped by kernel\n\
             3 packets dropped by interface\n",
        );
        let s = parse_peer_stats(CaptureDut::Tcpdump, &td);
        assert_eq!(s.received, Some(1200));
        assert_eq!(
            s.drops,
            BTreeMap::from([
                ("dropped by kernel".to_string(), 200),
                ("dropped by interface".to_string(), 3)
            ])
        );
        let ns = lines(
            "Running! Hang up with ^C!\n\n\r        1000  packets incoming (5 unread on exit)\n\
             \r         990  packets passed filter\n\r          10  packets failed filter (out of space)\n\
             \r      0.0000% packet droprate\n\r           1  sec, 140990 usec in total\n",
        );
        let s = parse_peer_stats(CaptureDut::NetsniffNg, &ns);
        assert_eq!(s.received, Some(1000));
        assert_eq!(s.drops, BTreeMap::from([("out of space".to_string(), 10)]));
        assert_eq!(
            parse_peer_stats(CaptureDut::Tcpdump, &lines("tcpdump: killed\n")),
            PeerStats::default()
        );
    }

    #[test]
    fn reader_events_parse() {
        let out = lines(
            "{\"event\":\"ready\"}\nwarning: something\n\
             {\"event\": \"done\", \"received\": 1200, \"bytes\": 614400, \"kernel_drops\": 3}\n",
        );
        assert!(is_reader_event(&out[0], "ready"));
        assert!(!is_reader_event(&out[1], "ready"));
        assert!(!is_reader_event(&out[0], "done"));
        assert_eq!(
            parse_reader_done(&out),
            Some(ReadCounts {
                received: 1200,
                bytes: 614_400,
                kernel_drops: 3
            })
        );
        assert_eq!(parse_reader_done(&out[..2]), None);
        // A done event missing a counter is no answer, not zeros.
        assert_eq!(
            parse_reader_done(&lines("{\"event\":\"done\",\"received\":5}\n")),
            None
        );
    }
}
