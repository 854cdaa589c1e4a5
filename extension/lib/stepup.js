// Step-up: re-authentication with the organisation's IdP through
// chrome.identity.launchWebAuthFlow (OIDC implicit flow, response_type
// id_token, prompt=login, max_age=0, a fresh nonce and state), then a full
// check of the ID token: signature against the IdP's JWKS with WebCrypto
// (RS256, ES256, EdDSA), issuer, audience (and azp), nonce, expiry, and an
// auth_time no older than maxAuthAgeSeconds (60 s by default). A verified
// token is then bound to the session's user (checkSubject): its `email`
// (case-insensitive) or `sub` (stepUp.subjectClaim) must name the user the
// app session belongs to.

export class StepUpError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'StepUpError';
    this.code = code;
  }
}

const SKEW_S = 30;

function b64urlBytes(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(s.length / 4) * 4, '='));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

function b64urlJson(s) {
  return JSON.parse(new TextDecoder().decode(b64urlBytes(s)));
}

export function randomToken(n = 16) {
  const b = crypto.getRandomValues(new Uint8Array(n));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const ALGS = {
  RS256: { import: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, verify: { name: 'RSASSA-PKCS1-v1_5' }, kty: 'RSA' },
  ES256: { import: { name: 'ECDSA', namedCurve: 'P-256' }, verify: { name: 'ECDSA', hash: 'SHA-256' }, kty: 'EC' },
  EdDSA: { import: { name: 'Ed25519' }, verify: { name: 'Ed25519' }, kty: 'OKP' },
};

async function fetchJson(url, what) {
  let res;
  try {
    res = await fetch(url, { credentials: 'omit', cache: 'no-store' });
  } catch (e) {
    throw new StepUpError('idp_unreachable', `${what}: ${e.message}`);
  }
  if (!res.ok) throw new StepUpError('idp_error', `${what}: HTTP ${res.status}`);
  return res.json();
}

/**
 * Verifies a compact JWS ID token. `jwks` is {keys: [...]}. Returns the
 * claims. Throws StepUpError with a precise code.
 */
export async function verifyIdToken(token, { jwks, issuer, clientId, nonce, nowS, maxAuthAgeS = 60 }) {
  const parts = String(token).split('.');
  if (parts.length !== 3) throw new StepUpError('malformed_token', 'the ID token is not a compact JWS');
  let header;
  let claims;
  try {
    header = b64urlJson(parts[0]);
    claims = b64urlJson(parts[1]);
  } catch {
    throw new StepUpError('malformed_token', 'the ID token header or payload is not base64url JSON');
  }
  const alg = ALGS[header.alg];
  if (!alg) throw new StepUpError('bad_alg', `unsupported signature algorithm ${JSON.stringify(header.alg)}`);
  const candidates = (jwks?.keys ?? []).filter(
    (k) => k.kty === alg.kty && (!header.kid || k.kid === header.kid) && (!k.use || k.use === 'sig') && (!k.alg || k.alg === header.alg),
  );
  if (candidates.length === 0) throw new StepUpError('unknown_key', `no JWKS key for kid ${JSON.stringify(header.kid)}`);
  const data = new TextEncoder().encode(`${parts[0]}.${parts[1]}`);
  const sig = b64urlBytes(parts[2]);
  let ok = false;
  for (const jwk of candidates) {
    try {
      const { kty, n, e, crv, x, y } = jwk;
      const key = await crypto.subtle.importKey('jwk', { kty, n, e, crv, x, y }, alg.import, false, ['verify']);
      if (await crypto.subtle.verify(alg.verify, key, sig, data)) {
        ok = true;
        break;
      }
    } catch {
      // A key that does not import is simply not the signer.
    }
  }
  if (!ok) throw new StepUpError('bad_signature', 'the ID token signature does not verify against the IdP keys');
  if (claims.iss !== issuer) throw new StepUpError('bad_issuer', `issuer ${JSON.stringify(claims.iss)} is not ${issuer}`);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes(clientId)) throw new StepUpError('bad_audience', 'the ID token is not for this client');
  if (aud.length > 1 && claims.azp !== clientId) throw new StepUpError('bad_audience', 'azp does not name this client');
  if (claims.nonce !== nonce) throw new StepUpError('bad_nonce', 'the ID token nonce does not match this request');
  if (!Number.isFinite(claims.exp) || claims.exp + SKEW_S < nowS) throw new StepUpError('expired', 'the ID token has expired');
  if (Number.isFinite(claims.iat) && claims.iat - SKEW_S > nowS) throw new StepUpError('bad_iat', 'the ID token was issued in the future');
  if (!Number.isFinite(claims.auth_time)) throw new StepUpError('no_auth_time', 'the ID token has no auth_time');
  if (nowS - claims.auth_time > maxAuthAgeS || claims.auth_time - SKEW_S > nowS) {
    throw new StepUpError('stale_auth_time', `authentication is ${nowS - claims.auth_time} s old; at most ${maxAuthAgeS} s allowed`);
  }
  return claims;
}

