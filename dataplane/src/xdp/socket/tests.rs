use super::*;

const SIZES: RingSizes = RingSizes {
    rx: 64,
    tx: 64,
    fill: 64,
    completion: 64,
};

/// Frames cycle fill -> rx -> forward -> tx -> completion -> pool across
/// two in-memory sockets sharing one pool, with the TX ring of the
/// receiver deliberately too small at times: every frame stays accounted
/// for and none is handed out twice (the pool asserts that).
#[test]
fn frames_are_conserved_through_forwarding() {
    const FRAMES: u32 = 256;
    let (mut a, mut ka) = XskSocket::in_memory(SIZES);
    let (mut b, mut kb) = XskSocket::in_memory(SIZES);
    let mut pool = FramePool::new(2048, FRAMES);
    let mut fill_a = Vec::new();
    let mut sent = 0u64;
    let mut dropped = 0u64;
    let mut forwarded = 0u64;
    for round in 0..500u64 {
        a.fill.refill(&mut pool, 64);
        b.fill.refill(&mut pool, 64);
        // Kernel A receives into whatever it was given.
        fill_a.clear();
        ka.fill.kernel_pop(30, &mut fill_a);
        let descs: Vec<XdpDesc> = fill_a
            .iter()
            .map(|&addr| XdpDesc {
                addr: addr + 256,
                len: 60,
                options: 0,
            })
            .collect();
        let pushed = ka.rx.kernel_push(&descs);
        assert_eq!(pushed, descs.len());
        sent += pushed as u64;
        let r = forward(
            a.rx.as_mut().unwrap(),
            b.tx.as_mut().unwrap(),
            &mut pool,
            64,
        );
        forwarded += u64::from(r.forwarded);
        dropped += u64::from(r.tx_full);
        // Kernel B transmits only every third round, so its TX fills up.
        if round % 3 == 0 {
            let mut done = Vec::new();
            kb.tx.kernel_pop(usize::MAX, &mut done);
            let addrs: Vec<u64> = done.iter().map(|d| d.addr).collect();
            assert_eq!(kb.comp.kernel_push(&addrs), addrs.len());
        }
        b.comp.reap(&mut pool, 64);
    }
    assert!(dropped > 0, "the test should exercise a full TX ring");
    assert_eq!(sent, forwarded + dropped);
    // Every frame is somewhere: pool, fill rings, or B's TX ring.
    let mut rest = Vec::new();
    ka.fill.kernel_pop(usize::MAX, &mut rest);
    kb.fill.kernel_pop(usize::MAX, &mut rest);
    let mut tx_rest = Vec::new();
    kb.tx.kernel_pop(usize::MAX, &mut tx_rest);
    assert_eq!(
        pool.available() + rest.len() + tx_rest.len(),
        FRAMES as usize
    );
}

#[test]
fn forward_preserves_descriptors_and_order() {
    let (mut a, mut ka) = XskSocket::in_memory(SIZES);
    let (mut b, mut kb) = XskSocket::in_memory(SIZES);
    let mut pool = FramePool::new(2048, 64);
    let descs: Vec<XdpDesc> = (0..10u64)
        .map(|i| XdpDesc {
            addr: i * 2048 + 256,
            len: 60 + i as u32,
            options: 0,
        })
        .collect();
    // Pretend these frames were given to the kernel via fill.
    for _ in 0..10 {
        pool.alloc_addr();
    }
    ka.rx.kernel_push(&descs);
    let r = forward(
        a.rx.as_mut().unwrap(),
        b.tx.as_mut().unwrap(),
        &mut pool,
        64,
    );
    assert_eq!((r.received, r.forwarded, r.tx_full), (10, 10, 0));
    assert_eq!(
        r.rx_bytes,
        descs.iter().map(|d| u64::from(d.len)).sum::<u64>()
    );
    let mut out = Vec::new();
    kb.tx.kernel_pop(usize::MAX, &mut out);
    assert_eq!(out, descs);
}

