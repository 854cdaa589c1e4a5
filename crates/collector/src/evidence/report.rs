//! The human-readable `report.html` of a bundle: self-contained (inline CSS,
//! no scripts), every value HTML-escaped, events grouped by compliance tag.
//! It is read from the signed records themselves, not from index columns.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sessiontrail_core::SignedEvent;

use super::Evidence;
use crate::search::describe;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `2026-11-03 14:05:09 UTC`.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

const STYLE: &str = "
:root{--ink:#1d2430;--muted:#5b6576;--line:#dfe3ea;--bg:#f7f8fa;--accent:#2b5aa8}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);background:var(--bg)}
main{max-width:1200px;margin:0 auto;padding:32px 24px 64px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:36px 0 8px}
.sub{color:var(--muted);margin:0 0 24px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin:12px 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}dt{color:var(--muted)}dd{margin:0;word-break:break-all}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid var(--line);border-radius:8px;font-size:14px}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#eef1f5;font-weight:600;white-space:nowrap}
td.mono,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.sev{display:inline-block;padding:0 8px;border-radius:10px;font-size:12.5px;font-weight:600;border:1px solid}
.sev-info{color:#3d4a5c;background:#eef1f5;border-color:#cfd6e0}
.sev-low{color:#0f5132;background:#e3f4ea;border-color:#a7d7b9}
.sev-medium{color:#664d03;background:#fff4d1;border-color:#f0d68a}
.sev-high{color:#842029;background:#fbe4e6;border-color:#f1b0b7}
.sev-critical{color:#fff;background:#9b1c2c;border-color:#9b1c2c}
.gap{color:#842029;font-weight:600}
.muted{color:var(--muted)}
code{word-break:break-all}
";

/// Renders the report of `ev` (checkpoint size `tree_size`).
pub fn render(ev: &Evidence, tree_size: u64) -> String {
    struct Row {
        time: i64,
        html: String,
        tags: Vec<String>,
    }
    let mut rows = Vec::new();
    let users: BTreeMap<String, String> = ev
        .devices
        .iter()
        .map(|d| (d.device_key.clone(), d.user.clone()))
        .collect();
    for e in &ev.events {
        let Ok(bytes) = STANDARD.decode(&e.record) else {
            continue;
        };
        let Ok(rec) = SignedEvent::from_bytes(bytes) else {
            continue;
        };
        let key = rec.device_key().to_hex();
        let Ok(b) = rec.body() else {
            rows.push(Row {
                time: rec.time_ms(),
                tags: Vec::new(),
                html: format!(
                    "<tr><td>{}</td><td colspan=6 class=muted>record of an unknown body format</td><td class=mono>{} / {} / {}</td></tr>",
                    esc(&utc(rec.time_ms())),
                    esc(&key[..16]),
                    rec.seq(),
                    esc(&e.leaf_index)
                ),
            });
            continue;
        };
        let sev = b
            .classification
            .severity
            .map(|s| format!("<span class=\"sev sev-{0}\">{0}</span>", s.as_str()))
            .unwrap_or_default();
        let mut decision = esc(b.decision.response.as_str());
        if !b.decision.reason.is_empty() {
            decision.push_str(&format!(
                "<br><span class=muted>{}</span>",
                esc(&b.decision.reason)
            ));
        }
        let who = if b.user.is_empty() {
            users.get(&key).cloned().unwrap_or_default()
        } else {
            b.user.clone()
        };
        rows.push(Row {
            time: rec.time_ms(),
            tags: b.classification.tags.clone(),
            html: format!(
                "<tr><td>{}</td><td>{}</td><td>{}<br><span class=muted>session {}</span></td><td>{}<br><span class=\"muted mono\">{}</span></td><td>{}</td><td>{}{}</td><td>{}</td><td class=mono>{}…<br>seq {} · leaf {}</td></tr>",
                esc(&utc(rec.time_ms())),
                esc(&who),
                esc(&b.app),
                esc(&b.session),
                esc(&describe(&b)),
                esc(&b.url),
                esc(&b.classification.rules.join(", ")),
                sev,
                if b.trusted { "" } else { "<br><span class=gap>synthetic (untrusted) event</span>" },
                decision,
                esc(&key[..16]),
                rec.seq(),
                esc(&e.leaf_index),
            ),
        });
    }
    rows.sort_by_key(|r| r.time);
    let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        if r.tags.is_empty() {
            groups.entry(String::new()).or_default().push(r);
        }
        for t in &r.tags {
            groups.entry(t.clone()).or_default().push(r);
        }
    }

    let mut h = String::with_capacity(4096 + rows.len() * 600);
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><title>sessiontrail evidence report</title><style>{STYLE}</style></head><body><main>"
    );
    let _ = write!(
        h,
        "<h1>Evidence report</h1><p class=sub>{} events · {} devices · created {} · log checkpoint of {} entries</p>",
        ev.events.len(),
        ev.devices.len(),
        esc(&utc(ev.created_ms)),
        tree_size
    );
    let query = if ev.query.is_empty() {
        "all events".to_owned()
    } else {
        ev.query
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k} = {s}"),
                other => format!("{k} = {other}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let _ = write!(
        h,
        "<div class=card><dl><dt>Query</dt><dd>{}</dd><dt>Collector log</dt><dd class=mono>{}</dd><dt>Verifier key</dt><dd class=mono>{}</dd></dl></div>",
        esc(&query),
        esc(&ev.collector.origin),
        esc(&ev.collector.verifier_key)
    );
    let _ = write!(
        h,
        "<div class=card><strong>How to check this report.</strong> This page is a reading aid. The evidence is the signed records in <code>evidence.json</code>: run <code>sessiontrail evidence verify</code> on the bundle with the collector's verifier key obtained independently. It checks every signature, enrollment, chain link and inclusion proof, and the signature over this file's digest in <code>manifest.json</code>.</div>"
    );
    if !ev.gaps.is_empty() {
        let _ = write!(
            h,
            "<h2>Missing events</h2><p class=sub>Sequence numbers the collector never received from these devices. The evidence around them is incomplete.</p><table><thead><tr><th>Device</th><th>User</th><th>Missing seq</th><th>Detected</th><th>State</th></tr></thead><tbody>"
        );
        for g in &ev.gaps {
            let state = match g.closed_ms {
                Some(t) => format!("filled late ({})", utc(t)),
                None if g.filled != "0" => format!("{} arrived late, rest still missing", g.filled),
                None => "still missing".into(),
            };
            let _ = write!(
                h,
                "<tr><td class=mono>{}…</td><td>{}</td><td class=gap>{} – {}</td><td>{}</td><td>{}</td></tr>",
                esc(&g.device_key[..g.device_key.len().min(16)]),
                esc(users.get(&g.device_key).map(String::as_str).unwrap_or("")),
                esc(&g.first_seq),
                esc(&g.last_seq),
                esc(&utc(g.detected_ms)),
                esc(&state)
            );
        }
        h.push_str("</tbody></table>");
    }
    let _ = write!(h, "<h2>Events by compliance tag</h2>");
    if rows.is_empty() {
        h.push_str("<p class=sub>No event matched the query.</p>");
    }
    for (tag, rs) in &groups {
        let title = if tag.is_empty() {
            "No compliance tag".to_owned()
        } else {
            tag.clone()
        };
        let _ = write!(
            h,
            "<h2>{} <span class=muted>({} event{})</span></h2><table><thead><tr><th>Time</th><th>User</th><th>App</th><th>Action</th><th>Rules</th><th>Severity</th><th>Decision</th><th>Device · seq · leaf</th></tr></thead><tbody>",
            esc(&title),
            rs.len(),
            if rs.len() == 1 { "" } else { "s" }
        );
        for r in rs {
            h.push_str(&r.html);
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("<h2>Devices</h2><table><thead><tr><th>Device key</th><th>User</th><th>Device</th><th>Enrolled</th><th>Revoked</th></tr></thead><tbody>");
    for d in &ev.devices {
        let _ = write!(
            h,
            "<tr><td class=mono>{}</td><td>{}</td><td>{} <span class=muted>({})</span></td><td>{}</td><td>{}</td></tr>",
            esc(&d.device_key),
            esc(&d.user),
            esc(&d.device_name),
            esc(&d.kind),
            esc(&utc(d.enrolled_ms)),
            d.revoked_ms
                .map(|t| esc(&utc(t)))
                .unwrap_or_else(|| "—".into())
        );
    }
    h.push_str("</tbody></table></main></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_civil_time() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_793_714_709_000), "2026-11-03 14:05:09 UTC");
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
