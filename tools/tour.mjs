// The guided tour behind `cargo xtask demo --tour`: headless Chromium with
// the staged extension, configured by a real managed-policy file to talk to
// the demo collector, works through a scripted session on the fixture SaaS
// apps (tests/fixtures), then shows what the auditor gets: the session's
// timeline URL, an evidence bundle verified offline, and a screenshot of the
// timeline in the auditor UI.
//
//   node tools/tour.mjs [--collector URL] [--demo-dir DIR] [--bin FILE]
//                       [--extension DIR] [--screenshot FILE]
//
// Defaults: the tenant `cargo xtask demo` made in target/demo (its
// managed-policy.json names the collector), target/debug/sessiontrail,
// target/extension, target/demo/timeline.png. The collector must be running.
// Needs root: Chromium reads managed policy only from
// /etc/chromium/policies/managed (the file is removed at the end, also on
// failure or Ctrl-C).
//
// Run alone (`node tools/tour.mjs`) it tours the collector of a running
// `cargo xtask demo`, which it leaves running. The scenarios are the ones
// tests/e2e/extension.test.mjs and responses.test.mjs assert on in detail;
// the tour checks only what it narrates (held, sent, refused, signed out).

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import {
  DEMO_PASSWORD as PASSWORD, POLICY_LOCK, SESSION_COOKIE, canWriteManagedPolicy, launchBrowser, login, requestsMatching, startFixtures,
  waitFor, waitForRequest,
} from '../tests/e2e/harness.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const USER = 'alice@acme.test';
const REASON = 'Quarterly account review for the EMEA team';

const { values: opt } = parseArgs({
  options: {
    collector: { type: 'string' },
    'demo-dir': { type: 'string', default: join(ROOT, 'target/demo') },
    bin: { type: 'string', default: join(ROOT, 'target/debug/sessiontrail') },
    extension: { type: 'string', default: join(ROOT, 'target/extension') },
    // The README's picture is refreshed on purpose with
    // `--screenshot docs/images/timeline.png`; a plain run keeps the tree clean.
    screenshot: { type: 'string', default: join(ROOT, 'target/demo/timeline.png') },
  },
});

const started = Date.now();
const secs = (t0) => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const rel = (p) => relative(process.cwd(), p) || '.';
const say = (line = '') => process.stdout.write(`${line}\n`);

function fail(message) {
  process.stderr.write(`\ntour: ${message}\n`);
  process.exit(1);
}

// ------------------------------------------------------------ the tenant

const demoDir = resolve(opt['demo-dir']);
const tenantFile = (name, encoding = 'utf8') => {
  const p = join(demoDir, name);
  if (!existsSync(p)) fail(`${p} is missing: run \`cargo xtask demo\` first (it makes the demo tenant)`);
  return encoding ? readFileSync(p, encoding).trim() : readFileSync(p);
};
const basePolicy = JSON.parse(tenantFile('managed-policy.json'));
const auditor = tenantFile('auditor.token');
const packB64 = tenantFile('acme.strp', null).toString('base64');
const collector = (opt.collector ?? basePolicy.collectorUrl ?? 'http://127.0.0.1:7878').replace(/\/+$/, '');
const extensionDir = resolve(opt.extension);
const bin = resolve(opt.bin);
const screenshot = resolve(opt.screenshot);

if (!canWriteManagedPolicy()) fail('needs root: Chromium reads managed policy only from /etc/chromium/policies/managed');
if (!existsSync(join(extensionDir, 'manifest.json'))) fail(`no staged extension in ${extensionDir}: run \`cargo xtask package\``);
if (!existsSync(bin)) fail(`${bin} is missing: cargo build -p sessiontrail-collector`);
if (!(await fetch(`${collector}/healthz`).catch(() => null))?.ok) fail(`no collector answers at ${collector}: start \`cargo xtask demo\``);

