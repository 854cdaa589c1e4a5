// In-session responses end to end (issue 4, scenarios 3, 5, 8, 9 and the
// popup): the staged extension (target/extension) in real headless
// Chromium under a real managed-policy file, the real collector binary, the
// fixture SaaS apps and the fixture OIDC IdP. Every assertion is on what the
// collector stored (records decoded and signature-checked here with Node
// crypto), on what the fixture servers received, or on the browser's own
// state (cookies, URLs) — never on "it did not crash".
//
// One browser, one collector and one set of fixtures are shared by the
// tests, which run in order. Session risk accumulates per app session, so a
// test that needs a known risk signs out and in again first (a login starts
// a new app session at risk 0).

import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  EXT_DIR, ROOT, buildCollectorIfMissing, createCredentials, extensionPolicy, extensionSkipReason, flushUntilStored,
  publishPack, run, signPack, startCollector,
} from './collector.mjs';
import {
  SESSION_COOKIE, launchBrowser, login, reloadPolicies, requestsMatching, waitFor,
  waitForRequest, writeManagedPolicy, startFixtures,
} from './harness.mjs';

const ADMIN_SEED = randomBytes(32).toString('hex');
const FORGER_SEED = randomBytes(32).toString('hex');
const USER = 'alice@acme.test';

const skip = extensionSkipReason();

// ------------------------------------------------------------ rule packs

// What an attacker would want: the bulk export no longer blocked, and a rule
// of their own. Neither may ever take effect.
function rogueToml(base) {
  const i = base.indexOf('id = "crm.customers.export_all"');
  const j = base.indexOf('response = "block"', i);
  assert.ok(i > 0 && j > i, 'acme.toml still has a blocking export_all rule');
  return `${base.slice(0, j)}response = "log"${base.slice(j + 'response = "block"'.length)}
[[rule]]
id = "forged.reports"
app = "crm"
title = "Forged rule"
actions = ["page_load", "route_change"]
path = "/crm/reports"
severity = "info"
risk = 0
`;
}

// A legitimate newer pack: the same rules plus one visible on /crm/reports.
function newerToml(base) {
  return `${base}
[[rule]]
id = "acme.reports.view"
app = "crm"
title = "CRM report viewed"
actions = ["page_load", "route_change"]
path = "/crm/reports"
severity = "info"
risk = 0
`;
}

/**
 * The same pack with one payload byte changed (export_all's `"risk":40`
 * becomes `"risk":00`); with `fixChecksum` the header's SHA-256 is
 * recomputed too, as an attacker would (it is not keyed): only the admin
 * signature can catch that.
 */
function alterByte(blob, { fixChecksum }) {
  const b = Buffer.from(blob);
  const n = b.readUInt32BE(16);
  const payload = b.subarray(52, 52 + n);
  const at = payload.indexOf('"risk":40');
  assert.ok(at > 0, 'payload has a risk of 40');
  payload[at + 7] = 0x30; // '4' → '0'
  if (fixChecksum) createHash('sha256').update(payload).digest().copy(b, 20);
  return b;
}

