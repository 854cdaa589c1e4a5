//! # sessiontrail-wasm
//!
//! The bindings the extension's service worker uses to run
//! `sessiontrail-core`. Built with
//! `wasm-pack build crates/wasm --target web --release --out-dir ../../extension/pkg`
//! (`cargo xtask package` does it).
//!
//! ## Contract
//!
//! - **Thin.** Conversions between JS values and core types, and nothing
//!   else: classification, masking, signing, chaining, batch encoding, pack
//!   verification and the guard table all happen in the core.
//! - **Errors are real `Error`s** with a stable `name` and `code`:
//!   `PackRefusedError` (a rule pack failed verification; `code` is the
//!   core's reason: `unpinned_key`, `bad_signature`, `rollback`, …),
//!   `EngineError` (verified packs that cannot be combined),
//!   `RecordError` (bytes that are not a record), `InputError` (a JS value
//!   of the wrong shape), `RandomError` (no CSPRNG; the message carries the
//!   JS error that `crypto.getRandomValues` threw). Nothing panics on bad
//!   input; there is no `unwrap`. Should a bug panic anyway, the panic
//!   message goes to the worker's console (`console.error`) before the
//!   module traps with `RuntimeError: unreachable` (`panic = "abort"`): the
//!   caller must then build a new `Agent` from the persisted tip.
//! - **u64 never crosses as a JS number.** Sequence numbers, pack versions
//!   and risk milli-points cross as decimal strings; u64 fields inside event
//!   bodies cross as `BigInt`. Times (ms since the epoch) are plain numbers:
//!   they are far below 2^53.
//! - **Secrets stay inside.** The signing seed and the mask key go in once
//!   and never come out; only the public key and signatures do.
//!
//! The service worker persists the chain tip ([`Agent::tip`]) together with
//! every record, in one transaction, so a restarted agent continues the
//! same chain.

use gloo_utils::errors::JsError;
use js_sys::{Array, BigInt, Reflect, Uint8Array};
use serde::Serialize;
use sessiontrail_core::batch;
use sessiontrail_core::event::{EventBody, EventKind, Observation};
use sessiontrail_core::mask::MaskKey;
use sessiontrail_core::pipeline;
use sessiontrail_core::record::{ChainTip, DeviceSigner, SignedEvent};
use sessiontrail_core::risk::SessionRisk;
use sessiontrail_core::rulepack::{
    AdminKey, Engine, InForce, SessionSignal, VerifiedPack, VerifyError, verify,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use zeroize::Zeroize;

use sessiontrail_core::guard;

// ------------------------------------------------------------------ errors

fn error(name: &str, code: &str, message: impl std::fmt::Display) -> JsValue {
    let e = js_sys::Error::new(&message.to_string());
    e.set_name(name);
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(code));
    e.into()
}

/// A thrown JS value as text, for the message of the error that wraps it.
fn cause(e: JsValue) -> String {
    match JsError::try_from(e) {
        Ok(e) => format!("{}: {}", e.name, e.message),
        Err(other) => other.to_string(),
    }
}

/// Installed when the module is instantiated: a panic is a bug (bad input
/// is an `Err`), and without a hook its message would be lost, since
/// `panic = "abort"` in wasm traps with a bare `unreachable`.
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        gloo_console::error!(format!("sessiontrail-wasm panicked: {info}"));
    }));
}

fn input(message: impl std::fmt::Display) -> JsValue {
    error("InputError", "bad_input", message)
}

fn pack_refused(e: &VerifyError) -> JsValue {
    let code = match e {
        VerifyError::TooLarge(_) => "too_large",
        VerifyError::Truncated { .. } => "truncated",
        VerifyError::BadMagic(_) => "bad_magic",
        VerifyError::UnsupportedVersion(_) => "unsupported_version",
        VerifyError::Reserved => "reserved",
        VerifyError::TrailingBytes(_) => "trailing_bytes",
        VerifyError::ChecksumMismatch => "checksum_mismatch",
        VerifyError::UnpinnedKey(_) => "unpinned_key",
        VerifyError::BadSignature => "bad_signature",
        VerifyError::BadPayload(_) => "bad_payload",
        VerifyError::VersionMismatch { .. } => "version_mismatch",
        VerifyError::Rollback { .. } => "rollback",
        VerifyError::SameVersionDifferentContent { .. } => "same_version_different_content",
    };
    error("PackRefusedError", code, e)
}

// ------------------------------------------------------------- conversions

fn to_js<T: Serialize + ?Sized>(v: &T) -> Result<JsValue, JsValue> {
    let s = serde_wasm_bindgen::Serializer::new()
        .serialize_maps_as_objects(true)
        .serialize_large_number_types_as_bigints(true);
    v.serialize(&s).map_err(input)
}

