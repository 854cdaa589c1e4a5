// The collector's HTTP API, as the device uses it:
//   POST /v1/enroll                       enrollment token + proof → credential
//   POST /v1/enroll/challenge             device key → single-use challenge
//   POST /v1/reenroll                     token + challenge + proof → new credential
//                                         for a key that is already enrolled
//   POST /v1/batches                      a batch of signed records → per-record verdicts
//   GET  /v1/rulepacks/current?group=G    the compiled, admin-signed pack (ETag)
// The collector is trusted to store what it acknowledges; it is NOT trusted
// for rule packs: they are verified against the admin keys pinned by policy.

const TIMEOUT_MS = 20000;

export class CollectorError extends Error {
  constructor(message, { status = 0, code = 'network', retryAfterS = 0 } = {}) {
    super(message);
    this.name = 'CollectorError';
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }

  /** Whether trying again later can help. */
  get transient() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

async function call(url, init) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  let res;
  try {
    res = await fetch(url, { ...init, signal: ctl.signal, credentials: 'omit', cache: 'no-store' });
  } catch (e) {
    throw new CollectorError(`collector unreachable: ${e.message}`);
  } finally {
    clearTimeout(timer);
  }
  return res;
}

async function fail(res) {
  let code = `http_${res.status}`;
  let message = res.statusText;
  try {
    const j = await res.json();
    if (j?.error?.code) code = j.error.code;
    if (j?.error?.message) message = j.error.message;
  } catch {
    // Not JSON: keep the status.
  }
  const retryAfterS = Number.parseInt(res.headers.get('retry-after') ?? '', 10) || 0;
  return new CollectorError(`collector: ${res.status} ${code}: ${message}`, { status: res.status, code, retryAfterS });
}

export async function enroll(base, { token, deviceKey, proof, user, deviceName, extra = {} }) {
  const res = await call(`${base}/v1/enroll`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      enrollment_token: token,
      device_key: deviceKey,
      claims: { user, device_name: deviceName, ...extra },
      proof,
    }),
  });
  if (res.status !== 201 && res.status !== 200) throw await fail(res);
  return res.json();
}

/** A single-use re-enrollment challenge for `deviceKey`: {challenge, expires_ms}. */
export async function enrollChallenge(base, deviceKey) {
  const res = await call(`${base}/v1/enroll/challenge`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ device_key: deviceKey }),
  });
  if (res.status !== 200) throw await fail(res);
  return res.json();
}

/**
 * A new credential for an enrolled key (its earlier credentials are revoked):
 * {device_key, user, device_name, enrolled_ms, credential, reenrolled_ms, credentials_revoked}.
 */
export async function reenroll(base, { token, deviceKey, challenge, proof }) {
  const res = await call(`${base}/v1/reenroll`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ enrollment_token: token, device_key: deviceKey, challenge, proof }),
  });
  if (res.status !== 200) throw await fail(res);
  return res.json();
}

/** Sends one encoded batch; resolves to the collector's IngestOutcome. */
export async function postBatch(base, credential, batchBytes) {
  const res = await call(`${base}/v1/batches`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${credential}` },
    body: batchBytes,
  });
  if (!res.ok) throw await fail(res);
  return res.json();
}

/**
 * Fetches the current compiled pack for `group`. Resolves to
 * {status: 304} | {status: 404} | {status: 200, bytes: Uint8Array, etag}.
 */
export async function fetchPack(base, credential, group, etag) {
  const headers = { authorization: `Bearer ${credential}`, accept: 'application/octet-stream' };
  if (etag) headers['if-none-match'] = etag;
  // Without a group the collector answers with the device's own group.
  const q = group ? `?group=${encodeURIComponent(group)}` : '';
  const res = await call(`${base}/v1/rulepacks/current${q}`, { headers });
  if (res.status === 304 || res.status === 404) return { status: res.status };
  if (!res.ok) throw await fail(res);
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { status: 200, bytes, etag: res.headers.get('etag') ?? '' };
}
