// The collector's auditor API. The credential lives in this tab's
// sessionStorage only and is sent as a bearer token; nothing else is stored.

const KEY = 'sessiontrail.credential';

export function credential() {
  return sessionStorage.getItem(KEY);
}

export function setCredential(c) {
  sessionStorage.setItem(KEY, c);
}

export function clearCredential() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, { params, body, accept } = {}) {
  const url = new URL(path, window.location.origin);
  if (params) {
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
    }
  }
  const headers = { Authorization: `Bearer ${credential() ?? ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (accept) headers.Accept = accept;
  const resp = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
  if (!resp.ok) {
    let code = 'http_' + resp.status;
    let message = resp.statusText || 'request failed';
    try {
      const j = await resp.json();
      code = j.error?.code ?? code;
      message = j.error?.message ?? message;
    } catch {
      // Not a JSON error body.
    }
    throw new ApiError(resp.status, code, message);
  }
  return resp;
}

export async function getJson(path, params) {
  return (await request('GET', path, { params })).json();
}

/** POST /v1/evidence; resolves to {blob, filename, events}. */
export async function exportEvidence(query) {
  const resp = await request('POST', '/v1/evidence', { body: { query }, accept: 'application/zip' });
  const cd = resp.headers.get('Content-Disposition') ?? '';
  const m = /filename="([^"]+)"/.exec(cd);
  return {
    blob: await resp.blob(),
    filename: m ? m[1] : 'sessiontrail-evidence.zip',
    events: Number(resp.headers.get('X-Sessiontrail-Events') ?? '0'),
  };
}
