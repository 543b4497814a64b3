//! The exposition's and the HTTP server's tests.
use super::*;
use crate::stats::tests::{chain_snapshot, outputs_snapshot, snapshot};
use std::collections::BTreeSet;
use std::time::Duration;

/// Metric names of the sample lines, and every family's HELP and TYPE.
fn check_format(text: &str) -> BTreeSet<String> {
    let mut helped = BTreeSet::new();
    let mut typed = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap().to_string();
            let kind = it.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            } else {
                assert!(!name.ends_with("_total"), "{name}");
            }
            if kind == "histogram" {
                histograms.insert(name.clone());
            }
            assert!(helped.contains(&name), "TYPE before HELP: {line}");
            typed.insert(name);
        } else {
            assert!(!line.starts_with('#'), "{line}");
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // A histogram's samples carry a suffix of its family name.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| histograms.contains(*f))
                        .map(str::to_string)
                })
                .unwrap_or_else(|| name.clone());
            assert!(typed.contains(&family), "sample without TYPE: {line}");
            assert!(name.starts_with("tapline_"), "{line}");
            let (id, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            // One sample per series: a name and label set appear once.
            assert!(series.insert(id.to_string()), "duplicate series: {line}");
            names.insert(name);
        }
    }
    assert_eq!(helped, typed);
    names
}

