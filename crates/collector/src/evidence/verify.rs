//! The offline bundle verifier behind `sessiontrail evidence verify`.
//!
//! It trusts one thing: the log's verifier key, given by the caller (or,
//! with a warning, the one written in the bundle). From it, it checks the
//! manifest signature and every file digest, the checkpoint signature, the
//! enrollment record of every device key (collector-signed, in the log), and
//! for every event: its structure and signature, that its key is enrolled,
//! its link to its predecessor when the bundle holds it, and its inclusion
//! proof against the checkpoint. It keeps going after a failure so that
//! every broken event is named (`event leaf=L device=K seq=S`).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sessiontrail_core::{DeviceKey, EventKind, SignedEvent};
use sessiontrail_tlog::{Checkpoint, VerifierKey, hash_from_base64, leaf_hash, verify_inclusion};
use sha2::{Digest as _, Sha256};

use super::{
    EVIDENCE_FILE, Evidence, FORMAT, LoggedRecord, MANIFEST_FILE, MANIFEST_FORMAT, Manifest,
    SIGNATURE_FILE, VERSION, event_name, manifest_note_text,
};

/// Largest bundle file read (after decompression): a bomb is refused.
const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;
const MAX_ENTRIES: usize = 64;

/// What the verifier checked and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Checks that passed, one line each.
    pub checked: Vec<String>,
    /// Failures; any makes the bundle invalid.
    pub failures: Vec<String>,
    /// Caveats that are not failures (a self-asserted key, missing events).
    pub notes: Vec<String>,
    pub events: usize,
    pub devices: usize,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
    fn fail(&mut self, s: impl Into<String>) {
        self.failures.push(s.into());
    }
    fn pass(&mut self, s: impl Into<String>) {
        self.checked.push(s.into());
    }
}

fn read_zip(bytes: &[u8], r: &mut Report) -> Option<BTreeMap<String, Vec<u8>>> {
    let Some(entries) = super::zipfmt::read(bytes, MAX_ENTRIES) else {
        r.fail("bundle: not a ZIP archive in the bundle's canonical form (docs/evidence.md)");
        return None;
    };
    // Every byte outside the files' contents is fixed by the canonical form:
    // rebuild the container and compare. The contents are checked below
    // (manifest, signatures), so a damaged file is still examined and the
    // event it holds named.
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    if super::zipfmt::write(&refs) != bytes {
        r.fail("bundle: the ZIP container differs from its canonical form (a header, checksum or trailing byte was changed)");
    }
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    if names != super::FILES {
        r.fail(format!(
            "bundle: entries are {names:?}, expected {:?}",
            super::FILES
        ));
    }
    let mut files = BTreeMap::new();
    for (name, data) in entries {
        if data.len() as u64 > MAX_FILE_BYTES {
            r.fail(format!(
                "bundle: {name} is larger than {MAX_FILE_BYTES} bytes"
            ));
            return None;
        }
        if files.insert(name.clone(), data).is_some() {
            r.fail(format!("bundle: {name} appears twice"));
            return None;
        }
    }
    Some(files)
}

/// A parsed, signature-checked admin record (enrollment or revocation).
fn check_admin_record(
    rec: &LoggedRecord,
    action: &str,
    device_hex: &str,
    record_key: &DeviceKey,
    root: Option<(u64, [u8; 32])>,
) -> Result<(), String> {
    let bytes = STANDARD
        .decode(&rec.record)
        .map_err(|_| "its record is not base64".to_owned())?;
    let ev = SignedEvent::from_bytes(bytes.clone())
        .map_err(|e| format!("its record is malformed ({e})"))?;
    if ev.device_key() != *record_key {
        return Err("it is not signed by the collector's record key".into());
    }
    if !ev.signature_valid() {
        return Err("its signature does not verify".into());
    }
    let body = ev
        .body()
        .map_err(|e| format!("its body does not parse ({e})"))?;
    match body.kind {
        EventKind::AdminAction {
            action: a, subject, ..
        } if a == action && subject == device_hex => {}
        _ => return Err(format!("it is not a {action} record for this key")),
    }
    check_inclusion(rec, &bytes, root)
}

