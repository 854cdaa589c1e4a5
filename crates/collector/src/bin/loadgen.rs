//! `sessiontrail-loadgen`: the collector ingest benchmark (`cargo xtask
//! bench collector [--quick]`), built only with `--features loadgen`.
//!
//! It starts the real `sessiontrail serve` (the release binary next to this
//! one) as a separate process on a loopback port, enrolls 1,000 simulated
//! devices in its store, signs their batches up front, then posts them from
//! this process over keep-alive HTTP/1.1 connections: each device's batches
//! in order, devices interleaved, as many connections as the server admits
//! at once (`max_inflight`). A batch counts when its 200 arrives, which the
//! server sends only after the commit (fsync) that stored and indexed it.
//!
//! The baseline is bare `ed25519_dalek::verify_batch` over the same records
//! (per batch: the device key decoded once, then one batch verification),
//! on as many threads as the server has cores, measured in the same run
//! just before and just after the load (their mean; the machine is noisy).
//!
//! JSON lines go to `target/bench/collector.json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use sessiontrail_collector::store::sqlite::{SqliteOptions, SqliteStore};
use sessiontrail_collector::store::{Actor, Enrollment, Role, Store};
use sessiontrail_collector::{auth, now_ms};
use sessiontrail_core::event::{Classification, Decision};
use sessiontrail_core::{
    ChainTip, DeviceSigner, EventBody, EventKind, Response, Severity, SignedEvent, Target, batch,
};

#[path = "common/proc_stats.rs"]
mod proc_stats;
use proc_stats::{cores, cpu_secs};

const DEVICES: usize = 1000;
const PER_BATCH: usize = 100;
/// Connections posting at once: the server's default `max_inflight`.
const CONNECTIONS: usize = 32;

fn body(dev: usize, seq: u64) -> EventBody {
    EventBody {
        kind: if seq.is_multiple_of(5) {
            EventKind::Submit
        } else {
            EventKind::Click
        },
        user: format!("user{dev}@acme.test"),
        app: ["crm", "hr", "console"][dev % 3].into(),
        tab: format!("tab-{}", seq / 40),
        session: format!("sess-{dev}-{}", seq / 400),
        url: format!("https://crm.acme.test/crm/customers/{}", seq * 7 % 1000),
        target: Some(Target {
            tag: "button".into(),
            role: "button".into(),
            name: "Export CSV".into(),
            path: "main > div.toolbar > button.export".into(),
            text: "Export CSV".into(),
        }),
        trusted: true,
        fields: Default::default(),
        classification: Classification {
            rules: vec!["crm.customers.export_csv".into()],
            severity: Some(Severity::High),
            tags: vec!["gdpr:art-32".into(), "soc2:CC6.1".into()],
            risk: 20,
            session_risk: 20,
        },
        decision: Decision {
            response: Response::Justify,
            reason: "rule crm.customers.export_csv (CSV export) → justify".into(),
            action_id: None,
        },
    }
}

struct Device {
    credential: String,
    /// Encoded batches, in order.
    batches: Vec<Vec<u8>>,
    /// The same records, for the bare-verify baseline.
    records: Vec<Vec<SignedEvent>>,
}

/// Bare batch verification of every batch, one thread per core.
fn bare_rate(devs: &[Device]) -> f64 {
    let all: Vec<&Vec<SignedEvent>> = devs.iter().flat_map(|d| &d.records).collect();
    let total: usize = all.iter().map(|b| b.len()).sum();
    let n = cores();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..n {
            let all = &all;
            s.spawn(move || {
                for b in all.iter().skip(t).step_by(n) {
                    let vk = VerifyingKey::from_bytes(&b[0].device_key().0).unwrap();
                    let msgs: Vec<&[u8]> = b.iter().map(|r| r.message()).collect();
                    let sigs: Vec<Signature> = b.iter().map(|r| r.signature()).collect();
                    let vks = vec![vk; b.len()];
                    ed25519_dalek::verify_batch(&msgs, &sigs, &vks).unwrap();
                }
            });
        }
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: SocketAddr,
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            addr,
            r: BufReader::with_capacity(16 * 1024, s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Posts a batch; returns the status.
    fn post(&mut self, credential: &str, body: &[u8]) -> u16 {
        let head = format!(
            "POST /v1/batches HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {credential}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.w.write_all(head.as_bytes()).unwrap();
        self.w.write_all(body).unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut b = vec![0u8; len];
        self.r.read_exact(&mut b).unwrap();
        if status != 200 && status != 429 {
            panic!("batch answered {status}: {}", String::from_utf8_lossy(&b));
        }
        status
    }
}

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|x| x.1.to_owned())?;
    Some((status, body))
}

