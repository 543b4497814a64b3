//! One counter word, the sequence lock that guards fields read together,
//! and the short strings stored in counter words.

use std::sync::atomic::{fence, AtomicU64, Ordering};

/// One monotonically increasing counter with a single writer.
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread calls this, so load + store is exact
    /// and costs no atomic read-modify-write.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds `n` where several threads count into the same word (the slow
    /// paths: recorder queue drops, taps). An atomic read-modify-write.
    #[inline]
    pub fn add_shared(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Overwrites the value (mirrors of kernel counters, gauges).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The word itself, for orderings other than `Relaxed` (the lease
    /// words the kernel reads).
    pub(crate) fn atomic(&self) -> &AtomicU64 {
        &self.0
    }
}

/// Tries of a seqlock read before giving up (the writer is stuck or keeps
/// the fields busy).
const SEQ_READ_TRIES: usize = 64;

/// Writes the fields guarded by `seq` (single writer): `seq` is odd while
/// `write` runs.
pub(crate) fn seq_write(seq: &Counter, write: impl FnOnce()) {
    let s = seq.get();
    // Odd: readers retry. The Release fence orders the odd store before the
    // field stores: a reader that sees a new field value then sees, after its
    // Acquire fence in `seq_read`, a sequence other than the one it began
    // with. The second fence orders the field stores before the even store
    // that the reader's Acquire load pairs with.
    seq.set(s.wrapping_add(1));
    fence(Ordering::Release);
    write();
    fence(Ordering::Release);
    seq.set(s.wrapping_add(2));
}

/// A consistent read of the fields guarded by `seq`, or `None` if the writer
/// kept them busy for [`SEQ_READ_TRIES`] tries.
pub(crate) fn seq_read<T>(seq: &Counter, read: impl Fn() -> T) -> Option<T> {
    for _ in 0..SEQ_READ_TRIES {
        // Acquire: pairs with the writer's Release fence before its even
        // store, so the fields read below are at least that new.
        let s1 = seq.0.load(Ordering::Acquire);
        if s1 % 2 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let v = read();
        // Acquire: orders the field loads above before the second sequence
        // load (pairs with the writer's first Release fence).
        fence(Ordering::Acquire);
        if seq.0.load(Ordering::Relaxed) == s1 {
            return Some(v);
        }
    }
    None
}

/// Stores `s` into `words` (cut to their size, NUL-padded).
pub(crate) fn put_str(words: &[Counter], s: &str) {
    let mut bytes = vec![0u8; words.len() * 8];
    let n = s.len().min(bytes.len());
    bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
    for (w, chunk) in words.iter().zip(bytes.chunks(8)) {
        w.set(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    }
}

/// The string stored by [`put_str`] (up to the first NUL).
pub(crate) fn get_str(words: &[Counter]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.get().to_le_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Nanoseconds since the Unix epoch (wall clock: comparable across
/// processes, unlike `Instant`).
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
