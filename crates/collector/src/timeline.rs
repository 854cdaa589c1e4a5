//! `GET /v1/timeline`: one app session, login → logout, for an auditor.
//!
//! Every entry is re-verified from the stored bytes on read: the record's
//! signature under its device key, and its link to the stored predecessor
//! (SHA-256 of the predecessor's bytes against the record's `prev_hash`).
//! Sequence numbers that were never received are shown inline as explicit
//! gap entries ("N events missing"), including the ones just before the
//! session's first and after its last event, since a device's chain spans
//! all of its tabs and apps and the missing events may belong to this
//! session. Evidence is never presented as complete when it is not.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sessiontrail_core::record::ZERO_HASH;
use sessiontrail_core::{DeviceKey, SignedEvent};
use sha2::{Digest as _, Sha256};

use crate::auth::Caller;
use crate::devices::Query;
use crate::error::ApiError;
use crate::search::{EventView, Param, READERS, SearchParams, parse_query};
use crate::state::AppState;
use crate::store::search::{Hole, TimelineData, TimelineRow};

pub const DEFAULT_LIMIT: usize = 2000;
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineParams {
    pub user: Option<String>,
    pub app: Option<String>,
    pub session: Option<String>,
    pub device: Option<String>,
    pub limit: Option<String>,
}

/// What re-verification on read found for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// `verified`, `failed` (signature, or header not matching the stored
    /// row) or `unreadable` (the stored bytes do not parse).
    pub signature: &'static str,
    /// `genesis`, `linked`, `after_gap` (predecessor never received) or
    /// `broken` (predecessor stored but its hash differs).
    pub chain: &'static str,
}

impl Verified {
    pub fn ok(&self) -> bool {
        self.signature == "verified" && self.chain != "broken"
    }
}

