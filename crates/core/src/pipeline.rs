//! Observation → classified, masked event body: the one path from what the
//! page showed to what gets signed.
//!
//! Order matters and is fixed here: classify on the raw values first (a
//! condition such as `amount > 10000` needs the amount), then mask
//! everything that goes into the body. Nothing outside a packed app is
//! processed at all: [`process`] returns `None` and the caller drops the
//! observation.

use crate::event::{EventBody, EventKind, FieldValue, FileMeta, Observation, Target};
use crate::mask::{MaskKey, mask_fields, mask_target, mask_text, mask_url};
use crate::record::clip;
use crate::risk::SessionRisk;
use crate::rulepack::{Engine, Keep, Verdict, is_password_field};

/// Caps that keep every body well under the record's 64 KiB limit whatever
/// a hostile page puts in the DOM: the URL, each target string, each clear
/// field value, and the number of fields.
pub const MAX_URL: usize = 4096;
pub const MAX_TEXT: usize = 512;
pub const MAX_CLEAR_VALUE: usize = 1024;
pub const MAX_FIELDS: usize = 32;

/// A body ready to sign, and the verdict behind it (for the response).
#[derive(Debug)]
pub struct Processed<'e> {
    pub body: EventBody,
    pub verdict: Verdict<'e>,
}

