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
//! Two phases on one server, one chain per device: first a routine mix (what
//! a working day looks like: most events match no rule; the headline
//! figures), then the same volume with every event a flagged rule match
//! (the worst case, reported as `flagged_*`). See [`Mix`].
//!
//! The baseline is bare `ed25519_dalek::verify_batch` over the same records
//! (per batch: the device key decoded once, then one batch verification),
//! on as many threads as the server has cores, measured in the same run
//! before, between and after the phases; each phase is compared with the
//! mean of the measurements around it (the machine is noisy). The server
//! verifies faster than that baseline (`one_key_batch` merges the key's
//! terms), so the same records through `verify_one_key` are measured too,
//! between the phases, and the routine rate is also reported against them
//! (`ingest_vs_one_key_verify_ratio`): the share the store side leaves.
//! Before the load it times appending and overwriting a scratch file
//! (`host_append_page_us`, see `page_costs`): a cost the collector pays and
//! the baseline does not.
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
use sessiontrail_core::one_key_batch::verify_one_key;
use sessiontrail_core::{
    ChainTip, DeviceSigner, EventBody, EventKind, Response, Severity, SignedEvent, Target, batch,
};

#[path = "common/proc_stats.rs"]
mod proc_stats;
use proc_stats::{cores, cpu_secs};

const DEVICES: usize = 1000;
const PER_BATCH: usize = 100;
/// Connections posting at once: the server's default `max_inflight`.
const CONNECTIONS: usize = 64;

/// What the simulated devices send.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// A working day as the agent sees it: mostly routine clicks, inputs,
    /// route changes and submits that match no rule; 12% match a
    /// low/medium rule that only logs (one compliance tag); 2% a high rule
    /// held for a justification; 1% a critical rule that blocks (two tags).
    Routine,
    /// The worst case: every event a high-severity rule match held for a
    /// justification, with two compliance tags. It touches every index the
    /// collector keeps (rule and tag rows, the severity, action and
    /// decision indexes), so it is the slowest thing a device can send.
    Flagged,
}

