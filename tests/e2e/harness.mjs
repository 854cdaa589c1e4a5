// Shared helpers for the browser suites: launching Debian's Chromium with an
// unpacked extension, managed policy, stopping the extension service worker,
// the fixture servers, and small utilities (HTTP with a Host header, JWTs).
//
// Facts this builds on are in /work/shared/BRIEF.md ("Facts measured on this
// machine"): headless Chromium loads unpacked MV3 extensions, reads
// /etc/chromium/policies/managed/*.json, and a service worker can be stopped
// by closing its CDP target.

import http from 'node:http';
import https from 'node:https';
import { createHash, createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { mkdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

import { chromium } from 'playwright-core';

import { startIdp } from '../fixtures/idp/server.mjs';
import { DEMO_PASSWORD, SESSION_COOKIE, startSaas } from '../fixtures/saas/server.mjs';

export { DEMO_PASSWORD, SESSION_COOKIE };

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// *.evil.test: look-alike hosts (crm.acme.test.evil.test) for "not this app" tests.
export const HOST_RESOLVER_RULES = 'MAP *.acme.test 127.0.0.1, MAP idp.acme.test 127.0.0.1, MAP *.evil.test 127.0.0.1';
export const POLICY_DIR = '/etc/chromium/policies/managed';
export const POLICY_FILE = join(POLICY_DIR, 'sessiontrail-test.json');
export const APPS = ['crm', 'hr', 'console'];

// ---------------------------------------------------------------- extension ids

/** Chromium's id for an extension whose manifest `key` is this base64 SPKI public key. */
export function extensionIdFromKey(base64Key) {
  const der = Buffer.from(base64Key.replace(/\s+/g, ''), 'base64');
  return idFromBytes(der);
}

function idFromBytes(bytes) {
  // First 128 bits of SHA-256, one hex digit per letter a–p.
  const hex = createHash('sha256').update(bytes).digest('hex').slice(0, 32);
  return [...hex].map((c) => String.fromCharCode(97 + Number.parseInt(c, 16))).join('');
}

/**
 * The id an unpacked extension in `dir` will get: from the manifest `key` if
 * pinned (it should be, so policy files can name it), else from the absolute path.
 */
export function extensionIdForDir(dir) {
  const abs = realpathSync(resolve(dir));
  const manifest = JSON.parse(readFileSync(join(abs, 'manifest.json'), 'utf8'));
  return manifest.key ? extensionIdFromKey(manifest.key) : idFromBytes(Buffer.from(abs));
}

// ---------------------------------------------------------------- managed policy

export function canWriteManagedPolicy() {
  return process.getuid?.() === 0;
}

// The policy directory is machine-wide: a browser started by another test
// process (another suite, another engineer's run) sees our file, and when
// that process removes its file, Chromium's watcher drops the policy from
// our running browser too (measured: chrome.storage.managed went empty
// mid-test). So a process holds this lock from writing its policy until it
// removes it, and other processes wait. Re-entrant within a process; a lock
// left by a dead process is taken over.
export const POLICY_LOCK = '/etc/chromium/policies/sessiontrail-test.lock';
const POLICY_LOCK_WAIT_MS = 300_000;
let lockHeld = false;

function tryLock() {
  try {
    writeFileSync(POLICY_LOCK, String(process.pid), { flag: 'wx' });
    return true;
  } catch (err) {
    if (err.code !== 'EEXIST') throw err;
  }
  const owner = Number(readFileSync(POLICY_LOCK, { encoding: 'utf8', flag: 'r' }).trim() || 'NaN');
  let alive = Number.isInteger(owner) && owner > 0;
  if (alive) {
    try {
      process.kill(owner, 0);
    } catch (err) {
      alive = err.code === 'EPERM';
    }
  }
  if (!alive) rmSync(POLICY_LOCK, { force: true }); // stale: next attempt takes it
  return false;
}

/** Wait (without blocking the event loop) for the machine-wide policy lock. */
export async function acquirePolicyLock({ timeout = POLICY_LOCK_WAIT_MS } = {}) {
  if (lockHeld) return;
  mkdirSync(dirname(POLICY_LOCK), { recursive: true });
  const end = Date.now() + timeout;
  while (!tryLock()) {
    if (Date.now() > end) throw new Error(`managed-policy lock ${POLICY_LOCK} still held by another process after ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
  holdLock();
}

function acquirePolicyLockSync(timeout = POLICY_LOCK_WAIT_MS) {
  if (lockHeld) return;
  mkdirSync(dirname(POLICY_LOCK), { recursive: true });
  const end = Date.now() + timeout;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  while (!tryLock()) {
    if (Date.now() > end) throw new Error(`managed-policy lock ${POLICY_LOCK} still held by another process after ${timeout} ms`);
    Atomics.wait(sleeper, 0, 0, 200);
  }
  holdLock();
}

function holdLock() {
  lockHeld = true;
  process.once('exit', removeManagedPolicy);
}

/**
 * Write the managed policy Chromium reads at startup:
 * `{"3rdparty": {"extensions": {"<id>": policy}}}` plus any top-level Chrome
 * policies (e.g. `{ExtensionSettings: …}` for force-install tests).
 * Call removeManagedPolicy() in an `after` hook; an exit handler also removes
 * it as a last resort, since a stale file would leak into every later run.
 * Holds the machine-wide POLICY_LOCK until removeManagedPolicy().
 */
export function writeManagedPolicy(extensionId, policy, { chromePolicies = {} } = {}) {
  if (!canWriteManagedPolicy()) {
    throw new Error(`writeManagedPolicy needs root: Chromium reads managed policy only from ${POLICY_DIR}. `
      + 'Run this suite as root (as in the CI container), or skip policy tests when canWriteManagedPolicy() is false.');
  }
  const doc = { ...chromePolicies };
  if (policy !== undefined) {
    if (!/^[a-p]{32}$/.test(extensionId ?? '')) throw new Error(`not an extension id: ${extensionId}`);
    doc['3rdparty'] = { extensions: { [extensionId]: policy } };
  }
  // launchBrowser() takes the lock asynchronously first; a direct call
  // from test code waits here if another process holds it.
  acquirePolicyLockSync();
  mkdirSync(POLICY_DIR, { recursive: true });
  // Write then rename, so Chromium's file watcher never reads half a file.
  // (The temp name has no .json suffix for the same reason.)
  const tmp = join(POLICY_DIR, `.sessiontrail-test.${process.pid}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`);
  renameSync(tmp, POLICY_FILE);
}

/** Remove the policy file and release the machine-wide lock (no-op when not ours). */
export function removeManagedPolicy() {
  if (!lockHeld) return;
  rmSync(POLICY_FILE, { force: true });
  rmSync(POLICY_LOCK, { force: true });
  lockHeld = false;
  process.removeListener('exit', removeManagedPolicy);
}

/**
 * Make a running browser re-read policy now (chrome://policy "Reload
 * policies"), instead of waiting for the file watcher.
 */
export async function reloadPolicies(ctx) {
  const page = await ctx.newPage();
  try {
    await page.goto('chrome://policy');
    await page.locator('#reload-policies').click();
    // The page re-renders its table once the reload round-trip finishes.
    await page.waitForTimeout(500);
  } finally {
    await page.close();
  }
}

// ---------------------------------------------------------------- browser

/**
 * Launch Chromium (headless, persistent profile), optionally with an unpacked
 * extension and a managed policy for it.
 *
 * @param {object} o
 * @param {string} [o.extensionDir]  unpacked extension; omitted = plain browser
 * @param {string} [o.userDataDir]   profile dir; default a fresh temp dir removed on close()
 * @param {object} [o.policy]        managed policy for the extension (written before launch, removed on close())
 * @param {object} [o.chromePolicies] top-level Chrome policies for the same file
 * @param {string[]} [o.args]        extra Chromium switches
 * @param {string[]} [o.ignoreDefaultArgs] Playwright defaults to drop (force-install tests drop
 *   '--disable-background-networking' and '--disable-component-update', see BRIEF.md)
 * @returns {Promise<{ctx, sw, extensionId, userDataDir, close: () => Promise<void>}>}
 */
export async function launchBrowser({
  extensionDir, userDataDir, policy, chromePolicies, args = [], ignoreDefaultArgs = [], headless = true,
  timeout = 20000,
} = {}) {
  const ownProfile = !userDataDir;
  const profile = userDataDir ?? (await mkdtemp(join(tmpdir(), 'sessiontrail-profile-')));
  const extDir = extensionDir ? realpathSync(resolve(extensionDir)) : null;
  const expectedId = extDir ? extensionIdForDir(extDir) : null;

  const wrotePolicy = policy !== undefined || chromePolicies !== undefined;
  if (wrotePolicy) {
    if (!canWriteManagedPolicy()) writeManagedPolicy(expectedId, policy, { chromePolicies }); // throws the clear error
    await acquirePolicyLock();
    writeManagedPolicy(expectedId, policy, { chromePolicies });
  }

  const extArgs = extDir ? [`--disable-extensions-except=${extDir}`, `--load-extension=${extDir}`] : [];
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless,
      acceptDownloads: true,
      args: [
        '--no-sandbox', // the suites run as root in a container
        ...extArgs,
        '--no-first-run',
        '--disable-sync',
        '--disable-component-update',
        `--host-resolver-rules=${HOST_RESOLVER_RULES}`,
        // The fixtures' optional HTTPS mode uses a self-signed certificate;
        // the switch also covers extension fetches and auth-flow windows.
        '--ignore-certificate-errors',
        ...args,
      ],
      ignoreHTTPSErrors: true,
      // Playwright passes --disable-extensions by default; it must go for
      // --load-extension to take effect.
      ignoreDefaultArgs: [...(extDir ? ['--disable-extensions'] : []), ...ignoreDefaultArgs],
    });
  } catch (err) {
    if (wrotePolicy) removeManagedPolicy();
    if (ownProfile) await rm(profile, { recursive: true, force: true });
    throw err;
  }

  const close = async () => {
    try {
      await ctx.close();
    } finally {
      if (wrotePolicy) removeManagedPolicy();
      if (ownProfile) await rm(profile, { recursive: true, force: true, maxRetries: 3 });
    }
  };

  let sw = null;
  let extensionId = null;
  if (extDir) {
    try {
      sw = await waitForServiceWorker(ctx, expectedId, { timeout });
    } catch (err) {
      await close();
      throw new Error(`extension ${expectedId} from ${extDir} started no service worker within ${timeout} ms: ${err.message}`);
    }
    extensionId = new URL(sw.url()).host;
  }
  return { ctx, sw, extensionId, userDataDir: profile, close };
}

/**
 * The extension's service worker once it is running, waiting (polling) for
 * it to start if needed.
 *
 * Measured here (Chromium 156, playwright-core 1.65): a worker restarted
 * after stopServiceWorker() keeps its CDP target id, so Playwright emits no
 * new 'serviceworker' event and the old handle works again; while the worker
 * is stopped, evaluate() on that handle hangs. So this asks CDP whether the
 * worker runs instead of trusting Playwright's list alone.
 */
export async function waitForServiceWorker(ctx, extensionId, { timeout = 20000 } = {}) {
  const prefix = `chrome-extension://${extensionId ?? ''}`;
  const browser = ctx.browser();
  const cdp = browser ? await browser.newBrowserCDPSession() : null;
  const end = Date.now() + timeout;
  try {
    for (;;) {
      const handle = ctx.serviceWorkers().find((w) => w.url().startsWith(prefix));
      const running = !cdp || (await cdp.send('Target.getTargets')).targetInfos
        .some((t) => t.type === 'service_worker' && t.url.startsWith(prefix));
      if (handle && running) return handle;
      if (Date.now() > end) throw new Error(`no running service worker for ${prefix} after ${timeout} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await cdp?.detach().catch(() => {});
  }
}

/**
 * Stop the extension's service worker the way Chrome does after 30 s idle,
 * by closing its CDP target (ServiceWorker.stopAllWorkers closes the whole
 * context here, see BRIEF.md). Resolves to true once the worker's target is
 * gone, false if the extension had no running worker.
 *
 * Measured here: closing the target right after the worker started
 * sometimes does not take, so the close is repeated until the target is gone.
 * Do not evaluate() on the worker until it runs again (it hangs); wake it
 * with an event (e.g. a page load that runs the content script), then call
 * waitForServiceWorker().
 */
export async function stopServiceWorker(ctx, extensionId, { timeout = 10000 } = {}) {
  const browser = ctx.browser();
  if (!browser) throw new Error('stopServiceWorker: context has no browser handle');
  const prefix = `chrome-extension://${extensionId}/`;
  const cdp = await browser.newBrowserCDPSession();
  try {
    const find = async () => (await cdp.send('Target.getTargets')).targetInfos
      .find((t) => t.type === 'service_worker' && t.url.startsWith(prefix));
    const first = await find();
    if (!first) return false;
    const end = Date.now() + timeout;
    let lastClose = 0;
    for (;;) {
      const t = (await cdp.send('Target.getTargets')).targetInfos.find((x) => x.targetId === first.targetId);
      if (!t) return true;
      if (Date.now() > end) throw new Error(`service worker ${first.url} still running ${timeout} ms after Target.closeTarget`);
      if (Date.now() - lastClose > 1000) {
        lastClose = Date.now();
        await cdp.send('Target.closeTarget', { targetId: first.targetId }).catch(() => {});
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await cdp.detach().catch(() => {});
  }
}

// ---------------------------------------------------------------- fixture servers

/** `http://<app>.acme.test:<port><path>` (https with `{tls: true}`). */
export function appUrl(port, app, path = '/', { tls = false } = {}) {
  return `${tls ? 'https' : 'http'}://${app}.acme.test:${port}${path}`;
}

/**
 * Start the SaaS and IdP fixtures (both over HTTPS with `tls: true`).
 * @returns {Promise<{saas, idp, url: (app: string, path?: string) => string, close: () => Promise<void>}>}
 */
export async function startFixtures({ tls = false } = {}) {
  const saas = await startSaas({ tls });
  let idp;
  try {
    idp = await startIdp({ tls });
  } catch (err) {
    await saas.close();
    throw err;
  }
  return {
    saas,
    idp,
    url: (app, path) => saas.url(app, path),
    close: async () => {
      await Promise.allSettled([saas.close(), idp.close()]);
    },
  };
}

/** Sign in through the real form#login. Ends on the page the app redirects to. */
export async function login(page, saas, app, { user = 'alice@acme.test', password = DEMO_PASSWORD, next } = {}) {
  const q = next ? `?next=${encodeURIComponent(next)}` : '';
  await page.goto(saas.url(app, `/login${q}`));
  await page.locator('form#login input[name=username]').fill(user);
  await page.locator('form#login input[name=password]').fill(password);
  await Promise.all([
    page.waitForURL((u) => u.pathname !== '/login'),
    page.locator('form#login button[type=submit]').click(),
  ]);
}

/** Start signed in without the login form: a server session and its HttpOnly cookie. */
export async function loginByCookie(ctx, saas, app, user = 'alice@acme.test') {
  const { name, value } = saas.login(app, user);
  await ctx.addCookies([{ name, value, url: saas.url(app, '/'), httpOnly: true, sameSite: 'Lax', secure: !!saas.tls }]);
  return value;
}

/** Poll until `fn()` returns a truthy value. */
export async function waitFor(fn, { timeout = 5000, interval = 50, message = 'condition' } = {}) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${message}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Requests the SaaS fixture recorded that match every given field (`{app, method, path, …}`). */
export function requestsMatching(saas, filter = {}) {
  return saas.requests().filter((r) => Object.entries(filter).every(([k, v]) => (v instanceof RegExp ? v.test(r[k]) : r[k] === v)));
}

/** Wait until the SaaS fixture has recorded a matching request; returns it. */
export function waitForRequest(saas, filter, opts = {}) {
  return waitFor(() => requestsMatching(saas, filter).at(-1), { message: `request ${JSON.stringify(filter)}`, ...opts });
}

/**
 * An HTTP request to 127.0.0.1:port with an explicit Host header (Node's
 * resolver does not know *.acme.test, and fetch() will not set Host).
 */
export function httpRequest({ port, host, path = '/', method = 'GET', headers = {}, body, tls = false }) {
  return new Promise((resolvePromise, reject) => {
    const options = { host: '127.0.0.1', port, path, method, headers: { host: host ?? `127.0.0.1:${port}`, ...headers } };
    // The fixtures' certificate is self-signed; SNI follows the Host header.
    if (tls) Object.assign(options, { rejectUnauthorized: false, servername: (host ?? '').replace(/:\d+$/, '') || undefined });
    const req = (tls ? https : http).request(options, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolvePromise({ status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

// ---------------------------------------------------------------- OIDC helpers

export function decodeJwt(token) {
  const [h, p, s] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url')),
    claims: JSON.parse(Buffer.from(p, 'base64url')),
    signingInput: `${h}.${p}`,
    signature: Buffer.from(s ?? '', 'base64url'),
  };
}

/** True when the JWT's RS256 signature verifies against a key of the JWKS (by kid). */
export function verifyJwt(token, jwks) {
  const { header, signingInput, signature } = decodeJwt(token);
  if (header.alg !== 'RS256') return false;
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) return false;
  return cryptoVerify('sha256', Buffer.from(signingInput), createPublicKey({ key: jwk, format: 'jwk' }), signature);
}

/**
 * Run the IdP's implicit flow in an ordinary tab and return what came back
 * in the redirect fragment. `login: false` expects a silent (SSO) answer.
 */
export async function idpAuthorize(page, idp, {
  clientId = 'sessiontrail-test', nonce = `n-${Date.now()}`, state = `s-${Date.now()}`, prompt, maxAge,
  user = 'alice@acme.test', password = DEMO_PASSWORD, login: fillForm = true,
  redirectUri = `${idp.issuer}/__fixture/callback`,
} = {}) {
  const q = new URLSearchParams({ response_type: 'id_token', client_id: clientId, redirect_uri: redirectUri, scope: 'openid email', nonce, state });
  if (prompt !== undefined) q.set('prompt', prompt);
  if (maxAge !== undefined) q.set('max_age', String(maxAge));
  const back = (u) => u.href.startsWith(redirectUri);
  await page.goto(`${idp.issuer}/authorize?${q}`);
  let showedForm = false;
  if (!back(new URL(page.url()))) {
    if (!fillForm) throw new Error(`expected a silent answer, got ${page.url()}`);
    showedForm = true;
    await page.locator('#idp-login #username').fill(user);
    await page.locator('#idp-login #password').fill(password);
    await Promise.all([page.waitForURL(back), page.locator('#idp-submit').click()]);
  }
  const params = Object.fromEntries(new URLSearchParams(new URL(page.url()).hash.slice(1)));
  return { params, showedForm, nonce, state, clientId, ...(params.id_token ? decodeJwt(params.id_token) : {}) };
}
