// sessiontrail service worker.
//
// Shape (after uBlock Origin Lite): every listener is registered
// synchronously at top level and awaits ONE init promise; there is one
// message contract (a tagged union on `t`, see docs/extension.md) and one
// dispatcher; nothing that matters lives only in memory. The chain tip,
// the device seed, each app session's risk, the tabs' login state, pending
// held actions and the event queue are in IndexedDB, and every event is
// committed (record + tip + session) in one transaction before anything is
// acknowledged. The worker may be evicted at any moment; a fresh one
// rebuilds everything from IndexedDB.

import init, { Agent, coreVersion, encodeBatch, generateSeed } from './pkg/sessiontrail_wasm.js';
import * as collector from './lib/collector.js';
import * as config from './lib/config.js';
import * as db from './lib/db.js';
import { checkSubject, randomToken, stepUp } from './lib/stepup.js';

const SCRIPT_ID = 'sessiontrail-capture';
const CONTENT_JS = 'extension/content.js';
const FLUSH_ALARM = 'flush';
const PACKS_ALARM = 'packs';
const MAX_BACKOFF_MS = 15 * 60 * 1000;
const HOLDING = new Set(['warn', 'justify', 'step_up', 'block', 'terminate']);

// In-memory copies of what is persisted (rebuilt by boot()).
const S = {
  agent: null,
  cfg: null,
  guard: null,
  sessions: {}, // appId → {id, risk, sessionRisk, user, startedMs, lastMs}
  tabs: {}, // tabId → {app, url, loginPending}
  pending: {}, // actionId → {response, app, url, tab, user, createdMs, threshold}
  inForce: {}, // packId → {version, checksum}: the rollback floor
  packs: {}, // packId → {bytes, version, checksum, origin, etag}
  gap: null, // {dropped, first_ms, last_ms}
  upload: { failures: 0, nextMs: 0, lastOkMs: 0, lastError: '', rejected: 0, accepted: 0, duplicates: 0 },
  enrollment: null,
  // Where enrollment stands (kv/enrollState, shown in the status): see enrollNow().
  enroll: { state: 'none' },
  queueCount: 0,
  packErrors: [],
  lastResponse: null,
  bootedMs: 0,
};

// ------------------------------------------------------------- init + serial

let ready = null;
function whenReady() {
  if (!ready) {
    ready = boot().catch((e) => {
      ready = null;
      console.error('sessiontrail: start failed', e);
      throw e;
    });
  }
  return ready;
}

// Everything that signs or changes persisted state runs one at a time, in
// order: the chain has one tip.
let tail = Promise.resolve();
function serial(fn) {
  const p = tail.then(fn);
  tail = p.catch(() => {});
  return p;
}

const hexToBytes = (h) => Uint8Array.from(h.match(/../g), (x) => Number.parseInt(x, 16));
const now = () => Date.now();

async function boot() {
  const t0 = performance.now();
  await init({ module_or_path: chrome.runtime.getURL('extension/pkg/sessiontrail_wasm_bg.wasm') });
  S.bootMs = { wasm: Math.round(performance.now() - t0) };
  await db.open();
  const kv = await db.getMany(['device', 'maskKey', 'enrollment', 'enrollState', 'packs', 'inForce', 'sessions', 'tabs', 'pending', 'gap', 'upload']);
  S.sessions = kv.sessions ?? {};
  S.tabs = kv.tabs ?? {};
  S.pending = kv.pending ?? {};
  S.gap = kv.gap ?? null;
  S.upload = { ...S.upload, ...(kv.upload ?? {}) };
  S.enrollment = kv.enrollment ?? null;
  S.enroll = kv.enrollState ?? { state: 'none' };
  S.inForce = kv.inForce ?? {};
  S.packs = kv.packs ?? {};
  S.queueCount = await db.queueCount();
  S.bootedMs = now();
  S.bootMs.state = Math.round(performance.now() - t0);
  await buildAgent();
  S.bootMs.total = Math.round(performance.now() - t0);
  void background();
}

/** (Re)builds the agent from persisted state and the configuration. */
async function buildAgent() {
  const t0 = performance.now();
  S.cfg = await config.load();
  if (S.bootMs) S.bootMs.policy = Math.round(performance.now() - t0);
  S.cfg.fresh?.then((changed) => changed && reconfigure()).catch(() => {});
  let device = await db.get('device');
  if (!device) {
    device = { seed: generateSeed(), createdMs: now() };
    await db.put({ device });
  }
  let maskKey = S.cfg.maskKey ? hexToBytes(S.cfg.maskKey) : await db.get('maskKey');
  if (!maskKey) {
    // No tenant key from policy: a device-local random key. Values stay
    // committed and unreadable; they are just not comparable across devices.
    maskKey = generateSeed();
    await db.put({ maskKey });
  }
  const tip = (await db.get('tip')) ?? null;
  S.agent?.free?.();
  S.agent = new Agent(device.seed, tip, maskKey);
  S.packErrors = [];
  for (const p of Object.values(S.packs)) loadPackInto(p.bytes, p.origin ?? 'stored');
  await publishGuard();
  await ensureAlarms();
  await writeStatus();
}

async function background() {
  try {
    await serial(applyBootstrapPacks);
    await serial(policyApplied);
    await enrollNow();
    await refreshPacks();
    await flush();
  } catch (e) {
    console.warn('sessiontrail: background work failed', e);
  }
}

