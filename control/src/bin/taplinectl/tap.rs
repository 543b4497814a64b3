//! `taplinectl tap`: copies of the packets at one point of the dataplane,
//! as lines, proto3 JSON (`TapPacket`, one per line) or pcap (`-w`).

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use tapline_proto::v1 as pb;

use crate::conn::Session;
use crate::exit;
use crate::failure::{esc, root_cause, Failure};
use crate::output::{emit, emit_json, lower_name};
use crate::Cli;

/// Where to tap and what to keep.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("tap_point").required(true).args(["point", "hop"])))]
pub struct TapArgs {
    /// A port: passive-1, inline-1 or inline-2.
    #[arg(long, value_name = "PORT", value_parser = ["passive-1", "inline-1", "inline-2"])]
    point: Option<String>,
    /// A hop of the applied chain (with --side).
    #[arg(long, value_name = "NAME", requires = "side")]
    hop: Option<String>,
    /// The hop's side: a (facing inline-1) or b (facing inline-2).
    #[arg(long, value_name = "SIDE", value_parser = ["a", "b"], requires = "hop")]
    side: Option<String>,
    /// rx, tx or both (default: both; rx for passive-1).
    #[arg(long, value_name = "DIR", value_parser = ["rx", "tx", "both"])]
    direction: Option<String>,
    /// pcap-filter expression (or give it as the trailing words).
    #[arg(long, value_name = "EXPR", conflicts_with = "expression")]
    filter: Option<String>,
    /// Bytes kept of each packet (default: the server's).
    #[arg(long, value_name = "BYTES")]
    snaplen: Option<u32>,
    /// Keep one matching packet in N.
    #[arg(long, value_name = "N")]
    sample: Option<u32>,
    /// Stop after N packets.
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Write a pcap file ("-": stdout).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// The filter, as trailing words.
    #[arg(value_name = "EXPR")]
    expression: Vec<String>,
}

/// The request `args` stand for; a filter that does not compile is a
/// usage error showing where.
pub fn tap_request(args: &TapArgs) -> Result<pb::TapRequest, Failure> {
    use pb::tap_point::Location;
    let filter = match &args.filter {
        Some(f) => f.clone(),
        None => args.expression.join(" "),
    };
    if let Err(e) = tapline_packet::filter::Filter::compile(&filter) {
        return Err(Failure::usage(format!("filter: {e}\n{}", e.caret())));
    }
    let location = match (&args.point, &args.hop, args.side.as_deref()) {
        (Some(p), None, _) => Location::Port(p.clone()),
        (None, Some(h), Some(side)) => Location::Hop(pb::HopTapPoint {
            hop: h.clone(),
            side: if side == "a" {
                pb::HopSide::A
            } else {
                pb::HopSide::B
            }
            .into(),
        }),
        _ => {
            return Err(Failure::usage(
                "tap: give --point PORT, or --hop NAME --side a|b",
            ))
        }
    };
    let direction = match args.direction.as_deref() {
        None => pb::TapDirection::Unspecified,
        Some("rx") => pb::TapDirection::Rx,
        Some("tx") => pb::TapDirection::Tx,
        Some(_) => pb::TapDirection::Both,
    };
    let max_duration_ms = match args.duration {
        None => 0,
        Some(s) if s.is_finite() && s > 0.0 => ((s * 1000.0).ceil() as u64).max(1),
        Some(s) => {
            return Err(Failure::usage(format!(
                "--duration {s}: give a number of seconds above 0"
            )))
        }
    };
    Ok(pb::TapRequest {
        point: Some(pb::TapPoint {
            location: Some(location),
            direction: direction.into(),
        }),
        filter,
        snap_length_bytes: args.snaplen.unwrap_or(0),
        sample_one_in: args.sample.unwrap_or(0),
        max_packets: args.count.unwrap_or(0),
        max_duration_ms,
    })
}

/// Where tapped packets go.
enum TapOutput {
    /// A pcap stream; the writer is made when the snap length is known
    /// (`started`).
    Pcap {
        pending: Option<Box<dyn std::io::Write>>,
        writer: Option<tapline_packet::pcap::PcapWriter<Box<dyn std::io::Write>>>,
        what: String,
    },
    Text,
    Json,
}

impl std::fmt::Debug for TapOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TapOutput::Pcap { .. } => "Pcap",
            TapOutput::Text => "Text",
            TapOutput::Json => "Json",
        })
    }
}