/**
 * Binds verified claims to the session user. `claim` is 'email' (default;
 * compared case-insensitively, and refused when the IdP says
 * email_verified: false) or 'sub' (compared exactly). Returns the subject
 * the IdP vouched for. Throws StepUpError when the session user is unknown
 * (fail closed), the token lacks the claim, or it names someone else.
 */
export function checkSubject(claims, sessionUser, claim = 'email') {
  const expected = String(sessionUser ?? '').trim();
  if (!expected) {
    throw new StepUpError('no_session_user', 'the user this session belongs to is unknown, so a re-authentication cannot be matched to it');
  }
  if (claim === 'sub') {
    const sub = typeof claims?.sub === 'string' ? claims.sub : '';
    if (!sub) throw new StepUpError('no_subject', 'the ID token has no sub');
    if (sub !== expected) throw new StepUpError('wrong_user', `signed in as ${sub}, but this session belongs to ${expected}`);
    return sub;
  }
  const email = typeof claims?.email === 'string' ? claims.email.trim() : '';
  if (!email) throw new StepUpError('no_subject', 'the ID token has no email (is the "email" scope granted?)');
  if (claims.email_verified === false) throw new StepUpError('unverified_email', `the IdP has not verified ${email}`);
  if (email.toLowerCase() !== expected.toLowerCase()) {
    throw new StepUpError('wrong_user', `signed in as ${email}, but this session belongs to ${expected}`);
  }
  return email;
}

/** Runs the interactive flow and verifies the result. Resolves to claims. */
export async function stepUp(cfg) {
  if (!cfg || !cfg.issuer || !cfg.clientId || !cfg.jwksUrl) {
    throw new StepUpError('not_configured', 'step-up is not configured by policy (stepUp.issuer, clientId, jwksUrl)');
  }
  let authz = cfg.authorizationEndpoint;
  if (!authz) {
    const disc = await fetchJson(`${cfg.issuer}/.well-known/openid-configuration`, 'IdP discovery');
    authz = disc.authorization_endpoint;
  }
  const nonce = randomToken();
  const state = randomToken();
  const redirectUri = chrome.identity.getRedirectURL('stepup');
  const url = new URL(authz);
  for (const [k, v] of Object.entries({
    response_type: 'id_token',
    response_mode: 'fragment',
    client_id: cfg.clientId,
    redirect_uri: redirectUri,
    scope: cfg.scope || (cfg.subjectClaim === 'sub' ? 'openid' : 'openid email'),
    nonce,
    state,
    prompt: 'login',
    max_age: '0',
  })) url.searchParams.set(k, v);
  let final;
  try {
    final = await chrome.identity.launchWebAuthFlow({ url: url.href, interactive: true });
  } catch (e) {
    throw new StepUpError('cancelled', `re-authentication did not complete: ${e.message}`);
  }
  const u = new URL(final);
  const params = new URLSearchParams(u.hash.slice(1) || u.search.slice(1));
  if (params.get('error')) throw new StepUpError('idp_refused', `the IdP answered ${params.get('error')}`);
  if (params.get('state') !== state) throw new StepUpError('bad_state', 'the IdP response does not match this request');
  const token = params.get('id_token');
  if (!token) throw new StepUpError('no_token', 'the IdP response has no id_token');
  const jwks = await fetchJson(cfg.jwksUrl, 'IdP JWKS');
  return verifyIdToken(token, {
    jwks,
    issuer: cfg.issuer,
    clientId: cfg.clientId,
    nonce,
    nowS: Math.floor(Date.now() / 1000),
    maxAuthAgeS: cfg.maxAuthAgeSeconds ?? 60,
  });
}