async function ensureAlarms() {
  const a = await chrome.alarms.get(FLUSH_ALARM);
  if (!a) await chrome.alarms.create(FLUSH_ALARM, { periodInMinutes: 0.5, delayInMinutes: 0.5 });
  const p = await chrome.alarms.get(PACKS_ALARM);
  if (!p || p.periodInMinutes !== S.cfg.packRefreshMinutes) {
    await chrome.alarms.create(PACKS_ALARM, { periodInMinutes: S.cfg.packRefreshMinutes, delayInMinutes: S.cfg.packRefreshMinutes });
  }
}

// ---------------------------------------------------------------- rule packs

/** Loads verified bytes into the agent; refusals are kept for the status. */
function loadPackInto(bytes, origin) {
  try {
    return S.agent.loadPack(bytes, S.cfg.adminPublicKeys, S.inForce);
  } catch (e) {
    S.packErrors.unshift({ origin, name: e.name, code: e.code ?? '', message: e.message, atMs: now() });
    S.packErrors.length = Math.min(S.packErrors.length, 10);
    return null;
  }
}

/** Applies a pack (from the collector or policy). Runs inside serial(). */
async function applyPackBytes(bytes, origin, etag = '') {
  const info = loadPackInto(bytes, origin);
  if (!info) {
    await writeStatus();
    return null;
  }
  const prev = S.inForce[info.id];
  const isNew = !prev || prev.version !== info.version || prev.checksum !== info.checksum;
  S.inForce[info.id] = { version: info.version, checksum: info.checksum };
  S.packs[info.id] = { bytes, version: info.version, checksum: info.checksum, origin, etag };
  const entries = { packs: S.packs, inForce: S.inForce };
  if (isNew) {
    const r = S.agent.signLifecycle(
      { type: 'rule_pack_applied', pack_id: info.id, pack_version: BigInt(info.version), checksum: info.checksum },
      agentUser(),
      '',
      now(),
    );
    await commitSigned(r, entries);
  } else {
    await db.put(entries);
  }
  await publishGuard();
  await writeStatus();
  return info;
}

async function applyBootstrapPacks() {
  for (const b64 of S.cfg.bootstrapRulePacks) {
    let bytes;
    try {
      bytes = Uint8Array.from(atob(b64.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
    } catch {
      S.packErrors.unshift({ origin: 'policy', name: 'InputError', code: 'bad_base64', message: 'bootstrapRulePacks entry is not base64', atMs: now() });
      continue;
    }
    await applyPackBytes(bytes, 'policy');
  }
}

async function refreshPacks() {
  if (!S.cfg.collectorUrl || !S.enrollment) return;
  const etag = Object.values(S.packs).find((p) => p.origin === 'collector')?.etag ?? '';
  let r;
  try {
    r = await collector.fetchPack(S.cfg.collectorUrl, S.enrollment.credential, S.cfg.rulePackGroup, etag);
  } catch (e) {
    S.packErrors.unshift({ origin: 'collector', name: e.name, code: e.code ?? '', message: e.message, atMs: now() });
    S.packErrors.length = Math.min(S.packErrors.length, 10);
    await writeStatus();
    return;
  }
  if (r.status === 200) await serial(() => applyPackBytes(r.bytes, 'collector', r.etag));
}

/** Computes the guard table, publishes it to content scripts, registers them. */
async function publishGuard() {
  const table = S.agent.guardTable();
  S.guard = table;
  await chrome.storage.local.set({ guard: table ?? { version: 1, packs: [], apps: [] } });
  const patterns = [...new Set((table?.apps ?? []).flatMap((a) => a.match_patterns))].sort();
  const existing = await chrome.scripting.getRegisteredContentScripts({ ids: [SCRIPT_ID] });
  if (patterns.length === 0) {
    if (existing.length) await chrome.scripting.unregisterContentScripts({ ids: [SCRIPT_ID] });
    return;
  }
  const def = {
    id: SCRIPT_ID,
    matches: patterns,
    js: [CONTENT_JS],
    runAt: 'document_start',
    allFrames: true,
    matchOriginAsFallback: true,
    persistAcrossSessions: true,
  };
  const same = existing.length && JSON.stringify([...(existing[0].matches ?? [])].sort()) === JSON.stringify(patterns);
  if (same) return;
  if (existing.length) await chrome.scripting.updateContentScripts([def]);
  else await chrome.scripting.registerContentScripts([def]);
  // Tabs already open on newly covered hosts get the script now (it is
  // idempotent).
  const tabs = await chrome.tabs.query({ url: patterns }).catch(() => []);
  for (const t of tabs) {
    chrome.scripting.executeScript({ target: { tabId: t.id, allFrames: true }, files: [CONTENT_JS] }).catch(() => {});
  }
}

// ------------------------------------------------------------------ signing

function agentUser() {
  return S.cfg.identity.source === 'policy' ? S.cfg.identity.user : (S.enrollment?.user ?? '');
}

/** Persists one signed record with its tip (and kv entries) atomically. */
async function commitSigned(r, entries = {}) {
  try {
    await db.commit([{ seq: r.seq, record: r.record, t: now() }], { ...entries, tip: { seq: r.seq, hash: r.hash } });
  } catch (e) {
    // The agent's tip moved past what is durable: rebuild from the store
    // so the chain continues from the last persisted record.
    await buildAgent();
    throw e;
  }
  S.queueCount += 1;
  scheduleFlush();
}

async function policyApplied() {
  const text = config.canonical(S.cfg);
  const hash = [...new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)))]
    .map((b) => b.toString(16).padStart(2, '0'))
    .join('');
  if ((await db.get('policyHash')) === hash) return;
  const r = S.agent.signLifecycle({ type: 'policy_applied', policy_hash: hash }, agentUser(), '', now());
  await commitSigned(r, { policyHash: hash });
}

