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
//! The body is an `admin_action` event with `app` = `sessiontrail-collector`
//! and `url` = `sessiontrail-admin:<action>`.

use serde::Serialize;
use sessiontrail_core::{Decision, EventBody, EventKind};

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
        let mut body = EventBody::lifecycle(
            EventKind::AdminAction {
                action: self.action.into(),
                subject: self.subject.clone(),
                // serde_json keeps object keys sorted (no `preserve_order`),
                // so this is canonical for a given action.
                details: self.details.to_string(),
            },
            &self.actor,
            COLLECTOR_APP,
        );
        body.url = format!("sessiontrail-admin:{}", self.action);
        body.decision = Decision {
            reason: format!("{} {} by {}", self.action, self.subject, self.actor),
            ..Decision::default()
        };
        body
    }
}
