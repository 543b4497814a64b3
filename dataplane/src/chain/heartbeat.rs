//! Heartbeats: the frames the dataplane sends through each tool, and the
//! judge that turns their returns and losses into a hop's health.
//!
//! # Frame
//!
//! ```text
//! 0      6      12    14     18  19  20    22      26       34        42       50   60
//! | dst  | src  | 88b6 | TLHB | v | d | slot | nonce | seq    | sent_ns | tag    | pad |
//! ```
//!
//! - `dst` is a locally administered multicast address (`03:74:6c:68:62:00`),
//!   so a bridging tool floods it to its other side and never learns it;
//!   `src` is locally administered and differs per hop and direction
//!   (`02:74:6c:SS:SS:0D`), so a learning bridge in the tool never sees one
//!   address on both sides.
//! - `0x88B6` is the IEEE 802 local experimental ethertype 2 (the lab's test
//!   traffic uses experimental ethertype 1, `0x88B5`).
//! - `v` is the format version (1), `d` the direction (0: side A to side B,
//!   1: B to A), `slot` and `nonce` identify the hop instance, `seq` counts
//!   the heartbeats of that hop and direction, `sent_ns` is
//!   `CLOCK_MONOTONIC` at transmission (round-trip time).
//! - `tag` is SipHash-2-4 of bytes 14..42 under a 128-bit key drawn from
//!   `/dev/urandom` at start and never leaving the process: nobody on the
//!   wire can make a frame the dataplane accepts as a heartbeat, and a replay
//!   only hits a sequence number already judged.
//!
//! Every field is little-endian. The frame is padded to 60 bytes (the
//! Ethernet minimum without FCS).

use std::hash::Hasher;

use siphasher::sip::SipHasher24;
use tapline_config::heartbeat::Timing;

/// Ethertype of heartbeat frames (IEEE 802 local experimental 2).
pub const ETHERTYPE: u16 = 0x88B6;
/// Length of a heartbeat frame on the wire.
pub const FRAME_LEN: usize = 60;
/// `b"TLHB"`.
const MAGIC: [u8; 4] = *b"TLHB";
const VERSION: u8 = 1;
/// Destination MAC of every heartbeat.
pub const DST_MAC: [u8; 6] = [0x03, 0x74, 0x6c, 0x68, 0x62, 0x00];
/// Offsets in the frame.
const OFF_MAGIC: usize = 14;
const OFF_VERSION: usize = 18;
const OFF_DIR: usize = 19;
const OFF_SLOT: usize = 20;
const OFF_NONCE: usize = 22;
const OFF_SEQ: usize = 26;
const OFF_SENT: usize = 34;
const OFF_TAG: usize = 42;
/// End of the tagged bytes (exclusive).
const TAG_END: usize = OFF_TAG;

/// Direction of a heartbeat through a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dir {
    /// Sent on side A (towards the tool, as inline-1's traffic), expected
    /// back on side B.
    AtoB = 0,
    /// Sent on side B, expected back on side A.
    BtoA = 1,
}

impl Dir {
    pub(crate) const BOTH: [Dir; 2] = [Dir::AtoB, Dir::BtoA];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dir::AtoB => "a->b",
            Dir::BtoA => "b->a",
        }
    }
}

/// The identity and sequence of one heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    pub dir: Dir,
    /// Stats slot of the hop.
    pub slot: u16,
    /// Distinguishes successive hops that reuse a slot.
    pub nonce: u32,
    pub seq: u64,
    /// `CLOCK_MONOTONIC` nanoseconds at transmission.
    pub sent_ns: u64,
}

/// The secret key of heartbeat tags.
#[derive(Clone)]
pub struct TagKey([u64; 2]);

impl std::fmt::Debug for TagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TagKey(<redacted>)")
    }
}