async function agentStarted() {
  const r = S.agent.signLifecycle(
    { type: 'agent_started', agent_version: `${chrome.runtime.getManifest().version} (core ${coreVersion()})` },
    agentUser(),
    '',
    now(),
  );
  await commitSigned(r);
}

/**
 * Admits one routine event under the queue cap. At the cap the event is
 * counted into a pending gap (never dropped silently); once there is room
 * again, a signed `gap` event records how many and when.
 */
async function admit(force) {
  if (S.queueCount < S.cfg.queueCapEvents) {
    if (S.gap) await emitGap();
    return true;
  }
  if (force) return true;
  const t = now();
  S.gap = S.gap ? { ...S.gap, dropped: S.gap.dropped + 1, last_ms: t } : { dropped: 1, first_ms: t, last_ms: t };
  await db.put({ gap: S.gap });
  return false;
}

async function emitGap() {
  const g = S.gap;
  const r = S.agent.signLifecycle(
    { type: 'gap', dropped: BigInt(g.dropped), first_ms: g.first_ms, last_ms: g.last_ms, reason: `local queue reached its cap of ${S.cfg.queueCapEvents} events` },
    agentUser(),
    '',
    now(),
  );
  await commitSigned(r, { gap: undefined });
  S.gap = null;
}

function sessionFor(appId, t) {
  let s = S.sessions[appId];
  if (!s) {
    s = { id: randomToken(12), risk: null, sessionRisk: 0, user: '', startedMs: t, lastMs: t };
    S.sessions[appId] = s;
  }
  return s;
}

/**
 * Classifies, masks, signs and persists one observation (inside serial()).
 * Returns the agent's result, or null when outside every app or over the
 * cap.
 */
async function recordObs(obs, { force = false, tabId = null } = {}) {
  const appId = S.agent.appForUrl(obs.url);
  if (!appId) return null;
  if (!(await admit(force))) return null;
  const t = now();
  const tab = tabId != null ? (S.tabs[tabId] ??= { app: appId, url: obs.url, loginPending: false }) : null;
  const signal = S.agent.sessionSignal(obs, !!tab?.loginPending);
  const kind = obs.kind.type;
  const navigation = kind === 'page_load' || kind === 'route_change';
  const extra = [];
  if (signal === 'login') {
    // A new app session starts: close the old one, record the login in the
    // new one, then the navigation that completed it.
    delete S.sessions[appId];
    const s = sessionFor(appId, t);
    s.user = obs.user || '';
    extra.push({ ...obs, kind: { type: 'login' }, target: null, fields: [], action_id: null });
  }
  const sess = sessionFor(appId, t);
  if (S.cfg.identity.source === 'policy') sess.user = S.cfg.identity.user;
  else if (obs.user) sess.user = obs.user;
  const results = [];
  for (const o of [...extra, obs]) {
    o.user = sess.user;
    o.session = sess.id;
    const r = S.agent.process(o, t, sess.risk);
    if (!r) continue;
    sess.risk = r.riskState;
    sess.sessionRisk = r.sessionRisk;
    sess.lastMs = t;
    results.push(r);
    await commitSigned(r, { sessions: S.sessions, tabs: S.tabs });
  }
  if (tab) {
    tab.app = appId;
    if (navigation) tab.url = obs.url;
    if (signal === 'login_submitted') tab.loginPending = true;
    else if (navigation) tab.loginPending = false;
  }
  if (signal === 'logout') {
    const r = S.agent.process({ ...obs, kind: { type: 'logout' }, target: null, fields: [], action_id: null }, t, sess.risk);
    delete S.sessions[appId];
    if (r) await commitSigned(r, { sessions: S.sessions, tabs: S.tabs });
  } else if (tab) {
    await db.put({ tabs: S.tabs, sessions: S.sessions });
  }
  return results[results.length - 1] ?? null;
}

function observation(o, sender) {
  // Exactly the core's Observation fields (it refuses unknown ones).
  const target = o.target
    ? {
        tag: String(o.target.tag ?? ''),
        role: String(o.target.role ?? ''),
        name: String(o.target.name ?? ''),
        path: String(o.target.path ?? ''),
        text: String(o.target.text ?? ''),
        selectors: Array.isArray(o.target.selectors) ? o.target.selectors.map(String) : [],
      }
    : null;
  return {
    kind: o.kind,
    url: String(o.url ?? ''),
    user: S.cfg.identity.source === 'policy' ? S.cfg.identity.user : String(o.user ?? ''),
    tab: sender?.tab ? String(sender.tab.id) : String(o.tab ?? ''),
    session: '',
    target,
    trusted: o.trusted === true,
    fields: Array.isArray(o.fields)
      ? o.fields.map((f) => ({ name: String(f.name), value: String(f.value ?? ''), kind: f.kind ?? 'text' }))
      : [],
    action_id: o.action_id ? String(o.action_id) : null,
  };
}

