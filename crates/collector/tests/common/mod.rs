//! Test helpers: a collector on a temporary store, credentials, enrolled
//! devices and batches built with the core's own signer and encoder.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use sessiontrail_collector::config::Limits;
use sessiontrail_collector::store::sqlite::{SqliteOptions, SqliteStore};
use sessiontrail_collector::store::{Actor, Role, Store};
use sessiontrail_collector::{AppState, app, auth, enroll};
use sessiontrail_core::event::{Classification, Decision};
use sessiontrail_core::{
    ChainTip, DeviceKey, DeviceSigner, EventBody, EventKind, Response, Severity, SignedEvent,
    Target, batch,
};
use tower::ServiceExt as _;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub state: AppState,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error.code` of an error reply (and checks the error shape).
    pub fn error_code(&self) -> String {
        let j = self.json();
        assert!(
            j["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error without message: {j}"
        );
        j["error"]["code"].as_str().unwrap().to_owned()
    }
}

/// An enrolled test device.
pub struct TestDevice {
    pub signer: DeviceSigner,
    pub credential: String,
}

impl TestDevice {
    pub fn key(&self) -> DeviceKey {
        self.signer.public_key()
    }

    pub fn sign(&mut self, n: usize) -> Vec<SignedEvent> {
        (0..n)
            .map(|_| {
                let seq = self.signer.tip().seq + 1;
                self.signer.sign(1_700_000_000_000 + seq as i64, &body(seq))
            })
            .collect()
    }
}

/// A realistic classified click.
pub fn body(seq: u64) -> EventBody {
    EventBody {
        kind: EventKind::Click,
        user: "alice@acme.test".into(),
        app: "crm".into(),
        tab: "tab-1".into(),
        session: "sess-1".into(),
        url: format!("https://crm.acme.test/accounts/{seq}"),
        target: Some(Target {
            tag: "button".into(),
            role: "button".into(),
            name: "Export all".into(),
            path: "main > button.export".into(),
            text: "Export all".into(),
        }),
        trusted: true,
        fields: Default::default(),
        classification: Classification {
            rules: vec!["crm.export".into()],
            severity: Some(Severity::High),
            tags: vec!["soc2:cc6.1".into()],
            risk: 10,
            session_risk: 10,
        },
        decision: Decision {
            response: Response::Justify,
            reason: "bulk export".into(),
            action_id: None,
        },
    }
}

pub fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

pub fn proof(seed: &[u8; 32], token: &str, key: &DeviceKey) -> String {
    hex::encode(sessiontrail_core::record::sign_message(
        seed,
        &enroll::proof_message(token, key),
    ))
}

impl Env {
    pub fn new() -> Env {
        Env::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(
                dir.path(),
                SqliteOptions {
                    queue: limits.ingest_queue,
                    ..SqliteOptions::default()
                },
            )
            .unwrap(),
        );
        let state = AppState::new(store.clone(), limits).expect("verifying threads start");
        Env { dir, store, state }
    }

    pub fn app(&self) -> Router {
        app(self.state.clone())
    }

    /// A credential of `role`, created as the CLI would.
    pub fn token(&self, role: Role) -> String {
        let g = auth::generate(role, None, None, None).unwrap();
        self.store.create_token(g.token, &Actor::cli()).unwrap();
        g.credential
    }

    pub fn enroll_token(&self, uses: u64, expires_ms: i64) -> String {
        let g = auth::generate(Role::Enroll, Some(expires_ms), Some(uses), None).unwrap();
        self.store.create_token(g.token, &Actor::cli()).unwrap();
        g.credential
    }

    pub async fn call(&self, req: Request<Body>) -> Reply {
        let resp = self.app().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn enroll_with(
        &self,
        token: &str,
        seed_byte: u8,
        user: &str,
    ) -> (Reply, DeviceSigner) {
        let s = seed(seed_byte);
        let signer = DeviceSigner::new(&s, ChainTip::GENESIS);
        let key = signer.public_key();
        let req = serde_json::json!({
            "enrollment_token": token,
            "device_key": key.to_hex(),
            "claims": {"user": user, "device_name": "laptop-1", "os": "linux"},
            "proof": proof(&s, token, &key),
        });
        let r = self
            .call(
                Request::post("/v1/enroll")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(req.to_string()))
                    .unwrap(),
            )
            .await;
        (r, signer)
    }

    /// Enrolls a fresh device with a fresh single-use token.
    pub async fn device(&self, seed_byte: u8) -> TestDevice {
        let t = self.enroll_token(1, sessiontrail_collector::now_ms() + 3_600_000);
        let (r, signer) = self.enroll_with(&t, seed_byte, "alice@acme.test").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
        TestDevice {
            signer,
            credential: r.json()["credential"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn post_batch(&self, credential: &str, bytes: Vec<u8>) -> Reply {
        self.call(batch_request(credential, bytes)).await
    }

    /// Signs `n` new events and posts them as one batch.
    pub async fn post_next(&self, dev: &mut TestDevice, n: usize) -> Reply {
        let bytes = encode(&dev.sign(n));
        self.post_batch(&dev.credential, bytes).await
    }

    /// The stored records of a device, straight from the store.
    pub fn stored(&self, key: &DeviceKey) -> Vec<(u64, Vec<u8>)> {
        self.store.records(key, 0, 1_000_000).unwrap()
    }

    /// A direct read-only look at the database, for index columns.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.store.path()).unwrap()
    }
}

/// A GET of `uri`, with a bearer credential if given.
pub fn get(uri: &str, credential: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(c) = credential {
        b = b.header(header::AUTHORIZATION, format!("Bearer {c}"));
    }
    b.body(Body::empty()).unwrap()
}

/// A JSON POST to `uri`, with a bearer credential if given.
pub fn post_json(uri: &str, credential: Option<&str>, body: serde_json::Value) -> Request<Body> {
    let mut b = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = credential {
        b = b.header(header::AUTHORIZATION, format!("Bearer {c}"));
    }
    b.body(Body::from(body.to_string())).unwrap()
}

pub fn batch_request(credential: &str, bytes: Vec<u8>) -> Request<Body> {
    Request::post("/v1/batches")
        .header(header::AUTHORIZATION, format!("Bearer {credential}"))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(bytes))
        .unwrap()
}

pub fn encode(records: &[SignedEvent]) -> Vec<u8> {
    batch::encode(records)
}

/// Starts the real `sessiontrail serve` binary on a free loopback port (with
/// `extra` arguments) and waits for its JSON "listening" log line, which it
/// returns with the child.
pub fn serve<S: AsRef<std::ffi::OsStr>>(
    data_dir: &std::path::Path,
    extra: impl IntoIterator<Item = S>,
) -> (std::process::Child, serde_json::Value) {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessiontrail"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("SESSIONTRAIL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining stderr after the line so the server never blocks on it.
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "listening"
            {
                let _ = tx.send(v);
                sent = true;
            }
        }
    });
    match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(v) => (child, v),
        Err(_) => {
            let _ = child.kill();
            panic!("server did not log its address");
        }
    }
}