fn set(obj: &js_sys::Object, key: &str, value: impl Into<JsValue>) -> Result<(), JsValue> {
    Reflect::set(obj, &JsValue::from_str(key), &value.into()).map(|_| ())
}

fn get(obj: &JsValue, key: &str) -> Result<JsValue, JsValue> {
    Reflect::get(obj, &JsValue::from_str(key))
}

/// A u64 given as a decimal string or a BigInt.
fn u64_of(v: &JsValue, what: &str) -> Result<u64, JsValue> {
    let s = if let Some(s) = v.as_string() {
        s
    } else if v.is_bigint() {
        String::from(
            v.clone()
                .unchecked_into::<BigInt>()
                .to_string(10)
                .map_err(|_| input(format!("{what}: not a base-10 BigInt")))?,
        )
    } else {
        return Err(input(format!(
            "{what} must be a decimal string or a BigInt (a u64 never crosses as a number)"
        )));
    };
    s.trim()
        .parse::<u64>()
        .map_err(|_| input(format!("{what}: {s:?} is not a u64")))
}

fn hash32(v: &str, what: &str) -> Result<[u8; 32], JsValue> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.trim(), &mut out)
        .map_err(|_| input(format!("{what} must be 64 hex digits")))?;
    Ok(out)
}

fn bytes32(b: &[u8], what: &str) -> Result<[u8; 32], JsValue> {
    <[u8; 32]>::try_from(b).map_err(|_| input(format!("{what} must be 32 bytes, got {}", b.len())))
}

fn time_ms(v: f64) -> Result<i64, JsValue> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        Ok(v as i64)
    } else {
        Err(input("time is not an integer number of ms"))
    }
}

fn tip_js(tip: ChainTip) -> Result<JsValue, JsValue> {
    let o = js_sys::Object::new();
    set(&o, "seq", tip.seq.to_string())?;
    set(&o, "hash", hex::encode(tip.hash))?;
    Ok(o.into())
}

fn risk_of(v: &JsValue) -> Result<SessionRisk, JsValue> {
    if v.is_null() || v.is_undefined() {
        return Ok(SessionRisk::default());
    }
    let milli = u64_of(&get(v, "milli")?, "riskState.milli")?;
    let updated = get(v, "updatedMs")?
        .as_f64()
        .ok_or_else(|| input("riskState.updatedMs must be a number"))?;
    Ok(SessionRisk {
        milli,
        updated_ms: time_ms(updated)?,
    })
}

fn risk_js(r: &SessionRisk) -> Result<JsValue, JsValue> {
    let o = js_sys::Object::new();
    set(&o, "milli", r.milli.to_string())?;
    set(&o, "updatedMs", r.updated_ms as f64)?;
    Ok(o.into())
}

fn pack_info(v: &VerifiedPack) -> Result<JsValue, JsValue> {
    let o = js_sys::Object::new();
    set(&o, "id", v.pack.pack.id.as_str())?;
    set(&o, "version", v.pack.pack.version.to_string())?;
    set(&o, "description", v.pack.pack.description.as_str())?;
    set(&o, "checksum", hex::encode(v.checksum))?;
    set(&o, "signer", v.signer.to_hex())?;
    set(&o, "alreadyInForce", v.already_in_force)?;
    let apps = Array::new();
    for a in &v.pack.apps {
        let ao = js_sys::Object::new();
        set(&ao, "id", a.id.as_str())?;
        set(&ao, "name", a.name.as_str())?;
        apps.push(&ao);
    }
    set(&o, "apps", apps)?;
    set(&o, "rules", v.pack.rules.len() as u32)?;
    Ok(o.into())
}

fn record_js(ev: &SignedEvent) -> Result<js_sys::Object, JsValue> {
    let o = js_sys::Object::new();
    set(&o, "record", Uint8Array::from(ev.as_bytes()))?;
    set(&o, "seq", ev.seq().to_string())?;
    set(&o, "hash", hex::encode(ev.hash()))?;
    Ok(o)
}