#[test]
fn down_exports_only_up_zero() {
    let text = render(None);
    assert_eq!(
        check_format(&text),
        BTreeSet::from([
            "tapline_build_info".to_string(),
            "tapline_dataplane_up".to_string()
        ])
    );
    assert!(text.lines().any(|l| l
        == format!(
            "tapline_build_info{{version=\"{}\",dataplane_version=\"\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    assert!(
        text.lines().any(|l| l == "tapline_dataplane_up 0"),
        "{text}"
    );
}

#[test]
fn live_exports_every_family_with_labels() {
    let text = render(Some(&snapshot(1, 10)));
    let names = check_format(&text);
    for family in [
        "tapline_dataplane_up",
        "tapline_dataplane_start_time_seconds",
        "tapline_port_rx_packets_total",
        "tapline_port_rx_bytes_total",
        "tapline_port_tx_packets_total",
        "tapline_port_tx_bytes_total",
        "tapline_port_dropped_packets_total",
        "tapline_xdp_kernel_rx_dropped_total",
        "tapline_xdp_kernel_rx_invalid_descs_total",
        "tapline_xdp_kernel_tx_invalid_descs_total",
        "tapline_xdp_kernel_rx_ring_full_total",
        "tapline_xdp_kernel_rx_fill_ring_empty_total",
        "tapline_xdp_kernel_tx_ring_empty_total",
        "tapline_worker_batches_total",
        "tapline_worker_loops_total",
        "tapline_worker_idle_waits_total",
        "tapline_worker_batch_duration_seconds",
        "tapline_worker_batch_duration_seconds_max",
    ] {
        assert!(names.contains(family), "{family} missing:\n{text}");
    }
    // Without hops the hop families have headers only, and so have the
    // output, recorder and tap families without them.
    assert!(text.contains("# TYPE tapline_hop_round_trip_seconds histogram"));
    for family in [
        "tapline_output_group_packets_total",
        "tapline_output_member_dropped_packets_total",
        "tapline_recorder_accepted_packets_total",
        "tapline_recorder_disk_errors_total",
        "tapline_recorder_last_disk_error_timestamp_seconds",
        "tapline_tap_matched_packets_total",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
    for prefix in [
        "tapline_hop_",
        "tapline_output_",
        "tapline_recorder_",
        "tapline_tap_",
    ] {
        assert!(
            !text.lines().any(|l| l.starts_with(prefix)),
            "{prefix}: {text}"
        );
    }
    assert!(text.lines().any(|l| l == "tapline_taps_active 0"), "{text}");
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has("tapline_dataplane_up 1"));
    assert!(
        has("tapline_dataplane_start_time_seconds 1800000000.5"),
        "{text}"
    );
    assert!(has(
        "tapline_port_rx_packets_total{port=\"inline-1\",ifname=\"i1\",queue=\"1\"} 30"
    ));
    assert!(has(
        "tapline_port_rx_bytes_total{port=\"passive-1\",ifname=\"p1\",queue=\"0\"} 5000"
    ));
    assert!(has(
        "tapline_port_dropped_packets_total{port=\"inline-2\",ifname=\"i2\",queue=\"0\",reason=\"tx_ring_full\"} 2"
    ));
    assert!(has(
        "tapline_xdp_kernel_rx_ring_full_total{port=\"inline-1\",ifname=\"i1\",queue=\"0\"} 4"
    ));
    assert!(has("tapline_worker_batches_total{worker=\"1\"} 20"));
    assert!(has(
        "tapline_worker_loops_total{worker=\"0\",kind=\"busy\"} 10"
    ));
    assert!(has(
        "tapline_worker_loops_total{worker=\"0\",kind=\"idle\"} 30"
    ));
    assert!(has("tapline_worker_idle_waits_total{worker=\"0\"} 5"));
    assert!(
        has("tapline_worker_batch_duration_seconds{worker=\"0\",percentile=\"0.5\"} 0.0000015"),
        "{text}"
    );
    assert!(has(
        "tapline_worker_batch_duration_seconds{worker=\"1\",percentile=\"0.999\"} 0.000009"
    ));
    assert!(has(
        "tapline_worker_batch_duration_seconds_max{worker=\"1\"} 0.000012"
    ));
    // One sample per queue for each port counter.
    let rx_lines = text
        .lines()
        .filter(|l| l.starts_with("tapline_port_rx_packets_total{"))
        .count();
    assert_eq!(rx_lines, 5);
}

#[test]
fn empty_latency_windows_and_odd_labels() {
    let mut s = snapshot(1, 10);
    s.workers[0].latency = None;
    s.workers[1].latency.as_mut().unwrap().count = 0;
    s.queues[0].info.ifname = "a\"b\\c".into();
    let text = render(Some(&s));
    check_format(&text);
    assert!(!text
        .lines()
        .any(|l| l.starts_with("tapline_worker_batch_duration_seconds{")));
    assert!(text.contains("ifname=\"a\\\"b\\\\c\""), "{text}");
    assert_eq!(escape_label("x\ny"), "x\\ny");
}

/// One exchange with the server at `addr`: `request` sent in the given
/// parts, the whole answer read up to the server's close.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("the server answers and closes")
        .unwrap();
    out
}

/// The status code of an HTTP answer.
fn status(answer: &str) -> u16 {
    let line = answer.lines().next().unwrap_or_default();
    assert!(line.starts_with("HTTP/1."), "{answer:?}");
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_paths_and_methods() {
    use crate::state::{DataplaneStatus, Monitor, Observation};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (m, _tx) = Monitor::manual(
        Observation {
            status: DataplaneStatus::Stopped,
            reader: None,
            snapshot: None,
        },
        Duration::from_secs(1),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(listener, m, None, stopped));

    // An incomplete head gets no answer; completed, it does.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut b = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s.read(&mut b))
            .await
            .is_err(),
        "answered an incomplete request head"
    );
    s.write_all(b"\r\n").await.unwrap();
    let mut a = String::new();
    s.read_to_string(&mut a).await.unwrap();
    assert_eq!(status(&a), 200, "{a}");

    let a = exchange(addr, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&a), 200);
    let (head, body) = a.split_once("\r\n\r\n").unwrap();
    assert!(body.contains("tapline_dataplane_up 0"), "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-type: {CONTENT_TYPE}")),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    // One request per connection, said so.
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    // HEAD: the head only.
    let a = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&a), 200);
    assert!(a.ends_with("\r\n\r\n"), "{a:?}");
    assert_eq!(
        status(&exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await),
        404
    );
    assert_eq!(
        status(&exchange(addr, b"GET /metricsx HTTP/1.1\r\n\r\n").await),
        404
    );
    let a = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&a), 405);
    assert!(a.to_ascii_lowercase().contains("allow: get, head"), "{a}");
    assert_eq!(status(&exchange(addr, b"garbage\r\n\r\n").await), 400);
    assert_eq!(
        status(&exchange(addr, b"GET /metrics SPDY/3\r\n\r\n").await),
        400
    );
    // A head larger than 8 KiB: 431.
    let big = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(status(&exchange(addr, big.as_bytes()).await), 431);

    stop.send(true).unwrap();
    server.await.unwrap();
}

