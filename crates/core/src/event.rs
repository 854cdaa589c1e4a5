//! The event model: what the extension observes ([`Observation`], before
//! classification and masking) and what it signs ([`EventBody`], after).
//!
//! An observation may hold raw field values; an event body never does. The
//! only way from one to the other is [`crate::pipeline`], which classifies on
//! the raw values and then masks, so nothing private reaches the signed bytes
//! by accident.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How serious a matched rule is. Ordered: `Info < Low < … < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What the agent does about an action. Ordered by strength, so the decision
/// for several matching rules is simply the maximum.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Record only.
    #[default]
    Log,
    /// Tell the user, let the action go on.
    Warn,
    /// The user types a business reason before the action goes on.
    Justify,
    /// Re-authenticate with the organisation's IdP before the action goes on.
    StepUp,
    /// Refuse the action.
    Block,
    /// Refuse the action and end the app session.
    Terminate,
}

impl Response {
    pub const ALL: [Response; 6] = [
        Response::Log,
        Response::Warn,
        Response::Justify,
        Response::StepUp,
        Response::Block,
        Response::Terminate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Response::Log => "log",
            Response::Warn => "warn",
            Response::Justify => "justify",
            Response::StepUp => "step_up",
            Response::Block => "block",
            Response::Terminate => "terminate",
        }
    }

    /// Whether the content script must hold the action until the service
    /// worker has decided (everything but `log`).
    pub fn holds_action(self) -> bool {
        self != Response::Log
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of action a rule can match. Every [`EventKind`] maps to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    PageLoad,
    RouteChange,
    TabClose,
    Click,
    Submit,
    Input,
    Copy,
    Cut,
    Paste,
    Download,
    Upload,
    Print,
    Login,
    Logout,
    Idle,
    Terminated,
    AgentStarted,
    PolicyApplied,
    RulePackApplied,
    Gap,
    ResponseResolved,
    AdminAction,
}

