// Configuration: managed policy (chrome.storage.managed, schema in
// extension/managed_schema.json) when an administrator set any of it; else,
// for unmanaged development only, what the options page saved (kept in
// IndexedDB, never in chrome.storage.local, which content scripts can read).

import * as db from './db.js';

export const DEFAULTS = Object.freeze({
  collectorUrl: '',
  enrollmentToken: '',
  adminPublicKeys: [],
  rulePackGroup: '',
  packRefreshMinutes: 15,
  identity: { source: 'page', user: '' },
  deviceName: '',
  stepUp: null,
  maskKey: '',
  queueCapEvents: 200000,
  batchMaxRecords: 500,
  bootstrapRulePacks: [],
});

const HEX64 = /^[0-9a-f]{64}$/i;

function str(v, d = '') {
  return typeof v === 'string' ? v.trim() : d;
}

function int(v, d, min, max) {
  return Number.isInteger(v) ? Math.min(max, Math.max(min, v)) : d;
}

/** Normalises a raw policy/dev object. Problems go to `warnings`. */
export function normalise(raw, source) {
  const warnings = [];
  const r = raw && typeof raw === 'object' ? raw : {};
  const keys = Array.isArray(r.adminPublicKeys) ? r.adminPublicKeys.map((k) => str(k).toLowerCase()) : [];
  const adminPublicKeys = keys.filter((k) => HEX64.test(k));
  if (adminPublicKeys.length !== keys.length) warnings.push('some adminPublicKeys are not 64 hex digits and were ignored');
  let collectorUrl = str(r.collectorUrl).replace(/\/+$/, '');
  if (collectorUrl && !/^https:\/\/|^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(collectorUrl)) {
    warnings.push('collectorUrl must be https:// (plain http only on loopback); ignored');
    collectorUrl = '';
  }
  const id = r.identity && typeof r.identity === 'object' ? r.identity : {};
  const identity = {
    source: id.source === 'policy' ? 'policy' : 'page',
    user: str(id.user),
  };
  let stepUp = null;
  if (r.stepUp && typeof r.stepUp === 'object') {
    const s = r.stepUp;
    stepUp = {
      issuer: str(s.issuer).replace(/\/+$/, ''),
      clientId: str(s.clientId),
      jwksUrl: str(s.jwksUrl),
      authorizationEndpoint: str(s.authorizationEndpoint),
      // Which verified claim must name the session user: email (default,
      // case-insensitive) or sub. Email needs the `email` scope.
      subjectClaim: s.subjectClaim === 'sub' ? 'sub' : 'email',
      scope: str(s.scope) || (s.subjectClaim === 'sub' ? 'openid' : 'openid email'),
      maxAuthAgeSeconds: int(s.maxAuthAgeSeconds, 60, 0, 600),
    };
    if (!stepUp.issuer || !stepUp.clientId || !stepUp.jwksUrl) {
      warnings.push('stepUp needs issuer, clientId and jwksUrl; step-up will fail closed');
    }
  }
  const maskKey = str(r.maskKey).toLowerCase();
  if (maskKey && !HEX64.test(maskKey)) warnings.push('maskKey must be 64 hex digits; ignored');
  const packs = Array.isArray(r.bootstrapRulePacks) ? r.bootstrapRulePacks.filter((p) => typeof p === 'string') : [];
  return {
    source,
    collectorUrl,
    enrollmentToken: str(r.enrollmentToken),
    adminPublicKeys,
    rulePackGroup: str(r.rulePackGroup),
    packRefreshMinutes: int(r.packRefreshMinutes, DEFAULTS.packRefreshMinutes, 1, 1440),
    identity,
    deviceName: str(r.deviceName),
    stepUp,
    maskKey: HEX64.test(maskKey) ? maskKey : '',
    queueCapEvents: int(r.queueCapEvents, DEFAULTS.queueCapEvents, 10, 10000000),
    batchMaxRecords: int(r.batchMaxRecords, DEFAULTS.batchMaxRecords, 1, 10000),
    bootstrapRulePacks: packs,
    warnings,
  };
}

// Measured here: the first chrome.storage.managed.get() after the browser
// starts takes ~5 s (Chromium waits for its policy service). The last policy
// seen is cached in IndexedDB and used at once; `fresh` resolves to the real
// answer, and the caller reconfigures if it differs.
const POLICY_WAIT_MS = 250;

/**
 * The configuration in force: policy if any key is set, else dev config.
 * `fresh` (when not null) resolves to the policy config once Chromium
 * answers, if a cached one was used meanwhile.
 */
export async function load() {
  const live = chrome.storage.managed.get(null).then(
    (m) => m ?? {},
    () => ({}),
  );
  const cached = await db.get('policyCache');
  let managed = cached ? await Promise.race([live, new Promise((r) => setTimeout(() => r(null), POLICY_WAIT_MS))]) : await live;
  let fresh = null;
  if (managed === null) {
    managed = cached;
    fresh = live.then(async (m) => {
      await db.put({ policyCache: Object.keys(m).length ? m : undefined });
      return JSON.stringify(m) === JSON.stringify(cached) ? null : m;
    });
  } else {
    await db.put({ policyCache: Object.keys(managed).length ? managed : undefined });
  }
  const out = await fromManaged(managed);
  out.fresh = fresh;
  return out;
}

async function fromManaged(managed) {
  if (managed && Object.keys(managed).length > 0) return normalise(managed, 'policy');
  const dev = await db.get('devConfig');
  if (dev && typeof dev === 'object' && Object.keys(dev).length > 0) return normalise(dev, 'dev');
  return normalise({}, 'none');
}

/** Canonical JSON (sorted keys) of what policy set: policy_applied hashes it. */
export function canonical(cfg) {
  const strip = { ...cfg };
  delete strip.warnings;
  delete strip.fresh;
  const sort = (v) =>
    Array.isArray(v)
      ? v.map(sort)
      : v && typeof v === 'object'
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]))
        : v;
  return JSON.stringify(sort(strip));
}