/// 32 bytes from the global scope's `crypto.getRandomValues` (the service
/// worker's `WorkerGlobalScope`; any global with `crypto` elsewhere).
fn random32() -> Result<[u8; 32], JsValue> {
    let global = js_sys::global();
    let no_crypto = |e: JsValue| {
        error(
            "RandomError",
            "no_crypto",
            format!("no crypto.getRandomValues: {}", cause(e)),
        )
    };
    let crypto: web_sys::Crypto = match global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        Some(w) => w.crypto().map_err(no_crypto)?,
        None => get(&global, "crypto")
            .map_err(no_crypto)?
            .dyn_into()
            .map_err(no_crypto)?,
    };
    let mut buf = [0u8; 32];
    crypto
        .get_random_values_with_u8_array(&mut buf)
        .map_err(|e| {
            error(
                "RandomError",
                "no_crypto",
                format!("crypto.getRandomValues failed: {}", cause(e)),
            )
        })?;
    if buf == [0u8; 32] {
        return Err(error(
            "RandomError",
            "no_entropy",
            "crypto.getRandomValues returned zeros",
        ));
    }
    Ok(buf)
}

/// 32 random bytes for a new device seed or mask key.
#[wasm_bindgen(js_name = generateSeed)]
pub fn generate_seed() -> Result<Uint8Array, JsValue> {
    let mut b = random32()?;
    let out = Uint8Array::from(&b[..]);
    b.zeroize();
    Ok(out)
}

/// The bindings' crate version (the extension reports it in
/// `agent_started`).
#[wasm_bindgen(js_name = coreVersion)]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// The device agent: signer and chain tip, mask key, verified packs and the
/// engine built from them.
#[wasm_bindgen]
pub struct Agent {
    seed: [u8; 32],
    signer: DeviceSigner,
    mask: MaskKey,
    packs: Vec<VerifiedPack>,
    engine: Option<Engine>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed or the mask key.
        f.debug_struct("Agent")
            .field("signer", &self.signer)
            .field("packs", &self.packs.len())
            .finish()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.seed.zeroize();
    }
}

#[wasm_bindgen]
impl Agent {
    /// `seed`: the device's 32-byte ed25519 seed. `tip`: the persisted
    /// `{seq, hash}` (seq a decimal string or BigInt), or null for a new
    /// device. `maskKey`: the tenant's 32-byte mask key.
    #[wasm_bindgen(constructor)]
    pub fn new(seed: &[u8], tip: JsValue, mask_key: &[u8]) -> Result<Agent, JsValue> {
        let seed = bytes32(seed, "seed")?;
        let mask = MaskKey::from_bytes(bytes32(mask_key, "maskKey")?);
        let tip = if tip.is_null() || tip.is_undefined() {
            ChainTip::GENESIS
        } else {
            let seq = u64_of(&get(&tip, "seq")?, "tip.seq")?;
            let hash = get(&tip, "hash")?
                .as_string()
                .ok_or_else(|| input("tip.hash must be a hex string"))?;
            ChainTip {
                seq,
                hash: hash32(&hash, "tip.hash")?,
            }
        };
        Ok(Agent {
            seed,
            signer: DeviceSigner::new(&seed, tip),
            mask,
            packs: Vec::new(),
            engine: None,
        })
    }

    /// The device public key, 64 hex digits.
    #[wasm_bindgen(js_name = publicKey)]
    pub fn public_key(&self) -> String {
        self.signer.public_key().to_hex()
    }

    /// `{seq: string, hash: hex}` of the last signed record.
    pub fn tip(&self) -> Result<JsValue, JsValue> {
        tip_js(self.signer.tip())
    }

    /// The enrollment proof for `POST /v1/enroll`: 128 hex digits.
    #[wasm_bindgen(js_name = enrollProof)]
    pub fn enroll_proof(&self, enrollment_token: &str) -> String {
        let m = sessiontrail_core::keys::enrollment_proof_message(
            enrollment_token,
            &self.signer.public_key(),
        );
        hex::encode(sessiontrail_core::record::sign_message(&self.seed, &m))
    }

    /// The re-enrollment proof for `POST /v1/reenroll`: 128 hex digits.
    /// `challenge` is what `POST /v1/enroll/challenge` answered (80 hex
    /// digits, opaque here).
    #[wasm_bindgen(js_name = reenrollProof)]
    pub fn reenroll_proof(
        &self,
        enrollment_token: &str,
        challenge: &str,
    ) -> Result<String, JsValue> {
        let mut c = [0u8; sessiontrail_core::keys::REENROLL_CHALLENGE_LEN];
        hex::decode_to_slice(challenge.trim(), &mut c).map_err(|_| {
            input(format!(
                "challenge must be {} hex digits",
                2 * sessiontrail_core::keys::REENROLL_CHALLENGE_LEN
            ))
        })?;
        let m = sessiontrail_core::keys::reenrollment_proof_message(
            enrollment_token,
            &self.signer.public_key(),
            &c,
        );
        Ok(hex::encode(sessiontrail_core::record::sign_message(
            &self.seed, &m,
        )))
    }

