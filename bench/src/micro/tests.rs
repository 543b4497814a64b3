use std::time::Duration;

use tapline_config::heartbeat::Timing;
use tapline_dataplane::xdp::{FramePool, XskSocket};

use crate::traffic::{build_frame, FrameKind};

use super::callgrind::parse_callgrind_total;
use super::chain::{chain_run, wire, ChainRig, WireBufs};
use super::rings::{new_umem, sizes};
use super::*;

#[test]
fn bridge_one_way_forwards_every_frame() {
    // 5000 is not a multiple of the batch: the last round is partial.
    let r = bridge_loop(5000, 64, false, false).unwrap();
    assert_eq!(r.frames, 5000);
    assert_eq!(r.polls, 5000_u64.div_ceil(64));
}

#[test]
fn bridge_both_ways_forwards_every_frame() {
    // More frames than the UMEM holds, so every chunk is reused.
    let r = bridge_loop(20_000, 64, true, false).unwrap();
    assert_eq!(r.frames, 20_000);
    assert_eq!(r.polls, 20_000_u64.div_ceil(128));
}

#[test]
fn capture_shows_every_frame_to_the_consumer() {
    let r = capture_loop(20_000, 32, true).unwrap();
    assert_eq!(r.frames, 20_000);
    assert_eq!(r.polls, 20_000_u64.div_ceil(32));
}

#[test]
fn chains_deliver_every_frame_through_every_tool() {
    for hops in [1, 2, 4] {
        // More frames than the UMEM holds, a partial last batch.
        let r = chain_run(hops, 20_000, 64).unwrap();
        assert_eq!(r.frames, 20_000, "{hops} hops");
        // A frame takes one poll per forwarding step to come out.
        assert_eq!(
            r.polls,
            20_000_u64.div_ceil(64) + u64::from(hops),
            "{hops} hops"
        );
    }
}

#[test]
fn a_tool_holds_what_its_other_side_cannot_receive_yet() {
    let (mut sa, mut ka) = XskSocket::in_memory(sizes());
    let (mut sb, mut kb) = XskSocket::in_memory(sizes());
    let mut pool = FramePool::new(FRAME_SIZE_BYTES, 16);
    let mut sent = Vec::new();
    for _ in 0..3 {
        let mut f = pool.alloc().unwrap();
        f.set_len(FRAME_LEN);
        sent.push(f.addr());
        sa.tx.as_mut().unwrap().push(f).unwrap();
    }
    // Side B lends two chunks: two frames cross, one waits.
    assert_eq!(sb.fill.refill(&mut pool, 2), 2);
    let mut bufs = WireBufs::default();
    assert_eq!(wire(&mut ka, &mut kb, &mut bufs).unwrap(), 2);
    assert_eq!(bufs.held.len(), 1);
    assert_eq!(sb.fill.refill(&mut pool, 1), 1);
    assert_eq!(wire(&mut ka, &mut kb, &mut bufs).unwrap(), 1);
    assert!(bufs.held.is_empty());
    // B receives A's frames, in order and unchanged; A's completions
    // hand back as many chunks (B's fill chunks).
    let mut got = Vec::new();
    assert_eq!(sb.rx.as_mut().unwrap().recv(64, &mut got), 3);
    let got_addrs: Vec<u64> = got.iter().map(|f| f.addr()).collect();
    assert_eq!(got_addrs, sent);
    assert!(got.iter().all(|f| f.len() == FRAME_LEN));
    assert_eq!(sa.comp.reap(&mut pool, u32::MAX), 3);
    for f in got {
        pool.free(f);
    }
    assert_eq!(pool.available(), 16);
}

#[test]
fn the_hops_have_every_heartbeat_that_can_bring_them_up() {
    // Two heartbeats missed (the third would take the hop down): the
    // third goes out two intervals after the first.
    let t = CHAIN_HEARTBEAT;
    assert_eq!(
        hops_up_timeout(&t),
        Duration::from_nanos(2 * t.interval_ns + t.timeout_ns) + HOPS_UP_MARGIN
    );
    let quick = Timing {
        interval_ns: MS,
        timeout_ns: 10_000 * MS,
        ..CHAIN_HEARTBEAT
    };
    assert_eq!(
        hops_up_timeout(&quick),
        Duration::from_millis(10_002) + HOPS_UP_MARGIN
    );
}

#[test]
fn heartbeats_between_the_frames_take_nothing_from_them() {
    // A 1 ms interval: heartbeats cross the tools among the frames and
    // are taken out of the stream before inline-2; `chain_loop` checks
    // that inline-2 still transmits exactly the frames, in order. The
    // loop grows until it outlasts an interval, whatever the build. The
    // long timeout keeps a test thread descheduled for a while (tests
    // run in parallel) from failing the hops.
    let timing = Timing {
        interval_ns: MS,
        timeout_ns: 10_000 * MS,
        ..CHAIN_HEARTBEAT
    };
    let mut frames = 50_000;
    loop {
        let mut rig = ChainRig::start(2, 32, timing).unwrap();
        let r = chain_loop(&mut rig, frames, 32).unwrap();
        assert_eq!(r.frames, frames);
        if r.heartbeats > 0 {
            for h in 0..2 {
                let c = rig.hop_counters(h);
                assert_eq!(c.heartbeats_lost.get(), 0, "hop {h}");
                assert!(c.heartbeats_returned.get() >= 2, "hop {h}");
            }
            break;
        }
        assert!(frames < 10_000_000, "no heartbeat during {frames} frames");
        frames *= 4;
    }
}

#[test]
fn umem_holds_a_frame_of_ours_in_every_chunk() {
    let (umem, mut pool) = new_umem().unwrap();
    assert_eq!(pool.available(), FRAME_COUNT as usize);
    let mut f = pool.alloc().unwrap();
    f.set_len(HEADROOM_BYTES as u32 + FRAME_LEN);
    let at = HEADROOM_BYTES as usize;
    let bytes = &umem.data(&f)[at..];
    assert_eq!(bytes, &build_frame(FrameKind::Udp4, 60, SENDER, 0, 1)[..]);
    pool.free(f);
}

#[test]
fn callgrind_totals_are_parsed() {
    let text = "events: Ir\nfn=foo\n1 2\ntotals: 12345\n";
    assert_eq!(parse_callgrind_total(text), Some(12345));
    assert_eq!(parse_callgrind_total("summary: 7\n"), Some(7));
    assert_eq!(parse_callgrind_total("events: Ir\n"), None);
}

#[test]
fn path_selection_parses() {
    assert_eq!("all".parse::<PathSel>().unwrap().0, &MicroPath::ALL);
    assert_eq!(
        "capture".parse::<PathSel>().unwrap().0,
        &[MicroPath::Capture]
    );
    assert_eq!("chain".parse::<PathSel>().unwrap().0, &MicroPath::CHAINS);
    assert_eq!(
        "chain-4".parse::<PathSel>().unwrap().0,
        &[MicroPath::Chain4]
    );
    assert!("chain-3".parse::<PathSel>().is_err());
    assert!("bridges".parse::<PathSel>().is_err());
}