fn body(dev: usize, seq: u64, mix: Mix) -> EventBody {
    let app = ["crm", "hr", "console"][dev % 3];
    // Decorrelate the kind from the batch position (batches are 100 long).
    let r = (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % 100;
    let (kind, rule, severity, tags, response): (_, _, _, &[&str], _) = match (mix, r) {
        (Mix::Flagged, _) => (
            if seq.is_multiple_of(5) {
                EventKind::Submit
            } else {
                EventKind::Click
            },
            Some("crm.customers.export_csv"),
            Some(Severity::High),
            &["gdpr:art-32", "soc2:CC6.1"],
            Response::Justify,
        ),
        (Mix::Routine, 0..=49) => (EventKind::Click, None, None, &[], Response::Log),
        (Mix::Routine, 50..=64) => (EventKind::Input, None, None, &[], Response::Log),
        (Mix::Routine, 65..=76) => (
            EventKind::RouteChange {
                from: format!("/{app}/customers/{}", seq % 1000),
            },
            None,
            None,
            &[],
            Response::Log,
        ),
        (Mix::Routine, 77..=84) => (EventKind::Submit, None, None, &[], Response::Log),
        (Mix::Routine, 85..=96) => (
            EventKind::Click,
            Some("crm.customers.view_pii"),
            Some(if r.is_multiple_of(2) {
                Severity::Low
            } else {
                Severity::Medium
            }),
            &["soc2:CC6.1"],
            Response::Log,
        ),
        (Mix::Routine, 97..=98) => (
            EventKind::Click,
            Some("crm.customers.export_csv"),
            Some(Severity::High),
            &["gdpr:art-32"],
            Response::Justify,
        ),
        (Mix::Routine, _) => (
            EventKind::Submit,
            Some("crm.customers.bulk_export"),
            Some(Severity::Critical),
            &["gdpr:art-32", "soc2:CC6.1"],
            Response::Block,
        ),
    };
    let reason = match rule {
        Some(rule) => format!("rule {rule} → {}", response.as_str()),
        None => String::new(),
    };
    EventBody {
        kind,
        user: format!("user{dev}@acme.test"),
        app: app.into(),
        tab: format!("tab-{}", seq / 40),
        session: format!("sess-{dev}-{}", seq / 400),
        url: format!("https://{app}.acme.test/{app}/customers/{}", seq * 7 % 1000),
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
            rules: rule.into_iter().map(String::from).collect(),
            severity,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            risk: if rule.is_some() { 20 } else { 0 },
            session_risk: 20,
        },
        decision: Decision {
            response,
            reason,
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

/// What the host charges for file pages, per SQLite WAL frame (a 24-byte
/// header and a 4 KiB page, written as SQLite writes them).
struct PageCosts {
    /// Appending to a file: a new page-cache page each time.
    append_us: f64,
    /// Overwriting the same frames: the pages are cached.
    overwrite_us: f64,
}

/// Measures [`PageCosts`] on a 64 MiB scratch file in `dir`. The collector's
/// CPU per event depends on it (its WAL and database grow by appending) and
/// the bare-verify baseline does not: in slow phases of this VM the kernel's
/// first touch of new page-cache pages took 28–39% of the store writer's
/// time against 0.2% in fast ones, with the CPU speed unchanged
/// (docs/collector.md, "Seventh pass"). This tells a slow host from a slow
/// collector.
fn page_costs(dir: &Path) -> PageCosts {
    use std::os::unix::fs::FileExt as _;
    const FRAMES: u64 = 16_384;
    const FRAME: u64 = 24 + 4096;
    let path = dir.join("page-costs.tmp");
    let file = std::fs::File::create(&path).unwrap();
    let page = vec![0x5a_u8; 4096];
    let write_all = || {
        let t = Instant::now();
        for i in 0..FRAMES {
            file.write_all_at(&page[..24], 32 + i * FRAME).unwrap();
            file.write_all_at(&page, 32 + i * FRAME + 24).unwrap();
        }
        t.elapsed().as_secs_f64() * 1e6 / FRAMES as f64
    };
    let append_us = write_all();
    file.sync_data().unwrap();
    let overwrite_us = write_all();
    drop(file);
    let _ = std::fs::remove_file(&path);
    PageCosts {
        append_us,
        overwrite_us,
    }
}

/// How the bare baseline verifies a batch.
#[derive(Clone, Copy)]
enum Bare {
    /// `ed25519_dalek::verify_batch`: the baseline.
    DalekBatch,
    /// `sessiontrail_core::one_key_batch::verify_one_key`: what the server
    /// runs.
    OneKey,
}

/// Bare batch verification of every batch, one thread per core.
fn bare_rate(devs: &[Device], how: Bare) -> f64 {
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
                    match how {
                        Bare::DalekBatch => {
                            let vks = vec![vk; b.len()];
                            ed25519_dalek::verify_batch(&msgs, &sigs, &vks).unwrap();
                        }
                        Bare::OneKey => assert_eq!(verify_one_key(&vk, &msgs, &sigs), Some(true)),
                    }
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

/// What one load phase measured.
struct Phase {
    took: f64,
    lat: Vec<Duration>,
    retries: u64,
    server_cpu: f64,
    self_cpu: f64,
}

struct Figures {
    rate: f64,
    ratio: f64,
    p50: f64,
    p99: f64,
}

impl Phase {
    fn figures(&self, total: usize, bare: f64) -> Figures {
        let mut lat = self.lat.clone();
        lat.sort();
        let p =
            |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
        let rate = total as f64 / self.took;
        Figures {
            rate,
            ratio: rate / bare,
            p50: p(0.50),
            p99: p(0.99),
        }
    }
}

/// Posts batches `range` of every device: CONNECTIONS workers, each owning
/// every CONNECTIONS-th device, each device's batches in order.
fn load(devs: &[Device], range: std::ops::Range<usize>, addr: SocketAddr, pid: &str) -> Phase {
    let retries = AtomicU64::new(0);
    let server_cpu0 = cpu_secs(pid);
    let self_cpu0 = cpu_secs("self");
    let start = Instant::now();
    let lat: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..CONNECTIONS)
            .map(|w| {
                let (retries, range) = (&retries, range.clone());
                s.spawn(move || {
                    let mine: Vec<&Device> = devs.iter().skip(w).step_by(CONNECTIONS).collect();
                    let mut conn = Conn::open(addr);
                    let mut lat = Vec::with_capacity(mine.len() * range.len());
                    for b in range {
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
    Phase {
        took: start.elapsed().as_secs_f64(),
        lat,
        retries: retries.load(Ordering::Relaxed),
        server_cpu: cpu_secs(pid) - server_cpu0,
        self_cpu: cpu_secs("self") - self_cpu0,
    }
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
                            // The routine batches, then the flagged ones (one
                            // chain: the second phase continues the first).
                            let records: Vec<Vec<SignedEvent>> = [Mix::Routine, Mix::Flagged]
                                .into_iter()
                                .flat_map(|mix| std::iter::repeat_n(mix, batches))
                                .map(|mix| {
                                    (0..PER_BATCH)
                                        .map(|_| {
                                            let seq = signer.tip().seq + 1;
                                            signer.sign(
                                                1_700_000_000_000 + seq as i64 * 1000,
                                                &body(*d, seq, mix),
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
    let total = DEVICES * batches * PER_BATCH; // per phase
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

    let pages = page_costs(&out_dir);
    let bare_before = bare_rate(&devs, Bare::DalekBatch);
    let routine = load(&devs, 0..batches, addr, &pid);
    let bare_mid = bare_rate(&devs, Bare::DalekBatch);
    let one_key = bare_rate(&devs, Bare::OneKey);
    let flagged = load(&devs, batches..2 * batches, addr, &pid);
    let bare_after = bare_rate(&devs, Bare::DalekBatch);
    let stored = log_size(addr) - log_before;
    assert_eq!(
        stored,
        2 * total as u64,
        "every acknowledged event is in the log"
    );
    drop(server);

    // Each phase against the bare rate measured around it (the machine is
    // noisy; both are means of the measurements before and after).
    let bare = (bare_before + bare_mid) / 2.0;
    let bare_flagged = (bare_mid + bare_after) / 2.0;
    let r = routine.figures(total, bare);
    let f = flagged.figures(total, bare_flagged);
    let per_event = |cpu: f64| cpu / total as f64 * 1e6;
    let lines = [
        serde_json::json!({"name": "ingest_events_per_s", "value": r.rate.round(), "unit": "events/s",
            "baseline": bare.round(), "ratio": r.ratio}),
        serde_json::json!({"name": "ingest_vs_bare_verify_ratio", "value": r.ratio, "unit": "ratio",
            "baseline": 0.5, "ratio": r.ratio / 0.5}),
        serde_json::json!({"name": "ack_p99_ms", "value": r.p99, "unit": "ms",
            "baseline": 250.0, "ratio": r.p99 / 250.0}),
        serde_json::json!({"name": "ack_p50_ms", "value": r.p50, "unit": "ms",
            "baseline": 250.0, "ratio": r.p50 / 250.0}),
        serde_json::json!({"name": "bare_verify_events_per_s", "value": bare.round(), "unit": "events/s",
            "baseline": bare_before.round(), "ratio": bare_mid / bare_before}),
        serde_json::json!({"name": "one_key_verify_events_per_s", "value": one_key.round(), "unit": "events/s",
            "baseline": bare_mid.round(), "ratio": one_key / bare_mid}),
        serde_json::json!({"name": "ingest_vs_one_key_verify_ratio", "value": r.rate / one_key, "unit": "ratio",
            "baseline": 0.5, "ratio": r.rate / one_key / 0.5}),
        serde_json::json!({"name": "server_cpu_us_per_event", "value": per_event(routine.server_cpu),
            "unit": "µs", "baseline": cores() as f64 / bare * 1e6,
            "ratio": per_event(routine.server_cpu) * bare / cores() as f64 / 1e6}),
        serde_json::json!({"name": "flagged_ingest_events_per_s", "value": f.rate.round(), "unit": "events/s",
            "baseline": bare_flagged.round(), "ratio": f.ratio}),
        serde_json::json!({"name": "flagged_ingest_vs_bare_verify_ratio", "value": f.ratio, "unit": "ratio",
            "baseline": 0.5, "ratio": f.ratio / 0.5}),
        serde_json::json!({"name": "flagged_ack_p99_ms", "value": f.p99, "unit": "ms",
            "baseline": 250.0, "ratio": f.p99 / 250.0}),
        serde_json::json!({"name": "flagged_server_cpu_us_per_event", "value": per_event(flagged.server_cpu),
            "unit": "µs", "baseline": cores() as f64 / bare_flagged * 1e6,
            "ratio": per_event(flagged.server_cpu) * bare_flagged / cores() as f64 / 1e6}),
        serde_json::json!({"name": "host_append_page_us", "value": pages.append_us, "unit": "µs",
            "baseline": pages.overwrite_us, "ratio": pages.append_us / pages.overwrite_us}),
    ];
    let path: &Path = &out_dir.join("collector.json");
    let mut file = std::fs::File::create(path).unwrap();
    for l in &lines {
        println!("{l}");
        writeln!(file, "{l}").unwrap();
    }
    eprintln!(
        "{DEVICES} devices, batches of {PER_BATCH}, {CONNECTIONS} connections, {} threads; \
         setup: enroll {enrolled_s:.1}s, sign {signed_s:.1}s (2 × {total} events, {:.0} MB)",
        cores(),
        bytes as f64 / 1e6,
    );
    for (name, p, fig, bare) in [
        ("routine mix", &routine, &r, bare),
        ("all flagged", &flagged, &f, bare_flagged),
    ] {
        eprintln!(
            "{name}: ingest {:.0}/s vs bare verify_batch {bare:.0}/s = {:.2}; ack p50 {:.1} ms, \
             p99 {:.1} ms; {} retries after 429; server {:.1} µs CPU/event, load generator \
             {:.1} µs CPU/event; load {:.1}s",
            fig.rate,
            fig.ratio,
            fig.p50,
            fig.p99,
            p.retries,
            per_event(p.server_cpu),
            per_event(p.self_cpu),
            p.took,
        );
    }
    eprintln!(
        "host: a WAL-sized frame appended to a file {:.1} µs, overwritten {:.1} µs (×{:.1}; \
         the collector's WAL and database grow by appending, see docs/benchmarks.md)",
        pages.append_us,
        pages.overwrite_us,
        pages.append_us / pages.overwrite_us,
    );
    eprintln!(
        "bare verify_batch: {bare_before:.0}/s before, {bare_mid:.0}/s between, {bare_after:.0}/s after; \
         verify_one_key (the server's): {one_key:.0}/s between (routine ingest = {:.2} of it)",
        routine.figures(total, one_key).ratio,
    );
    let _ = std::fs::remove_dir_all(&data);
}