impl TagKey {
    /// A fresh random key from `/dev/urandom`. Falls back to a key mixed
    /// from the clock, the pid and addresses only if that device is missing
    /// (a broken container image), and says so.
    pub fn random() -> TagKey {
        let mut b = [0u8; 16];
        let ok = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
            .is_ok();
        if !ok {
            tracing::warn!("/dev/urandom unreadable: heartbeat tags use a weaker key");
            let t = tapline_segment::unix_ns();
            let local = 0u8;
            b[..8].copy_from_slice(&t.to_le_bytes());
            b[8..].copy_from_slice(
                &((std::process::id() as u64) << 32 ^ (&local as *const u8 as u64)).to_le_bytes(),
            );
        }
        TagKey([
            u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
        ])
    }

    /// A fixed key (tests).
    pub fn from_words(k0: u64, k1: u64) -> TagKey {
        TagKey([k0, k1])
    }

    fn tag(&self, bytes: &[u8]) -> u64 {
        let mut h = SipHasher24::new_with_keys(self.0[0], self.0[1]);
        h.write(bytes);
        h.finish()
    }
}

/// Writes heartbeat `b` into `buf` (at least [`FRAME_LEN`] bytes). Returns
/// the frame length.
pub fn write_frame(buf: &mut [u8], b: &Beat, key: &TagKey) -> usize {
    let f = &mut buf[..FRAME_LEN];
    f.fill(0);
    f[0..6].copy_from_slice(&DST_MAC);
    let s = b.slot.to_be_bytes();
    f[6..12].copy_from_slice(&[0x02, 0x74, 0x6c, s[0], s[1], b.dir as u8]);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[OFF_MAGIC..OFF_MAGIC + 4].copy_from_slice(&MAGIC);
    f[OFF_VERSION] = VERSION;
    f[OFF_DIR] = b.dir as u8;
    f[OFF_SLOT..OFF_SLOT + 2].copy_from_slice(&b.slot.to_le_bytes());
    f[OFF_NONCE..OFF_NONCE + 4].copy_from_slice(&b.nonce.to_le_bytes());
    f[OFF_SEQ..OFF_SEQ + 8].copy_from_slice(&b.seq.to_le_bytes());
    f[OFF_SENT..OFF_SENT + 8].copy_from_slice(&b.sent_ns.to_le_bytes());
    let tag = key.tag(&f[OFF_MAGIC..TAG_END]);
    f[OFF_TAG..OFF_TAG + 8].copy_from_slice(&tag.to_le_bytes());
    FRAME_LEN
}

/// Whether a frame claims to be a heartbeat: the heartbeat ethertype right
/// after the MAC addresses. One 2-byte read; the hot path's only look at
/// frame contents.
#[inline]
pub fn is_heartbeat(frame: &[u8]) -> bool {
    frame.len() >= 14 && frame[12] == (ETHERTYPE >> 8) as u8 && frame[13] == ETHERTYPE as u8
}

/// Why a frame with the heartbeat ethertype is not a valid heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Too short, wrong magic or version.
    Malformed,
    /// The keyed tag does not match: forged or corrupted.
    BadTag,
}

/// Parses and authenticates a heartbeat frame.
pub fn parse(frame: &[u8], key: &TagKey) -> Result<Beat, Invalid> {
    if frame.len() < OFF_TAG + 8
        || !is_heartbeat(frame)
        || frame[OFF_MAGIC..OFF_MAGIC + 4] != MAGIC
        || frame[OFF_VERSION] != VERSION
    {
        return Err(Invalid::Malformed);
    }
    let word = |o: usize| u64::from_le_bytes(frame[o..o + 8].try_into().expect("8 bytes"));
    if key.tag(&frame[OFF_MAGIC..TAG_END]) != word(OFF_TAG) {
        return Err(Invalid::BadTag);
    }
    let dir = match frame[OFF_DIR] {
        0 => Dir::AtoB,
        1 => Dir::BtoA,
        _ => return Err(Invalid::Malformed),
    };
    Ok(Beat {
        dir,
        slot: u16::from_le_bytes([frame[OFF_SLOT], frame[OFF_SLOT + 1]]),
        nonce: u32::from_le_bytes(frame[OFF_NONCE..OFF_NONCE + 4].try_into().expect("4 bytes")),
        seq: word(OFF_SEQ),
        sent_ns: word(OFF_SENT),
    })
}