    /// Verifies a compiled pack against the pinned admin keys (hex) and, for
    /// rollback, against the pack in force with its id: the higher of
    /// `inForceById[id]` (`{version, checksum}`, persisted by the caller so
    /// the floor survives restarts) and the loaded pack with that id. On success the pack replaces
    /// the one with its id and the engine is rebuilt; on any refusal nothing
    /// changes. Returns `{id, version, checksum, signer, alreadyInForce,
    /// description, apps, rules}`.
    #[wasm_bindgen(js_name = loadPack)]
    pub fn load_pack(
        &mut self,
        bytes: &[u8],
        pinned_admin_keys: Vec<String>,
        #[wasm_bindgen(js_name = inForceById)] in_force: JsValue,
    ) -> Result<JsValue, JsValue> {
        let pinned = pinned_admin_keys
            .iter()
            .map(|k| AdminKey::from_hex(k.trim()).map_err(input))
            .collect::<Result<Vec<_>, _>>()?;
        // First pass: which pack is this? (Fully verified, so nothing
        // unsigned is trusted even for its id.)
        let first = verify(bytes, &pinned, None).map_err(|e| pack_refused(&e))?;
        let id = first.pack.pack.id.clone();
        let loaded = self.packs.iter().position(|p| p.pack.pack.id == id);
        let mut floor = loaded.map(|i| InForce {
            version: self.packs[i].pack.pack.version,
            checksum: self.packs[i].checksum,
        });
        let given = if in_force.is_null() || in_force.is_undefined() {
            JsValue::UNDEFINED
        } else {
            get(&in_force, &id)?
        };
        if !(given.is_null() || given.is_undefined()) {
            let given = InForce {
                version: u64_of(&get(&given, "version")?, "inForce.version")?,
                checksum: hash32(
                    &get(&given, "checksum")?
                        .as_string()
                        .ok_or_else(|| input("inForce.checksum must be a hex string"))?,
                    "inForce.checksum",
                )?,
            };
            if floor.is_none_or(|f| given.version > f.version) {
                floor = Some(given);
            }
        }
        // Second pass: the core's rollback rules against the pack in force.
        let v = verify(bytes, &pinned, floor).map_err(|e| pack_refused(&e))?;
        if v.already_in_force && loaded.is_some() {
            return pack_info(&v);
        }
        let mut packs = self.packs.clone();
        match loaded {
            Some(i) => packs[i] = v.clone(),
            None => packs.push(v.clone()),
        }
        let plain: Vec<_> = packs.iter().map(|p| p.pack.clone()).collect();
        let engine = Engine::new(&plain).map_err(|e| error("EngineError", "packs_conflict", e))?;
        self.packs = packs;
        self.engine = Some(engine);
        pack_info(&v)
    }

    /// Unloads every pack (e.g. when the pinned admin keys change).
    #[wasm_bindgen(js_name = clearPacks)]
    pub fn clear_packs(&mut self) {
        self.packs.clear();
        self.engine = None;
    }

    /// Info of every loaded pack.
    pub fn packs(&self) -> Result<Array, JsValue> {
        let out = Array::new();
        for p in &self.packs {
            out.push(&pack_info(p)?);
        }
        Ok(out)
    }

    /// The app id a URL belongs to, or undefined (nothing may be captured).
    #[wasm_bindgen(js_name = appForUrl)]
    pub fn app_for_url(&self, url: &str) -> Option<String> {
        self.engine.as_ref()?.app_for_url(url).map(|a| a.id.clone())
    }

    /// `"login_submitted"`, `"login"`, `"logout"` or undefined, from the
    /// app's login/logout config (`loginPending`: a login form was submitted
    /// in this tab and no navigation happened since).
    #[wasm_bindgen(js_name = sessionSignal)]
    pub fn session_signal(
        &self,
        observation: JsValue,
        login_pending: bool,
    ) -> Result<Option<String>, JsValue> {
        let Some(engine) = &self.engine else {
            return Ok(None);
        };
        let obs: Observation = serde_wasm_bindgen::from_value(observation).map_err(input)?;
        Ok(engine
            .session_signal(&obs, login_pending)
            .map(|s| match s {
                SessionSignal::LoginSubmitted => "login_submitted",
                SessionSignal::Login => "login",
                SessionSignal::Logout => "logout",
            })
            .map(str::to_owned))
    }

