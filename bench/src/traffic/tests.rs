use super::header::UDP_SRC_PORT_BASE;
use super::*;

#[test]
fn frames_have_exact_length_and_valid_ip_checksum() {
    for len in [60, 64, 128, 1514] {
        let f = build_frame(FrameKind::Udp4, len, 7, 42, 3);
        assert_eq!(f.len(), len);
        assert!(is_ours(&f, 7));
        assert_eq!(
            ipv4_checksum(&f[14..34]),
            0,
            "header checksum verifies to zero"
        );
    }
    let v = build_frame(FrameKind::VlanUdp4 { vid: 100 }, 64, 1, 1, 1);
    assert_eq!(&v[12..16], &[0x81, 0x00, 0x00, 100]);
    assert_eq!(&v[16..18], &[0x08, 0x00]);
    let r = build_frame(FrameKind::Raw, 60, 1, 1, 1);
    assert_eq!(&r[12..14], &[0x88, 0xb5]);
    assert_ne!(
        build_frame(FrameKind::Raw, 60, 1, 1, 1),
        build_frame(FrameKind::Raw, 60, 1, 2, 1)
    );
}

fn udp_tpl() -> TestFrameTemplate {
    TestFrameTemplate::new(FrameKind::Udp4, 7, 513)
}

#[test]
fn test_frames_have_exact_length_valid_checksum_and_their_header() {
    let tpl = udp_tpl();
    assert_eq!((tpl.min_len(), tpl.max_len()), (60, 1514));
    assert_eq!(tpl.full_header_min_len(), 42 + TEST_HEADER_LEN);
    for (len, flow, seq) in [
        (60, 0, 0),
        (64, 1, 1),
        (69, 300, 1 << 40),
        (70, 65_535, 3),
        (590, 12, u64::MAX),
        (1514, 9, 77),
    ] {
        let f = tpl.build(len, flow, seq, 123_456_789);
        assert_eq!(f.len(), len);
        assert!(is_ours(&f, 7));
        assert_eq!(ipv4_checksum(&f[14..34]), 0, "len {len} flow {flow}");
        assert_eq!(usize::from(u16::from_be_bytes([f[16], f[17]])), len - 14);
        assert_eq!(usize::from(u16::from_be_bytes([f[38], f[39]])), len - 34);
        assert_eq!(u16::from_be_bytes([f[32], f[33]]), flow);
        assert_eq!(
            u16::from_be_bytes([f[34], f[35]]),
            UDP_SRC_PORT_BASE.wrapping_add(flow)
        );
        let h = parse_test_header(&f).expect("a test frame parses");
        assert_eq!(h.timestamp_ns, 123_456_789);
        if len >= 70 {
            assert_eq!(&f[42..50], b"TAPLSEQ1");
            assert_eq!((h.stream, h.seq), (513, WireSeq::Full(seq)));
        } else {
            assert_eq!(&f[42..46], b"TAPS");
            assert_eq!((h.stream, h.seq), (513, WireSeq::Low32(seq as u32)));
        }
    }
}

#[test]
fn restamping_a_buffer_changes_only_what_it_must() {
    let tpl = udp_tpl();
    let mut buf = vec![0u8; 2048];
    tpl.fill(&mut buf);
    for (len, seq) in [(1514, 5), (60, 6), (70, 7), (590, 8), (61, 9)] {
        tpl.stamp(&mut buf, len, (seq * 3) as u16, seq, seq * 1000);
        let fresh = tpl.build(len, (seq * 3) as u16, seq, seq * 1000);
        assert_eq!(&buf[..len], &fresh[..], "len {len}");
    }
}

#[test]
fn tagged_and_raw_test_frames_parse() {
    let v = TestFrameTemplate::new(FrameKind::VlanUdp4 { vid: 100 }, 1, 2);
    assert_eq!((v.min_len(), v.max_len()), (64, 1518));
    for len in [64, 73, 74, 1518] {
        let f = v.build(len, 4, 10, 20);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(ipv4_checksum(&f[18..38]), 0);
        let h = parse_test_header(&f).unwrap();
        assert_eq!((h.stream, h.timestamp_ns), (2, 20));
    }
    let r = TestFrameTemplate::new(FrameKind::Raw, 1, 0xdead_beef);
    assert_eq!(r.min_len(), 60);
    assert_eq!(r.full_header_min_len(), 42);
    let f = r.build(60, 0, 99, 1);
    assert_eq!(&f[12..14], &[0x88, 0xb5]);
    assert_eq!(
        parse_test_header(&f),
        Some(TestHeader {
            stream: 0xdead_beef,
            seq: WireSeq::Full(99),
            timestamp_ns: 1
        })
    );
}