/// Health of a hop as the judge sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// No verdict yet: just applied, no round trip in both directions.
    Unknown = 0,
    Up = 1,
    Down = 2,
}

impl Health {
    pub(crate) fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Unknown,
        }
    }
}

/// A change of health, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transition {
    pub to: Health,
    /// CamelCase, for programs: "HeartbeatsReturned", "HeartbeatsLost".
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// Heartbeats in flight are tracked in a window of this many sequence
/// numbers per direction (the returned-bits word of the hop).
pub const WINDOW: u64 = 64;

/// What happened to one heartbeat, as the judge decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Back within the timeout, with its round-trip time.
    Returned(u64),
    /// Back after the timeout (it was a miss when its deadline passed).
    Late,
    /// Never back (judged when its sequence number leaves the window).
    Lost,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    sent_ns: u64,
    /// Its deadline passed: it counted as a miss; it may still come late.
    missed: bool,
}

/// Per direction state of the judge.
#[derive(Debug, Default)]
struct DirState {
    next_seq: u64,
    inflight: std::collections::VecDeque<InFlight>,
    consecutive_misses: u32,
    /// A heartbeat of this direction returned since `healthy_since`.
    returned_since: bool,
}

/// Judges one hop from its heartbeats: N consecutive misses in either
/// direction make it DOWN; it is UP again once heartbeats have returned in
/// both directions, with no miss, for the hold time. A hop never judged
/// goes UP at its first round trip in both directions.
#[derive(Debug)]
pub struct Judge {
    timing: Timing,
    dirs: [DirState; 2],
    health: Health,
    /// Start of the current run of misses-free heartbeats.
    healthy_since: Option<u64>,
}