impl ActionKind {
    pub const ALL: [ActionKind; 22] = [
        ActionKind::PageLoad,
        ActionKind::RouteChange,
        ActionKind::TabClose,
        ActionKind::Click,
        ActionKind::Submit,
        ActionKind::Input,
        ActionKind::Copy,
        ActionKind::Cut,
        ActionKind::Paste,
        ActionKind::Download,
        ActionKind::Upload,
        ActionKind::Print,
        ActionKind::Login,
        ActionKind::Logout,
        ActionKind::Idle,
        ActionKind::Terminated,
        ActionKind::AgentStarted,
        ActionKind::PolicyApplied,
        ActionKind::RulePackApplied,
        ActionKind::Gap,
        ActionKind::ResponseResolved,
        ActionKind::AdminAction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::PageLoad => "page_load",
            ActionKind::RouteChange => "route_change",
            ActionKind::TabClose => "tab_close",
            ActionKind::Click => "click",
            ActionKind::Submit => "submit",
            ActionKind::Input => "input",
            ActionKind::Copy => "copy",
            ActionKind::Cut => "cut",
            ActionKind::Paste => "paste",
            ActionKind::Download => "download",
            ActionKind::Upload => "upload",
            ActionKind::Print => "print",
            ActionKind::Login => "login",
            ActionKind::Logout => "logout",
            ActionKind::Idle => "idle",
            ActionKind::Terminated => "terminated",
            ActionKind::AgentStarted => "agent_started",
            ActionKind::PolicyApplied => "policy_applied",
            ActionKind::RulePackApplied => "rule_pack_applied",
            ActionKind::Gap => "gap",
            ActionKind::ResponseResolved => "response_resolved",
            ActionKind::AdminAction => "admin_action",
        }
    }

    /// Parses the snake_case name used in rule packs and in the wire format.
    pub fn parse(s: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Actions a user performs in the page: the ones a rule can hold.
    pub fn is_user_action(self) -> bool {
        matches!(
            self,
            ActionKind::Click
                | ActionKind::Submit
                | ActionKind::Input
                | ActionKind::Copy
                | ActionKind::Cut
                | ActionKind::Paste
                | ActionKind::Download
                | ActionKind::Upload
                | ActionKind::Print
        )
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metadata of a file the user uploaded or dropped. Never the content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMeta {
    pub name: String,
    pub mime: String,
    pub bytes: u64,
}

/// One observed thing. Serialised with an internal `type` tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventKind {
    // Navigation.
    /// A full document load.
    PageLoad,
    /// An SPA route change (`pushState`, `replaceState`, `popstate`, hash).
    RouteChange {
        from: String,
    },
    /// The tab was closed.
    TabClose,

    // User actions.
    Click,
    Submit,
    /// A form field's value changed (the value itself goes to `fields`).
    Input,
    Copy,
    Cut,
    Paste,
    Download {
        filename: String,
        mime: String,
        bytes: Option<u64>,
    },
    Upload {
        files: Vec<FileMeta>,
    },
    Print,

    // Session lifecycle.
    Login,
    Logout,
    Idle {
        idle_ms: u64,
    },
    /// The agent ended the app session (a `terminate` response).
    Terminated {
        reason: String,
    },

    // Agent lifecycle.
    AgentStarted {
        agent_version: String,
    },
    PolicyApplied {
        /// Hex SHA-256 of the canonical policy JSON.
        policy_hash: String,
    },
    RulePackApplied {
        pack_id: String,
        pack_version: u64,
        /// Hex SHA-256 of the compiled pack payload.
        checksum: String,
    },
    /// Events that could not be kept (the local queue hit its cap). They were
    /// never signed, so they carry no sequence numbers: the gap says how many
    /// and when, so evidence is never presented as complete when it is not.
    Gap {
        dropped: u64,
        first_ms: i64,
        last_ms: i64,
        reason: String,
    },

    /// How a held action ended: the user justified it, passed or failed
    /// step-up, or the agent refused it. Linked to the action's event by
    /// `decision.action_id`.
    ResponseResolved {
        response: Response,
        outcome: Outcome,
        /// The business reason typed for `justify`.
        justification: Option<String>,
    },

    /// An administrative action taken on the collector (token created,
    /// device enrolled or revoked, rule pack published), signed by the
    /// collector's own key so admin actions are evidence like any event.
    AdminAction {
        /// Dotted name: `token.create`, `device.revoke`, …
        action: String,
        /// What the action is about (a device key, a token id, a pack).
        subject: String,
        /// Action-specific facts as canonical JSON; never secrets.
        details: String,
    },
}

impl EventKind {
    pub fn action(&self) -> ActionKind {
        match self {
            EventKind::PageLoad => ActionKind::PageLoad,
            EventKind::RouteChange { .. } => ActionKind::RouteChange,
            EventKind::TabClose => ActionKind::TabClose,
            EventKind::Click => ActionKind::Click,
            EventKind::Submit => ActionKind::Submit,
            EventKind::Input => ActionKind::Input,
            EventKind::Copy => ActionKind::Copy,
            EventKind::Cut => ActionKind::Cut,
            EventKind::Paste => ActionKind::Paste,
            EventKind::Download { .. } => ActionKind::Download,
            EventKind::Upload { .. } => ActionKind::Upload,
            EventKind::Print => ActionKind::Print,
            EventKind::Login => ActionKind::Login,
            EventKind::Logout => ActionKind::Logout,
            EventKind::Idle { .. } => ActionKind::Idle,
            EventKind::Terminated { .. } => ActionKind::Terminated,
            EventKind::AgentStarted { .. } => ActionKind::AgentStarted,
            EventKind::PolicyApplied { .. } => ActionKind::PolicyApplied,
            EventKind::RulePackApplied { .. } => ActionKind::RulePackApplied,
            EventKind::Gap { .. } => ActionKind::Gap,
            EventKind::ResponseResolved { .. } => ActionKind::ResponseResolved,
            EventKind::AdminAction { .. } => ActionKind::AdminAction,
        }
    }
}

/// The end of a held action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action went on (after a warning, a justification or a step-up).
    Allowed,
    /// Step-up or justification failed or was cancelled; the action was refused.
    Refused,
    /// The agent refused the action outright (`block`, `terminate`).
    Blocked,
}

