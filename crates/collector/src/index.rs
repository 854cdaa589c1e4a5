//! The searchable columns decoded from a record's signed body.
//!
//! They are a convenience copy for queries: the evidence is the verbatim
//! record, and anything shown as evidence is re-read from it.

use sessiontrail_core::{EventBody, SignedEvent};

/// Index columns of one event. Strings are copied from the body as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFields {
    pub user: String,
    pub app: String,
    pub action: &'static str,
    /// JSON array of matching rule ids.
    pub rules: String,
    /// The same rule ids, one per `event_rules` row.
    pub rule_ids: Vec<String>,
    pub severity: Option<&'static str>,
    /// JSON array of compliance tags.
    pub tags: String,
    /// The same tags, one per `event_tags` row.
    pub tag_ids: Vec<String>,
    pub response: &'static str,
    pub url: String,
    /// The target's accessible name and visible text, for full-text search.
    pub target: Option<String>,
    pub session: String,
    pub tab: String,
    pub trusted: bool,
}

impl IndexFields {
    /// Takes the strings out of `b` (the ingest path parses a body only to
    /// index it, so nothing is copied twice).
    pub fn from_body(b: EventBody) -> IndexFields {
        let json_list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let rules = json_list(&b.classification.rules);
        let tags = json_list(&b.classification.tags);
        IndexFields {
            action: b.kind.action().as_str(),
            rules,
            rule_ids: b.classification.rules,
            severity: b.classification.severity.map(|s| s.as_str()),
            tags,
            tag_ids: b.classification.tags,
            response: b.decision.response.as_str(),
            target: b.target.map(|t| {
                if t.text.is_empty() || t.text == t.name {
                    t.name
                } else if t.name.is_empty() {
                    t.text
                } else {
                    format!("{}\n{}", t.name, t.text)
                }
            }),
            user: b.user,
            app: b.app,
            url: b.url,
            session: b.session,
            tab: b.tab,
            trusted: b.trusted,
        }
    }

    /// `None` when the body is not a known `EventBody` (for example from a
    /// newer agent); such a record is still stored, unindexed.
    pub fn of(ev: &SignedEvent) -> Option<IndexFields> {
        ev.body().ok().map(IndexFields::from_body)
    }
}
