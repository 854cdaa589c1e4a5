//! Observation → classified, masked event body: the one path from what the
//! page showed to what gets signed.
//!
//! Order matters and is fixed here: classify on the raw values first (a
//! condition such as `amount > 10000` needs the amount), then mask
//! everything that goes into the body. Nothing outside a packed app is
//! processed at all: [`process`] returns `None` and the caller drops the
//! observation.

use crate::event::{EventBody, EventKind, FileMeta, Observation};
use crate::mask::{MaskKey, mask_fields, mask_target, mask_text, mask_url};
use crate::risk::SessionRisk;
use crate::rulepack::{Engine, Keep, Verdict, is_password_field};

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
        .cloned()
        .collect();
    let fields = mask_fields(key, &fields, |name| verdict.is_clear(name));

    let kind = match &obs.kind {
        EventKind::RouteChange { from } => EventKind::RouteChange {
            from: mask_url(key, from, keep_query, keep_fragment),
        },
        EventKind::Download {
            filename,
            mime,
            bytes,
        } => EventKind::Download {
            filename: mask_text(key, filename),
            mime: mime.clone(),
            bytes: *bytes,
        },
        EventKind::Upload { files } => EventKind::Upload {
            files: files
                .iter()
                .map(|f| FileMeta {
                    name: mask_text(key, &f.name),
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
            justification: justification.as_deref().map(|j| mask_text(key, j)),
        },
        other => other.clone(),
    };

    let body = EventBody {
        kind,
        user: obs.user.clone(),
        app: app.id.clone(),
        tab: obs.tab.clone(),
        session: obs.session.clone(),
        url: mask_url(key, &obs.url, keep_query, keep_fragment),
        target: obs.target.as_ref().map(|t| mask_target(key, &t.target)),
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