/** A content script may only speak for its own frame's origin. */
function sameOrigin(url, sender) {
  if (!sender?.tab) return false;
  try {
    const claimed = new URL(url).origin;
    const actual = sender.origin ?? new URL(sender.url).origin;
    return claimed === actual;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- responses

const BADGE = {
  warn: ['!', '#b26a00'],
  justify: ['?', '#b26a00'],
  step_up: ['ID', '#b26a00'],
  block: ['X', '#b3261e'],
  terminate: ['END', '#b3261e'],
};

function badge(tabId, response, title) {
  const b = BADGE[response];
  if (!b || tabId == null) return;
  S.lastResponse = { response, title, atMs: now() };
  chrome.action.setBadgeText({ tabId, text: b[0] }).catch(() => {});
  chrome.action.setBadgeBackgroundColor({ tabId, color: b[1] }).catch(() => {});
  chrome.action.setTitle({ tabId, title: `sessiontrail: ${response.replace('_', '-')} — ${title}` }).catch(() => {});
}

function summary(r) {
  const holding = r.rules.filter((x) => x.response !== 'log');
  const titles = holding.map((x) => x.title);
  if (r.threshold) titles.push(`session risk reached ${r.threshold.at}`);
  return titles.join('; ') || 'a rule of your organisation';
}

async function recordResolved(p, actionId, response, outcome, justification = null, fields = []) {
  const obs = {
    kind: { type: 'response_resolved', response, outcome, justification },
    url: p.url,
    user: '',
    tab: String(p.tab ?? ''),
    session: '',
    target: null,
    trusted: true,
    fields,
    action_id: actionId,
  };
  delete S.pending[actionId];
  const r = await recordObs(obs, { force: true });
  await db.put({ pending: S.pending });
  return r;
}

function appTabsFilter(app) {
  const res = app.host_regex.map((s) => new RegExp(s, 'i'));
  return (url) => {
    try {
      const u = new URL(url);
      return (u.protocol === 'http:' || u.protocol === 'https:') && res.some((r) => r.test(u.hostname));
    } catch {
      return false;
    }
  };
}

/**
 * Ends an app session: records `terminated`, removes the app's cookies and
 * site data, and sends its tabs to the login page. Runs inside serial().
 */
async function terminateApp(appId, reason, hintUrl) {
  const app = S.guard?.apps.find((a) => a.id === appId);
  if (!app) return;
  const inApp = appTabsFilter(app);
  const tabs = (await chrome.tabs.query({})).filter((t) => t.url && inApp(t.url));
  const url = hintUrl || tabs[0]?.url || `https://${app.hosts[0]}/`;
  await recordObs(
    { kind: { type: 'terminated', reason }, url, user: '', tab: '', session: '', target: null, trusted: true, fields: [], action_id: null },
    { force: true },
  );
  delete S.sessions[appId];
  for (const t of Object.values(S.tabs)) if (t.app === appId) t.loginPending = false;
  await db.put({ sessions: S.sessions, tabs: S.tabs });
  const origins = new Set(tabs.map((t) => new URL(t.url).origin));
  origins.add(new URL(url).origin);
  // Every cookie the app's pages would send (host and parent-domain
  // cookies), and every cookie scoped to one of its hosts.
  const seen = new Map();
  for (const o of origins) {
    for (const c of await chrome.cookies.getAll({ url: o })) seen.set(`${c.storeId}|${c.domain}|${c.path}|${c.name}`, c);
  }
  for (const c of await chrome.cookies.getAll({})) {
    if (inApp(`https://${c.domain.replace(/^\./, '')}/`)) seen.set(`${c.storeId}|${c.domain}|${c.path}|${c.name}`, c);
  }
  await Promise.all(
    [...seen.values()].map((c) =>
      chrome.cookies
        .remove({ url: `${c.secure ? 'https' : 'http'}://${c.domain.replace(/^\./, '')}${c.path}`, name: c.name, storeId: c.storeId })
        .catch(() => {}),
    ),
  );
  await chrome.browsingData
    .remove(
      { origins: [...origins] },
      { cacheStorage: true, fileSystems: true, indexedDB: true, localStorage: true, serviceWorkers: true, webSQL: true },
    )
    .catch((e) => console.warn('sessiontrail: browsingData.remove failed', e));
  for (const t of tabs) {
    badge(t.id, 'terminate', reason);
    chrome.tabs.update(t.id, { url: new URL(app.login_path || '/', t.url).href }).catch(() => {});
  }
}

/** Reaction to a holding response on an action that was not held. */
// After an approval, an action the content script cannot replay (copy,
// cut, paste, a file) is repeated by the user once, and recorded under the
// approved action's id; a held print is replayed, and each frame of the
// page records the print. Those records are not asked about again. Kept in
// memory only: a worker restarted in between asks once more (fail safe).
const REPEATED = new Set(['copy', 'cut', 'paste', 'upload']);
const grants = new Map(); // actionId → {tab, kind, response, untilMs}

function grantRepeat(p, actionId) {
  if (!REPEATED.has(p.kind) && p.kind !== 'print') return;
  // The content script allows the repeat for 30 s; its record may come a
  // while later (queued, resent after a worker restart).
  grants.set(actionId, { tab: p.tab, kind: p.kind, response: p.response, untilMs: now() + (p.kind === 'print' ? 15_000 : 120_000) });
}

function usesGrant(r, obs, tabId) {
  const t = now();
  for (const [id, g] of grants) {
    if (t > g.untilMs) {
      grants.delete(id);
      continue;
    }
    if (g.tab !== tabId || g.kind !== obs.kind.type || g.response !== r.response) continue;
    if (g.kind === 'print') return true;
    if (obs.action_id === id) {
      grants.delete(id);
      return true;
    }
  }
  return false;
}

async function reactUnheld(r, obs, tabId) {
  if (usesGrant(r, obs, tabId)) return;
  const title = summary(r);
  badge(tabId, r.response, title);
  if (r.response === 'terminate') {
    await serial(() => terminateApp(r.app, `session ended: ${title}`, obs.url));
    return;
  }
  if (r.response === 'log' || tabId == null) return;
  // Ask the tab to prompt (step-up and justify after the fact; warn as a
  // notice). The answer comes back as `resolve` / `stepUp`.
  const actionId = obs.action_id || `u-${randomToken(9)}`;
  // obs.user is the user the event was recorded under (set by recordObs).
  S.pending[actionId] = { response: r.response, app: r.app, url: obs.url, tab: tabId, user: obs.user, createdMs: now(), unheld: true };
  await db.put({ pending: S.pending });
  chrome.tabs
    .sendMessage(tabId, { t: 'prompt', actionId, response: r.response, title, reason: r.reason, kind: obs.kind.type }, { frameId: 0 })
    .catch(() => {});
}

// ------------------------------------------------------------------ upload

let flushTimer = null;
function scheduleFlush() {
  if (flushTimer) return;
  flushTimer = setTimeout(() => {
    flushTimer = null;
    flush().catch(() => {});
  }, 1000);
}

let flushing = null;
function flush(opts = {}) {
  if (!flushing) flushing = doFlush(opts).finally(() => (flushing = null));
  return flushing;
}

async function persistUpload() {
  await db.put({ upload: S.upload });
}

async function doFlush({ force = false } = {}) {
  if (!S.cfg.collectorUrl) return;
  // The upload backoff gates (re-)enrollment too: a credential the
  // collector keeps refusing must not turn every event into an enrollment.
  if (!force && now() < S.upload.nextMs) return;
  if (!S.enrollment) await enrollNow({ force });
  if (!S.enrollment) return;
  for (;;) {
    const items = await db.queueHead(S.cfg.batchMaxRecords);
    if (items.length === 0) break;
    const batch = encodeBatch(items.map((i) => i.record));
    let out;
    try {
      out = await collector.postBatch(S.cfg.collectorUrl, S.enrollment.credential, batch);
    } catch (e) {
      if (e.code === 'malformed_batch') {
        await db.queueToDead(items, e.message);
        S.queueCount = await db.queueCount();
        continue;
      }
      if (e.status === 401 || e.code === 'unknown_device') {
        // The credential is no longer valid (revoked by a re-enrollment,
        // expired, or unknown to a reset collector): enroll again; a key the
        // collector knows gets a new credential through re-enrollment.
        S.enrollment = null;
        await db.put({ enrollment: undefined });
      } else if (e.code === 'device_revoked') {
        // Revocation is final for this key: keep the queue, stop sending
        // and enrolling until the policy changes (see enrollNow).
        S.enrollment = null;
        await setEnrollState({ state: 'refused', attempt: await attemptId(S.cfg), code: e.code, message: e.message, failures: 0, nextMs: 0 });
        await db.put({ enrollment: undefined });
      }
      S.upload.failures += 1;
      const base = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(S.upload.failures, 20));
      const delay = Math.max(base * (0.5 + Math.random() / 2), (e.retryAfterS ?? 0) * 1000);
      S.upload.nextMs = now() + delay;
      S.upload.lastError = e.message;
      await persistUpload();
      await writeStatus();
      return;
    }
    // Acknowledged means committed by the collector: accepted, duplicate
    // (already held) and rejected records are all final. Rejected ones are
    // counted and surfaced; resending them cannot change the verdict.
    S.upload.failures = 0;
    S.upload.nextMs = 0;
    S.upload.lastOkMs = now();
    S.upload.lastError = '';
    S.upload.accepted += out.accepted ?? 0;
    S.upload.duplicates += out.duplicates ?? 0;
    S.upload.rejected += out.rejected?.length ?? 0;
    if (out.rejected?.length) S.upload.lastRejected = out.rejected.slice(0, 5);
    await db.queueDelete(
      items.map((i) => i.seq),
      { upload: S.upload },
    );
    S.queueCount = await db.queueCount();
    if (S.gap && S.queueCount < S.cfg.queueCapEvents) await serial(() => (S.gap ? emitGap() : null));
  }
  await writeStatus();
}

// Enrollment. kv/enrollState, for the collector URL and token it was for
// (`attempt`, a hash: the token itself stays out of the status):
//   enrolled  kv/enrollment holds the credential (`reenrolledMs` when it
//             came from a re-enrollment);
//   retrying  a transient failure (network, 429, 5xx, a stale challenge):
//             tried again after `nextMs` (exponential backoff, persisted);
//   refused   an answer a retry cannot change (revoked key, expired, used-up
//             or unknown token, …): not tried again until the policy names
//             another collector or token.
// POST /v1/enroll answers 409 already_enrolled when the collector knows the
// key (its answer was lost, or the stored credential was): the device then
// re-enrolls, proving over a fresh challenge that it holds the key, and gets
// a new credential (the old ones are revoked). Only one attempt runs at a
// time: two re-enrollments would revoke each other's credential.
let enrolling = null;
function enrollNow(opts = {}) {
  if (!enrolling) enrolling = doEnroll(opts).finally(() => (enrolling = null));
  return enrolling;
}

async function attemptId(c) {
  const bytes = new TextEncoder().encode(`${c.collectorUrl}\n${c.enrollmentToken ?? ''}`);
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(h.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function setEnrollState(st) {
  S.enroll = { ...st, atMs: now() };
  await db.put({ enrollState: S.enroll });
}

/** One re-enrollment; a challenge that went stale on the way is replaced once. */
async function reenroll(c, deviceKey) {
  for (let i = 0; ; i++) {
    const { challenge } = await collector.enrollChallenge(c.collectorUrl, deviceKey);
    try {
      return await collector.reenroll(c.collectorUrl, {
        token: c.enrollmentToken,
        deviceKey,
        challenge,
        proof: S.agent.reenrollProof(c.enrollmentToken, challenge),
      });
    } catch (e) {
      if (e.code !== 'invalid_challenge' || i >= 1) throw e;
    }
  }
}

async function doEnroll({ force = false } = {}) {
  const c = S.cfg;
  if (S.enrollment && S.enrollment.collectorUrl === c.collectorUrl) return;
  if (!c.collectorUrl || !c.enrollmentToken) return;
  const attempt = await attemptId(c);
  const prev = S.enroll.attempt === attempt ? S.enroll : null;
  if (prev?.state === 'refused') return;
  if (prev?.state === 'retrying' && !force && now() < prev.nextMs) return;
  const deviceKey = S.agent.publicKey();
  const user = (c.identity.source === 'policy' && c.identity.user) || c.identity.user || 'unknown';
  try {
    let r;
    let reenrolledMs = null;
    try {
      r = await collector.enroll(c.collectorUrl, {
        token: c.enrollmentToken,
        deviceKey,
        proof: S.agent.enrollProof(c.enrollmentToken),
        user,
        deviceName: c.deviceName || `chrome-${deviceKey.slice(0, 12)}`,
        extra: { agent: 'sessiontrail-extension', agent_version: chrome.runtime.getManifest().version },
      });
    } catch (e) {
      if (e.code !== 'already_enrolled') throw e;
      r = await reenroll(c, deviceKey);
      reenrolledMs = r.reenrolled_ms;
    }
    S.enrollment = { credential: r.credential, deviceKey, user: r.user, collectorUrl: c.collectorUrl, enrolledMs: r.enrolled_ms, reenrolledMs };
    await db.put({ enrollment: S.enrollment });
    await setEnrollState({ state: 'enrolled', attempt, reenrolledMs, failures: 0, nextMs: 0 });
    S.upload.lastError = '';
  } catch (e) {
    const retry = !(e instanceof collector.CollectorError) || e.transient || e.code === 'invalid_challenge' || e.code === 'not_enrolled';
    const failures = (prev?.failures ?? 0) + 1;
    const base = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(failures, 20));
    await setEnrollState({
      state: retry ? 'retrying' : 'refused',
      attempt,
      code: e.code ?? e.name,
      message: e.message,
      failures,
      nextMs: retry ? now() + Math.max(base * (0.5 + Math.random() / 2), (e.retryAfterS ?? 0) * 1000) : 0,
    });
    S.upload.lastError = `enrollment: ${e.message}`;
  }
  await writeStatus();
}

// ------------------------------------------------------------------ status

async function writeStatus() {
  const apps = (S.guard?.apps ?? []).map((a) => ({
    id: a.id,
    name: a.name,
    hosts: a.hosts,
    clearFields: a.clear_fields,
    passwordFields: a.password_fields,
    keepQuery: a.keep_query,
    keepFragment: a.keep_fragment,
    guarded: a.guards.map((g) => ({ title: g.title, response: g.response })),
  }));
  const sessions = Object.fromEntries(
    Object.entries(S.sessions).map(([k, s]) => [k, { startedMs: s.startedMs, lastMs: s.lastMs, sessionRisk: s.sessionRisk, user: s.user }]),
  );
  const status = {
    atMs: now(),
    configSource: S.cfg?.source ?? 'none',
    warnings: S.cfg?.warnings ?? [],
    collectorUrl: S.cfg?.collectorUrl ?? '',
    enrolled: !!S.enrollment,
    // state, code, message, atMs, failures, nextMs, reenrolledMs: nothing secret.
    enrollment: (({ attempt, ...st }) => st)(S.enroll),
    deviceKey: S.agent?.publicKey() ?? '',
    identitySource: S.cfg?.identity.source ?? 'page',
    stepUpConfigured: !!S.cfg?.stepUp,
    queue: S.queueCount,
    queueCap: S.cfg?.queueCapEvents ?? 0,
    gap: S.gap,
    upload: { ...S.upload },
    packs: Object.entries(S.packs).map(([id, p]) => ({ id, version: p.version, checksum: p.checksum, origin: p.origin })),
    inForce: S.inForce,
    packErrors: S.packErrors,
    apps,
    sessions,
    lastResponse: S.lastResponse,
  };
  await chrome.storage.local.set({ status });
  return status;
}

// ------------------------------------------------------------- dispatcher

const OBSERVE_PORT = 'sessiontrail/observe';
const OBSERVE_BATCH_MAX = 500;

const fromExtensionPage = (sender) => sender?.id === chrome.runtime.id && !sender.tab && sender.url?.startsWith(chrome.runtime.getURL(''));

/** The one dispatcher of the message contract (docs/extension.md). */
async function dispatch(msg, sender) {
  await whenReady();
  const tabId = sender?.tab?.id ?? null;
  switch (msg?.t) {
    case 'observe': {
      if (!sameOrigin(msg.obs?.url, sender)) return { ok: false, error: 'origin_mismatch' };
      const obs = observation(msg.obs, sender);
      const r = await serial(() => recordObs(obs, { tabId }));
      if (r && HOLDING.has(r.response)) await reactUnheld(r, obs, tabId);
      return { ok: true, recorded: !!r };
    }
    case 'observeBatch': {
      // Routine observations a content script queued (over its port, or
      // sendMessage when the port went down). Queued into serial() all at
      // once, so they are recorded in page order.
      const list = Array.isArray(msg.obs) ? msg.obs.slice(0, OBSERVE_BATCH_MAX) : [];
      const obsList = list.filter((o) => sameOrigin(o?.url, sender)).map((o) => observation(o, sender));
      const rs = await Promise.all(obsList.map((obs) => serial(() => recordObs(obs, { tabId }))));
      for (const [i, r] of rs.entries()) if (r && HOLDING.has(r.response)) await reactUnheld(r, obsList[i], tabId);
      return { ok: obsList.length === list.length, recorded: rs.filter(Boolean).length, ...(obsList.length === list.length ? {} : { error: 'origin_mismatch' }) };
    }
    case 'guard': {
      if (!sameOrigin(msg.obs?.url, sender)) return { ok: false, response: 'block', error: 'origin_mismatch' };
      const obs = observation(msg.obs, sender);
      obs.action_id ||= `a-${randomToken(9)}`;
      const r = await serial(() => recordObs(obs, { force: true, tabId }));
      if (!r) return { ok: true, response: 'log' };
      if (!HOLDING.has(r.response)) return { ok: true, response: 'log' };
      const title = summary(r);
      badge(tabId, r.response, title);
      const reply = { ok: true, response: r.response, actionId: obs.action_id, title, reason: r.reason, app: r.app };
      if (r.response === 'block') {
        await serial(() => recordResolved({ url: obs.url, tab: tabId }, obs.action_id, 'block', 'blocked'));
      } else if (r.response === 'terminate') {
        await serial(async () => {
          await recordResolved({ url: obs.url, tab: tabId }, obs.action_id, 'terminate', 'blocked');
          await terminateApp(r.app, `action refused and session ended: ${title}`, obs.url);
        });
      } else {
        // obs.user is the user the held action was recorded under.
        S.pending[obs.action_id] = { response: r.response, app: r.app, url: obs.url, tab: tabId, user: obs.user, kind: obs.kind.type, createdMs: now() };
        await db.put({ pending: S.pending });
      }
      await writeStatus();
      return reply;
    }
    case 'resolve': {
      const p = S.pending[msg.actionId];
      const outcome = msg.outcome === 'allowed' ? 'allowed' : 'refused';
      // warn and justify end here; a step-up can only be declined here (it
      // is passed through `stepUp`, which checks the IdP's answer).
      const resolvable = p && (['warn', 'justify'].includes(p.response) || (p.response === 'step_up' && outcome === 'refused'));
      if (!resolvable || p.tab !== tabId) return { ok: false, error: 'unknown_action' };
      let justification = null;
      if (p.response === 'justify') {
        justification = String(msg.justification ?? '').trim().slice(0, 2000);
        if (outcome === 'allowed' && justification.length < 3) return { ok: false, error: 'justification_required' };
        if (outcome === 'refused') justification = justification || null;
      }
      await serial(() => recordResolved(p, msg.actionId, p.response, outcome, justification));
      if (outcome === 'allowed') grantRepeat(p, msg.actionId);
      if (p.response === 'step_up' && p.unheld) {
        await serial(() => terminateApp(p.app, 'step-up required by session risk was declined', p.url));
      }
      await writeStatus();
      return { ok: true, outcome };
    }
    case 'stepUp': {
      const p = S.pending[msg.actionId];
      if (!p || p.tab !== tabId || p.response !== 'step_up') return { ok: false, error: 'unknown_action' };
      let outcome = 'allowed';
      let error = null;
      // Who re-authenticated, once the ID token verified: recorded (as a
      // field, so a keyed commitment unless a rule keeps it clear) whether
      // it matched the session user or not.
      const fields = [];
      try {
        const claims = await stepUp(S.cfg.stepUp);
        const claim = S.cfg.stepUp.subjectClaim === 'sub' ? 'sub' : 'email';
        const presented = typeof claims[claim] === 'string' ? claims[claim] : '';
        if (presented) fields.push({ name: 'idp_subject', value: presented, kind: claim === 'email' ? 'email' : 'text' });
        // The user the held action's events carry (older pending entries
        // have none: the app session's current user).
        checkSubject(claims, p.user ?? S.sessions[p.app]?.user ?? '', claim);
      } catch (e) {
        outcome = 'refused';
        error = { name: e.name, code: e.code ?? '', message: e.message };
      }
      await serial(() => recordResolved(p, msg.actionId, 'step_up', outcome, null, fields));
      if (outcome === 'allowed') grantRepeat(p, msg.actionId);
      if (outcome === 'refused' && p.unheld) {
        // The session crossed a step-up threshold and did not re-authenticate.
        await serial(() => terminateApp(p.app, 'step-up required by session risk was not completed', p.url));
      }
      await writeStatus();
      return { ok: outcome === 'allowed', outcome, error };
    }
    case 'status':
      if (!fromExtensionPage(sender)) return { ok: false, error: 'forbidden' };
      return { ok: true, status: await writeStatus() };
    case 'flush':
      if (!fromExtensionPage(sender)) return { ok: false, error: 'forbidden' };
      await flush({ force: true });
      return { ok: true, queue: S.queueCount };
    case 'setDevConfig': {
      if (!fromExtensionPage(sender)) return { ok: false, error: 'forbidden' };
      if (S.cfg.source === 'policy') return { ok: false, error: 'managed_by_policy' };
      await db.put({ devConfig: msg.config ?? {} });
      await reconfigure();
      return { ok: true, warnings: S.cfg.warnings };
    }
    default:
      return { ok: false, error: 'unknown_message' };
  }
}

async function reconfigure() {
  await serial(buildAgent);
  await background();
}

// ------------------------------------------------- top-level listeners

// Content scripts send routine observations in batches over one port per
// frame (content.js); each batch is acknowledged once dispatched, so a
// content script resends what a stopped worker never answered.
chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== OBSERVE_PORT || port.sender?.id !== chrome.runtime.id) {
    port.disconnect();
    return;
  }
  const ack = (id, ok) => {
    try {
      port.postMessage({ t: 'ack', id, ok });
    } catch {
      // The page went away; nothing is waiting for the answer.
    }
  };
  port.onMessage.addListener((msg) => {
    if (msg?.t !== 'observeBatch') return;
    dispatch(msg, port.sender).then(
      (r) => ack(msg.id, r.ok === true),
      () => ack(msg.id, false),
    );
  });
});

chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  dispatch(msg, sender).then(sendResponse, (e) =>
    sendResponse({ ok: false, error: e?.name ?? 'Error', code: e?.code ?? '', message: e?.message ?? String(e) }),
  );
  return true;
});

chrome.alarms.onAlarm.addListener((alarm) => {
  whenReady()
    .then(() => {
      if (alarm.name === FLUSH_ALARM) return flush();
      if (alarm.name === PACKS_ALARM) return refreshPacks();
      return undefined;
    })
    .catch((e) => console.warn('sessiontrail: alarm', alarm.name, e));
});

chrome.storage.onChanged.addListener((changes, area) => {
  if (area !== 'managed') return;
  whenReady()
    .then(reconfigure)
    .catch((e) => console.warn('sessiontrail: policy change', e));
});

chrome.runtime.onStartup.addListener(() => {
  whenReady()
    .then(() => serial(agentStarted))
    .catch(() => {});
});

chrome.runtime.onInstalled.addListener(() => {
  whenReady()
    .then(() => serial(agentStarted))
    .catch(() => {});
});

chrome.tabs.onRemoved.addListener((tabId) => {
  whenReady()
    .then(async () => {
      const t = S.tabs[tabId];
      if (!t) return;
      delete S.tabs[tabId];
      const obs = { kind: { type: 'tab_close' }, url: t.url, user: '', tab: String(tabId), session: '', target: null, trusted: true, fields: [], action_id: null };
      await serial(() => recordObs(obs));
      await db.put({ tabs: S.tabs });
    })
    .catch(() => {});
});

