//! The API fuzzer: a seeded, bounded run of random calls to every method of
//! `Admin` and `Observer`, from concurrent real gRPC clients, against both
//! processes on a chain lab of two bridge tools.
//!
//! Fields are random, plausible, oversized (up to 3 MiB), unicode, or full
//! of control characters and escape sequences (see
//! [`tapline_tests::api::Rng::text`]); hop lists are valid, shuffled,
//! empty or 10,000 long; enums and numbers are in and out of range.
//!
//! Invariants: every call answers within [`CALL_DEADLINE`] with a code
//! documented for its method (see [`allowed`]); no message carries a
//! control character; afterwards both processes still run, GetChain is
//! readable, the chain set back to its start comes UP, and frames cross it
//! byte-exact both ways.
//!
//! The run is deterministic in its cases: `TAPLINE_FUZZ_SEED` (default 13)
//! seeds it and `TAPLINE_FUZZ_API_CASES` (default [`DEFAULT_CASES`]) sets
//! how many calls are made, split over [`CLIENTS`] concurrent clients.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use prost::Message;
use tapline_bench::lab::ifs;
use tapline_proto::limits::forbidden_char;
use tapline_proto::v1 as pb;
use tapline_tests::api::{clients, AdminClient, ApiRig, ObserverClient, Rng};
use tapline_tests::chain::{chain_spec, hop_name, wait_hops_up, Control, UP_TIMEOUT};
use tapline_tests::{assert_delivered_in_order, privileged, run_concurrently, stop_ok, Flow};
use tonic::Code;

/// Calls in a CI run.
const DEFAULT_CASES: u64 = 800;
/// Concurrent clients.
const CLIENTS: u64 = 8;
/// Every call must be answered within this (a SetChain waits for a drain
/// and binds sockets; the box is shared).
const CALL_DEADLINE: Duration = Duration::from_secs(20);
const FRAMES: usize = 300;

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

/// The methods, as the tallies name them.
const METHODS: [&str; 8] = [
    "GetInfo",
    "GetStats",
    "WatchStats",
    "GetChain",
    "WatchChain",
    "SetChain",
    "SetHopBypass",
    "Tap",
];

/// The codes each method is documented to answer with (docs/control.md).
fn allowed(method: &str) -> &'static [Code] {
    match method {
        "GetInfo" | "GetChain" | "WatchChain" => &[Code::Ok],
        "GetStats" | "WatchStats" => &[Code::Ok, Code::InvalidArgument, Code::OutOfRange],
        "SetChain" => &[
            Code::Ok,
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::OutOfRange,
        ],
        "SetHopBypass" => &[
            Code::Ok,
            Code::InvalidArgument,
            Code::NotFound,
            Code::OutOfRange,
        ],
        "Tap" => &[
            Code::Ok,
            Code::InvalidArgument,
            Code::NotFound,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::OutOfRange,
        ],
        _ => &[],
    }
}

const IFNAMES: [&str; 8] = ["h1a", "h1b", "h2a", "h2b", "i1", "lo", "eth0", "nope0"];

fn hop_names() -> Vec<String> {
    vec![hop_name(1), hop_name(2), "ids".into(), "x".into()]
}

fn random_spec(r: &mut Rng) -> pb::ChainSpec {
    let names = hop_names();
    let plausible: Vec<&str> = names.iter().map(String::as_str).collect();
    let enum_value = |r: &mut Rng| -> i32 {
        if r.chance(8) {
            r.below(1000) as i32 - 500
        } else {
            r.below(3) as i32
        }
    };
    let hops = match r.below(6) {
        // Valid: the lab's tools, shuffled, a subset.
        0..=2 => {
            let mut ks: Vec<u8> = vec![1, 2];
            if r.chance(2) {
                ks.swap(0, 1);
            }
            ks.truncate(r.below(3) as usize);
            let mut s = chain_spec(&ks).hops;
            for h in &mut s {
                h.on_failure = r.below(3) as i32;
            }
            s
        }
        3 => vec![
            pb::HopSpec {
                name: hop_name(1),
                a: ifs::hop_a(1),
                b: ifs::hop_b(1),
                on_failure: 0,
            };
            *r.pick(&[9usize, 100, 10_000])
        ],
        _ => (0..r.below(4))
            .map(|_| pb::HopSpec {
                name: r.text(&plausible),
                a: r.text(&IFNAMES),
                b: r.text(&IFNAMES),
                on_failure: enum_value(r),
            })
            .collect(),
    };
    pb::ChainSpec {
        hops,
        default_on_failure: enum_value(r),
    }
}

fn random_selector(r: &mut Rng) -> Option<pb::StatsSelector> {
    if r.chance(2) {
        return None;
    }
    let n = *r.pick(&[0usize, 1, 2, 17, 300]);
    let roles = (0..n)
        .map(|_| {
            r.text(&[
                "passive-1",
                "inline-1",
                "inline-2",
                "tool-a",
                "tool-b",
                "pasive-1",
            ])
        })
        .collect();
    Some(pb::StatsSelector {
        roles,
        omit_queues: r.chance(2),
    })
}