impl Judge {
    pub fn new(timing: Timing) -> Judge {
        Judge {
            timing,
            dirs: Default::default(),
            health: Health::Unknown,
            healthy_since: None,
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Registers the next heartbeat of `dir`, sent at `now_ns`; returns its
    /// sequence number. The oldest one in flight is judged lost when the
    /// window is full (the caller reports the outcome).
    pub fn send(&mut self, dir: Dir, now_ns: u64) -> (u64, Option<Outcome>) {
        let d = &mut self.dirs[dir.index()];
        let seq = d.next_seq;
        d.next_seq += 1;
        let mut evicted = None;
        if d.inflight.len() as u64 >= WINDOW - 1 {
            d.inflight.pop_front();
            evicted = Some(Outcome::Lost);
        }
        d.inflight.push_back(InFlight {
            seq,
            sent_ns: now_ns,
            missed: false,
        });
        (seq, evicted)
    }

    /// Sequence numbers of `dir` in flight (for the caller to test their
    /// returned bits).
    pub fn inflight(&self, dir: Dir) -> impl Iterator<Item = u64> + '_ {
        self.dirs[dir.index()].inflight.iter().map(|f| f.seq)
    }

    /// Judges `dir` at `now_ns`: `returned(seq)` tells whether heartbeat
    /// `seq` came back (and its round-trip time). Returns the outcomes
    /// decided, and the health transition they cause, if any.
    pub(crate) fn judge(
        &mut self,
        dir: Dir,
        now_ns: u64,
        mut returned: impl FnMut(u64) -> Option<u64>,
        outcomes: &mut Vec<Outcome>,
    ) -> Option<Transition> {
        let t = self.timing;
        let d = &mut self.dirs[dir.index()];
        let mut any_miss = false;
        let mut any_return = false;
        let mut i = 0;
        while i < d.inflight.len() {
            let f = d.inflight[i];
            if let Some(rtt) = returned(f.seq) {
                d.inflight.remove(i);
                if f.missed {
                    outcomes.push(Outcome::Late);
                } else {
                    outcomes.push(Outcome::Returned(rtt));
                    d.consecutive_misses = 0;
                    any_return = true;
                }
                continue;
            }
            if !f.missed && now_ns >= f.sent_ns + t.timeout_ns {
                d.inflight[i].missed = true;
                d.consecutive_misses += 1;
                any_miss = true;
            }
            // A missed one stays (it may come late) until its number leaves
            // the window.
            if d.inflight[i].missed && d.next_seq - f.seq >= WINDOW - 1 {
                d.inflight.remove(i);
                outcomes.push(Outcome::Lost);
                continue;
            }
            i += 1;
        }
        if any_return {
            d.returned_since = true;
        }
        let misses = d.consecutive_misses;
        if any_miss {
            self.healthy_since = None;
            for d in &mut self.dirs {
                d.returned_since = false;
            }
        } else if any_return && self.healthy_since.is_none() {
            self.healthy_since = Some(now_ns);
            self.dirs[dir.index()].returned_since = true;
        }
        self.transition(dir, now_ns, misses)
    }

    fn transition(&mut self, dir: Dir, now_ns: u64, misses: u32) -> Option<Transition> {
        let t = self.timing;
        let both_returned = self.dirs.iter().all(|d| d.returned_since);
        match self.health {
            Health::Up | Health::Unknown if misses >= t.misses => {
                self.health = Health::Down;
                Some(Transition {
                    to: Health::Down,
                    reason: "HeartbeatsLost",
                    message: format!(
                        "{misses} consecutive heartbeats {} lost (timeout {} ms)",
                        dir.as_str(),
                        t.timeout_ns / 1_000_000
                    ),
                })
            }
            Health::Unknown if both_returned => {
                self.health = Health::Up;
                Some(Transition {
                    to: Health::Up,
                    reason: "HeartbeatsReturned",
                    message: "heartbeats return through the tool in both directions".into(),
                })
            }
            Health::Down => match self.healthy_since {
                Some(since) if both_returned && now_ns.saturating_sub(since) >= t.hold_ns => {
                    self.health = Health::Up;
                    Some(Transition {
                        to: Health::Up,
                        reason: "HeartbeatsReturned",
                        message: format!(
                            "heartbeats returned in both directions for {} ms",
                            t.hold_ns / 1_000_000
                        ),
                    })
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Heartbeats still in flight in both directions (for the
    /// sent = returned + late + lost + in flight invariant).
    pub fn in_flight(&self) -> usize {
        self.dirs.iter().map(|d| d.inflight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn timing() -> Timing {
        Timing {
            interval_ns: 10 * MS,
            timeout_ns: 20 * MS,
            misses: 3,
            hold_ns: 1000 * MS,
        }
    }

    fn beat() -> Beat {
        Beat {
            dir: Dir::BtoA,
            slot: 3,
            nonce: 0xdead_beef,
            seq: 42,
            sent_ns: 123_456_789,
        }
    }

    #[test]
    fn frames_round_trip_and_tags_authenticate() {
        let key = TagKey::from_words(1, 2);
        let mut buf = [0xffu8; 128];
        let n = write_frame(&mut buf, &beat(), &key);
        assert_eq!(n, FRAME_LEN);
        assert!(is_heartbeat(&buf[..n]));
        assert_eq!(&buf[..6], &DST_MAC);
        assert_eq!(buf[6] & 0x03, 0x02, "src is unicast, locally administered");
        assert_eq!(parse(&buf[..n], &key), Ok(beat()));
        // Another key (another dataplane, or an attacker) is refused.
        assert_eq!(
            parse(&buf[..n], &TagKey::from_words(1, 3)),
            Err(Invalid::BadTag)
        );
        // Any change to the tagged bytes is refused.
        for i in OFF_MAGIC + 4..TAG_END {
            let mut f = buf;
            f[i] ^= 1;
            assert!(parse(&f[..n], &key).is_err(), "byte {i} flipped");
        }
        assert_eq!(parse(&buf[..30], &key), Err(Invalid::Malformed));
        let mut f = buf;
        f[13] = 0xb5;
        assert!(!is_heartbeat(&f));
        assert_eq!(parse(&f[..n], &key), Err(Invalid::Malformed));
    }

    /// Drives a judge through `steps` of 1 ms; `back(t, dir, seq)` says
    /// whether heartbeat `seq` sent at `t` comes back, returning its rtt.
    struct Sim {
        j: Judge,
        now: u64,
        next_send: u64,
        sent: Vec<(Dir, u64, u64)>,
        outcomes: Vec<Outcome>,
        transitions: Vec<(u64, Transition)>,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                j: Judge::new(timing()),
                now: 0,
                next_send: 0,
                sent: Vec::new(),
                outcomes: Vec::new(),
                transitions: Vec::new(),
            }
        }

        fn run(&mut self, ms: u64, tool_up: impl Fn(u64) -> bool) {
            let rtt = 2 * MS;
            for _ in 0..ms {
                if self.now >= self.next_send {
                    self.next_send += self.j.timing().interval_ns;
                    for d in Dir::BOTH {
                        let (seq, ev) = self.j.send(d, self.now);
                        self.outcomes.extend(ev);
                        self.sent.push((d, seq, self.now));
                    }
                }
                for d in Dir::BOTH {
                    let now = self.now;
                    let sent = self.sent.clone();
                    let up = &tool_up;
                    if let Some(t) = self.j.judge(
                        d,
                        now,
                        |seq| {
                            sent.iter()
                                .find(|(sd, s, _)| *sd == d && *s == seq)
                                .filter(|(_, _, at)| up(*at) && now >= at + rtt)
                                .map(|_| rtt)
                        },
                        &mut self.outcomes,
                    ) {
                        self.transitions.push((now, t));
                    }
                }
                self.now += MS;
            }
        }
    }

    #[test]
    fn healthy_tool_goes_up_at_first_round_trip() {
        let mut s = Sim::new();
        s.run(50, |_| true);
        assert_eq!(s.transitions.len(), 1);
        assert_eq!(s.transitions[0].1.to, Health::Up);
        assert_eq!(s.transitions[0].0, 2 * MS);
        assert!(s.outcomes.iter().all(|o| matches!(o, Outcome::Returned(_))));
    }

    #[test]
    fn failure_is_detected_within_interval_times_misses_plus_timeout() {
        let mut s = Sim::new();
        let fail_at = 105 * MS;
        s.run(400, |at| at < fail_at);
        let down = s
            .transitions
            .iter()
            .find(|(_, t)| t.to == Health::Down)
            .expect("went down");
        let t = timing();
        let bound = fail_at + t.interval_ns * u64::from(t.misses) + t.timeout_ns;
        assert!(
            down.0 <= bound,
            "down at {} ms, bound {} ms",
            down.0 / MS,
            bound / MS
        );
        assert_eq!(down.1.reason, "HeartbeatsLost");
        // Never back up while the tool is dead.
        assert_eq!(s.transitions.last().unwrap().1.to, Health::Down);
    }

    #[test]
    fn recovery_waits_for_the_hold_time_and_a_flap_restarts_it() {
        let mut s = Sim::new();
        // Dead from 100 to 300 ms, a single heartbeat lost at 800 ms (a flap
        // that does not reach N misses), healthy otherwise.
        s.run(3000, |at| {
            !(100 * MS..300 * MS).contains(&at) && at != 800 * MS
        });
        let ups: Vec<u64> = s
            .transitions
            .iter()
            .filter(|(_, t)| t.to == Health::Up)
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(ups.len(), 2, "{:?}", s.transitions);
        // The second UP comes one hold time after the last miss (the
        // heartbeat sent at 800 ms was judged missed at 820 ms, and the run
        // restarted with the next return).
        assert!(
            ups[1] >= 820 * MS + timing().hold_ns,
            "up at {}",
            ups[1] / MS
        );
        assert!(
            ups[1] <= 850 * MS + timing().hold_ns,
            "up at {}",
            ups[1] / MS
        );
    }

    #[test]
    fn late_and_lost_are_counted_once() {
        let mut s = Sim::new();
        s.run(2000, |at| at < 500 * MS);
        let lost = s.outcomes.iter().filter(|o| **o == Outcome::Lost).count();
        let returned = s
            .outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Returned(_)))
            .count();
        // sent = returned + late + lost + in flight
        assert_eq!(s.sent.len(), returned + lost + s.j.in_flight());
    }
}
