//! What TLS and mTLS cost on the control API: `GetStats` latency (p50, p99,
//! mean over N sequential calls on one connection) and the connection setup
//! (TCP + TLS handshake + first call, over M fresh connections), for
//! plaintext with a bearer token, TLS with a bearer token, and mTLS with a
//! client certificate mapped to `view`. The sidecar runs in-process against
//! a stats segment written here (no dataplane, no root); certificates come
//! from a CA made here (rcgen). Not a test: run it in release mode on an
//! otherwise idle machine and quote the ratios.
//!
//! ```text
//! cargo run --release -p tapline-control --example api_latency -- [CALLS] [CONNECTIONS]
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use tapline_config::Config;
use tapline_control::audit::AuditLog;
use tapline_control::Bound;
use tapline_proto::v1;
use tapline_proto::v1::observer_client::ObserverClient;
use tapline_segment::{QueueInfo, SegmentState, StatsSegment};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Request;

const TOKEN: &str = "bench-token-0123456789abcdef";

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "bench CA");
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn issue(&self, cn: &str, server: bool) -> (String, String) {
        let names = if server {
            vec!["localhost".to_string()]
        } else {
            vec![]
        };
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if server {
            p.subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        } else {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Plain,
    Tls,
    Mtls,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn channel(
    addr: std::net::SocketAddr,
    mode: Mode,
    ca: &str,
    client: &(String, String),
) -> Channel {
    let url = if mode == Mode::Plain {
        format!("http://{addr}")
    } else {
        format!("https://{addr}")
    };
    let mut ep = Channel::from_shared(url).unwrap();
    if mode != Mode::Plain {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        if mode == Mode::Mtls {
            tls = tls.identity(Identity::from_pem(&client.0, &client.1));
        }
        ep = ep.tls_config(tls).unwrap();
    }
    ep.connect().await.unwrap()
}

fn request(mode: Mode) -> Request<v1::GetStatsRequest> {
    let mut r = Request::new(v1::GetStatsRequest::default());
    if mode != Mode::Mtls {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    }
    r
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map_or(10_000, |a| a.parse().unwrap());
    let conns: usize = args.next().map_or(300, |a| a.parse().unwrap());
    let dir = std::env::temp_dir().join(format!("tapline-api-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A live stats segment: three ports on one queue, beating.
    let seg = StatsSegment::create(&dir, 3, 1, 1).unwrap();
    for (i, (role, ifname)) in [("inline-1", "i1"), ("inline-2", "i2"), ("passive-1", "p1")]
        .into_iter()
        .enumerate()
    {
        seg.describe_queue(
            i,
            &QueueInfo {
                role: role.into(),
                ifname: ifname.into(),
                queue: 0,
                mode: "native-copy".into(),
                worker: 0,
                hop: String::new(),
            },
        );
    }
    seg.set_state(SegmentState::Running);
    let beating = Arc::new(AtomicBool::new(true));
    let beat = {
        let (seg, beating) = (seg.clone(), beating.clone());
        std::thread::spawn(move || {
            while beating.load(Ordering::Relaxed) {
                seg.beat();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let ca = Ca::new();
    let (scert, skey) = ca.issue("tapline-control", true);
    let client = ca.issue("bench-viewer", false);
    let write = |name: &str, s: &str| {
        let p = dir.join(name);
        std::fs::write(&p, s).unwrap();
        p
    };
    let tokens = write("tokens.csv", &format!("{TOKEN},bench,1,view\n"));
    let (cert, key, cafile) = (
        write("tls.crt", &scert),
        write("tls.key", &skey),
        write("ca.crt", &ca.cert.pem()),
    );

    println!(
        "GetStats over {calls} sequential calls on one connection; setup = connect (TCP + TLS handshake) + first GetStats, over {conns} fresh connections"
    );
    println!(
        "{:<6} {:>9} {:>9} {:>9} {:>12} {:>12} {:>12}",
        "mode", "p50 us", "p99 us", "mean us", "setup p50", "setup p99", "calls/s"
    );
    let mut base: Option<(f64, f64, f64)> = None;
    for mode in [Mode::Plain, Mode::Tls, Mode::Mtls] {
        let tls = match mode {
            Mode::Plain => String::new(),
            Mode::Tls => format!(
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                cert.display(),
                key.display()
            ),
            Mode::Mtls => format!(
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\ntls_client_ca_file = \"{}\"\n\
                 tls_client_auth = \"optional\"\n[control.client_roles]\n\"bench-viewer\" = \"view\"\n",
                cert.display(),
                key.display(),
                cafile.display()
            ),
        };
        let cfg = Config::parse(&format!(
            "[interfaces]\ninline-1 = \"i1\"\ninline-2 = \"i2\"\npassive-1 = \"p1\"\n\
             [dataplane]\nstate_dir = \"{}\"\n[control]\ngrpc_listen = \"127.0.0.1:0\"\n\
             health_listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             token_file = \"{}\"\n{tls}",
            dir.display(),
            tokens.display()
        ))
        .unwrap();
        let bound = Bound::bind(cfg)
            .await
            .unwrap()
            .with_audit(AuditLog::discard());
        let addr = bound.grpc_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bound.run(async {
            let _ = rx.await;
        }));
        let ca_pem = ca.cert.pem();

        // Warm-up, then the timed calls.
        let mut c = ObserverClient::new(channel(addr, mode, &ca_pem, &client).await);
        for _ in 0..500 {
            c.get_stats(request(mode)).await.unwrap();
        }
        let mut lat = Vec::with_capacity(calls);
        let t0 = Instant::now();
        for _ in 0..calls {
            let t = Instant::now();
            c.get_stats(request(mode)).await.unwrap();
            lat.push(t.elapsed());
        }
        let total = t0.elapsed();
        lat.sort();
        let mut setup = Vec::with_capacity(conns);
        for _ in 0..conns {
            let t = Instant::now();
            let mut c = ObserverClient::new(channel(addr, mode, &ca_pem, &client).await);
            c.get_stats(request(mode)).await.unwrap();
            setup.push(t.elapsed());
        }
        setup.sort();
        let (p50, p99) = (us(percentile(&lat, 0.5)), us(percentile(&lat, 0.99)));
        let mean = us(total) / calls as f64;
        let (s50, s99) = (us(percentile(&setup, 0.5)), us(percentile(&setup, 0.99)));
        println!(
            "{:<6} {p50:>9.1} {p99:>9.1} {mean:>9.1} {s50:>12.1} {s99:>12.1} {:>12.0}",
            format!("{mode:?}").to_lowercase(),
            calls as f64 / total.as_secs_f64()
        );
        match base {
            None => base = Some((p50, p99, s50)),
            Some((b50, b99, bs)) => println!(
                "{:<6} ratios vs plain: p50 x{:.2}, p99 x{:.2}, setup p50 x{:.2}",
                "",
                p50 / b50,
                p99 / b99,
                s50 / bs
            ),
        }
        tx.send(()).unwrap();
        let _ = task.await;
    }
    beating.store(false, Ordering::Relaxed);
    let _ = beat.join();
    let _ = std::fs::remove_dir_all(&dir);
}