/// Classifies `obs` against the engine and the session's risk, then masks
/// it into a body. `None` when the URL belongs to no app in the packs.
pub fn process<'e>(
    engine: &'e Engine,
    key: &MaskKey,
    risk: &mut SessionRisk,
    obs: &Observation,
    now_ms: i64,
) -> Option<Processed<'e>> {
    let verdict = engine.classify(obs, now_ms, risk);
    let app = engine.app(verdict.app?)?;
    let keep_query = app.url.query == Keep::Keep;
    let keep_fragment = app.url.fragment == Keep::Keep;

    // Fields the pack names as passwords are dropped before masking, like
    // `type=password` inputs: never captured, not even as a commitment.
    let fields: Vec<_> = obs
        .fields
        .iter()
        .filter(|f| !is_password_field(app, &f.name))
        .take(MAX_FIELDS)
        .map(|f| {
            let mut f = f.clone();
            f.name = clip(&f.name, MAX_TEXT);
            f
        })
        .collect();
    let fields = mask_fields(key, &fields, |name| verdict.is_clear(name))
        .into_iter()
        .map(|(k, v)| match v {
            FieldValue::Clear(c) => (k, FieldValue::Clear(clip(&c, MAX_CLEAR_VALUE))),
            masked => (k, masked),
        })
        .collect();
    let url = |u: &str| clip(&mask_url(key, u, keep_query, keep_fragment), MAX_URL);
    let text = |t: &str| clip(&mask_text(key, t), MAX_TEXT);

    let kind = match &obs.kind {
        EventKind::RouteChange { from } => EventKind::RouteChange { from: url(from) },
        EventKind::Download {
            filename,
            mime,
            bytes,
        } => EventKind::Download {
            filename: text(filename),
            mime: mime.clone(),
            bytes: *bytes,
        },
        EventKind::Upload { files } => EventKind::Upload {
            files: files
                .iter()
                .map(|f| FileMeta {
                    name: text(&f.name),
                    mime: f.mime.clone(),
                    bytes: f.bytes,
                })
                .collect(),
        },
        EventKind::ResponseResolved {
            response,
            outcome,
            justification,
        } => EventKind::ResponseResolved {
            response: *response,
            outcome: *outcome,
            justification: justification
                .as_deref()
                .map(|j| clip(&mask_text(key, j), MAX_CLEAR_VALUE)),
        },
        other => other.clone(),
    };

    let body = EventBody {
        kind,
        user: clip(&obs.user, MAX_TEXT),
        app: app.id.clone(),
        tab: clip(&obs.tab, 64),
        session: clip(&obs.session, 128),
        url: url(&obs.url),
        target: obs.target.as_ref().map(|t| {
            let m = mask_target(key, &t.target);
            Target {
                tag: clip(&m.tag, 64),
                role: clip(&m.role, 64),
                name: clip(&m.name, MAX_TEXT),
                path: clip(&m.path, MAX_TEXT),
                text: clip(&m.text, MAX_TEXT),
            }
        }),
        trusted: obs.trusted,
        fields,
        classification: verdict.classification(),
        decision: verdict.decision(obs.action_id.clone()),
    };
    Some(Processed { body, verdict })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FieldKind, FieldValue, ObservedField, ObservedTarget, Response, Target};
    use crate::rulepack::parse;

    fn engine() -> Engine {
        let src = include_str!("../../../rulepacks/demo/acme.toml");
        Engine::new(&[parse("acme.toml", src).unwrap()]).unwrap()
    }

    fn obs(
        kind: EventKind,
        url: &str,
        selectors: &[&str],
        fields: &[(&str, &str, FieldKind)],
    ) -> Observation {
        Observation {
            kind,
            url: url.into(),
            user: "alice@acme.test".into(),
            tab: "1".into(),
            session: "s".into(),
            target: Some(ObservedTarget {
                target: Target {
                    tag: "button".into(),
                    name: "Export CSV".into(),
                    text: "Export for bob@example.com".into(),
                    ..Default::default()
                },
                selectors: selectors.iter().map(|s| s.to_string()).collect(),
            }),
            trusted: true,
            fields: fields
                .iter()
                .map(|(n, v, k)| ObservedField {
                    name: n.to_string(),
                    value: v.to_string(),
                    kind: *k,
                })
                .collect(),
            action_id: Some("a1".into()),
        }
    }

    #[test]
    fn outside_every_app_nothing_is_processed() {
        let e = engine();
        let mut risk = SessionRisk::default();
        let o = obs(EventKind::Click, "https://mail.example.com/inbox", &[], &[]);
        assert!(process(&e, &MaskKey::from_bytes([1; 32]), &mut risk, &o, 0).is_none());
        assert_eq!(risk, SessionRisk::default());
    }

    #[test]
    fn export_is_classified_then_masked() {
        let e = engine();
        let key = MaskKey::from_bytes([1; 32]);
        let mut risk = SessionRisk::default();
        let o = obs(
            EventKind::Click,
            "https://crm.acme.test/crm/customers?q=bob@example.com#top",
            &["button[data-action=export-csv]"],
            &[("note", "call bob", FieldKind::Text)],
        );
        let p = process(&e, &key, &mut risk, &o, 1_000).unwrap();
        assert_eq!(p.body.app, "crm");
        assert_eq!(p.body.url, "https://crm.acme.test/crm/customers");
        assert_eq!(
            p.body.classification.rules,
            vec!["crm.customers.export_csv"]
        );
        assert_eq!(p.body.decision.response, Response::Justify);
        assert_eq!(p.body.decision.action_id.as_deref(), Some("a1"));
        let text = &p.body.target.as_ref().unwrap().text;
        assert!(!text.contains("bob@example.com"), "{text}");
        assert_eq!(
            p.body.fields["note"],
            FieldValue::Masked(key.commit("call bob"))
        );
    }

    #[test]
    fn a_hostile_page_cannot_blow_the_body_up() {
        let e = engine();
        let key = MaskKey::from_bytes([3; 32]);
        let mut risk = SessionRisk::default();
        let huge = "A".repeat(1 << 20);
        let mut o = obs(
            EventKind::Click,
            &format!("https://crm.acme.test/crm/{huge}"),
            &[],
            &[],
        );
        o.fields = (0..1000)
            .map(|i| ObservedField {
                name: format!("f{i}{huge}"),
                value: huge.clone(),
                kind: FieldKind::Text,
            })
            .collect();
        let t = &mut o.target.as_mut().unwrap().target;
        t.text = huge.clone();
        t.name = huge.clone();
        let p = process(&e, &key, &mut risk, &o, 1).unwrap();
        let json = serde_json::to_vec(&p.body).unwrap();
        assert!(json.len() < crate::record::MAX_BODY_LEN, "{}", json.len());
        assert_eq!(p.body.fields.len(), MAX_FIELDS);
    }

    #[test]
    fn passwords_never_reach_the_body() {
        let e = engine();
        let key = MaskKey::from_bytes([2; 32]);
        let mut risk = SessionRisk::default();
        let o = obs(
            EventKind::Submit,
            "https://crm.acme.test/login",
            &["form#login"],
            &[
                ("username", "alice", FieldKind::Text),
                // Named a password by the pack, mislabelled as text by the page.
                ("password", "hunter2", FieldKind::Text),
                ("pw2", "hunter3", FieldKind::Password),
            ],
        );
        let p = process(&e, &key, &mut risk, &o, 1_000).unwrap();
        assert_eq!(p.body.fields.keys().collect::<Vec<_>>(), vec!["username"]);
        let json = serde_json::to_string(&p.body).unwrap();
        for secret in ["hunter2", "hunter3"] {
            assert!(!json.contains(secret));
            assert!(!json.contains(&key.commit(secret)));
        }
    }
}
