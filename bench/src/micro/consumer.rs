//! The capture consumer of the capture path: counts every frame it is
//! shown, with its length, for the conservation check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tapline_dataplane::pipeline::CaptureConsumer;

use crate::traffic::is_ours;

use super::{FRAME_LEN, SENDER};

/// Counts what the capture consumer saw; shared with the driver.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) frames: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Frames that were not a [`FRAME_LEN`]-byte frame of ours (checked only
    /// with `verify`, as the check is the consumer's cost, not tapline's).
    pub(crate) foreign: AtomicU64,
}

/// The cheapest useful consumer: counts frames and bytes, as a real one
/// would count before deciding what to do with a frame.
#[derive(Debug)]
pub(crate) struct CountingConsumer {
    pub(crate) tally: Arc<Tally>,
    pub(crate) verify: bool,
}

impl CaptureConsumer for CountingConsumer {
    fn on_frame(&mut self, frame: &[u8]) {
        // Load and store, not `fetch_add`: only this thread writes, as with
        // the dataplane's own counters.
        let t = &*self.tally;
        t.frames
            .store(t.frames.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        t.bytes.store(
            t.bytes.load(Ordering::Relaxed) + frame.len() as u64,
            Ordering::Relaxed,
        );
        if self.verify && (frame.len() != FRAME_LEN as usize || !is_ours(frame, SENDER)) {
            t.foreign
                .store(t.foreign.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }
}
