//! A chain lab with both processes and real gRPC clients, for the tests of
//! bad input and the API fuzzer: the dataplane in the lab's dut namespace
//! with a chain of bridge tools, the sidecar in the root namespace with an
//! admin token, one shared `state_dir`, and a small seeded random generator
//! (so a fuzz run is the same run every time).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tapline_bench::lab::{unique_prefix, Lab, Scenario, ToolKind};
use tapline_bench::runner::{DataplaneProcess, StartOptions, STATE_DIR_PLACEHOLDER};
use tapline_proto::v1 as pb;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::chain::chain_config;
use crate::sidecar::{Ports, Sidecar};

/// The admin token of [`ApiRig`]s.
pub const ADMIN_TOKEN: &str = "fuzz-admin-t0ken";

/// One test's world. The work directory is removed on drop (after the
/// processes, which drop first).
#[derive(Debug)]
pub struct ApiRig {
    pub sidecar: Option<Sidecar>,
    pub dataplane: Option<DataplaneProcess>,
    pub lab: Lab,
    pub ports: Ports,
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    pub token_path: PathBuf,
    workdir: PathBuf,
}

impl ApiRig {
    /// A chain lab of `hops` bridge tools, the dataplane running them (fail
    /// open unless `on_failure` says otherwise) and the sidecar.
    pub fn start(hops: u8, on_failure: Option<&str>) -> Result<ApiRig> {
        let lab = Lab::build(&unique_prefix(), Scenario::chain(hops, ToolKind::Bridge)?)?;
        let workdir = std::env::temp_dir().join(format!("{}-api", unique_prefix()));
        std::fs::create_dir_all(&workdir)?;
        let state_dir = workdir.join("state");
        std::fs::create_dir_all(&state_dir)?;
        std::fs::set_permissions(
            &state_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        let token_path = workdir.join("admin-token");
        std::fs::write(&token_path, format!("{ADMIN_TOKEN}\n"))?;
        let ports = Ports::unique()?;
        let ks: Vec<u8> = (1..=hops).collect();
        let config = chain_config(
            &ks,
            on_failure,
            &format!(
                "[control]\ngrpc_listen = \"127.0.0.1:{}\"\nhealth_listen = \"127.0.0.1:{}\"\n\
                 metrics_listen = \"127.0.0.1:{}\"\nadmin_token_file = \"{}\"\n",
                ports.grpc,
                ports.health,
                ports.metrics,
                token_path.display()
            ),
        )
        .replace(STATE_DIR_PLACEHOLDER, &state_dir.to_string_lossy());
        let config_path = workdir.join("tapline.toml");
        std::fs::write(&config_path, &config)?;
        let dataplane = DataplaneProcess::start(
            &lab.dut,
            &config,
            &StartOptions {
                expect_ready: true,
                ..StartOptions::default()
            },
        )?;
        let sidecar = Sidecar::start(&config_path, &[ports.grpc, ports.health, ports.metrics])
            .context("starting the sidecar")?;
        Ok(ApiRig {
            sidecar: Some(sidecar),
            dataplane: Some(dataplane),
            lab,
            ports,
            state_dir,
            config_path,
            token_path,
            workdir,
        })
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn dataplane(&self) -> &DataplaneProcess {
        self.dataplane.as_ref().expect("running")
    }

    /// The `Authorization` value of the admin token.
    pub fn bearer() -> String {
        format!("Bearer {ADMIN_TOKEN}")
    }
}

impl Drop for ApiRig {
    fn drop(&mut self) {
        drop(self.sidecar.take());
        drop(self.dataplane.take());
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// Adds the admin token to every call.
#[derive(Debug, Clone)]
pub struct AdminAuth(MetadataValue<Ascii>);

impl tonic::service::Interceptor for AdminAuth {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

/// An Admin client with the admin token.
pub type AdminClient = pb::admin_client::AdminClient<InterceptedService<Channel, AdminAuth>>;
/// An Observer client (the rig sets no observer token).
pub type ObserverClient = pb::observer_client::ObserverClient<Channel>;

/// Admin (with [`ADMIN_TOKEN`]) and Observer clients of the sidecar at
/// `url`, sharing one channel; messages up to 16 MiB either way, so the
/// server's own limit is what a test meets.
pub async fn clients(url: &str) -> Result<(AdminClient, ObserverClient)> {
    let ch = Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let auth = AdminAuth(ApiRig::bearer().parse()?);
    let admin = pb::admin_client::AdminClient::with_interceptor(ch.clone(), auth)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);
    let observer = pb::observer_client::ObserverClient::new(ch)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);
    Ok((admin, observer))
}

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same cases on every machine, so a fuzz run's length is fixed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// A text field as an attacker or a careless operator would fill it:
    /// empty, plausible, oversized (up to 3 MiB), unicode, control
    /// characters, escape sequences, bidi overrides.
    pub fn text(&mut self, plausible: &[&str]) -> String {
        match self.below(10) {
            0 => String::new(),
            1 | 2 => (*self.pick(plausible)).to_string(),
            3 => {
                let len = *self.pick(&[16usize, 33, 256, 257, 4097, 70_000, 3 << 20]);
                "x".repeat(len)
            }
            4 => "ünïcödé-✓-日本語-🦀".repeat(1 + self.below(4) as usize),
            5 => format!(
                "ok\n{{\"level\":\"ERROR\",\"forged\":true}}\r\x1b[2J\x1b[31m{}",
                self.below(100)
            ),
            6 => "\u{202e}evil\u{2066}\u{2028}x".to_string(),
            7 => {
                let n = 1 + self.below(40) as usize;
                (0..n)
                    .map(|_| char::from_u32(self.below(0x3000) as u32).unwrap_or('?'))
                    .collect()
            }
            8 => {
                let p = self.pick(plausible).to_string();
                format!("{p}\0{}", self.below(9))
            }
            _ => {
                let n = 1 + self.below(64) as usize;
                String::from_utf8_lossy(&self.bytes(n)).into_owned()
            }
        }
    }
}