fn random_tap(r: &mut Rng) -> pb::TapRequest {
    if r.chance(2) {
        // Plausible: a real point, a filter that compiles.
        let location = if r.chance(2) {
            pb::tap_point::Location::Port((*r.pick(&["inline-1", "inline-2"])).into())
        } else {
            pb::tap_point::Location::Hop(pb::HopTapPoint {
                hop: hop_name(1 + r.below(2) as u8),
                side: 1 + r.below(2) as i32,
            })
        };
        return pb::TapRequest {
            point: Some(pb::TapPoint {
                location: Some(location),
                direction: r.below(4) as i32,
            }),
            filter: (*r.pick(&["", "udp", "not tcp", "vlan and udp"])).into(),
            snap_length_bytes: *r.pick(&[0, 64, 1 << 20]),
            sample_one_in: *r.pick(&[0, 3]),
            max_packets: *r.pick(&[0, 5]),
            max_duration_ms: *r.pick(&[1, 50, 200]),
        };
    }
    let names = hop_names();
    let plausible: Vec<&str> = names.iter().map(String::as_str).collect();
    let location = match r.below(4) {
        0 => None,
        1 => Some(pb::tap_point::Location::Port(r.text(&[
            "inline-1",
            "inline-2",
            "passive-1",
            "tool-a",
        ]))),
        _ => Some(pb::tap_point::Location::Hop(pb::HopTapPoint {
            hop: r.text(&plausible),
            side: r.below(4) as i32,
        })),
    };
    pb::TapRequest {
        point: Some(pb::TapPoint {
            location,
            direction: r.below(5) as i32,
        }),
        filter: r.text(&[
            "",
            "udp",
            "tcp port 443 and host 10.0.0.1",
            "vlan and",
            "ether[",
        ]),
        snap_length_bytes: *r.pick(&[0, 1, 64, 65_535, 1 << 20, u32::MAX]),
        sample_one_in: *r.pick(&[0, 1, 7, u32::MAX]),
        max_packets: *r.pick(&[0, 1, 10, u64::MAX]),
        // Short taps: the fuzzer must not hold taps open.
        max_duration_ms: *r.pick(&[1, 50, 200]),
    }
}

/// The sidecar's gRPC message limit (tonic's default): a larger request is
/// refused by the gRPC layer before tapline sees it.
const GRPC_LIMIT: usize = 4 << 20;

/// What one call answered.
struct Answer {
    method: &'static str,
    code: Code,
    message: String,
    /// The request was over [`GRPC_LIMIT`].
    over_limit: bool,
}

impl Answer {
    /// Whether the answer is documented: the method's codes, or for a
    /// request over the gRPC limit OUT_OF_RANGE, or the stream reset by the
    /// server while the client was still sending it (the status then
    /// cannot reach the client; tonic reports the reset as INTERNAL).
    fn documented(&self) -> bool {
        if self.over_limit {
            return self.code == Code::OutOfRange
                || (self.code == Code::Internal && self.message.starts_with("h2 protocol error"));
        }
        allowed(self.method).contains(&self.code)
    }
}

/// Makes one random call; returns what it answered.
async fn one_call(
    r: &mut Rng,
    admin: &mut AdminClient,
    obs: &mut ObserverClient,
) -> Result<Answer> {
    let method = *r.pick(&METHODS);
    let names = hop_names();
    let plausible: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut size = 0;
    let status = match method {
        "GetInfo" => obs.get_info(pb::GetInfoRequest {}).await.map(drop),
        "GetStats" => {
            let req = pb::GetStatsRequest {
                selector: random_selector(r),
            };
            size = req.encoded_len();
            obs.get_stats(req).await.map(drop)
        }
        "WatchStats" => {
            let req = pb::WatchStatsRequest {
                interval_ms: *r.pick(&[0, 1, 10, 100, 60_001, u32::MAX]),
                selector: random_selector(r),
            };
            size = req.encoded_len();
            match obs.watch_stats(req).await {
                Ok(s) => {
                    let mut s = s.into_inner();
                    // The first snapshot comes at once.
                    s.message().await.map(drop)
                }
                Err(e) => Err(e),
            }
        }
        "GetChain" => obs.get_chain(pb::GetChainRequest {}).await.map(|c| {
            let _ = c.into_inner().chain;
        }),
        "WatchChain" => match obs.watch_chain(pb::WatchChainRequest {}).await {
            Ok(s) => s.into_inner().message().await.map(drop),
            Err(e) => Err(e),
        },
        "SetChain" => {
            let req = pb::SetChainRequest {
                spec: (!r.chance(10)).then(|| random_spec(r)),
                expected_generation: r.chance(3).then(|| r.below(50)),
                dry_run: r.chance(3),
            };
            size = req.encoded_len();
            admin.set_chain(req).await.map(drop)
        }
        "SetHopBypass" => {
            let req = if r.chance(2) {
                pb::SetHopBypassRequest {
                    hop: hop_name(1 + r.below(2) as u8),
                    bypass: r.chance(2),
                    reason: (*r.pick(&["tool upgrade, ticket OPS-123", ""])).into(),
                }
            } else {
                pb::SetHopBypassRequest {
                    hop: r.text(&plausible),
                    bypass: r.chance(2),
                    reason: r.text(&["tool upgrade, ticket OPS-123", ""]),
                }
            };
            size = req.encoded_len();
            admin.set_hop_bypass(req).await.map(drop)
        }
        "Tap" => {
            let req = random_tap(r);
            size = req.encoded_len();
            match admin.tap(req).await {
                Ok(s) => {
                    let mut s = s.into_inner();
                    // The first message (`started`), then the client goes
                    // away.
                    s.message().await.map(drop)
                }
                Err(e) => Err(e),
            }
        }
        _ => unreachable!(),
    };
    match status {
        Ok(()) => Ok(Answer {
            method,
            code: Code::Ok,
            message: String::new(),
            over_limit: size > GRPC_LIMIT,
        }),
        Err(s) => {
            ensure!(
                !s.message().chars().any(|c| forbidden_char(c) && c != '\n'),
                "{method}: a message with a control character: {:?}",
                tapline_proto::limits::truncate(s.message(), 300)
            );
            ensure!(
                s.message().len() <= 8192,
                "{method}: a message of {} bytes",
                s.message().len()
            );
            Ok(Answer {
                method,
                code: s.code(),
                message: s.message().to_string(),
                over_limit: size > GRPC_LIMIT,
            })
        }
    }
}

