//! Search for auditors: `GET /v1/events`, `GET /v1/sessions` and
//! `GET /v1/facets`.
//!
//! Query parameters are validated into a [`store::search::EventFilter`]
//! (unknown parameters, bad values and oversized limits are 400 with a
//! precise `code`). Free text goes to SQLite FTS5 only through
//! [`fts_query`], which quotes every user term as an FTS5 string, so no FTS5
//! operator (`NEAR`, `OR`, `*`, column filters, parentheses) can be
//! injected. Pagination is keyset: results are ordered by device time, then
//! leaf index, both descending, and `next_cursor` names the last row.
//!
//! [`store::search::EventFilter`]: crate::store::search::EventFilter

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sessiontrail_core::SignedEvent;
use sessiontrail_core::{ActionKind, DeviceKey, EventBody, EventKind, Response, Severity};

use crate::auth::Caller;
use crate::devices::Query;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Role;
use crate::store::search::{Cursor, EventFilter, EventRow, SessionFilter, SessionSummary};

/// Who may search, read timelines and export.
pub const READERS: &[Role] = &[Role::Auditor, Role::Admin];
/// Default and largest page of `GET /v1/events`.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;
/// Longest accepted filter value and text query, in bytes.
const MAX_VALUE_LEN: usize = 256;
/// Most words in a text query.
const MAX_TERMS: usize = 12;

/// A query parameter as it arrives: always a string in a query string; a
/// JSON body (evidence export) may also give numbers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Param {
    Text(String),
    Int(i64),
}

impl Param {
    fn text(&self) -> String {
        match self {
            Param::Text(s) => s.clone(),
            Param::Int(i) => i.to_string(),
        }
    }
}

/// The query parameters of a search (also the `query` of an evidence
/// export). Unknown parameters are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Param>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Param>,
}

/// A validated query: the filter for the store plus its canonical form
/// (what is echoed to clients and written into evidence bundles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedQuery {
    pub filter: EventFilter,
    pub canonical: serde_json::Map<String, serde_json::Value>,
    pub limit: Option<usize>,
    pub cursor: Option<Cursor>,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

/// A non-empty, bounded value without control characters; `None` when
/// absent or empty (an empty form field means "any").
fn value(name: &str, p: &Option<Param>) -> Result<Option<String>, ApiError> {
    let Some(p) = p else { return Ok(None) };
    let v = p.text();
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(bad(
            "bad_filter",
            format!("`{name}` is longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(bad(
            "bad_filter",
            format!("`{name}` contains a control character"),
        ));
    }
    Ok(Some(v))
}

fn one_of<T: Copy>(
    name: &str,
    code: &'static str,
    v: Option<String>,
    all: &[T],
    as_str: impl Fn(T) -> &'static str,
) -> Result<Option<T>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    all.iter()
        .copied()
        .find(|x| as_str(*x) == v)
        .map(Some)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|x| as_str(*x)).collect();
            bad(
                code,
                format!("`{name}` must be one of: {}", names.join(", ")),
            )
        })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch, or an ISO 8601 / RFC 3339 UTC time:
/// `2026-11-03`, `2026-11-03T14:05`, `2026-11-03T14:05:09Z`,
/// `2026-11-03T14:05:09.250+01:00`.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    let mut rest = &s[10..];
    if rest.is_empty() {
        return Some(ms);
    }
    if !(rest.starts_with('T') || rest.starts_with('t') || rest.starts_with(' ')) {
        return None;
    }
    rest = &rest[1..];
    let rb = rest.as_bytes();
    if rb.len() < 5 || rb[2] != b':' {
        return None;
    }
    let (h, mi) = (
        rest[0..2].parse::<i64>().ok()?,
        rest[3..5].parse::<i64>().ok()?,
    );
    if h > 23 || mi > 59 {
        return None;
    }
    ms += (h * 60 + mi) * 60_000;
    rest = &rest[5..];
    if let Some(r) = rest.strip_prefix(':') {
        let sec = r.get(0..2)?.parse::<i64>().ok()?;
        if sec > 60 {
            return None;
        }
        ms += sec * 1000;
        rest = &r[2..];
        if let Some(r) = rest.strip_prefix('.') {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let frac = &r[..digits.min(3)];
            let scale = 10i64.pow(3 - frac.len() as u32);
            ms += frac.parse::<i64>().ok()? * scale;
            rest = &r[digits..];
        }
    }
    match rest {
        "" | "Z" | "z" => Some(ms),
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let (oh, om) = (tz[1..3].parse::<i64>().ok()?, tz[4..6].parse::<i64>().ok()?);
            if &tz[3..4] != ":" || oh > 23 || om > 59 {
                return None;
            }
            let off = (oh * 60 + om) * 60_000;
            Some(if tz.starts_with('+') {
                ms - off
            } else {
                ms + off
            })
        }
        _ => None,
    }
}