#[test]
fn hops_and_tool_ports_are_exported() {
    let text = render(Some(&chain_snapshot(1, 10)));
    let names = check_format(&text);
    for family in [
        "tapline_hop_to_tool_packets_total",
        "tapline_hop_to_tool_bytes_total",
        "tapline_hop_from_tool_packets_total",
        "tapline_hop_from_tool_bytes_total",
        "tapline_hop_bypassed_packets_total",
        "tapline_hop_bypassed_bytes_total",
        "tapline_hop_dropped_packets_total",
        "tapline_hop_heartbeats_sent_total",
        "tapline_hop_heartbeat_results_total",
        "tapline_hop_round_trip_seconds_bucket",
        "tapline_hop_round_trip_seconds_sum",
        "tapline_hop_round_trip_seconds_count",
    ] {
        assert!(names.contains(family), "{family} missing:\n{text}");
    }
    let has = |line: &str| text.lines().any(|l| l == line);
    for line in [
        "tapline_hop_to_tool_packets_total{hop=\"ids\"} 100",
        "tapline_hop_to_tool_bytes_total{hop=\"waf\"} 20000",
        "tapline_hop_from_tool_packets_total{hop=\"ids\"} 90",
        "tapline_hop_from_tool_bytes_total{hop=\"ids\"} 9000",
        "tapline_hop_bypassed_packets_total{hop=\"waf\"} 20",
        "tapline_hop_dropped_packets_total{hop=\"ids\",reason=\"hop_down\"} 10",
        "tapline_hop_dropped_packets_total{hop=\"ids\",reason=\"heartbeat_invalid\"} 2",
        "tapline_hop_dropped_packets_total{hop=\"ids\",reason=\"tx_ring_full\"} 0",
        "tapline_hop_heartbeats_sent_total{hop=\"ids\"} 40",
        "tapline_hop_heartbeat_results_total{hop=\"ids\",result=\"returned\"} 30",
        "tapline_hop_heartbeat_results_total{hop=\"ids\",result=\"late\"} 10",
        "tapline_hop_heartbeat_results_total{hop=\"ids\",result=\"lost\"} 1",
        "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"0.00001\"} 10",
        "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"0.00005\"} 10",
        "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"0.0001\"} 20",
        "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"0.001\"} 20",
        "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"1\"} 20",
        "tapline_hop_round_trip_seconds_bucket{hop=\"ids\",le=\"+Inf\"} 21",
        "tapline_hop_round_trip_seconds_sum{hop=\"ids\"} 2.0006",
        "tapline_hop_round_trip_seconds_count{hop=\"ids\"} 21",
        "tapline_port_rx_packets_total{port=\"tool-a\",ifname=\"t1a\",queue=\"0\",hop=\"ids\"} 70",
        "tapline_port_dropped_packets_total{port=\"tool-b\",ifname=\"t2b\",queue=\"0\",hop=\"waf\",reason=\"hop_down\"} 0",
        // Other ports keep their labels.
        "tapline_port_rx_packets_total{port=\"inline-1\",ifname=\"i1\",queue=\"1\"} 30",
    ] {
        assert!(has(line), "{line} missing:\n{text}");
    }
    // Buckets: every bound and +Inf, in increasing order, per hop.
    let ids_buckets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tapline_hop_round_trip_seconds_bucket{hop=\"ids\""))
        .collect();
    assert_eq!(ids_buckets.len(), HOP_RTT_BOUNDS_NS.len() + 1);
    let counts: Vec<u64> = ids_buckets
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    // A hop whose histogram could not be read is left out of it only.
    let mut s = chain_snapshot(1, 10);
    s.hops[1].round_trip_histogram = None;
    let text = render(Some(&s));
    check_format(&text);
    assert!(!text.contains("_bucket{hop=\"waf\""));
    assert!(text.contains("tapline_hop_to_tool_packets_total{hop=\"waf\"} 200"));
}