    /// Classifies, masks, signs and chains one observation. Returns null
    /// when the URL belongs to no app (nothing is signed). Otherwise
    /// `{record, seq, hash, app, response, reason, rules, severity,
    /// sessionRisk, threshold, riskState}` (the signed body is inside
    /// `record`, at offset 90); persist `record`, the new tip
    /// and `riskState` together before acknowledging anything.
    pub fn process(
        &mut self,
        observation: JsValue,
        now_ms: f64,
        risk_state: JsValue,
    ) -> Result<JsValue, JsValue> {
        let Some(engine) = &self.engine else {
            return Ok(JsValue::NULL);
        };
        let obs: Observation = serde_wasm_bindgen::from_value(observation).map_err(input)?;
        let now = time_ms(now_ms)?;
        let mut risk = risk_of(&risk_state)?;
        let Some(p) = pipeline::process(engine, &self.mask, &mut risk, &obs, now) else {
            return Ok(JsValue::NULL);
        };
        let ev = self.signer.sign(now, &p.body);
        let o = record_js(&ev)?;
        set(&o, "app", p.verdict.app.unwrap_or_default())?;
        set(&o, "response", p.verdict.response.as_str())?;
        set(&o, "reason", p.verdict.reason.as_str())?;
        let rules = Array::new();
        for m in &p.verdict.matches {
            let r = js_sys::Object::new();
            set(&r, "id", m.id)?;
            set(&r, "title", m.title)?;
            set(&r, "severity", m.severity.as_str())?;
            set(&r, "response", m.response.as_str())?;
            rules.push(&r);
        }
        set(&o, "rules", rules)?;
        set(
            &o,
            "severity",
            p.verdict
                .severity
                .map_or(JsValue::NULL, |s| s.as_str().into()),
        )?;
        set(&o, "sessionRisk", p.verdict.session_risk)?;
        set(&o, "threshold", to_js(&p.verdict.threshold)?)?;
        set(&o, "riskState", risk_js(&risk)?)?;
        Ok(o.into())
    }

    /// Signs an agent or session lifecycle event that no page produced
    /// (`agent_started`, `policy_applied`, `rule_pack_applied`, `gap`, …).
    /// `kind` is the tagged event kind, e.g. `{type: "gap", dropped: 5n,
    /// first_ms, last_ms, reason}`. Returns `{record, seq, hash}`.
    #[wasm_bindgen(js_name = signLifecycle)]
    pub fn sign_lifecycle(
        &mut self,
        kind: JsValue,
        user: &str,
        app: &str,
        now_ms: f64,
    ) -> Result<JsValue, JsValue> {
        let kind: EventKind = serde_wasm_bindgen::from_value(kind).map_err(input)?;
        let ev = self
            .signer
            .sign(time_ms(now_ms)?, &EventBody::lifecycle(kind, user, app));
        Ok(record_js(&ev)?.into())
    }

    /// The guard table for the content script (see the core's `guard`
    /// module), as plain JSON-safe data: pack versions are strings.
    #[wasm_bindgen(js_name = guardTable)]
    pub fn guard_table(&self) -> Result<JsValue, JsValue> {
        let Some(engine) = &self.engine else {
            return Ok(JsValue::NULL);
        };
        let plain: Vec<_> = self.packs.iter().map(|p| p.pack.clone()).collect();
        let t = guard::guard_table(&plain, engine);
        let out = to_js(&t)?;
        let packs = Array::new();
        for (id, v) in &t.packs {
            let o = js_sys::Object::new();
            set(&o, "id", id.as_str())?;
            set(&o, "version", v.to_string())?;
            packs.push(&o);
        }
        Reflect::set(&out, &JsValue::from_str("packs"), &packs)?;
        Ok(out)
    }
}

/// Encodes records (each a `Uint8Array` holding a signed record) into a
/// batch for `POST /v1/batches`.
#[wasm_bindgen(js_name = encodeBatch)]
pub fn encode_batch(records: Vec<Uint8Array>) -> Result<Uint8Array, JsValue> {
    if records.is_empty() || records.len() > batch::MAX_BATCH_RECORDS {
        return Err(input(format!(
            "a batch holds 1..={} records, got {}",
            batch::MAX_BATCH_RECORDS,
            records.len()
        )));
    }
    let parsed = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            SignedEvent::from_bytes(r.to_vec())
                .map_err(|e| error("RecordError", "bad_record", format!("record {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Uint8Array::from(&batch::encode(&parsed)[..]))
}

/// `{seq, hash}` of a stored record (checks its structure, not its
/// signature).
#[wasm_bindgen(js_name = recordInfo)]
pub fn record_info(record: &[u8]) -> Result<JsValue, JsValue> {
    let ev = SignedEvent::from_bytes(record.to_vec())
        .map_err(|e| error("RecordError", "bad_record", e))?;
    tip_js(ChainTip::of(&ev))
}