/// `forward_each` in its three shapes: a batch with nothing consumed
/// (bulk, and cut by a TX ring with less room), a batch with consumed
/// frames among forwarded ones (frame by frame), and no egress
/// (`tx = None`). Every frame either reaches TX in order or goes back to
/// the pool, and the totals add up.
#[test]
fn forward_each_sorts_consumed_forwarded_and_dropped_frames() {
    const MARK: u8 = 0xee;
    let umem = Umem::new(2048, 256).unwrap();
    // Frame i at chunk i; frames whose first byte is MARK are consumed.
    let push = |ka: &mut FakeKernel, pool: &mut FramePool, marks: &[bool]| -> Vec<XdpDesc> {
        let descs: Vec<XdpDesc> = marks
            .iter()
            .map(|&m| {
                let mut f = pool.alloc().unwrap();
                umem.data_mut(&mut f)[0] = if m { MARK } else { 0 };
                XdpDesc {
                    addr: f.addr(),
                    len: 60,
                    options: 0,
                }
            })
            .collect();
        assert_eq!(ka.rx.kernel_push(&descs), descs.len());
        descs
    };
    let verdict = |d: &[u8]| {
        if d[0] == MARK {
            Verdict::Consume
        } else {
            Verdict::Forward
        }
    };
    let small_tx = RingSizes { tx: 8, ..SIZES };
    let (mut a, mut ka) = XskSocket::in_memory(SIZES);
    let (mut b, mut kb) = XskSocket::in_memory(small_tx);
    let mut pool = FramePool::new(2048, 256);
    let full = pool.available();
    let run = |a: &mut XskSocket, b: &mut XskSocket, pool: &mut FramePool| {
        forward_each(
            a.rx.as_mut().unwrap(),
            b.tx.as_mut(),
            &umem,
            pool,
            64,
            verdict,
        )
    };
    // What kernel B transmitted, with its frames back in the pool.
    let transmitted = |kb: &mut FakeKernel, pool: &mut FramePool| {
        let mut out = Vec::new();
        kb.tx.kernel_pop(usize::MAX, &mut out);
        for d in &out {
            pool.free_addr(d.addr);
        }
        out
    };

    // Nothing consumed, 12 frames, room for 8: bulk, 4 TX-full drops.
    let descs = push(&mut ka, &mut pool, &[false; 12]);
    let r = run(&mut a, &mut b, &mut pool);
    assert_eq!(
        (r.received, r.consumed, r.forwarded, r.tx_full),
        (12, 0, 8, 4)
    );
    assert_eq!((r.rx_bytes, r.tx_bytes), (12 * 60, 8 * 60));
    assert_eq!(transmitted(&mut kb, &mut pool), descs[..8]);
    assert_eq!(pool.available(), full);

    // Consumed frames among forwarded ones, room for 8 of 9 to forward;
    // repeated until the RX ring (64) and the TX ring (8) have wrapped,
    // so the two peeked slices and the split reservation are exercised.
    for _ in 0..8 {
        let marks = [
            false, true, false, false, true, false, false, false, false, false, false,
        ];
        let descs = push(&mut ka, &mut pool, &marks);
        let r = run(&mut a, &mut b, &mut pool);
        assert_eq!(
            (r.received, r.consumed, r.forwarded, r.tx_full),
            (11, 2, 8, 1)
        );
        assert_eq!((r.consumed_bytes, r.tx_bytes), (2 * 60, 8 * 60));
        let expected: Vec<XdpDesc> = descs
            .iter()
            .zip(marks)
            .filter(|(_, m)| !m)
            .map(|(d, _)| *d)
            .take(8)
            .collect();
        assert_eq!(transmitted(&mut kb, &mut pool), expected);
        assert_eq!(pool.available(), full);
    }

    // No egress: the frames to forward are dropped, the rest consumed.
    push(&mut ka, &mut pool, &[true, false, false]);
    let r = forward_each(a.rx.as_mut().unwrap(), None, &umem, &mut pool, 64, verdict);
    assert_eq!(
        (r.received, r.consumed, r.no_egress, r.forwarded),
        (3, 1, 2, 0)
    );
    assert_eq!(r.no_egress_bytes, 2 * 60);
    assert_eq!(pool.available(), full);
}