type Tally = BTreeMap<(&'static str, String), u64>;

#[test]
fn api_fuzz_every_call_answers_a_documented_code_and_the_chain_keeps_forwarding() -> Result<()> {
    if !privileged()? {
        return Ok(());
    }
    let seed = env_u64("TAPLINE_FUZZ_SEED", 13)?;
    let cases = env_u64("TAPLINE_FUZZ_API_CASES", DEFAULT_CASES)?;
    let rig = ApiRig::start(2, None)?;
    let ctl = Control::new(rig.state_dir());
    wait_hops_up(&ctl, &[1, 2], UP_TIMEOUT)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let t0 = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let url = rig.ports.grpc_url();
            let tally = tally.clone();
            let n = cases / CLIENTS + u64::from(c < cases % CLIENTS);
            tasks.push(tokio::spawn(async move {
                let (mut admin, mut obs) = clients(&url).await?;
                let mut r = Rng::new(seed.wrapping_mul(1000).wrapping_add(c));
                for i in 0..n {
                    let a =
                        tokio::time::timeout(CALL_DEADLINE, one_call(&mut r, &mut admin, &mut obs))
                            .await
                            .map_err(|_| {
                                anyhow::anyhow!(
                                    "client {c}, call {i}: no answer within {CALL_DEADLINE:?}"
                                )
                            })??;
                    ensure!(
                        a.documented(),
                        "client {c}, call {i}: {} answered {:?} ({}), not a documented code \
                         (request over 4 MiB: {})",
                        a.method,
                        a.code,
                        tapline_proto::limits::truncate(&a.message, 300),
                        a.over_limit
                    );
                    let what = format!(
                        "{:?}{}",
                        a.code,
                        if a.over_limit { " (over 4 MiB)" } else { "" }
                    );
                    *tally.lock().unwrap().entry((a.method, what)).or_default() += 1;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })?;
    let took = t0.elapsed();
    let tally = tally.lock().unwrap().clone();
    let total: u64 = tally.values().sum();
    eprintln!("api fuzz: seed {seed}, {total} calls by {CLIENTS} clients in {took:?}");
    for ((m, c), n) in &tally {
        eprintln!("  {m:<13} {c:<20} {n}");
    }
    ensure!(total == cases, "{total} calls tallied of {cases}");

    // Both processes survived; the chain reads, goes back to its start and
    // forwards byte-exact.
    let chain = rt.block_on(async {
        let (_, mut obs) = clients(&rig.ports.grpc_url()).await?;
        let c = obs.get_chain(pb::GetChainRequest {}).await?.into_inner();
        c.chain.context("GetChain without a chain")
    })?;
    eprintln!("chain after the fuzz: generation {}", chain.generation);
    ctl.apply_chain(chain_spec(&[1, 2]))?;
    for k in [1, 2] {
        ctl.set_hop_bypass(&hop_name(k), false, "")?;
    }
    wait_hops_up(&ctl, &[1, 2], UP_TIMEOUT)?;
    let flows = [
        Flow::gen_to_sink(&rig.lab, FRAMES)?,
        Flow::sink_to_gen(&rig.lab, FRAMES)?,
    ];
    let results = run_concurrently(&flows)?;
    for (f, r) in flows.iter().zip(&results) {
        assert_delivered_in_order(f, r)?;
    }
    let mut rig = rig;
    stop_ok(rig.dataplane.take().context("the dataplane")?)?;
    Ok(())
}