/// The element an action was performed on, as the content script saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Lower-case tag name.
    pub tag: String,
    /// ARIA role (explicit or implicit), empty when none.
    #[serde(default)]
    pub role: String,
    /// Accessible name, trimmed.
    #[serde(default)]
    pub name: String,
    /// A stable selector path from the document (or shadow) root.
    #[serde(default)]
    pub path: String,
    /// Visible text, trimmed and shortened.
    #[serde(default)]
    pub text: String,
}

/// How a field's value was observed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    #[default]
    Text,
    /// A password field. Its value is never captured, not even as a commitment.
    Password,
    Email,
    Number,
    Select,
    Checkbox,
    Hidden,
    File,
    Other,
}

/// A form field value as the content script read it, before masking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedField {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub kind: FieldKind,
}

/// The element as observed, with the rule-pack selectors it matched.
///
/// CSS selectors are evaluated by the browser (`Element.closest`), which is
/// the only faithful CSS engine; the content script reports which of the
/// app's selectors matched and the core matches rules on those.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedTarget {
    #[serde(flatten)]
    pub target: Target,
    /// Selectors from the app's selector table that the element matched.
    #[serde(default)]
    pub selectors: Vec<String>,
}

/// What the capture layer saw, before classification and masking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    pub kind: EventKind,
    /// Full URL as seen (query and fragment are trimmed per the app's policy
    /// before signing).
    pub url: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub tab: String,
    #[serde(default)]
    pub session: String,
    #[serde(default)]
    pub target: Option<ObservedTarget>,
    /// `Event.isTrusted`: false when the page synthesised the event.
    pub trusted: bool,
    #[serde(default)]
    pub fields: Vec<ObservedField>,
    /// Links a held action to its later `response_resolved` event.
    #[serde(default)]
    pub action_id: Option<String>,
}

/// A field value as signed: in clear only when a rule opted the field in,
/// otherwise a keyed commitment (see [`crate::mask`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FieldValue {
    Clear(String),
    /// `base64url(HMAC-SHA256(tenant mask key, …))`, see the format spec.
    Masked(String),
}

/// Why the event was classified the way it was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classification {
    /// Ids of every matching rule, in pack order.
    pub rules: Vec<String>,
    pub severity: Option<Severity>,
    /// Union of the matching rules' compliance tags, sorted.
    pub tags: Vec<String>,
    /// Risk points this event added.
    pub risk: u32,
    /// The session's accumulated risk after this event (after decay).
    pub session_risk: u32,
}

/// The response the agent chose, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub response: Response,
    /// Human-readable: which rule, which condition, which threshold.
    pub reason: String,
    pub action_id: Option<String>,
}

/// The signed content of an event. Serialised as JSON inside the record; see
/// `docs/formats.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    pub kind: EventKind,
    pub user: String,
    pub app: String,
    pub tab: String,
    pub session: String,
    pub url: String,
    pub target: Option<Target>,
    pub trusted: bool,
    pub fields: BTreeMap<String, FieldValue>,
    pub classification: Classification,
    pub decision: Decision,
}

impl EventBody {
    /// A body for an agent or session lifecycle event that no page produced.
    pub fn lifecycle(kind: EventKind, user: &str, app: &str) -> EventBody {
        EventBody {
            kind,
            user: user.to_owned(),
            app: app.to_owned(),
            tab: String::new(),
            session: String::new(),
            url: String::new(),
            target: None,
            trusted: true,
            fields: BTreeMap::new(),
            classification: Classification::default(),
            decision: Decision::default(),
        }
    }
}