/// The FTS5 query for free text: each whitespace-separated word becomes a
/// quoted FTS5 string (embedded quotes doubled) with a prefix star, and the
/// words are ANDed. Quoting makes every operator character literal: the
/// tokenizer then keeps only letters and digits. Words without a letter or
/// digit are dropped; `None` when nothing searchable is left.
pub fn fts_query(text: &str) -> Result<Option<String>, ApiError> {
    if text.len() > MAX_VALUE_LEN {
        return Err(bad(
            "bad_text_query",
            format!("`q` is longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .collect();
    if words.len() > MAX_TERMS {
        return Err(bad(
            "bad_text_query",
            format!("`q` has more than {MAX_TERMS} words"),
        ));
    }
    if words.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        words
            .iter()
            .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" AND "),
    ))
}

fn parse_cursor(s: &str) -> Option<Cursor> {
    let (t, l) = s.split_once('.')?;
    let canonical = |x: &str| !x.is_empty() && (x == "0" || !x.starts_with('0'));
    let t_ok = canonical(t.strip_prefix('-').unwrap_or(t));
    (t_ok && canonical(l)).then_some(())?;
    Some(Cursor {
        time_ms: t.parse().ok()?,
        leaf_index: l.parse().ok()?,
    })
}

/// The opaque-to-clients cursor string of a row.
pub fn cursor_of(row: &EventRow) -> String {
    format!("{}.{}", row.time_ms, row.leaf_index)
}

/// Validates search parameters. `max_limit` bounds `limit`.
pub fn parse_query(p: &SearchParams, max_limit: usize) -> Result<ParsedQuery, ApiError> {
    let mut canonical = serde_json::Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            canonical.insert(k.into(), serde_json::Value::String(v.clone()));
        }
    };
    let user = value("user", &p.user)?;
    let app = value("app", &p.app)?;
    let rule = value("rule", &p.rule)?;
    let tag = value("tag", &p.tag)?;
    let session = value("session", &p.session)?;
    let action_s = value("action", &p.action)?;
    let severity_s = value("severity", &p.severity)?;
    let decision_s = value("decision", &p.decision)?;
    let q = value("q", &p.q)?;
    let device_s = value("device", &p.device)?;
    for (k, v) in [
        ("user", &user),
        ("app", &app),
        ("action", &action_s),
        ("rule", &rule),
        ("severity", &severity_s),
        ("tag", &tag),
        ("decision", &decision_s),
        ("q", &q),
        ("device", &device_s),
        ("session", &session),
    ] {
        put(k, v);
    }
    let action = one_of(
        "action",
        "bad_action",
        action_s,
        &ActionKind::ALL,
        ActionKind::as_str,
    )?;
    let min_severity = one_of(
        "severity",
        "bad_severity",
        severity_s,
        &Severity::ALL,
        Severity::as_str,
    )?;
    let decision = one_of(
        "decision",
        "bad_decision",
        decision_s,
        &Response::ALL,
        Response::as_str,
    )?;
    let time = |name: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
        v.map(|s| {
            parse_time(&s).ok_or_else(|| {
                bad(
                    "bad_time",
                    format!(
                        "`{name}` must be milliseconds since the epoch or an ISO 8601 time such as 2026-11-03T14:05:00Z"
                    ),
                )
            })
        })
        .transpose()
    };
    let from_ms = time("from", value("from", &p.from)?)?;
    let to_ms = time("to", value("to", &p.to)?)?;
    if let (Some(a), Some(b)) = (from_ms, to_ms)
        && a >= b
    {
        return Err(bad("bad_time_range", "`from` must be before `to`"));
    }
    if let Some(t) = from_ms {
        canonical.insert("from".into(), t.into());
    }
    if let Some(t) = to_ms {
        canonical.insert("to".into(), t.into());
    }
    let fts = match &q {
        Some(q) => Some(fts_query(q)?.ok_or_else(|| {
            bad(
                "bad_text_query",
                "`q` has no searchable words (letters or digits)",
            )
        })?),
        None => None,
    };
    let device = device_s
        .map(|d| {
            DeviceKey::from_hex(&d)
                .map_err(|_| bad("bad_device_key", "`device` must be a 64 hex digit key"))
        })
        .transpose()?;
    let limit = match value("limit", &p.limit)? {
        None => None,
        Some(l) => {
            let n: usize = l
                .parse()
                .map_err(|_| bad("bad_limit", "`limit` must be a positive integer"))?;
            if n == 0 || n > max_limit {
                return Err(bad(
                    "bad_limit",
                    format!("`limit` must be between 1 and {max_limit}"),
                ));
            }
            Some(n)
        }
    };
    let cursor = value("cursor", &p.cursor)?
        .map(|c| {
            parse_cursor(&c).ok_or_else(|| {
                bad(
                    "bad_cursor",
                    "`cursor` must be a `next_cursor` value from a previous page",
                )
            })
        })
        .transpose()?;
    Ok(ParsedQuery {
        filter: EventFilter {
            user,
            app,
            action,
            rule,
            min_severity,
            tag,
            decision,
            from_ms,
            to_ms,
            fts,
            device,
            session,
            below_leaf: None,
        },
        canonical,
        limit,
        cursor,
    })
}