fn log_size(addr: SocketAddr) -> u64 {
    let (_, body) = get(addr, "/healthz").expect("healthz");
    let j: serde_json::Value = serde_json::from_str(&body).expect("healthz json");
    j["log_size"].as_u64().expect("log_size")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let batches = if quick { 2 } else { 5 };
    let exe = std::env::current_exe().unwrap();
    let server_bin = arg(&args, "--server")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe.with_file_name("sessiontrail"));
    let out_dir = arg(&args, "--out-dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let data = out_dir.join("collector-data");
    let _ = std::fs::remove_dir_all(&data);
    let t0 = Instant::now();

    // Enroll the devices in the store the server will open (concurrently,
    // so the store's group commit batches the fsyncs).
    let devices: Vec<(usize, [u8; 32], String)> = {
        let store = SqliteStore::open(&data, SqliteOptions::default()).unwrap();
        let g = auth::generate(
            Role::Enroll,
            Some(now_ms() + 3_600_000),
            Some(DEVICES as u64),
            None,
        )
        .unwrap();
        let token_id = g.token.id.clone();
        let presented = auth::hash_secret(g.credential.rsplit('.').next().unwrap());
        store.create_token(g.token, &Actor::cli()).unwrap();
        let out = Mutex::new(Vec::with_capacity(DEVICES));
        let next = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    loop {
                        let d = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if d >= DEVICES {
                            return;
                        }
                        let mut seed = [0u8; 32];
                        seed[..8].copy_from_slice(&(d as u64 + 1).to_be_bytes());
                        seed[8] = 0x5e;
                        let key = DeviceSigner::new(&seed, ChainTip::GENESIS).public_key();
                        let cred = auth::generate(Role::Device, None, None, None).unwrap();
                        store
                            .enroll(Enrollment {
                                token_id: token_id.clone(),
                                presented_hash: presented,
                                device_key: key,
                                user: format!("user{d}@acme.test"),
                                device_name: format!("bench-{d}"),
                                claims: serde_json::json!({}),
                                credential: cred.token,
                                now_ms: now_ms(),
                            })
                            .unwrap()
                            .unwrap();
                        out.lock().unwrap().push((d, seed, cred.credential));
                    }
                });
            }
        });
        let mut v = out.into_inner().unwrap();
        v.sort_by_key(|x| x.0);
        v
    };
    let enrolled_s = t0.elapsed().as_secs_f64();

    // Sign every batch up front (one thread per core).
    let t1 = Instant::now();
    let chunk = DEVICES.div_ceil(cores());
    let devs: Vec<Device> = std::thread::scope(|s| {
        let hs: Vec<_> = devices
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(d, seed, cred)| {
                            let mut signer = DeviceSigner::new(seed, ChainTip::GENESIS);
                            let records: Vec<Vec<SignedEvent>> = (0..batches)
                                .map(|_| {
                                    (0..PER_BATCH)
                                        .map(|_| {
                                            let seq = signer.tip().seq + 1;
                                            signer.sign(
                                                1_700_000_000_000 + seq as i64 * 1000,
                                                &body(*d, seq),
                                            )
                                        })
                                        .collect()
                                })
                                .collect();
                            Device {
                                credential: cred.clone(),
                                batches: records.iter().map(batch::encode).collect(),
                                records,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let total = DEVICES * batches * PER_BATCH;
    let bytes: usize = devs.iter().flat_map(|d| &d.batches).map(Vec::len).sum();
    let signed_s = t1.elapsed().as_secs_f64();

    // The server, as its own process.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(out_dir.join("collector-server.log")).unwrap();
    let child = Command::new(&server_bin)
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &addr.to_string(), "--log-format", "json"])
        .env("SESSIONTRAIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", server_bin.display()));
    let server = Server(child);
    let pid = server.0.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(addr, "/healthz").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log_before = log_size(addr);

    let bare_before = bare_rate(&devs);

    // The load: CONNECTIONS workers, each owning every CONNECTIONS-th device.
    let retries = AtomicU64::new(0);
    let server_cpu0 = cpu_secs(&pid);
    let self_cpu0 = cpu_secs("self");
    let start = Instant::now();
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..CONNECTIONS)
            .map(|w| {
                let (devs, retries) = (&devs, &retries);
                s.spawn(move || {
                    let mine: Vec<&Device> = devs.iter().skip(w).step_by(CONNECTIONS).collect();
                    let mut conn = Conn::open(addr);
                    let mut lat = Vec::with_capacity(mine.len() * batches);
                    for b in 0..batches {
                        for d in &mine {
                            let t = Instant::now();
                            while conn.post(&d.credential, &d.batches[b]) == 429 {
                                retries.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(2));
                            }
                            lat.push(t.elapsed());
                        }
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let took = start.elapsed().as_secs_f64();
    let server_cpu = cpu_secs(&pid) - server_cpu0;
    let self_cpu = cpu_secs("self") - self_cpu0;

    let bare_after = bare_rate(&devs);
    let stored = log_size(addr) - log_before;
    assert_eq!(
        stored, total as u64,
        "every acknowledged event is in the log"
    );
    drop(server);

    let bare = (bare_before + bare_after) / 2.0;
    let rate = total as f64 / took;
    let ratio = rate / bare;
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    let (p50, p99) = (p(0.50), p(0.99));
    let lines = [
        serde_json::json!({"name": "ingest_events_per_s", "value": rate.round(), "unit": "events/s",
            "baseline": bare.round(), "ratio": ratio}),
        serde_json::json!({"name": "ingest_vs_bare_verify_ratio", "value": ratio, "unit": "ratio",
            "baseline": 0.5, "ratio": ratio / 0.5}),
        serde_json::json!({"name": "ack_p99_ms", "value": p99, "unit": "ms",
            "baseline": 250.0, "ratio": p99 / 250.0}),
        serde_json::json!({"name": "ack_p50_ms", "value": p50, "unit": "ms",
            "baseline": 250.0, "ratio": p50 / 250.0}),
        serde_json::json!({"name": "bare_verify_events_per_s", "value": bare.round(), "unit": "events/s",
            "baseline": bare_before.round(), "ratio": bare_after / bare_before}),
        serde_json::json!({"name": "server_cpu_us_per_event", "value": server_cpu / total as f64 * 1e6,
            "unit": "µs", "baseline": cores() as f64 / bare * 1e6,
            "ratio": server_cpu / total as f64 * bare / cores() as f64}),
    ];
    let path: &Path = &out_dir.join("collector.json");
    let mut f = std::fs::File::create(path).unwrap();
    for l in &lines {
        println!("{l}");
        writeln!(f, "{l}").unwrap();
    }
    eprintln!(
        "{total} events ({:.0} MB) from {DEVICES} devices in batches of {PER_BATCH} over {CONNECTIONS} connections: \
         ingest {rate:.0}/s vs bare verify_batch {bare:.0}/s ({} threads; {bare_before:.0} before, {bare_after:.0} after) \
         = {ratio:.2}; ack p50 {p50:.1} ms, p99 {p99:.1} ms; {} retries after 429; \
         server {:.1} µs CPU/event, load generator {:.1} µs CPU/event; \
         setup: enroll {enrolled_s:.1}s, sign {signed_s:.1}s; load {took:.1}s",
        bytes as f64 / 1e6,
        cores(),
        retries.load(Ordering::Relaxed),
        server_cpu / total as f64 * 1e6,
        self_cpu / total as f64 * 1e6,
    );
    let _ = std::fs::remove_dir_all(&data);
}