#[test]
fn histogram_bounds_are_plain_seconds() {
    let les: Vec<String> = HOP_RTT_BOUNDS_NS.iter().map(|&b| le_seconds(b)).collect();
    assert_eq!(
        les,
        [
            "0.00001", "0.00002", "0.00005", "0.0001", "0.0002", "0.0005", "0.001", "0.002",
            "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"
        ]
    );
}

#[test]
fn outputs_recorders_and_taps_are_exported() {
    let text = render(Some(&outputs_snapshot(1, 10)));
    let names = check_format(&text);
    for family in [
        "tapline_output_group_packets_total",
        "tapline_output_group_bytes_total",
        "tapline_output_group_filtered_out_packets_total",
        "tapline_output_member_packets_total",
        "tapline_output_member_bytes_total",
        "tapline_output_member_dropped_packets_total",
        "tapline_recorder_accepted_packets_total",
        "tapline_recorder_accepted_bytes_total",
        "tapline_recorder_filtered_out_packets_total",
        "tapline_recorder_files_created_total",
        "tapline_recorder_files_completed_total",
        "tapline_recorder_files_migrated_total",
        "tapline_recorder_files_deleted_total",
        "tapline_recorder_bytes_written_total",
        "tapline_recorder_packets_written_total",
        "tapline_recorder_disk_errors_total",
        "tapline_recorder_queue_dropped_packets_total",
        "tapline_recorder_queue_dropped_bytes_total",
        "tapline_recorder_disk_dropped_packets_total",
        "tapline_recorder_last_disk_error_timestamp_seconds",
        "tapline_taps_active",
        "tapline_tap_matched_packets_total",
        "tapline_tap_sent_packets_total",
        "tapline_tap_lost_packets_total",
    ] {
        assert!(names.contains(family), "{family} missing:\n{text}");
    }
    let has = |line: &str| text.lines().any(|l| l == line);
    for line in [
        "tapline_output_group_packets_total{group=\"ids\"} 100",
        "tapline_output_group_bytes_total{group=\"zeek\"} 5000",
        "tapline_output_group_filtered_out_packets_total{group=\"ids\"} 20",
        "tapline_output_member_packets_total{group=\"ids\",member=\"o1\",ifname=\"o1\"} 50",
        "tapline_output_member_bytes_total{group=\"zeek\",member=\"o3\",ifname=\"o3\"} 5000",
        "tapline_output_member_dropped_packets_total{group=\"ids\",member=\"o1\",ifname=\"o1\",reason=\"tx_ring_full\"} 10",
        "tapline_output_member_dropped_packets_total{group=\"ids\",member=\"o2\",ifname=\"o2\",reason=\"member_down\"} 10",
        "tapline_output_member_dropped_packets_total{group=\"zeek\",member=\"o3\",ifname=\"o3\",reason=\"tx_error\"} 0",
        "tapline_recorder_accepted_packets_total{recorder=\"disk\"} 40",
        "tapline_recorder_accepted_bytes_total{recorder=\"disk\"} 4000",
        "tapline_recorder_filtered_out_packets_total{recorder=\"disk\"} 80",
        "tapline_recorder_files_created_total{recorder=\"disk\"} 30",
        "tapline_recorder_files_completed_total{recorder=\"disk\"} 20",
        "tapline_recorder_files_migrated_total{recorder=\"disk\"} 10",
        "tapline_recorder_files_deleted_total{recorder=\"disk\"} 10",
        "tapline_recorder_bytes_written_total{recorder=\"disk\"} 10000",
        "tapline_recorder_packets_written_total{recorder=\"disk\"} 40",
        "tapline_recorder_disk_errors_total{recorder=\"disk\"} 2",
        "tapline_recorder_queue_dropped_packets_total{recorder=\"disk\"} 10",
        "tapline_recorder_queue_dropped_bytes_total{recorder=\"disk\"} 1000",
        "tapline_recorder_disk_dropped_packets_total{recorder=\"disk\"} 20",
        "tapline_recorder_last_disk_error_timestamp_seconds{recorder=\"disk\"} 1800000050.25",
        "tapline_taps_active 2",
        "tapline_tap_matched_packets_total{tap_id=\"9\",point=\"passive-1 rx\"} 109",
        "tapline_tap_sent_packets_total{tap_id=\"4\",point=\"ids/a both\"} 90",
        "tapline_tap_lost_packets_total{tap_id=\"9\",point=\"passive-1 rx\"} 10",
    ] {
        assert!(has(line), "{line} missing:\n{text}");
    }
    // Members: the reasons that apply to them, three per member.
    let member_drops = text
        .lines()
        .filter(|l| l.starts_with("tapline_output_member_dropped_packets_total{"))
        .count();
    assert_eq!(member_drops, 3 * 3);
    assert!(!text.contains("reason=\"queue_full\""), "{text}");
    // Groups and recorder stages are not members; members are not groups.
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("tapline_output_group_packets_total{"))
            .count(),
        2
    );
    assert!(!text.contains("member=\"disk\""), "{text}");
    // Taps in id order.
    let taps: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tapline_tap_sent_packets_total{"))
        .collect();
    assert!(taps[0].contains("tap_id=\"4\"") && taps[1].contains("tap_id=\"9\""));

    // A recorder without errors has no error time; one whose stage was
    // not read has its disk side only.
    let mut s = outputs_snapshot(1, 10);
    s.recorders[0].last_error_unix_ns = 0;
    s.outputs.pop();
    let text = render(Some(&s));
    check_format(&text);
    assert!(!text.contains("tapline_recorder_last_disk_error_timestamp_seconds{"));
    assert!(!text.contains("tapline_recorder_accepted_packets_total{"));
    assert!(text.contains("tapline_recorder_packets_written_total{recorder=\"disk\"} 40"));
}