/// Inserts an 802.1Q/802.1ad tag after the MAC addresses.
fn tag(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

#[test]
fn parser_skips_up_to_two_tags() {
    let f = udp_tpl().build(100, 1, 42, 7);
    let one = tag(&f, 0x8100, 5);
    let qinq = tag(&one, 0x88a8, 6);
    let three = tag(&qinq, 0x8100, 7);
    let want = parse_test_header(&f).unwrap();
    assert_eq!(want.seq, WireSeq::Full(42));
    assert_eq!(parse_test_header(&one), Some(want));
    assert_eq!(parse_test_header(&qinq), Some(want));
    assert_eq!(parse_test_header(&three), None);
    let raw = TestFrameTemplate::new(FrameKind::Raw, 1, 3).build(60, 0, 1, 2);
    assert!(parse_test_header(&tag(&tag(&raw, 0x8100, 1), 0x88a8, 2)).is_some());
}

#[test]
fn parser_checks_ip_and_udp() {
    let good = udp_tpl().build(100, 1, 42, 7);
    assert!(parse_test_header(&good).is_some());
    let broken = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut f = good.clone();
        edit(&mut f);
        parse_test_header(&f)
    };
    assert!(broken(&|f| f[14] = 0x65).is_none(), "IPv6 version nibble");
    assert!(broken(&|f| f[14] = 0x44).is_none(), "IHL below 5");
    assert!(broken(&|f| f[23] = 6).is_none(), "TCP");
    assert!(broken(&|f| f[20] = 0x21).is_none(), "MF flag with offset");
    assert!(broken(&|f| f[21] = 1).is_none(), "fragment offset");
    assert!(broken(&|f| f[16..18].copy_from_slice(&200u16.to_be_bytes())).is_none());
    assert!(broken(&|f| f[16..18].copy_from_slice(&27u16.to_be_bytes())).is_none());
    assert!(broken(&|f| f[38..40].copy_from_slice(&7u16.to_be_bytes())).is_none());
    assert!(broken(&|f| f[38..40].copy_from_slice(&87u16.to_be_bytes())).is_none());
    assert!(broken(&|f| f[38..40].copy_from_slice(&35u16.to_be_bytes())).is_none());
    assert!(broken(&|f| f[42] = b'X').is_none(), "magic");
    assert!(broken(&|f| f[12..14].copy_from_slice(&[0x08, 0x06])).is_none());
    // MF alone (first fragment) still has the header.
    assert!(broken(&|f| f[20] = 0x20 | (f[20] & 0x1f)).is_some());
    // Trailing padding after the IP packet is allowed.
    assert!(broken(&|f| f.extend_from_slice(&[0; 8])).is_some());
    // IPv4 options: IHL 6, everything after moved by four bytes.
    let mut opt = good[..34].to_vec();
    opt[14] = 0x46;
    opt.extend_from_slice(&[1, 1, 1, 1]);
    opt.extend_from_slice(&good[34..]);
    let total = u16::from_be_bytes([opt[16], opt[17]]) + 4;
    opt[16..18].copy_from_slice(&total.to_be_bytes());
    assert_eq!(parse_test_header(&opt), parse_test_header(&good));
}

#[test]
fn parser_survives_truncation_and_garbage() {
    let frames = [
        udp_tpl().build(60, 1, 1, 1),
        udp_tpl().build(1514, 1, 1, 1),
        TestFrameTemplate::new(FrameKind::VlanUdp4 { vid: 9 }, 1, 1).build(64, 1, 1, 1),
        TestFrameTemplate::new(FrameKind::Raw, 1, 1).build(60, 1, 1, 1),
        build_frame(FrameKind::Udp4, 60, 1, 1, 1),
    ];
    for f in &frames[..4] {
        assert!(parse_test_header(f).is_some());
        for cut in 0..f.len() {
            let _ = parse_test_header(&f[..cut]);
        }
    }
    assert!(
        parse_test_header(&frames[4]).is_none(),
        "build_frame: no header"
    );
    // Truncated through the test header: never a header.
    let f = &frames[1];
    for cut in 0..42 + TEST_HEADER_LEN {
        assert!(parse_test_header(&f[..cut]).is_none(), "cut at {cut}");
    }
    // Random bytes, also with a plausible prefix, never panic.
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut buf = [0u8; 128];
    for i in 0..20_000 {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let len = (x as usize) % buf.len();
        if i % 2 == 0 {
            let prefix = &frames[i % 4][..42.min(len)];
            buf[..prefix.len()].copy_from_slice(prefix);
        }
        let _ = parse_test_header(&buf[..len]);
    }
}

#[test]
fn imix_is_seven_four_one_and_capped() {
    let l = FrameSizes::imix().lengths();
    assert_eq!(l.len(), 12);
    for (len, n) in [(60, 7), (590, 4), (1514, 1)] {
        assert_eq!(l.iter().filter(|&&x| x == len).count(), n);
    }
    assert!((FrameSizes::imix().mean_len() - (7 * 60 + 4 * 590 + 1514) as f64 / 12.0).abs() < 1e-9);
    let capped = FrameSizes::Imix { max_len: 1000 }.lengths();
    assert_eq!(capped.iter().max(), Some(&1000));
    assert_eq!(FrameSizes::Fixed(128).lengths(), vec![128]);
    assert_eq!(
        FrameSizes::imix().describe(),
        "IMIX 7:4:1 of 64/594/1518 bytes on the wire"
    );
}
