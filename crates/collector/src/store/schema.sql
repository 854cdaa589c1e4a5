-- sessiontrail collector schema, version 1 (PRAGMA user_version).
-- Times are ms since the Unix epoch. Keys and hashes are raw 32-byte BLOBs.

-- Enrolled device keys. The collector's own key is a device too (kind
-- 'collector'): it signs the admin-audit records into the same evidence log.
CREATE TABLE IF NOT EXISTS devices (
    id              INTEGER PRIMARY KEY,
    key             BLOB NOT NULL UNIQUE CHECK (length(key) = 32),
    kind            TEXT NOT NULL DEFAULT 'agent' CHECK (kind IN ('agent', 'collector')),
    user            TEXT NOT NULL,
    device_name     TEXT NOT NULL,
    enrolled_ms     INTEGER NOT NULL,
    revoked_ms      INTEGER,
    enroll_token_id TEXT,
    claims          TEXT NOT NULL DEFAULT '{}',
    -- Highest stored seq and its record hash: the chain tip as stored.
    high_water      INTEGER NOT NULL DEFAULT 0,
    tip_hash        BLOB
);

-- Bearer credentials. Only the SHA-256 of the secret part is kept.
CREATE TABLE IF NOT EXISTS tokens (
    id          TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),
    role        TEXT NOT NULL CHECK (role IN ('device', 'auditor', 'admin', 'enroll')),
    created_ms  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    expires_ms  INTEGER,
    max_uses    INTEGER,
    uses        INTEGER NOT NULL DEFAULT 0,
    group_name  TEXT,
    device_id   INTEGER REFERENCES devices(id),
    revoked_ms  INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_device ON tokens(device_id) WHERE device_id IS NOT NULL;

-- Every stored record, verbatim, in evidence-log order: the rowid is the
-- record's leaf index in the Merkle log (0-based, dense, append-only).
CREATE TABLE IF NOT EXISTS events (
    leaf_index  INTEGER PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES devices(id),
    seq         INTEGER NOT NULL,
    hash        BLOB NOT NULL,
    prev_hash   BLOB NOT NULL,
    time_ms     INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    record      BLOB NOT NULL,
    -- Index columns decoded from the signed body; NULL when the body did not
    -- parse as a known EventBody (the record is still evidence and kept).
    body_ok     INTEGER NOT NULL,
    user        TEXT,
    app         TEXT,
    action      TEXT,
    rules       TEXT,   -- JSON array of rule ids
    severity    TEXT,
    tags        TEXT,   -- JSON array of compliance tags
    response    TEXT,
    url         TEXT,
    target      TEXT,
    session     TEXT,
    tab         TEXT,
    trusted     INTEGER,
    UNIQUE (device_id, seq)
);
CREATE INDEX IF NOT EXISTS events_time ON events(time_ms);
CREATE INDEX IF NOT EXISTS events_user_time ON events(user, time_ms);
CREATE INDEX IF NOT EXISTS events_severity ON events(severity, time_ms) WHERE severity IS NOT NULL;