chrome.downloads.onCreated.addListener((item) => {
  whenReady()
    .then(async () => {
      const page = item.referrer || item.finalUrl || item.url;
      if (!S.agent.appForUrl(page)) return;
      const name = (item.filename || new URL(item.finalUrl || item.url).pathname).split(/[\\/]/).pop() || '';
      const obs = {
        kind: { type: 'download', filename: name, mime: item.mime || '', bytes: item.totalBytes >= 0 ? item.totalBytes : null },
        url: page,
        user: '',
        tab: '',
        session: '',
        target: null,
        trusted: true,
        fields: [],
        action_id: `d-${item.id}`,
      };
      const r = await serial(() => recordObs(obs, { force: true }));
      if (r && (r.response === 'block' || r.response === 'terminate')) {
        await chrome.downloads.cancel(item.id).catch(() => {});
        await serial(() => recordResolved({ url: page, tab: '' }, obs.action_id, r.response, 'blocked'));
        if (r.response === 'terminate') await serial(() => terminateApp(r.app, `download refused: ${summary(r)}`, page));
      }
    })
    .catch((e) => console.warn('sessiontrail: download', e));
});

// Debug and test handle (extension contexts only; pages cannot reach it).
globalThis.sessiontrail = {
  whenReady,
  flush: (o) => whenReady().then(() => flush({ force: true, ...o })),
  // What the `packs` alarm does, now (tests; an admin's "check for rules").
  refreshPacks: () => whenReady().then(refreshPacks),
  status: () => whenReady().then(writeStatus),
  state: S,
  db,
};

whenReady().catch(() => {});