/// A write error: a closed stdout ends the tap quietly.
fn output_failure(what: &str, e: &std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::quiet()
    } else {
        Failure::new(exit::SERVER, format!("writing {what}: {e}"))
    }
}

impl TapOutput {
    fn open(args: &TapArgs, json: bool) -> Result<TapOutput, Failure> {
        let Some(path) = &args.write else {
            return Ok(if json {
                TapOutput::Json
            } else {
                TapOutput::Text
            });
        };
        let (sink, what): (Box<dyn std::io::Write>, String) = if path.as_os_str() == "-" {
            (
                Box::new(std::io::BufWriter::new(std::io::stdout())),
                "the pcap stream to stdout".to_string(),
            )
        } else {
            let f = std::fs::File::create(path).map_err(|e| {
                Failure::usage(format!("-w {}: {}", path.display(), root_cause(&e)))
            })?;
            (
                Box::new(std::io::BufWriter::new(f)),
                path.display().to_string(),
            )
        };
        Ok(TapOutput::Pcap {
            pending: Some(sink),
            writer: None,
            what,
        })
    }

    fn start(&mut self, started: &pb::TapStarted) -> Result<(), Failure> {
        if let TapOutput::Pcap {
            pending,
            writer,
            what,
        } = self
        {
            if let Some(sink) = pending.take() {
                let w = tapline_packet::pcap::PcapWriter::new(sink, started.snap_length_bytes)
                    .map_err(|e| output_failure(what, &e))?;
                *writer = Some(w);
            }
        }
        Ok(())
    }

    fn packet(&mut self, p: &pb::TapPacket) -> Result<(), Failure> {
        match self {
            TapOutput::Pcap { writer, what, .. } => match writer {
                Some(w) => w
                    .write(p.timestamp_unix_ns, p.original_length_bytes, &p.data)
                    .map_err(|e| output_failure(what, &e)),
                None => Ok(()),
            },
            TapOutput::Text => emit(&format!("{}\n", packet_line(p))),
            // The proto3 JSON mapping of TapPacket (data in base64).
            TapOutput::Json => emit_json(p, false),
        }
    }

    /// After each batch.
    fn flush(&mut self) -> Result<(), Failure> {
        if let TapOutput::Pcap {
            writer: Some(w),
            what,
            ..
        } = self
        {
            w.flush().map_err(|e| output_failure(what, &e))?;
        }
        Ok(())
    }
}

fn direction_name(v: i32) -> &'static str {
    match pb::TapDirection::try_from(v) {
        Ok(pb::TapDirection::Rx) => "rx",
        Ok(pb::TapDirection::Tx) => "tx",
        Ok(pb::TapDirection::Both) => "both",
        _ => "unspecified",
    }
}

/// `HH:MM:SS.uuuuuu` (UTC) of a Unix time in nanoseconds.
fn time_of_day(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let micros = (unix_ns % 1_000_000_000) / 1000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{micros:06}",
        day / 3600,
        day / 60 % 60,
        day % 60
    )
}

/// A short description of a frame: VLANs, addresses, ports, protocol.
fn packet_summary(frame: &[u8]) -> String {
    let p = tapline_packet::packet::Packet::parse(frame);
    let mut s = String::new();
    for v in &p.vlans[..usize::from(p.n_vlans).min(2)] {
        let _ = write!(s, "vlan {v}, ");
    }
    let endpoint = |a: std::net::IpAddr, port: Option<u16>| match (a, port) {
        (std::net::IpAddr::V6(a), Some(port)) => format!("[{a}]:{port}"),
        (a, Some(port)) => format!("{a}:{port}"),
        (a, None) => a.to_string(),
    };
    match (p.src, p.dst) {
        (Some(src), Some(dst)) => {
            let proto = match p.proto {
                1 => "icmp".to_string(),
                6 => "tcp".to_string(),
                17 => "udp".to_string(),
                58 => "icmp6".to_string(),
                132 => "sctp".to_string(),
                n => format!("proto {n}"),
            };
            let _ = write!(
                s,
                "{} > {} {proto}",
                endpoint(src, p.ports.map(|x| x.0)),
                endpoint(dst, p.ports.map(|x| x.1))
            );
            if p.fragment {
                s.push_str(" (fragment)");
            }
        }
        _ => {
            let _ = write!(s, "ethertype {:#06x}", p.ethertype);
        }
    }
    s
}