-- Sequence ranges a device never delivered. `filled` counts late records
-- that arrived inside the range; the gap is closed when it is full.
CREATE TABLE IF NOT EXISTS gaps (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES devices(id),
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    detected_ms INTEGER NOT NULL,
    filled      INTEGER NOT NULL DEFAULT 0,
    closed_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS gaps_open ON gaps(device_id, first_seq) WHERE closed_ms IS NULL;

-- Every admin action. `leaf_index` is the collector-signed record that
-- carries the same action into the evidence log.
CREATE TABLE IF NOT EXISTS admin_audit (
    id         INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    details    TEXT NOT NULL,
    leaf_index INTEGER NOT NULL REFERENCES events(leaf_index)
);

-- Merkle log nodes (sessiontrail-tlog's NodeStore): hashes of perfect
-- subtrees addressed by (level, index), from level 4 up (a lower node
-- covers at most 8 records and is recomputed from them; rows below level 4
-- written by older versions are ignored). Written in the same transaction
-- as the events they cover.
CREATE TABLE IF NOT EXISTS tlog_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- Signed tree heads, newest last.
CREATE TABLE IF NOT EXISTS checkpoints (
    tree_size  INTEGER PRIMARY KEY,
    root_hash  BLOB NOT NULL,
    signed_ms  INTEGER NOT NULL,
    note       TEXT NOT NULL
);

-- Admin-signed compiled rule packs (the STRP blob, verbatim) per policy
-- group. Versions only grow within a group; the pack in force is the
-- highest. `leaf_index` is the collector-signed `rulepack.publish` record.
CREATE TABLE IF NOT EXISTS rulepacks (
    id           INTEGER PRIMARY KEY,
    group_name   TEXT NOT NULL,
    pack_id      TEXT NOT NULL,
    version      INTEGER NOT NULL,
    checksum     BLOB NOT NULL CHECK (length(checksum) = 32),
    sha256       BLOB NOT NULL CHECK (length(sha256) = 32),
    signer       BLOB NOT NULL CHECK (length(signer) = 32),
    blob         BLOB NOT NULL,
    published_ms INTEGER NOT NULL,
    published_by TEXT NOT NULL,
    leaf_index   INTEGER NOT NULL REFERENCES events(leaf_index),
    UNIQUE (group_name, version)
);

-- Search (crates/collector/src/store/search.rs). Events are append-only
-- (never updated or deleted). The writer fills these tables in the same
-- transaction that stores the events (store/sqlite.rs: `SearchRows`, rule
-- and tag rows per job from values decoded before the writer, and
-- `index_full_text`, the FTS5 rows of a whole group commit in one
-- statement before COMMIT), so an acknowledged event is searchable.
--
-- Free text over the URL and the target's name/text. External content: the
-- text stays in `events`; this table holds only the full-text index. No
-- prefix indexes (each added index entries per token): a prefix query
-- `"word"*` walks the term range of the main index instead. No per-row
-- column sizes (`columnsize=0`): they only serve bm25 ranking, which search
-- does not use.
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
    url, target,
    content = 'events', content_rowid = 'leaf_index',
    tokenize = 'unicode61 remove_diacritics 2', columnsize = 0
);
-- Rule ids and compliance tags, one row per (value, event), so the rule and
-- tag filters are index lookups instead of JSON scans.
CREATE TABLE IF NOT EXISTS event_rules (
    rule       TEXT NOT NULL,
    leaf_index INTEGER NOT NULL,
    PRIMARY KEY (rule, leaf_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_tags (
    tag        TEXT NOT NULL,
    leaf_index INTEGER NOT NULL,
    PRIMARY KEY (tag, leaf_index)
) WITHOUT ROWID;
-- A store from before this layout indexed through a trigger; the writer
-- does it now, so the trigger must not index twice.
DROP TRIGGER IF EXISTS events_search_ai;
-- Action and decision filters. Partial: the high-volume values (plain
-- interaction kinds; the `log` decision, ~90% of events) are not indexed. A
-- filter on one of them walks `events_time` newest first and meets matches
-- at once; a filter on any other value names the same predicate (search.rs,
-- `ACTION_INDEXED` / `RESPONSE_INDEXED`) so the planner can use these.
-- `<>` terms, not `NOT IN (…)`: SQLite evaluates an IN list of more than two
-- values through a temporary B-tree, built and freed at every INSERT (≈ 5%
-- of the writer's time); stores created with the IN form are rebuilt on open
-- (sqlite.rs, `migrate`).
CREATE INDEX IF NOT EXISTS events_action_time ON events(action, time_ms)
    WHERE action <> 'click' AND action <> 'input' AND action <> 'response_resolved' AND action <> 'route_change';
CREATE INDEX IF NOT EXISTS events_response_time ON events(response, time_ms)
    WHERE response <> 'log';
-- Session timelines and the session list of a user in an app.
CREATE INDEX IF NOT EXISTS events_session ON events(user, app, session, time_ms);