fn check_inclusion(
    rec: &LoggedRecord,
    bytes: &[u8],
    root: Option<(u64, [u8; 32])>,
) -> Result<(), String> {
    let Some((size, root)) = root else {
        return Err("inclusion not proven: the checkpoint does not verify".into());
    };
    let leaf: u64 = parse_u64(&rec.leaf_index).ok_or("its leaf_index is not a canonical u64")?;
    let path = rec
        .inclusion_path
        .iter()
        .map(|h| hash_from_base64(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "its inclusion path holds a malformed hash".to_owned())?;
    verify_inclusion(&leaf_hash(bytes), leaf, size, &path, &root)
        .map_err(|e| format!("inclusion proof fails against the checkpoint ({e})"))
}

fn parse_u64(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Verifies a bundle. `trusted_key` is the collector's checkpoint verifier
/// key as the auditor obtained it; `None` trusts the bundle's own (noted).
pub fn verify(bytes: &[u8], trusted_key: Option<&str>) -> Report {
    let mut r = Report::default();
    let Some(files) = read_zip(bytes, &mut r) else {
        return r;
    };
    let get = |n: &str| files.get(n);
    let Some(evidence_bytes) = get(EVIDENCE_FILE) else {
        r.fail(format!("bundle: {EVIDENCE_FILE} is missing"));
        return r;
    };
    let ev: Evidence = match serde_json::from_slice(evidence_bytes) {
        Ok(e) => e,
        Err(e) => {
            r.fail(format!("{EVIDENCE_FILE}: does not parse ({e})"));
            return r;
        }
    };
    if ev.format != FORMAT || ev.version != VERSION {
        r.fail(format!(
            "{EVIDENCE_FILE}: format {} v{} is not {FORMAT} v{VERSION}",
            ev.format, ev.version
        ));
        return r;
    }

    // 1. The trust anchor.
    let key_text = match trusted_key {
        Some(k) => {
            if k.trim() != ev.collector.verifier_key {
                r.fail(format!(
                    "collector key: the bundle names {}, not the key given ({})",
                    ev.collector.verifier_key,
                    k.trim()
                ));
            }
            k.trim().to_owned()
        }
        None => {
            r.notes.push(format!(
                "no --collector-key given: trusting the key written in the bundle ({}); this only shows the bundle is self-consistent",
                ev.collector.verifier_key
            ));
            ev.collector.verifier_key.clone()
        }
    };
    let vkey = match VerifierKey::parse(&key_text) {
        Ok(k) => k,
        Err(e) => {
            r.fail(format!(
                "collector key: {key_text:?} is not a verifier key ({e})"
            ));
            return r;
        }
    };
    if ev.collector.origin != vkey.name() {
        r.fail(format!(
            "collector key: the bundle's origin {:?} is not the key's name {:?}",
            ev.collector.origin,
            vkey.name()
        ));
    }

    // 2. Manifest and its signature.
    match (get(MANIFEST_FILE), get(SIGNATURE_FILE)) {
        (Some(m), Some(sig)) => {
            let digest: [u8; 32] = Sha256::digest(m).into();
            let expected = manifest_note_text(vkey.name(), &digest);
            match std::str::from_utf8(sig)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(|s| vkey.open(s).map_err(|e| e.to_string()))
            {
                Ok(text) if text == expected => r.pass(format!(
                    "{SIGNATURE_FILE}: signed by {} over the manifest's SHA-256",
                    vkey.name()
                )),
                Ok(_) => r.fail(format!(
                    "{SIGNATURE_FILE}: the signed digest is not the SHA-256 of {MANIFEST_FILE}"
                )),
                Err(e) => r.fail(format!("{SIGNATURE_FILE}: does not verify ({e})")),
            }
            match serde_json::from_slice::<Manifest>(m) {
                Ok(man) if man.format == MANIFEST_FORMAT && man.version == VERSION => {
                    let listed: BTreeSet<&str> =
                        man.files.iter().map(|f| f.name.as_str()).collect();
                    for f in &man.files {
                        match files.get(&f.name) {
                            Some(b) if hex::encode(Sha256::digest(b)) == f.sha256 => {
                                r.pass(format!("{}: SHA-256 matches the manifest", f.name))
                            }
                            Some(_) => {
                                r.fail(format!("{}: SHA-256 differs from the manifest", f.name))
                            }
                            None => {
                                r.fail(format!("{}: listed in the manifest but missing", f.name))
                            }
                        }
                    }
                    for n in files.keys() {
                        if n != MANIFEST_FILE && n != SIGNATURE_FILE && !listed.contains(n.as_str())
                        {
                            r.fail(format!("{n}: not listed in the manifest"));
                        }
                    }
                    if !listed.contains(EVIDENCE_FILE) {
                        r.fail(format!("{MANIFEST_FILE}: does not list {EVIDENCE_FILE}"));
                    }
                }
                Ok(_) => r.fail(format!("{MANIFEST_FILE}: unknown format or version")),
                Err(e) => r.fail(format!("{MANIFEST_FILE}: does not parse ({e})")),
            }
        }
        _ => r.fail(format!(
            "bundle: {MANIFEST_FILE} or {SIGNATURE_FILE} is missing"
        )),
    }

    // 3. The checkpoint.
    let root = match Checkpoint::verify(&ev.checkpoint, vkey.name(), &vkey) {
        Ok(cp) => {
            r.pass(format!(
                "checkpoint: signed by {}, tree size {}, root {}",
                vkey.name(),
                cp.size,
                sessiontrail_tlog::hash_to_base64(&cp.root)
            ));
            Some((cp.size, cp.root))
        }
        Err(e) => {
            r.fail(format!("checkpoint: does not verify ({e})"));
            None
        }
    };

    // 4. Devices and their enrollment.
    let record_key = match DeviceKey::from_hex(&ev.collector.record_key) {
        Ok(k) => Some(k),
        Err(_) => {
            r.fail("collector: record_key is not a 64 hex digit key");
            None
        }
    };
    let mut enrolled: BTreeMap<DeviceKey, Result<(), String>> = BTreeMap::new();
    for d in &ev.devices {
        let key = match DeviceKey::from_hex(&d.device_key) {
            Ok(k) if k.to_hex() == d.device_key => k,
            _ => {
                r.fail(format!(
                    "device {:?}: not a 64 lower-case hex digit key",
                    d.device_key
                ));
                continue;
            }
        };
        let status = match (d.kind.as_str(), &d.enrollment, record_key) {
            (_, _, None) => Err("the collector's record key is unusable".to_owned()),
            ("collector", _, Some(rk)) if key == rk => Ok(()),
            ("collector", _, Some(_)) => {
                Err("claims to be the collector but is not its key".into())
            }
            (_, None, _) => Err("has no enrollment record".into()),
            (_, Some(en), Some(rk)) => {
                check_admin_record(en, "device.enroll", &d.device_key, &rk, root)
                    .map_err(|e| format!("enrollment record: {e}"))
            }
        };
        match &status {
            Ok(()) => r.pass(format!(
                "device {}: enrolled ({} for {}), enrollment record signed by the collector and in the log",
                &d.device_key[..16],
                d.kind,
                d.user
            )),
            Err(e) => r.fail(format!("device {}: {e}", &d.device_key[..16])),
        }
        if let (Some(rv), Some(rk)) = (&d.revocation, record_key) {
            match check_admin_record(rv, "device.revoke", &d.device_key, &rk, root) {
                Ok(()) => r.notes.push(format!(
                    "device {}: revoked (revocation record verified)",
                    &d.device_key[..16]
                )),
                Err(e) => r.fail(format!(
                    "device {}: revocation record: {e}",
                    &d.device_key[..16]
                )),
            }
        }
        if enrolled.insert(key, status).is_some() {
            r.fail(format!("device {}: listed twice", &d.device_key[..16]));
        }
    }
    r.devices = ev.devices.len();

    // 5. Events.
    struct Seen {
        hash: [u8; 32],
        prev: [u8; 32],
        name: String,
    }
    let mut chains: BTreeMap<DeviceKey, BTreeMap<u64, Seen>> = BTreeMap::new();
    let mut leaves: BTreeSet<String> = BTreeSet::new();
    let mut good = 0usize;
    for e in &ev.events {
        let bytes = match STANDARD.decode(&e.record) {
            Ok(b) => b,
            Err(_) => {
                r.fail(format!(
                    "{}: record is not base64",
                    event_name(&e.leaf_index, None, None)
                ));
                continue;
            }
        };
        // Name the event from its header even when it does not parse.
        let hdr_key = bytes.get(6..38).map(hex::encode);
        let hdr_seq = bytes
            .get(38..46)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes);
        let name = event_name(&e.leaf_index, hdr_key.as_deref(), hdr_seq);
        if !leaves.insert(e.leaf_index.clone()) {
            r.fail(format!("{name}: leaf index appears twice"));
        }
        let rec = match SignedEvent::from_bytes(bytes.clone()) {
            Ok(rec) => rec,
            Err(err) => {
                r.fail(format!("{name}: malformed record ({err})"));
                continue;
            }
        };
        let mut ok = true;
        if !rec.signature_valid() {
            r.fail(format!("{name}: signature does not verify"));
            ok = false;
        }
        match enrolled.get(&rec.device_key()) {
            Some(Ok(())) => {}
            Some(Err(_)) => {
                r.fail(format!("{name}: its key's enrollment does not verify"));
                ok = false;
            }
            None => {
                r.fail(format!(
                    "{name}: its key is not among the bundle's enrolled devices"
                ));
                ok = false;
            }
        }
        if let Err(err) = check_inclusion(e, &bytes, root) {
            r.fail(format!("{name}: {err}"));
            ok = false;
        }
        let seen = Seen {
            hash: rec.hash(),
            prev: rec.prev_hash(),
            name: name.clone(),
        };
        let chain = chains.entry(rec.device_key()).or_default();
        if let Some(other) = chain.get(&rec.seq()) {
            if other.hash != seen.hash {
                r.fail(format!(
                    "{name}: a different record for the same seq is also in the bundle ({})",
                    other.name
                ));
                ok = false;
            }
        } else {
            chain.insert(rec.seq(), seen);
        }
        if ok {
            good += 1;
        }
    }
    r.events = ev.events.len();
    if good > 0 {
        r.pass(format!(
            "{good} of {} events: structure, signature, enrolled key and inclusion proof",
            ev.events.len()
        ));
    }

    // 6. Chain links and what is missing.
    let mut gap_ranges: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for g in &ev.gaps {
        if let (Some(a), Some(b)) = (parse_u64(&g.first_seq), parse_u64(&g.last_seq)) {
            gap_ranges
                .entry(g.device_key.clone())
                .or_default()
                .push((a, b));
        }
    }
    let (mut linked, mut unlinked) = (0usize, 0usize);
    for (key, chain) in &chains {
        let hex_key = key.to_hex();
        let mut absent: Vec<(u64, u64)> = Vec::new();
        let mut last: Option<u64> = None;
        for (&seq, s) in chain {
            if seq > 1 {
                match chain.get(&(seq - 1)) {
                    Some(p) if p.hash == s.prev => linked += 1,
                    Some(_) => r.fail(format!(
                        "{}: does not link to the hash of seq {}",
                        s.name,
                        seq - 1
                    )),
                    None => unlinked += 1,
                }
            } else {
                linked += 1;
            }
            if let Some(l) = last
                && seq > l + 1
            {
                absent.push((l + 1, seq - 1));
            }
            last = Some(seq);
        }
        for (a, b) in absent {
            let known = gap_ranges
                .get(&hex_key)
                .is_some_and(|v| v.iter().any(|&(x, y)| x <= b && y >= a));
            r.notes.push(format!(
                "device {}: seq {a}–{b} not in this bundle{}",
                &hex_key[..16],
                if known {
                    " — the collector recorded missing events there (gap record)"
                } else {
                    " (outside the query, or not matched by it)"
                }
            ));
        }
    }
    for g in &ev.gaps {
        r.notes.push(format!(
            "gap record: device {} seq {}–{} {}",
            &g.device_key[..g.device_key.len().min(16)],
            g.first_seq,
            g.last_seq,
            if g.closed_ms.is_some() {
                "was filled late"
            } else {
                "never received"
            }
        ));
    }
    if !ev.events.is_empty() {
        r.pass(format!(
            "chains: {linked} events link to their predecessor (or start the chain), {unlinked} have no predecessor in the bundle"
        ));
    }
    r
}

/// Prints a report the way the CLI does; returns the process exit code.
pub fn print(r: &Report, verbose: bool, out: &mut impl std::io::Write) -> std::io::Result<i32> {
    for c in &r.checked {
        writeln!(out, "ok    {c}")?;
    }
    for n in &r.notes {
        if verbose || !n.starts_with("gap record") {
            writeln!(out, "note  {n}")?;
        }
    }
    for f in &r.failures {
        writeln!(out, "FAIL  {f}")?;
    }
    if r.ok() {
        writeln!(
            out,
            "RESULT: OK — {} events from {} devices verified",
            r.events, r.devices
        )?;
        Ok(0)
    } else {
        writeln!(out, "RESULT: FAILED — {} problem(s)", r.failures.len())?;
        Ok(1)
    }
}