/// One line per packet (the default output).
fn packet_line(p: &pb::TapPacket) -> String {
    let mut line = format!(
        "{} {} {} bytes",
        time_of_day(p.timestamp_unix_ns),
        direction_name(p.direction),
        p.original_length_bytes
    );
    if (p.data.len() as u64) < u64::from(p.original_length_bytes) {
        let _ = write!(line, " (captured {})", p.data.len());
    }
    let _ = write!(line, " {}", packet_summary(&p.data));
    line
}

/// The point as people read it.
fn point_name(p: Option<&pb::TapPoint>) -> String {
    let Some(p) = p else {
        return "?".to_string();
    };
    let at = match &p.location {
        Some(pb::tap_point::Location::Port(r)) => r.clone(),
        Some(pb::tap_point::Location::Hop(h)) => format!(
            "hop {} side {}",
            h.hop,
            if h.side == pb::HopSide::B as i32 {
                "b"
            } else {
                "a"
            }
        ),
        None => "?".to_string(),
    };
    format!("{at} {}", direction_name(p.direction))
}

/// Why a tap stopped, from the client's side.
#[derive(Debug)]
enum TapStop {
    Ended(pb::TapEnded),
    /// `-c` packets arrived.
    Count,
    Interrupted,
}

pub async fn run(cli: &Cli, args: &TapArgs) -> Result<(), Failure> {
    const WHAT: &str = "tapline.v1.Admin/Tap";
    let req = tap_request(args)?;
    let mut out = TapOutput::open(args, cli.json)?;
    let s = Session::connect(cli).await?;
    let mut stream = s
        .admin()
        .tap(req)
        .await
        .map_err(|e| s.target.failure(WHAT, &e))?
        .into_inner();
    let (mut captured, mut lost) = (0u64, 0u64);
    let summary = |captured: u64, lost: u64| {
        eprintln!("{captured} packets captured, {lost} lost (client too slow)");
    };
    let stop = loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = tokio::signal::ctrl_c() => break TapStop::Interrupted,
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => {
                summary(captured, lost);
                return Err(Failure::new(
                    exit::SERVER,
                    format!(
                        "tapline-control at {} ended the tap stream without saying why",
                        s.target.url
                    ),
                ));
            }
            Err(e) => {
                summary(captured, lost);
                return Err(s.target.failure(WHAT, &e));
            }
        };
        if let Some(st) = &msg.started {
            out.start(st)?;
            eprintln!(
                "tapping {} on {}{}, snap length {} bytes{}",
                point_name(st.point.as_ref()),
                st.ifname,
                if st.filter.trim().is_empty() {
                    String::new()
                } else {
                    format!(", filter {:?}", st.filter)
                },
                st.snap_length_bytes,
                if st.sample_one_in > 1 {
                    format!(", 1 packet in {}", st.sample_one_in)
                } else {
                    String::new()
                }
            );
        }
        for p in &msg.packets {
            if args.count.is_some_and(|n| captured >= n) {
                break;
            }
            out.packet(p)?;
            captured += 1;
        }
        lost += msg.lost_packets;
        out.flush()?;
        if let Some(e) = msg.ended {
            break TapStop::Ended(e);
        }
        if args.count.is_some_and(|n| captured >= n) {
            break TapStop::Count;
        }
    };
    // Dropping the stream cancels the tap (if it still runs).
    drop(stream);
    summary(captured, lost);
    match stop {
        TapStop::Ended(e) => {
            let reason = lower_name(e.reason().as_str_name(), "TAP_END_REASON_");
            if e.message.is_empty() {
                eprintln!("tap ended: {reason}");
            } else {
                eprintln!("tap ended: {reason}: {}", esc(&e.message));
            }
        }
        TapStop::Count => eprintln!("tap ended: {captured} packets captured (-c)"),
        TapStop::Interrupted => eprintln!("tap ended: interrupted"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verb;
    use clap::Parser;
    use std::path::Path;

    fn parse(args: &[&str]) -> Result<TapArgs, clap::Error> {
        let mut v = vec!["taplinectl", "tap"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v)?;
        match cli.verb {
            Verb::Tap(a) => Ok(a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tap_takes_a_point_or_a_hop_side_and_a_filter_either_way() {
        let a = parse(&[
            "--point",
            "passive-1",
            "--filter",
            "udp and dst port 5001",
            "-c",
            "10",
            "-w",
            "-",
        ])
        .unwrap();
        let r = tap_request(&a).unwrap();
        assert_eq!(r.filter, "udp and dst port 5001");
        assert_eq!(r.max_packets, 10);
        assert_eq!(a.write.as_deref(), Some(Path::new("-")));
        let p = r.point.unwrap();
        assert_eq!(
            p.location,
            Some(pb::tap_point::Location::Port("passive-1".into()))
        );
        assert_eq!(p.direction(), pb::TapDirection::Unspecified);

        let a = parse(&[
            "--hop",
            "ids",
            "--side",
            "b",
            "--direction",
            "tx",
            "--duration",
            "1.5",
            "--sample",
            "4",
            "--snaplen",
            "96",
            "tcp",
            "port",
            "443",
        ])
        .unwrap();
        let r = tap_request(&a).unwrap();
        assert_eq!(r.filter, "tcp port 443");
        assert_eq!(
            (r.max_duration_ms, r.sample_one_in, r.snap_length_bytes),
            (1500, 4, 96)
        );
        let p = r.point.unwrap();
        assert_eq!(p.direction(), pb::TapDirection::Tx);
        assert_eq!(
            p.location,
            Some(pb::tap_point::Location::Hop(pb::HopTapPoint {
                hop: "ids".into(),
                side: pb::HopSide::B.into()
            }))
        );

        // A point is required, and only one; a hop needs its side.
        assert!(parse(&[]).is_err());
        assert!(parse(&["--point", "passive-1", "--hop", "ids", "--side", "a"]).is_err());
        assert!(parse(&["--hop", "ids"]).is_err());
        assert!(parse(&["--point", "inline-3"]).is_err());
        assert!(parse(&["--point", "inline-1", "--filter", "udp", "tcp"]).is_err());
    }

    #[test]
    fn a_bad_filter_is_a_usage_error_with_a_caret() {
        let a = parse(&["--point", "inline-1", "tcp", "and", "prot", "6"]).unwrap();
        let f = tap_request(&a).unwrap_err();
        assert_eq!(f.code, exit::USAGE);
        let lines: Vec<&str> = f.message.lines().collect();
        assert!(lines[0].starts_with("filter: column 9: "), "{}", f.message);
        assert_eq!(lines[1], "  tcp and prot 6");
        assert_eq!(lines[2], "          ^");
        let a = parse(&["--point", "inline-1", "--duration", "0"]).unwrap();
        assert_eq!(tap_request(&a).unwrap_err().code, exit::USAGE);
    }

    #[test]
    fn packets_print_as_lines_and_json() {
        let frame = {
            let mut f = vec![0u8; 60];
            f[12] = 0x08;
            f[14] = 0x45;
            f[16..18].copy_from_slice(&46u16.to_be_bytes());
            f[22] = 64;
            f[23] = 17;
            f[26..30].copy_from_slice(&[10, 0, 0, 1]);
            f[30..34].copy_from_slice(&[10, 0, 0, 2]);
            f[34..36].copy_from_slice(&1234u16.to_be_bytes());
            f[36..38].copy_from_slice(&5001u16.to_be_bytes());
            f[38..40].copy_from_slice(&26u16.to_be_bytes());
            f
        };
        let p = pb::TapPacket {
            timestamp_unix_ns: 3_723_000_456_789,
            original_length_bytes: 100,
            data: frame.into(),
            direction: pb::TapDirection::Rx.into(),
            queue_id: 2,
        };
        assert_eq!(
            packet_line(&p),
            "01:02:03.000456 rx 100 bytes (captured 60) 10.0.0.1:1234 > 10.0.0.2:5001 udp"
        );
        let j: serde_json::Value =
            serde_json::from_str(&crate::output::json_text(&p, false).unwrap()).unwrap();
        assert_eq!(j["direction"], "TAP_DIRECTION_RX");
        assert_eq!(j["queueId"], 2);
        assert_eq!(j["originalLengthBytes"], 100);
        assert_eq!(j["timestampUnixNs"], "3723000456789");
        // bytes in base64: 60 bytes, 80 characters, the zero MACs first.
        let data = j["data"].as_str().unwrap();
        assert!(data.starts_with("AAAAAAAAAAAA"), "{data}");
        assert_eq!(data.len(), 80);
        assert_eq!(packet_summary(&[0u8; 20]), "ethertype 0x0000");
    }
}