/// The target as shown: the element and its accessible name or text.
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub tag: String,
    pub role: String,
    pub name: String,
    pub text: String,
    pub summary: String,
}

/// A human sentence for what an event records.
pub fn describe(body: &EventBody) -> String {
    let what = body
        .target
        .as_ref()
        .map(|t| {
            let label = if t.name.is_empty() { &t.text } else { &t.name };
            if label.is_empty() {
                format!(" {}", t.tag)
            } else {
                format!(
                    " {} “{}”",
                    if t.role.is_empty() { &t.tag } else { &t.role },
                    label
                )
            }
        })
        .unwrap_or_default();
    // Navigation reads best as the path; the full URL is shown beside it.
    let path = body
        .url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(&body.url);
    match &body.kind {
        EventKind::PageLoad => format!("Opened {path}"),
        EventKind::RouteChange { .. } => format!("Navigated to {path}"),
        EventKind::TabClose => "Closed the tab".into(),
        EventKind::Click => format!("Clicked{what}"),
        EventKind::Submit => format!("Submitted{what}"),
        EventKind::Input => format!("Changed{what}"),
        EventKind::Copy => format!("Copied from{what}"),
        EventKind::Cut => format!("Cut from{what}"),
        EventKind::Paste => format!("Pasted into{what}"),
        EventKind::Download {
            filename, bytes, ..
        } => match bytes {
            Some(b) => format!("Downloaded {filename} ({b} bytes)"),
            None => format!("Downloaded {filename}"),
        },
        EventKind::Upload { files } => {
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            format!("Uploaded {}", names.join(", "))
        }
        EventKind::Print => "Printed the page".into(),
        EventKind::Login => "Logged in".into(),
        EventKind::Logout => "Logged out".into(),
        EventKind::Idle { idle_ms } => format!("Idle for {} s", idle_ms / 1000),
        EventKind::Terminated { reason } => format!("Session terminated: {reason}"),
        EventKind::AgentStarted { agent_version } => format!("Agent {agent_version} started"),
        EventKind::PolicyApplied { .. } if body.app == crate::audit::COLLECTOR_APP => {
            format!("Admin action: {}", body.decision.reason)
        }
        EventKind::PolicyApplied { policy_hash } => {
            format!(
                "Policy applied ({})",
                &policy_hash[..policy_hash.len().min(12)]
            )
        }
        EventKind::AdminAction {
            action, subject, ..
        } => {
            let short = if subject.len() > 20 {
                &subject[..subject.floor_char_boundary(16)]
            } else {
                subject
            };
            let more = if short.len() < subject.len() {
                "…"
            } else {
                ""
            };
            format!("Admin action {action} on {short}{more}")
        }
        EventKind::RulePackApplied {
            pack_id,
            pack_version,
            ..
        } => format!("Rule pack {pack_id} v{pack_version} applied"),
        EventKind::Gap {
            dropped, reason, ..
        } => format!("The agent dropped {dropped} event(s): {reason}"),
        EventKind::ResponseResolved {
            response,
            outcome,
            justification,
        } => {
            use sessiontrail_core::Response as R;
            use sessiontrail_core::event::Outcome as O;
            let what = match response {
                R::Log => "Logged action",
                R::Warn => "Warning",
                R::Justify => "Justification",
                R::StepUp => "Step-up authentication",
                R::Block => "Block",
                R::Terminate => "Termination",
            };
            let end = match outcome {
                O::Allowed => "the action went ahead",
                O::Refused => "the action was refused",
                O::Blocked => "the action was stopped",
            };
            match justification {
                Some(j) => format!("{what}: {end}, reason “{j}”"),
                None => format!("{what}: {end}"),
            }
        }
    }
}