/// Re-verifies a stored record and its link from the stored bytes.
pub fn reverify(row: &TimelineRow) -> Verified {
    let e = &row.event;
    let Ok(ev) = SignedEvent::from_bytes(e.record.clone()) else {
        return Verified {
            signature: "unreadable",
            chain: "broken",
        };
    };
    let header_ok = ev.device_key() == e.device_key && ev.seq() == e.seq;
    let signature = if header_ok && ev.signature_valid() {
        "verified"
    } else {
        "failed"
    };
    let chain = if ev.seq() == 1 {
        if ev.prev_hash() == ZERO_HASH {
            "genesis"
        } else {
            "broken"
        }
    } else {
        match &row.pred_record {
            Some(p) if <[u8; 32]>::from(Sha256::digest(p)) == ev.prev_hash() => "linked",
            Some(_) => "broken",
            None => "after_gap",
        }
    };
    Verified { signature, chain }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    Event {
        #[serde(flatten)]
        event: Box<EventView>,
        verified: Verified,
    },
    Gap {
        device_key: DeviceKey,
        first_seq: u64,
        last_seq: u64,
        missing: u64,
        /// `before` the session's first event of this device, `inside` its
        /// range, or `after` its last.
        position: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub events: usize,
    /// Events whose signature or link failed re-verification.
    pub failed: usize,
    /// Sequence numbers missing in and around the session.
    pub missing: u64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    pub login: bool,
    pub logout: bool,
    /// The agent ended the session (a `terminate` response).
    pub terminated: bool,
    /// Every event verified, nothing missing, not truncated.
    pub complete_and_verified: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub user: Option<String>,
    pub app: Option<String>,
    pub session: String,
    pub devices: Vec<DeviceKey>,
    pub truncated: bool,
    pub summary: Summary,
    pub entries: Vec<Entry>,
}

/// Orders events (per device by seq; devices merged by time) and puts each
/// hole after the last event of its device below it.
pub fn build(
    data: TimelineData,
    user: Option<String>,
    app: Option<String>,
    session: String,
) -> Timeline {
    let mut rows = data.rows;
    let mut devices: Vec<DeviceKey> = Vec::new();
    for r in &rows {
        if !devices.contains(&r.event.device_key) {
            devices.push(r.event.device_key);
        }
    }
    if devices.len() <= 1 {
        rows.sort_by_key(|r| r.event.seq);
    } else {
        rows.sort_by_key(|r| (r.event.time_ms, r.event.device_key, r.event.seq));
    }
    let range = |k: &DeviceKey| {
        let seqs = rows
            .iter()
            .filter(|r| r.event.device_key == *k)
            .map(|r| r.event.seq);
        (seqs.clone().min().unwrap_or(0), seqs.max().unwrap_or(0))
    };
    // For each hole: insert after position `i` (None = before the device's
    // first event).
    let mut placed: Vec<(usize, bool, Hole)> = Vec::new();
    for h in &data.holes {
        let after = rows
            .iter()
            .rposition(|r| r.event.device_key == h.device_key && r.event.seq < h.first_seq);
        match after {
            Some(i) => placed.push((i, true, *h)),
            None => {
                let first = rows
                    .iter()
                    .position(|r| r.event.device_key == h.device_key)
                    .unwrap_or(0);
                placed.push((first, false, *h));
            }
        }
    }
    let mut summary = Summary {
        events: rows.len(),
        failed: 0,
        missing: 0,
        first_ms: rows.iter().map(|r| r.event.time_ms).min(),
        last_ms: rows.iter().map(|r| r.event.time_ms).max(),
        login: rows.iter().any(|r| r.event.action == "login"),
        logout: rows.iter().any(|r| r.event.action == "logout"),
        terminated: rows.iter().any(|r| r.event.action == "terminated"),
        complete_and_verified: false,
    };
    let gap_entry = |h: &Hole| {
        let (lo, hi) = range(&h.device_key);
        let missing = h.last_seq - h.first_seq + 1;
        let position = if h.last_seq < lo {
            "before"
        } else if h.first_seq > hi {
            "after"
        } else {
            "inside"
        };
        let span = if missing == 1 {
            format!("seq {}", h.first_seq)
        } else {
            format!("seq {}–{}", h.first_seq, h.last_seq)
        };
        Entry::Gap {
            device_key: h.device_key,
            first_seq: h.first_seq,
            last_seq: h.last_seq,
            missing,
            position,
            message: format!(
                "{span} of device {}… never reached the collector; {} may belong to this session",
                &h.device_key.to_hex()[..8],
                if missing == 1 { "it" } else { "they" },
            ),
        }
    };
    let mut entries = Vec::with_capacity(rows.len() + placed.len());
    for (i, r) in rows.iter().enumerate() {
        for (_, _, h) in placed.iter().filter(|(p, after, _)| *p == i && !after) {
            summary.missing += h.last_seq - h.first_seq + 1;
            entries.push(gap_entry(h));
        }
        let verified = reverify(r);
        if !verified.ok() {
            summary.failed += 1;
        }
        entries.push(Entry::Event {
            event: Box::new(EventView::of(&r.event)),
            verified,
        });
        for (_, _, h) in placed.iter().filter(|(p, after, _)| *p == i && *after) {
            summary.missing += h.last_seq - h.first_seq + 1;
            entries.push(gap_entry(h));
        }
    }
    summary.complete_and_verified = summary.failed == 0 && summary.missing == 0 && !data.truncated;
    Timeline {
        user,
        app,
        session,
        devices,
        truncated: data.truncated,
        summary,
        entries,
    }
}

/// `GET /v1/timeline?user=&app=&session=` or `?device=&session=` (auditor,
/// admin).
pub async fn get_timeline(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<TimelineParams>,
) -> Result<Json<Timeline>, ApiError> {
    caller.require(READERS)?;
    let t = |v: &Option<String>| v.clone().filter(|s| !s.is_empty()).map(Param::Text);
    let q = parse_query(
        &SearchParams {
            user: t(&p.user),
            app: t(&p.app),
            session: t(&p.session),
            device: t(&p.device),
            limit: t(&p.limit),
            ..SearchParams::default()
        },
        MAX_LIMIT,
    )?;
    let f = &q.filter;
    let named =
        f.session.is_some() && ((f.user.is_some() && f.app.is_some()) || f.device.is_some());
    if !named {
        return Err(ApiError::bad_request(
            "bad_timeline",
            "name one session: `session` with `user` and `app`, or `session` with `device`",
        ));
    }
    let (user, app, session) = (
        f.user.clone(),
        f.app.clone(),
        f.session.clone().unwrap_or_default(),
    );
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let store = state.store.clone();
    let filter = q.filter;
    let timeline = tokio::task::spawn_blocking(move || {
        store
            .timeline(&filter, limit)
            .map(|data| build(data, user, app, session))
    })
    .await
    .map_err(ApiError::internal)??;
    if timeline.entries.is_empty() {
        return Err(ApiError::NotFound {
            code: "unknown_session",
            message: "no events of this session are stored".into(),
        });
    }
    Ok(Json(timeline))
}