describe('extension responses: step-up, terminate, untrusted events, forged/rolled-back packs, popup', { skip, timeout: 300_000 }, () => {
  let fx;
  let browser;
  let collector;
  let dataDir;
  let base;
  let auditor;
  let admin;
  let policy;
  const packs = {};

  /** Flushes the worker's queue until the collector holds records satisfying `predicate`. */
  async function stored(predicate, message) {
    const recs = await flushUntilStored(browser.sw, { base, auditor }, predicate, { interval: 300, message });
    for (const r of recs) assert.ok(r.sigOk, `record ${r.seq} signature verifies`);
    return recs;
  }

  const swState = (fn, arg) => browser.sw.evaluate(fn, arg);

  /** A new app session at risk 0: sign out (if signed in), then through the real login form. */
  async function freshLogin(page, app) {
    const old = await swState((a) => globalThis.sessiontrail.state.sessions[a]?.id ?? '', app);
    await page.goto(fx.url(app, '/logout'));
    await login(page, fx.saas, app);
    // The login signal starts a session named after the signed-in user (the
    // signed-out /login page may open an anonymous one first).
    await waitFor(
      () => swState(([a, o, u]) => {
        const s = globalThis.sessiontrail.state.sessions[a];
        return !!s && s.id !== o && s.user === u && s.sessionRisk === 0;
      }, [app, old, USER]),
      { message: `a new ${app} session` },
    );
  }

  /** The action id of the held action awaiting `response` that is not in `seen`. */
  function pendingAction(response, seen = new Set()) {
    return waitFor(
      () => swState(([r, s]) => Object.entries(globalThis.sessiontrail.state.pending).find(([id, p]) => p.response === r && !s.includes(id))?.[0], [response, [...seen]]),
      { timeout: 10_000, message: `a held action awaiting ${response}` },
    );
  }

  const publish = (blob) => publishPack(base, admin, blob);

  before(async () => {
    buildCollectorIfMissing();
    run('cargo', ['build', '-q', '-p', 'sessiontrail-wasm', '--example', 'sign_pack']);
    dataDir = await mkdtemp(join(tmpdir(), 'sessiontrail-responses-'));
    let enrollToken;
    ({ enrollToken, auditor, admin } = createCredentials(dataDir, { admin: true }));
    collector = await startCollector(dataDir);
    base = collector.base;

    // v2 is in force (from policy); v1 is a rollback; v3 is signed by an
    // unpinned key; v4 is altered after signing; v5 is a good update.
    const acme = readFileSync(join(ROOT, 'rulepacks/demo/acme.toml'), 'utf8');
    const v2 = signPack(dataDir, 'acme-v2', acme, ADMIN_SEED, 2);
    packs.adminKey = v2.key;
    packs.v2 = v2.blob;
    packs.v1 = signPack(dataDir, 'acme-v1', acme, ADMIN_SEED, 1).blob;
    const forged = signPack(dataDir, 'forged-v3', rogueToml(acme), FORGER_SEED, 3);
    assert.notEqual(forged.key, packs.adminKey);
    packs.forged = forged.blob;
    const v4 = signPack(dataDir, 'acme-v4', acme, ADMIN_SEED, 4).blob;
    packs.tampered = alterByte(v4, { fixChecksum: true });
    packs.corrupt = alterByte(v4, { fixChecksum: false });
    packs.v5 = signPack(dataDir, 'acme-v5', newerToml(acme), ADMIN_SEED, 5).blob;

    fx = await startFixtures();
    policy = extensionPolicy({
      collectorUrl: base,
      enrollmentToken: enrollToken,
      adminKey: packs.adminKey,
      packs: [packs.v2],
      stepUp: { issuer: fx.idp.issuer, clientId: 'sessiontrail', jwksUrl: `${fx.idp.issuer}/jwks` },
    });
    browser = await launchBrowser({ extensionDir: EXT_DIR, policy });
    browser.ctx.setDefaultTimeout(10_000);
    await waitFor(
      () => swState(async () => (await chrome.scripting.getRegisteredContentScripts()).length > 0 && globalThis.sessiontrail.state.inForce.acme?.version === '2'),
      { timeout: 15_000, message: 'pack v2 in force and the content script registered' },
    );
  });

  after(async () => {
    await browser?.close();
    await fx?.close();
    await collector?.kill('SIGTERM');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('a page that clicks by itself is recorded as untrusted (and its export is still held)', async () => {
    const { ctx } = browser;
    const page = await ctx.newPage();
    await login(page, fx.saas, 'crm');
    fx.saas.reset({ state: false });
    const seen = new Set();
    const ids = {};
    for (const via of ['click', 'dispatch']) {
      await page.goto(fx.url('crm', `/crm/customers?autoclick=1&via=${via}`));
      await page.locator('main[data-autoclick-done]').waitFor({ state: 'attached' });
      // The synthetic click hit a `justify` guard: held like a real one.
      ids[via] = await pendingAction('justify', seen);
      seen.add(ids[via]);
    }
    const recs = await stored(
      (rs) => Object.values(ids).every((id) => rs.some((r) => r.body.kind.type === 'click' && r.body.decision.action_id === id)),
      'both synthetic clicks stored',
    );
    for (const [via, id] of Object.entries(ids)) {
      const click = recs.find((r) => r.body.kind.type === 'click' && r.body.decision.action_id === id);
      assert.equal(click.body.trusted, false, `the ${via} click is stored as untrusted`);
      assert.deepEqual(click.body.classification.rules, ['crm.customers.export_csv']);
      assert.equal(click.body.decision.response, 'justify');
      assert.equal(click.body.target.tag, 'button');
    }
    // Real clicks of the same user stay trusted (the login form submit).
    assert.ok(recs.some((r) => r.body.kind.type === 'submit' && r.body.trusted === true));
    assert.deepEqual(requestsMatching(fx.saas, { path: '/api/customers/export.csv' }), [], 'no export reached the server');
    await page.close();
  });

  /** docs/masking.md: the commitment to an email under the policy's mask key. */
  const emailCommitment = (email) =>
    createHmac('sha256', Buffer.from(policy.maskKey, 'hex'))
      .update(Buffer.concat([Buffer.from('sessiontrail.mask.v1'), Buffer.from([0]), Buffer.from(email.trim().toLowerCase())]))
      .digest()
      .subarray(0, 16)
      .toString('base64url');

  async function roleChangeWithStepUp({ userId, idpMode, idpUser = USER }) {
    const { ctx } = browser;
    const page = await ctx.newPage();
    await freshLogin(page, 'console');
    fx.idp.setMode(idpMode);
    const idpBefore = fx.idp.requests().length;
    fx.saas.reset({ state: false });
    try {
      await page.goto(fx.url('console', `/console/iam/users/${userId}/role`));
      const roleBefore = await page.locator('#user-role').textContent();
      assert.notEqual(roleBefore, 'Administrator');
      await page.locator('form#role-change select[name=role]').selectOption('Administrator');
      await page.locator('form#role-change button[type=submit]').click();
      const actionId = await pendingAction('step_up');
      assert.deepEqual(requestsMatching(fx.saas, { path: `/api/iam/users/${userId}/role` }), [], 'held: nothing sent yet');
      // The overlay (closed shadow root) focuses "Sign in" once the worker's
      // answer arrived (its host then matches :focus); the IdP's page opens
      // as a new page of the context.
      await page.locator('sessiontrail-overlay:focus').waitFor({ state: 'attached' });
      const idpPage = ctx.waitForEvent('page', { predicate: (p) => p.url().includes('/authorize'), timeout: 15_000 });
      await page.keyboard.press('Enter');
      const idp = await idpPage;
      await idp.locator('#idp-login #username').fill(idpUser);
      await idp.locator('#idp-login #password').fill('acme-demo');
      await idp.locator('#idp-submit').click();
      const recs = await stored(
        (rs) => rs.some((r) => r.body.kind.type === 'response_resolved' && r.body.decision.action_id === actionId),
        `the step-up outcome of ${actionId} stored`,
      );
      // The IdP was asked for a fresh login, with a nonce.
      const authz = fx.idp.requests().slice(idpBefore).filter((r) => r.endpoint === 'authorize');
      const get = authz.find((r) => r.method === 'GET');
      assert.equal(get.prompt, 'login');
      assert.equal(get.max_age, '0');
      assert.ok(get.nonce && get.nonce.length >= 16, 'a nonce was sent');
      assert.match(get.redirect_uri, new RegExp(`^https://${browser.extensionId}\\.chromiumapp\\.org/`));
      const post = authz.find((r) => r.method === 'POST');
      assert.equal(post.outcome, 'issued:login', 'the IdP issued a token');
      assert.equal(post.mode, idpMode);
      assert.equal(post.user, idpUser, 'the IdP was signed in to as the intended user');
      const submit = recs.find((r) => r.body.kind.type === 'submit' && r.body.decision.action_id === actionId);
      assert.ok(submit, 'the held submit is stored');
      assert.deepEqual(submit.body.classification.rules, ['console.iam.role_change', 'console.iam.grant_admin']);
      assert.equal(submit.body.decision.response, 'step_up');
      assert.deepEqual(submit.body.fields.role, { clear: 'Administrator' });
      const resolved = recs.find((r) => r.body.kind.type === 'response_resolved' && r.body.decision.action_id === actionId);
      assert.equal(resolved.body.kind.response, 'step_up');
      assert.equal(resolved.body.app, 'console');
      // The session the held action belongs to is the signed-in app user's.
      assert.equal(submit.body.user, USER);
      return { page, resolved, roleBefore };
    } finally {
      fx.idp.setMode('normal');
    }
  }

  test('`step_up`: a good re-login at the IdP lets the Administrator grant through', async () => {
    const userId = 'u-3';
    const { page, resolved } = await roleChangeWithStepUp({ userId, idpMode: 'normal' });
    assert.equal(resolved.body.kind.outcome, 'allowed');
    // Who re-authenticated is signed evidence: a commitment the auditor
    // opens with the session user's email under the tenant mask key.
    assert.deepEqual(resolved.body.fields.idp_subject, { masked: emailCommitment(USER) });
    // The held submit was replayed: the server got it and the page shows it.
    const req = await waitForRequest(fx.saas, { method: 'POST', path: `/api/iam/users/${userId}/role` });
    assert.equal(req.body.role, 'Administrator');
    await page.locator('#user-role', { hasText: 'Administrator' }).waitFor();
    assert.equal(fx.saas.state().roles[userId], 'Administrator');
    await page.close();
  });

  for (const [idpMode, userId] of [['stale_auth_time', 'u-4'], ['bad_signature', 'u-5']]) {
    test(`\`step_up\`: an ID token with ${idpMode.replace('_', ' ')} is refused, and so is the action`, async () => {
      const { page, resolved, roleBefore } = await roleChangeWithStepUp({ userId, idpMode });
      assert.equal(resolved.body.kind.outcome, 'refused');
      // The worker's answer reached the page before the outcome was stored;
      // give a (wrongly) replayed fetch a moment to show before concluding.
      await page.waitForLoadState('networkidle');
      assert.deepEqual(requestsMatching(fx.saas, { path: `/api/iam/users/${userId}/role` }), [], 'the server saw no role change');
      assert.equal(fx.saas.state().roles[userId], undefined);
      assert.equal(await page.locator('#user-role').textContent(), roleBefore);
      await page.close();
    });
  }

  test('`step_up`: a re-login at the IdP as another user is refused, and so is the action', async () => {
    const userId = 'u-7';
    const mallory = 'mallory@acme.test';
    const { page, resolved, roleBefore } = await roleChangeWithStepUp({ userId, idpMode: 'normal', idpUser: mallory });
    // The IdP issued a valid token, but for someone else.
    assert.equal(resolved.body.kind.outcome, 'refused');
    assert.equal(resolved.body.user, USER);
    // The identity actually presented is recorded (it opens to mallory, not alice).
    assert.deepEqual(resolved.body.fields.idp_subject, { masked: emailCommitment(mallory) });
    assert.notEqual(emailCommitment(mallory), emailCommitment(USER));
    await page.waitForLoadState('networkidle');
    assert.deepEqual(requestsMatching(fx.saas, { path: `/api/iam/users/${userId}/role` }), [], 'the server saw no role change');
    assert.equal(fx.saas.state().roles[userId], undefined);
    assert.equal(await page.locator('#user-role').textContent(), roleBefore);
    await page.close();
  });

  test('`terminate`: session risk over the threshold ends the CRM session — cookie gone, tabs at /login', async () => {
    const { ctx } = browser;
    const page = await ctx.newPage();
    await freshLogin(page, 'crm');
    const other = await ctx.newPage();
    await other.goto(fx.url('crm', '/crm/reports'));
    const crmUrl = fx.url('crm', '/');
    const consoleUrl = fx.url('console', '/');
    const cookie = async (url) => (await ctx.cookies(url)).find((c) => c.name === SESSION_COOKIE);
    assert.ok(await cookie(crmUrl), 'signed in to the CRM');
    assert.ok(await cookie(consoleUrl), 'signed in to the console (another app)');
    fx.saas.reset({ state: false });
    // Bulk export (block, 40 points) three times: 40, ~80 (over step_up at
    // 60; the block is stronger), ~120 (over terminate at 100).
    for (let i = 1; i <= 3; i++) {
      // A fresh page load each time: the previous "Blocked" overlay is gone.
      await page.goto(fx.url('crm', '/crm/customers'));
      await page.locator('acme-toolbar button[data-action=export-all]').click();
      if (i < 3) {
        await waitFor(() => swState((n) => globalThis.sessiontrail.state.sessions.crm?.sessionRisk >= 40 * n - 1, i), {
          message: `session risk after export ${i}`,
        });
      }
    }
    await page.waitForURL((u) => u.pathname === '/login', { timeout: 10_000 });
    await other.waitForURL((u) => u.pathname === '/login', { timeout: 10_000 });
    assert.ok(page.url().endsWith('/login'), `the app tab is at its login page: ${page.url()}`);
    assert.ok(await page.locator('form#login').isVisible(), 'the app shows its login form (signed out)');
    assert.equal(await cookie(crmUrl), undefined, 'the acme_session cookie of the CRM is gone');
    assert.ok(await cookie(consoleUrl), "another app's session is untouched");
    const recs = await stored(
      (rs) => rs.some((r) => r.body.kind.type === 'terminated' && r.body.app === 'crm'),
      'the termination stored',
    );
    const clicks = recs.filter((r) => r.body.kind.type === 'click' && r.body.classification.rules.includes('crm.customers.export_all')).slice(-3);
    assert.deepEqual(clicks.map((r) => r.body.decision.response), ['block', 'block', 'terminate']);
    assert.ok(clicks[2].body.classification.session_risk >= 100, `session risk ${clicks[2].body.classification.session_risk}`);
    assert.match(clicks[2].body.decision.reason, /100/, 'the reason names the threshold');
    const last = clicks[2].body.decision.action_id;
    const resolved = recs.find((r) => r.body.kind.type === 'response_resolved' && r.body.decision.action_id === last);
    assert.equal(resolved.body.kind.response, 'terminate');
    assert.equal(resolved.body.kind.outcome, 'blocked');
    const term = recs.findLast((r) => r.body.kind.type === 'terminated');
    assert.match(term.body.kind.reason, /session ended|session risk/);
    assert.equal(term.body.app, 'crm');
    assert.ok(recs.indexOf(term) > recs.indexOf(resolved), 'terminated follows the refusal');
    assert.deepEqual(requestsMatching(fx.saas, { path: '/api/customers/export-all.csv' }), [], 'no export reached the server');
    // The next sign-in is a new app session.
    assert.equal(await swState(() => globalThis.sessiontrail.state.sessions.crm?.sessionRisk ?? 0), 0);
    await other.close();
    await page.close();
  });

  test('popup: monitored apps, what is captured and masked, and the session state', async () => {
    const { ctx, extensionId } = browser;
    const page = await ctx.newPage();
    // A console session with some risk (the step-up tests leave one; run
    // alone, this makes one).
    if (!(await swState(() => globalThis.sessiontrail.state.sessions.console?.sessionRisk > 0))) {
      await freshLogin(page, 'console');
      await page.goto(fx.url('console', '/console/iam/users/u-6/mfa'));
      await page.locator('button[data-action=disable-mfa]').click();
      await waitFor(() => swState(() => globalThis.sessiontrail.state.sessions.console?.sessionRisk > 0), { message: 'console risk' });
    }
    const st = await swState(() => globalThis.sessiontrail.status());
    const console_ = st.sessions.console;
    await page.goto(`chrome-extension://${extensionId}/extension/popup.html`);
    const apps = page.locator('#apps');
    await apps.getByText('Acme Cloud Console').waitFor();
    const text = await apps.innerText();
    for (const name of ['Acme CRM (crm.acme.test, *.crm.acme.test)', 'Acme HR (hr.acme.test)', 'Acme Cloud Console (console.acme.test)']) {
      assert.ok(text.includes(name), `lists ${name}`);
    }
    assert.match(text, /Kept readable: .*role/, 'says which fields stay readable');
    assert.match(text, /Bulk export of all customers \(block\)/, 'says which actions are refused');
    assert.match(text, /Administrator role granted \(step-up\)/);
    assert.ok(
      text.includes(`as ${USER}; session risk ${console_.sessionRisk}.`),
      `the console session state (risk ${console_.sessionRisk}) is shown:\n${text}`,
    );
    const body = await page.locator('body').innerText();
    assert.match(body, /What is captured in those apps/);
    assert.match(body, /Clicks, form submissions and field changes/);
    assert.match(body, /Passwords are never captured/);
    assert.match(body, /Rule pack acme, version 2 \(from policy\)/);
    assert.match(body, /Configured by your organisation\. Enrolled\./);
    await page.close();
  });

  test('forged, tampered and rolled-back packs are refused; the pack in force keeps enforcing', async () => {
    const { ctx, sw } = browser;
    await waitFor(() => swState(() => !!globalThis.sessiontrail.state.enrollment), { message: 'enrolled' });
    const refused = (origin, code) =>
      waitFor(() => swState(([o, c]) => globalThis.sessiontrail.state.packErrors.some((e) => e.origin === o && e.code === c), [origin, code]), {
        timeout: 10_000,
        message: `a ${code} refusal of a pack from ${origin}`,
      });
    const inForce = () => swState(() => globalThis.sessiontrail.state.inForce.acme);

    // From the collector (it serves whatever an admin credential uploaded;
    // the extension trusts only the pinned keys and its floor): an older
    // version, then a pack signed by a key nobody pinned.
    await publish(packs.v1);
    await sw.evaluate(() => globalThis.sessiontrail.refreshPacks());
    await refused('collector', 'rollback');
    await publish(packs.forged);
    await sw.evaluate(() => globalThis.sessiontrail.refreshPacks());
    await refused('collector', 'unpinned_key');
    // From policy: a validly signed pack with one byte changed afterwards,
    // with and without the (unkeyed) checksum fixed up.
    writeManagedPolicy(browser.extensionId, { ...policy, bootstrapRulePacks: [packs.tampered, packs.corrupt].map((b) => b.toString('base64')) });
    await reloadPolicies(ctx);
    await refused('policy', 'bad_signature');
    await refused('policy', 'checksum_mismatch');
    await refused('collector', 'unpinned_key'); // re-fetched after the policy change

    // The old pack stays in force, in the worker and in the guard table.
    assert.equal((await inForce()).version, '2');
    const guard = await swState(() => chrome.storage.local.get('guard').then((r) => r.guard));
    assert.deepEqual(guard.packs, [{ id: 'acme', version: '2' }]);
    const exportAll = guard.apps.find((a) => a.id === 'crm').guards.find((g) => g.title === 'Bulk export of all customers');
    assert.equal(exportAll.response, 'block');

    // And it enforces: the bulk export is still blocked, the forged rule never fires.
    const page = await ctx.newPage();
    await freshLogin(page, 'crm');
    await page.goto(fx.url('crm', '/crm/reports'));
    fx.saas.reset({ state: false });
    await page.goto(fx.url('crm', '/crm/customers'));
    await page.locator('acme-toolbar button[data-action=export-all]').click();
    let recs = await stored(
      (rs) => rs.some((r) => r.body.kind.type === 'page_load' && r.body.url.endsWith('/crm/reports'))
        && rs.some((r, i) => r.body.kind.type === 'response_resolved' && r.body.kind.outcome === 'blocked' && i > rs.findLastIndex((x) => x.body.kind.type === 'policy_applied')),
      'the reports page load and a blocked export after the refusals',
    );
    assert.ok(!JSON.stringify(recs.map((r) => r.body)).includes('forged.reports'), 'the forged rule never classified anything');
    const reports = recs.findLast((r) => r.body.kind.type === 'page_load' && r.body.url.endsWith('/crm/reports'));
    assert.deepEqual(reports.body.classification.rules, []);
    await page.waitForLoadState('networkidle');
    assert.deepEqual(requestsMatching(fx.saas, { path: '/api/customers/export-all.csv' }), [], 'the export stays blocked');
    const applied = recs.filter((r) => r.body.kind.type === 'rule_pack_applied').map((r) => r.body.kind.pack_version);
    assert.deepEqual(applied, [2], 'only v2 was ever applied');
    // A policy change is evidence; the refused packs are not packs in force.
    assert.ok(recs.some((r) => r.body.kind.type === 'policy_applied'));

    // The refusal is visible to the employee.
    const popup = await ctx.newPage();
    await popup.goto(`chrome-extension://${browser.extensionId}/extension/popup.html`);
    await popup.locator('#rules').getByText('Refused a rule pack', { exact: false }).first().waitFor();
    const rules = await popup.locator('#rules').innerText();
    assert.match(rules, /Rule pack acme, version 2/);
    assert.match(rules, /Refused a rule pack from policy \(bad_signature\)/);
    assert.match(rules, /Refused a rule pack from policy \(checksum_mismatch\)/);
    assert.match(rules, /Refused a rule pack from collector \(unpinned_key\)/);
    await popup.close();

    // Control: the same path delivers a good update, which applies.
    await publish(packs.v5);
    await sw.evaluate(() => globalThis.sessiontrail.refreshPacks());
    await waitFor(async () => (await inForce()).version === '5', { message: 'v5 in force' });
    await page.goto(fx.url('crm', '/crm/reports'));
    recs = await stored(
      (rs) => rs.some((r) => r.body.kind.type === 'page_load' && r.body.classification.rules.includes('acme.reports.view')),
      'v5 applied and its new rule firing',
    );
    assert.deepEqual(recs.filter((r) => r.body.kind.type === 'rule_pack_applied').map((r) => r.body.kind.pack_version), [2, 5]);
    await page.close();
  });
});
