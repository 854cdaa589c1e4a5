//! Admin actions as evidence.
//!
//! The collector is itself an enrolled device (kind `collector`) with its own
//! ed25519 key in `DATA_DIR/collector.key`. Every admin action (token
//! creation, enrollment, revocation, …) is stored in `admin_audit` *and*
//! signed with the core's [`sessiontrail_core::DeviceSigner`] as an ordinary
//! record on the collector's own chain, in the same transaction. So there is
//! one evidence format: an offline verifier checks admin actions exactly like
//! device events.
//!
//! The core has no dedicated event kind for admin actions yet, so the body
//! uses `policy_applied` (an admin action changes the collector's policy)
//! with `policy_hash` = hex SHA-256 of the canonical action JSON, `app` =
//! `sessiontrail-collector`, `url` = `sessiontrail-admin:<action>`, and the
//! action, subject and details as clear fields.

use std::collections::BTreeMap;

use serde::Serialize;
use sessiontrail_core::event::FieldValue;
use sessiontrail_core::{Decision, EventBody, EventKind};
use sha2::{Digest, Sha256};

/// The `app` of every collector-signed record.
pub const COLLECTOR_APP: &str = "sessiontrail-collector";

/// One admin action, as audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminAction {
    /// Dotted name: `token.create`, `device.enroll`, `device.revoke`, …
    pub action: &'static str,
    /// `token:<id>`, `enroll-token:<id>` or `cli`.
    pub actor: String,
    /// What the action is about (a device key, a token id, …).
    pub subject: String,
    /// Action-specific facts. Never secrets or secret hashes.
    pub details: serde_json::Value,
}

impl AdminAction {
    /// The signed body describing this action.
    pub fn body(&self) -> EventBody {
        // serde_json keeps object keys sorted (no `preserve_order`), so this
        // is canonical for a given action.
        let canonical = serde_json::to_string(self).unwrap_or_default();
        let mut fields = BTreeMap::new();
        fields.insert("action".into(), FieldValue::Clear(self.action.into()));
        fields.insert("subject".into(), FieldValue::Clear(self.subject.clone()));
        fields.insert(
            "details".into(),
            FieldValue::Clear(self.details.to_string()),
        );
        let mut body = EventBody::lifecycle(
            EventKind::PolicyApplied {
                policy_hash: hex::encode(Sha256::digest(canonical.as_bytes())),
            },
            &self.actor,
            COLLECTOR_APP,
        );
        body.url = format!("sessiontrail-admin:{}", self.action);
        body.fields = fields;
        body.decision = Decision {
            reason: format!("{} {} by {}", self.action, self.subject, self.actor),
            ..Decision::default()
        };
        body
    }
}