/// `promtool check metrics` (Prometheus's own linter, Debian package
/// `prometheus`) finds nothing in any sample exposition; and a mode
/// change leaves every counter series as it was.
#[test]
fn promtool_finds_nothing_and_modes_are_attributes() {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let snaps = [
        snapshot(1, 10),
        chain_snapshot(1, 10),
        outputs_snapshot(1, 10),
    ];
    // The page as served with the link keeper: the fallback families
    // follow the dataplane's.
    let keeper = crate::fallback::render_metrics(&tapline_segment::custody::KeeperStatus {
        holding: true,
        ports: vec![tapline_segment::custody::PortRecord {
            role: "inline-1".into(),
            ifname: "i1".into(),
            ifindex: 3,
            attach: "generic".into(),
        }],
        dataplane_connected: false,
        kernel_queues: 1,
        queues: 1,
        action: "forward".into(),
        counters: vec![tapline_segment::PortFallbackCounters {
            forwarded: 7,
            dropped: 0,
            lease_expiries: 2,
        }],
        takeovers: 3,
    });
    for (i, s) in snaps.iter().enumerate() {
        let text = render(Some(s)) + &keeper;
        let mut child = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "running {promtool}: {e}; install Debian's prometheus package (.ci/run does)"
                )
            });
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "snapshot {i}: promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Same counters, another mode: only the _info series differ.
    let a = snapshot(1, 10);
    let mut b = a.clone();
    for q in &mut b.queues {
        q.info.mode = "generic-copy".into();
    }
    let counters = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("tapline_port_queue_info"))
            .map(str::to_string)
            .collect()
    };
    let (ta, tb) = (render(Some(&a)), render(Some(&b)));
    assert_eq!(counters(&ta), counters(&tb));
    assert_ne!(ta, tb);
    assert!(ta.contains("tapline_port_queue_info{port=\"inline-1\",ifname=\"i1\",queue=\"1\",mode=\"native-zerocopy\"} 1"), "{ta}");
}