/// How an event sits in its device's chain, from stored facts.
pub fn chain_state(seq: u64, prev_hash: &[u8; 32], pred_hash: Option<&[u8; 32]>) -> &'static str {
    if seq == 1 {
        if *prev_hash == sessiontrail_core::record::ZERO_HASH {
            "genesis"
        } else {
            "broken"
        }
    } else {
        match pred_hash {
            Some(p) if p == prev_hash => "linked",
            Some(_) => "broken",
            None => "after_gap",
        }
    }
}

/// One event as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub leaf_index: u64,
    pub device_key: DeviceKey,
    pub device_kind: String,
    pub seq: u64,
    pub time_ms: i64,
    pub received_ms: i64,
    pub user: String,
    pub app: String,
    pub session: String,
    pub tab: String,
    pub action: String,
    pub description: String,
    pub url: String,
    pub target: Option<TargetView>,
    pub rules: Vec<String>,
    pub severity: Option<String>,
    pub tags: Vec<String>,
    pub response: String,
    pub reason: String,
    pub trusted: bool,
    pub verification: serde_json::Value,
}

impl EventView {
    /// The view of a stored row; the description, target and reason come
    /// from the signed body itself.
    pub fn of(row: &EventRow) -> EventView {
        let body = SignedEvent::from_bytes(row.record.clone())
            .ok()
            .and_then(|e| e.body().ok());
        let target = body.as_ref().and_then(|b| b.target.as_ref()).map(|t| {
            let label = if t.name.is_empty() { &t.text } else { &t.name };
            TargetView {
                tag: t.tag.clone(),
                role: t.role.clone(),
                name: t.name.clone(),
                text: t.text.clone(),
                summary: if label.is_empty() {
                    t.tag.clone()
                } else {
                    format!("{} “{}”", t.tag, label)
                },
            }
        });
        EventView {
            leaf_index: row.leaf_index,
            device_key: row.device_key,
            device_kind: row.device_kind.clone(),
            seq: row.seq,
            time_ms: row.time_ms,
            received_ms: row.received_ms,
            user: row.user.clone(),
            app: row.app.clone(),
            session: row.session.clone(),
            tab: row.tab.clone(),
            action: row.action.clone(),
            description: body.as_ref().map(describe).unwrap_or_default(),
            url: row.url.clone(),
            target,
            rules: row.rules.clone(),
            severity: row.severity.clone(),
            tags: row.tags.clone(),
            response: row.response.clone(),
            reason: body.map(|b| b.decision.reason).unwrap_or_default(),
            trusted: row.trusted,
            verification: serde_json::json!({
                "signature": "verified_at_ingest",
                "chain": chain_state(row.seq, &row.prev_hash, row.pred_hash.as_ref()),
            }),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SearchResponse {
    pub events: Vec<EventView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// The query as understood (times in ms).
    pub query: serde_json::Map<String, serde_json::Value>,
}

/// `GET /v1/events` (auditor, admin).
pub async fn get_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<SearchParams>,
) -> Result<Json<SearchResponse>, ApiError> {
    caller.require(READERS)?;
    let q = parse_query(&p, MAX_LIMIT)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let store = state.store.clone();
    let filter = q.filter.clone();
    let cursor = q.cursor;
    let mut rows =
        tokio::task::spawn_blocking(move || store.search_events(&filter, cursor, limit + 1))
            .await
            .map_err(ApiError::internal)??;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = more.then(|| rows.last().map(cursor_of)).flatten();
    Ok(Json(SearchResponse {
        events: rows.iter().map(EventView::of).collect(),
        next_cursor,
        query: q.canonical,
    }))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionParams {
    pub user: Option<String>,
    pub app: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SessionsResponse {
    pub sessions: Vec<SessionSummary>,
}

/// `GET /v1/sessions?user=&app=&from=&to=&limit=` (auditor, admin): app
/// sessions, most recently active first.
pub async fn get_sessions(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<SessionParams>,
) -> Result<Json<SessionsResponse>, ApiError> {
    caller.require(READERS)?;
    let t = |v: Option<String>| v.filter(|s| !s.is_empty()).map(Param::Text);
    let q = parse_query(
        &SearchParams {
            user: t(p.user),
            app: t(p.app),
            from: t(p.from),
            to: t(p.to),
            limit: t(p.limit),
            ..SearchParams::default()
        },
        MAX_LIMIT,
    )?;
    let filter = SessionFilter {
        user: q.filter.user,
        app: q.filter.app,
        from_ms: q.filter.from_ms,
        to_ms: q.filter.to_ms,
    };
    let limit = q.limit.unwrap_or(100);
    let store = state.store.clone();
    let sessions = tokio::task::spawn_blocking(move || store.sessions(&filter, limit))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(SessionsResponse { sessions }))
}

#[derive(Debug, Serialize)]
pub struct FacetsResponse {
    #[serde(flatten)]
    pub facets: crate::store::search::Facets,
    pub actions: Vec<&'static str>,
    pub severities: Vec<&'static str>,
    pub decisions: Vec<&'static str>,
}

/// `GET /v1/facets` (auditor, admin): values for the search form.
pub async fn get_facets(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<FacetsResponse>, ApiError> {
    caller.require(READERS)?;
    let store = state.store.clone();
    let facets = tokio::task::spawn_blocking(move || store.facets(500))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(FacetsResponse {
        facets,
        actions: ActionKind::ALL.iter().map(|a| a.as_str()).collect(),
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        decisions: Response::ALL.iter().map(|r| r.as_str()).collect(),
    }))
}

/// The auditor endpoints (search, sessions, timeline), merged into
/// [`crate::app`].
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/v1/events", get(get_events))
        .route("/v1/sessions", get(get_sessions))
        .route("/v1/facets", get(get_facets))
        .route("/v1/timeline", get(crate::timeline::get_timeline))
        .route(
            "/v1/evidence",
            axum::routing::post(crate::evidence::bundle::post_evidence),
        )
        .merge(crate::ui::routes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_terms_are_quoted_so_operators_are_literal() {
        assert_eq!(fts_query("export").unwrap().unwrap(), "\"export\"*");
        assert_eq!(
            fts_query("a\"b NEAR(x").unwrap().unwrap(),
            "\"a\"\"b\"* AND \"NEAR(x\"*"
        );
        assert_eq!(fts_query("* \" ( ) :").unwrap(), None);
        assert!(fts_query(&"w ".repeat(13)).is_err());
    }

    #[test]
    fn times_parse_as_utc() {
        assert_eq!(parse_time("0"), Some(0));
        assert_eq!(parse_time("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_time("2026-11-03T14:05:09Z"), Some(1_793_714_709_000));
        assert_eq!(
            parse_time("2026-11-03T15:05:09.250+01:00"),
            Some(1_793_714_709_250)
        );
        assert_eq!(parse_time("2026-11-03T14:05"), Some(1_793_714_700_000));
        for bad in [
            "",
            "2026-13-01",
            "2026-11-03T25:00",
            "yesterday",
            "2026-11-03T14:05Zjunk",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn cursors_are_strict() {
        assert_eq!(
            parse_cursor("17.4"),
            Some(Cursor {
                time_ms: 17,
                leaf_index: 4
            })
        );
        assert!(parse_cursor("-5.0").is_some());
        for bad in ["", "1", "01.2", "1.02", "a.b", "1.2.3", "1.-2"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