const auth = { authorization: `Bearer ${auditor}` };
async function api(path, init = {}) {
  const res = await fetch(`${collector}${path}`, { ...init, headers: { ...auth, ...init.headers } });
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${await res.text()}`);
  return res;
}

// ------------------------------------------------------------ cleanup

let fx = null;
let browser = null;
let interrupted = false;
async function cleanup() {
  const b = browser;
  browser = null;
  // close() removes the managed-policy file and releases its lock.
  await b?.close().catch((e) => process.stderr.write(`tour: closing the browser: ${e.message}\n`));
  const f = fx;
  fx = null;
  await f?.close();
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    interrupted = true;
    process.stderr.write(`\ntour: ${sig}, stopping the browser and the fixtures\n`);
    cleanup().finally(() => process.exit(130));
  });
}

// ------------------------------------------------------------ progress

const STEPS = 5;
let stepNo = 0;
async function step(title, fn) {
  stepNo += 1;
  process.stdout.write(`[${stepNo}/${STEPS}] ${title} … `);
  const t0 = Date.now();
  try {
    const note = await fn();
    say(`ok (${secs(t0)})${note ? `\n      ${note}` : ''}`);
  } catch (err) {
    say(interrupted ? 'interrupted' : 'FAILED');
    throw err;
  }
}

async function phase(title, fn) {
  process.stdout.write(`      ${title} … `);
  const t0 = Date.now();
  const r = await fn();
  say(`ok (${secs(t0)})`);
  return r;
}

// ------------------------------------------------------------ the service worker

const sw = (fn, arg) => browser.sw.evaluate(fn, arg);

/** The id of a held action awaiting `response`. */
function pendingAction(response) {
  return waitFor(
    () => sw((r) => Object.entries(globalThis.sessiontrail.state.pending).find(([, p]) => p.response === r)?.[0], response),
    { timeout: 15_000, message: `a held action awaiting ${response}` },
  );
}

const session = (app) => sw((a) => {
  const s = globalThis.sessiontrail.state.sessions[a];
  return s ? { id: s.id, user: s.user, risk: s.sessionRisk } : null;
}, app);

/** Signs in through the app's real login form; resolves to the new app session. */
async function signIn(page, app) {
  await login(page, fx.saas, app, { user: USER, password: PASSWORD });
  return waitFor(async () => {
    const s = await session(app);
    return s?.user === USER ? s : null;
  }, { timeout: 10_000, message: `the ${app} session of ${USER}` });
}

/** Flushes the extension's queue until the collector's timeline satisfies `done`. */
async function stored(q, done, message) {
  let last = null;
  return waitFor(async () => {
    await sw(() => globalThis.sessiontrail.flush());
    const res = await fetch(`${collector}/v1/timeline?${new URLSearchParams(q)}`, { headers: auth });
    if (!res.ok) return null;
    last = await res.json();
    return done(last) ? last : null;
  }, { timeout: 30_000, interval: 500, message }).catch(async (e) => {
    const st = await sw(() => globalThis.sessiontrail.status()).catch(() => ({}));
    throw new Error(`${e.message}\n  extension: ${JSON.stringify({ queue: st.queue, upload: st.upload, packErrors: st.packErrors })}\n  stored: ${last?.entries?.map((x) => x.action).join(' ') ?? 'nothing'}`);
  });
}

// ------------------------------------------------------------ the tour

try {
  say(`sessiontrail tour: ${USER} at work in the Acme apps, recorded by the extension, stored by ${collector}`);
  fx = await phase('fixture SaaS apps and IdP', () => startFixtures());
  say(`      apps at ${fx.url('crm', '/')} (and hr., console.), IdP ${fx.idp.issuer}`);

  const policy = {
    ...basePolicy,
    collectorUrl: collector,
    // The signed demo pack, applied before the first fetch from the collector
    // (which serves the same pack to the device's group).
    bootstrapRulePacks: [packB64],
    identity: { source: 'page', user: USER },
    deviceName: 'tour-headless-chromium',
    maskKey: randomBytes(32).toString('hex'),
    stepUp: { issuer: fx.idp.issuer, clientId: 'sessiontrail', jwksUrl: `${fx.idp.issuer}/jwks` },
  };
  if (existsSync(POLICY_LOCK)) say(`      (another process holds ${POLICY_LOCK}; waiting for it)`);
  browser = await phase('headless Chromium with the extension under managed policy', () => launchBrowser({ extensionDir, policy }));
  browser.ctx.setDefaultTimeout(15_000);
  await phase('rule pack verified, content script registered, device enrolled', () => waitFor(
    () => sw(async () => (await chrome.scripting.getRegisteredContentScripts()).length > 0
      && !!globalThis.sessiontrail.state.inForce.acme && !!globalThis.sessiontrail.state.enrollment),
    { timeout: 30_000, interval: 200, message: 'pack in force, content script and enrollment' },
  ));
  say();

  const { ctx } = browser;
  const page = await ctx.newPage();
  let crm;
  let consoleSession;

  await step('login and routine work in the CRM', async () => {
    crm = await signIn(page, 'crm');
    // The login lands on the customer list; open a record and add a note.
    await page.locator('table#customers tbody tr[data-id] a').first().click();
    await page.waitForURL(/\/crm\/customers\/\d+/);
    await page.locator('a[data-tab-link=notes]').click();
    await page.locator('form#customer-note textarea[name=note]').fill('Called back about the renewal, see ticket 4411');
    await page.locator('form#customer-note button[type=submit]').click();
    await waitForRequest(fx.saas, { method: 'POST', path: /^\/api\/customers\/\d+\/notes$/ });
    await page.locator('header.topbar a[href="/crm/customers"]').first().click();
    await page.waitForURL((u) => u.pathname === '/crm/customers');
    return `signed in as ${USER} (CRM session ${crm.id}); a customer record opened, a note added, no prompt`;
  });

  await step('an export that needs a justification (justify)', async () => {
    await page.locator('acme-toolbar button[data-action=export-csv]').click();
    await pendingAction('justify');
    // The overlay (closed shadow root) focuses its textbox; Tab, Tab, Enter is "Continue".
    await page.locator('sessiontrail-overlay:focus').waitFor({ state: 'attached' });
    if (requestsMatching(fx.saas, { path: '/api/customers/export.csv' }).length) throw new Error('the export was not held');
    await page.keyboard.type(REASON, { delay: 10 });
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await waitForRequest(fx.saas, { path: '/api/customers/export.csv' }, { timeout: 10_000 });
    return `held until the reason "${REASON}" was typed, then sent`;
  });

  await step('an IAM role change that needs step-up authentication (step_up)', async () => {
    const cpage = await ctx.newPage();
    consoleSession = await signIn(cpage, 'console');
    await cpage.goto(fx.url('console', '/console/iam/users/u-3/role'));
    await cpage.locator('form#role-change select[name=role]').selectOption('Administrator');
    await cpage.locator('form#role-change button[type=submit]').click();
    await pendingAction('step_up');
    if (requestsMatching(fx.saas, { path: '/api/iam/users/u-3/role' }).length) throw new Error('the role change was not held');
    await cpage.locator('sessiontrail-overlay:focus').waitFor({ state: 'attached' });
    const idpPage = ctx.waitForEvent('page', { predicate: (p) => p.url().includes('/authorize'), timeout: 15_000 });
    await cpage.keyboard.press('Enter'); // "Sign in"
    const idp = await idpPage;
    await idp.locator('#idp-login #username').fill(USER);
    await idp.locator('#idp-login #password').fill(PASSWORD);
    await idp.locator('#idp-submit').click();
    await waitForRequest(fx.saas, { method: 'POST', path: '/api/iam/users/u-3/role' }, { timeout: 15_000 });
    await cpage.locator('#user-role', { hasText: 'Administrator' }).waitFor();
    await cpage.close();
    return `fresh login at the IdP (${fx.idp.issuer}), ID token verified, Administrator granted to u-3`;
  });

  /** Clicks "Export all customers"; resolves once the refusal counted or the session ended. */
  async function bulkExport() {
    const before = (await session('crm'))?.risk ?? 0;
    await page.locator('acme-toolbar button[data-action=export-all]').click();
    return waitFor(async () => {
      if (new URL(page.url()).pathname === '/login') return { ended: true };
      const s = await session('crm');
      return s && s.risk > before + 30 ? { before, risk: s.risk } : null;
    }, { timeout: 10_000, message: 'the refused export counted, or the session ended' });
  }

  await step('a bulk export of all customers (block)', async () => {
    const r = await bulkExport();
    if (r.ended) throw new Error('the session ended at the first bulk export');
    // The "Blocked" notice focuses its OK button.
    await page.locator('sessiontrail-overlay:focus').waitFor({ state: 'attached' });
    await page.keyboard.press('Enter');
    if (requestsMatching(fx.saas, { path: '/api/customers/export-all.csv' }).length) throw new Error('the bulk export reached the server');
    return `refused in the page, never sent; CRM session risk ${Math.round(r.before)} → ${Math.round(r.risk)} (over the step-up threshold, 60)`;
  });

  await step('risk over the threshold terminates the CRM session (terminate)', async () => {
    // The same export again: 40 more points take the session over 100.
    for (let tries = 1; ; tries += 1) {
      const r = await bulkExport();
      if (r.ended) break;
      await page.waitForURL((u) => u.pathname === '/login', { timeout: 3_000 }).catch(() => {});
      if (new URL(page.url()).pathname === '/login') break;
      if (tries === 3) throw new Error('the session was not terminated after 3 more bulk exports');
      await page.locator('sessiontrail-overlay:focus').waitFor({ state: 'attached' });
      await page.keyboard.press('Enter');
    }
    if (requestsMatching(fx.saas, { path: '/api/customers/export-all.csv' }).length) throw new Error('a bulk export reached the server');
    const cookie = async (app) => (await ctx.cookies(fx.url(app, '/'))).find((c) => c.name === SESSION_COOKIE);
    if (await cookie('crm')) throw new Error('the CRM session cookie is still there');
    return `the CRM session cookie is gone and the tab is at /login${(await cookie('console')) ? '; the console session is untouched' : ''}`;
  });

  // ---------------------------------------------------------- what the auditor gets

  say();
  const crmQuery = { user: USER, app: 'crm', session: crm.id };
  const consoleQuery = { user: USER, app: 'console', session: consoleSession.id };
  const timeline = await phase('waiting until the collector stored both sessions', async () => {
    await stored(consoleQuery, (t) => t.entries.some((e) => e.action === 'response_resolved'), 'the step-up outcome stored');
    return stored(crmQuery, (t) => t.entries.some((e) => e.action === 'terminated'), 'the termination stored');
  });
  const s = timeline.summary;
  const counts = {};
  for (const e of timeline.entries) counts[e.response] = (counts[e.response] ?? 0) + 1;
  say(`      CRM session ${crm.id}: ${s.events} events, ${s.failed} failed verification, ${s.missing} missing`
    + ` (decisions: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')})`);

  const url = (q) => `${collector}/ui/#/timeline?${new URLSearchParams(q)}`;
  say();
  say('Auditor UI — the CRM session (justify, block, terminate):');
  say(`  ${url(crmQuery)}`);
  say('and the console session (step-up):');
  say(`  ${url(consoleQuery)}`);
  say(`sign in with the auditor credential in ${rel(join(demoDir, 'auditor.token'))}: ${auditor}`);

  // The evidence bundle of the CRM session, verified offline.
  const bundle = join(demoDir, `evidence-${crm.id}.zip`);
  const res = await api('/v1/evidence', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: crmQuery }),
  });
  writeFileSync(bundle, Buffer.from(await res.arrayBuffer()));
  const vkey = (await (await api('/v1/log/key')).text()).trim();
  say();
  say(`Evidence bundle (${res.headers.get('x-sessiontrail-events')} events): ${rel(bundle)}`);
  say(`$ sessiontrail evidence verify ${rel(bundle)} --collector-key ${vkey}`);
  let verified;
  try {
    verified = execFileSync(bin, ['evidence', 'verify', bundle, '--collector-key', vkey], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    say(`${e.stdout ?? ''}${e.stderr ?? ''}`.trimEnd());
    throw new Error('sessiontrail evidence verify failed on the bundle');
  }
  say(verified.trimEnd().split('\n').map((l) => `  ${l}`).join('\n'));

  // The picture: the auditor's timeline of the CRM session, in this browser.
  await phase(`screenshot of the timeline → ${rel(screenshot)}`, async () => {
    const ui = await ctx.newPage();
    await ui.setViewportSize({ width: 1440, height: 900 });
    await ui.goto(url(crmQuery));
    await ui.locator('#credential').fill(auditor);
    await ui.locator('#signin-form button[type=submit]').click();
    await ui.locator('#timeline li.t-entry').first().waitFor();
    await waitFor(() => ui.locator('#timeline-status').textContent().then((t) => t.includes('re-verified')), { message: 'the timeline loaded' });
    // Scrolled to the end and zoomed out as the browser's zoom would (80 %,
    // less if needed) until the first guarded action is in view: every
    // response of the session, down to the termination, on one screen.
    await ui.evaluate(() => {
      const first = [...document.querySelectorAll('#timeline li.t-entry')].find((li) => li.querySelector('.decision-justify'));
      for (const zoom of [0.8, 0.75, 0.7, 0.65]) {
        document.documentElement.style.zoom = String(zoom);
        window.scrollTo(0, document.documentElement.scrollHeight);
        if (!first || first.getBoundingClientRect().top >= 0) break;
      }
    });
    mkdirSync(dirname(screenshot), { recursive: true });
    await ui.screenshot({ path: screenshot });
    await ui.close();
  });
  say();
  say(`tour done in ${secs(started)}`);
} catch (err) {
  if (!interrupted) {
    // Playwright appends the browser's whole log to its messages: keep the point.
    const msg = String(err?.message ?? err).split('\nBrowser logs:')[0];
    process.stderr.write(`\ntour failed: ${msg}\n${err?.stack?.split('\n').find((l) => l.includes('tour.mjs')) ?? ''}\n`);
  }
  process.exitCode = 1;
} finally {
  await cleanup();
}
