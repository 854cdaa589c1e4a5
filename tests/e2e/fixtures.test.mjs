// Proves the fixtures are realistic and work in real Chromium, with no
// extension loaded: the extension suites build on exactly this behaviour,
// so a broken fixture must fail here, not as a confusing extension failure.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';

import {
  SESSION_COOKIE, decodeJwt, httpRequest, idpAuthorize, launchBrowser, login, loginByCookie, requestsMatching,
  startFixtures, verifyJwt, waitForRequest,
} from './harness.mjs';

const STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
  + "frame-ancestors 'self'; base-uri 'none'; form-action 'self'";

describe('fixture SaaS apps and IdP in real Chromium', { timeout: 180_000 }, () => {
  let fx;
  let browser;
  let ctx;
  let page;

  before(async () => {
    fx = await startFixtures();
    browser = await launchBrowser();
    ctx = browser.ctx;
    ctx.setDefaultTimeout(10_000);
    // Collect CSP violations from the first byte of every page, so a test
    // can tell the app's own markup from injected content.
    await ctx.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__cspViolations.push({ directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample });
      });
    });
  });

  after(async () => {
    await browser?.close();
    await fx?.close();
  });

  beforeEach(async () => {
    fx.saas.reset();
    fx.idp.reset();
    await ctx.clearCookies();
    page = await ctx.newPage();
  });

  afterEach(async () => {
    await page?.close();
  });

  const url = (app, path) => fx.url(app, path);
  const cookieFor = async (app) => (await ctx.cookies(url(app, '/'))).find((c) => c.name === SESSION_COOKIE);

  test('every HTML response carries the strict CSP; JSON and CSV are not HTML', async () => {
    const host = (app) => `${app}.acme.test:${fx.saas.port}`;
    const cookie = (app) => `${SESSION_COOKIE}=${fx.saas.login(app).value}`;
    const pages = [
      ['crm', '/login'], ['crm', '/crm/customers'], ['crm', '/crm/customers/42'], ['hr', '/hr/payroll/2026-11'],
      ['hr', '/hr/payroll/2026-11/summary'], ['hr', '/hr/employees/e-17/bank'], ['console', '/console/iam/users/u-9/role'],
      ['console', '/console/iam/tokens/new/frame'], ['console', '/logout'],
    ];
    for (const [app, path] of pages) {
      // Auth pages are fetched signed out (a signed-in GET /login redirects into the app).
      const headers = /^\/log(in|out)$/.test(path) ? {} : { cookie: cookie(app) };
      const res = await httpRequest({ port: fx.saas.port, host: host(app), path, headers });
      assert.equal(res.status, 200, `${app} ${path}`);
      assert.match(res.headers['content-type'], /^text\/html/);
      assert.equal(res.headers['content-security-policy'], STRICT_CSP, `${app} ${path}`);
      assert.doesNotMatch(res.text, /<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=/i, `inline code in ${app} ${path}`);
    }
    const csv = await httpRequest({ port: fx.saas.port, host: host('crm'), path: '/api/customers/export.csv', headers: { cookie: cookie('crm') } });
    assert.equal(csv.headers['content-disposition'], 'attachment; filename="customers-page-1.csv"');
    const unauth = await httpRequest({ port: fx.saas.port, host: host('crm'), path: '/api/customers' });
    assert.equal(unauth.status, 401);
  });

  test('the page CSP refuses injected inline script, inline style and wasm; the apps never trip it', async () => {
    await loginByCookie(ctx, fx.saas, 'crm');
    await page.goto(url('crm', '/crm/customers'));
    const outcome = await page.evaluate(async () => {
      const s = document.createElement('script');
      s.textContent = 'window.__inlineRan = true';
      document.head.append(s);
      document.body.setAttribute('style', 'background: red');
      let wasm = 'compiled';
      try {
        await WebAssembly.compile(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
      } catch (e) {
        wasm = e.name;
      }
      await new Promise((r) => setTimeout(r, 50)); // violation events are queued tasks
      return { ran: window.__inlineRan === true, bg: getComputedStyle(document.body).backgroundColor, wasm, v: window.__cspViolations };
    });
    assert.equal(outcome.ran, false, 'inline script must not run');
    assert.notEqual(outcome.bg, 'rgb(255, 0, 0)', 'inline style must not apply');
    assert.equal(outcome.wasm, 'CompileError');
    const directives = outcome.v.map((v) => v.directive);
    assert.ok(directives.includes('script-src-elem'), JSON.stringify(outcome.v));
    assert.ok(directives.includes('style-src-attr'), JSON.stringify(outcome.v));
    assert.ok(outcome.v.some((v) => v.blocked === 'inline'));

    // The apps themselves: every kind of page, including shadow DOM and iframes, is CSP-clean.
    const tour = [
      ['crm', '/crm/customers/42'], ['crm', '/crm/reports'], ['hr', '/hr/payroll/2026-11'],
      ['hr', '/hr/employees/e-17/bank'], ['console', '/console/iam/users/u-9/mfa'], ['console', '/console/iam/tokens/new'],
    ];
    for (const app of ['hr', 'console']) await loginByCookie(ctx, fx.saas, app);
    for (const [app, path] of tour) {
      await page.goto(url(app, path));
      for (const frame of page.frames()) {
        await frame.waitForLoadState();
        assert.deepEqual(await frame.evaluate(() => window.__cspViolations), [], `${frame.url()}`);
      }
    }
  });

  test('login: a deep link redirects to form#login and back; the session cookie is HttpOnly', async () => {
    await page.goto(url('hr', '/hr/employees/e-17'));
    assert.equal(new URL(page.url()).pathname, '/login');
    assert.equal(new URL(page.url()).searchParams.get('next'), '/hr/employees/e-17');
    await expectCount(page.locator('form#login input[name=username]'), 1);
    await expectCount(page.locator('form#login input[name=password][type=password]'), 1);

    // A wrong password is refused and sets no cookie.
    await page.locator('#username').fill('alice@acme.test');
    await page.locator('#password').fill('nope');
    await Promise.all([page.waitForURL('**/login'), page.locator('form#login button').click()]);
    assert.equal(await page.locator('#login-error').count(), 1);
    assert.equal(await cookieFor('hr'), undefined);

    await page.locator('#password').fill('acme-demo');
    await Promise.all([page.waitForURL('**/hr/employees/e-17'), page.locator('form#login button').click()]);
    assert.equal(await page.locator('#current-user').getAttribute('data-email'), 'alice@acme.test');
    const cookie = await cookieFor('hr');
    assert.ok(cookie, 'session cookie set');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Lax');
    assert.equal(await page.evaluate(() => document.cookie), '', 'HttpOnly: invisible to page script');
    const post = requestsMatching(fx.saas, { method: 'POST', path: '/login', status: 303 });
    assert.equal(post.length, 1);
    assert.equal(post[0].body.password, '[redacted]');
    // Host-only: the HR cookie does not sign you in to the CRM.
    await page.goto(url('crm', '/crm/customers'));
    assert.equal(new URL(page.url()).pathname, '/login');
  });

  test('client-side routing: pushState, popstate, #hash tabs and replaceState, without full loads', async () => {
    await loginByCookie(ctx, fx.saas, 'crm');
    await page.goto(url('crm', '/crm/customers'));
    await page.evaluate(() => {
      window.__sameDocument = true;
    });
    const historyLength = () => page.evaluate(() => history.length);
    const len0 = await historyLength();

    // pushState: link → record page.
    await page.locator('#customers a[href="/crm/customers/1"]').click();
    await page.waitForURL('**/crm/customers/1');
    await page.locator('h1#customer-name, #customer-name').first().waitFor();
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no full page load');
    assert.equal(await page.evaluate(() => document.documentElement.dataset.navigations), '1');
    assert.equal(await historyLength(), len0 + 1);
    const fetched = requestsMatching(fx.saas, { path: '/crm/customers/1' });
    assert.equal(fetched.length, 1);
    assert.equal(fetched[0].native, false, 'fetched by the router, not navigated');

    // Hash change: tabs.
    await page.locator('a[href="#activity"]').click();
    await page.waitForURL('**/crm/customers/1#activity');
    assert.equal(await page.locator('[data-tab=activity]').isVisible(), true);
    assert.equal(await page.locator('[data-tab=overview]').isVisible(), false);

    // popstate: back to the overview tab, then back to the list.
    await page.evaluate(() => history.back());
    await page.waitForURL((u) => u.pathname === '/crm/customers/1' && u.hash === '');
    await page.locator('[data-tab=overview]').waitFor({ state: 'visible' });
    await page.evaluate(() => history.back());
    await page.waitForURL((u) => u.pathname === '/crm/customers');
    await page.locator('#customers').waitFor();
    assert.equal(await page.evaluate(() => window.__sameDocument), true);

    // replaceState: the filter rewrites ?q= without a history entry.
    const before = await historyLength();
    await page.locator('#customer-search').fill('Lovelace');
    await page.waitForURL((u) => u.searchParams.get('q') === 'Lovelace');
    assert.equal(await historyLength(), before);
    const visible = await page.locator('#customers tbody tr:not([hidden])').allTextContents();
    assert.ok(visible.length > 0 && visible.every((t) => t.includes('Lovelace')), visible.join('|'));

    // pushState with a query: the pager.
    await page.locator('#customer-search').fill('');
    await page.locator('a[rel=next]').click();
    await page.waitForURL((u) => u.searchParams.get('page') === '2');
    assert.equal(await page.locator('#customers tbody tr').first().getAttribute('data-id'), '26');
    assert.equal(await page.evaluate(() => window.__sameDocument), true);

    // Deep links are served by the server too (a full load of a routed URL).
    await page.goto(url('crm', '/crm/customers/42#notes'));
    assert.equal(await page.locator('[data-tab=notes]').isVisible(), true);
  });

  test('CRM: the export buttons live in an open shadow root and download real CSVs', async () => {
    await loginByCookie(ctx, fx.saas, 'crm');
    await page.goto(url('crm', '/crm/customers'));
    const where = await page.evaluate(() => ({
      light: document.querySelector('button[data-action=export-csv]'),
      shadow: document.querySelector('acme-toolbar')?.shadowRoot?.querySelectorAll('button[data-action]').length,
      mode: document.querySelector('acme-toolbar')?.shadowRoot?.mode,
    }));
    assert.deepEqual(where, { light: null, shadow: 2, mode: 'open' });

    const csvBtn = page.locator('acme-toolbar button[data-action=export-csv]'); // Playwright pierces open roots
    assert.equal((await csvBtn.textContent()).trim(), 'Export CSV');
    const [dl] = await Promise.all([page.waitForEvent('download'), csvBtn.click()]);
    assert.equal(dl.suggestedFilename(), 'customers-page-1.csv');
    const lines = (await readFile(await dl.path(), 'utf8')).trimEnd().split('\r\n');
    assert.equal(lines[0], 'id,name,email,company,country,arr');
    assert.equal(lines.length, 26);
    const req = await waitForRequest(fx.saas, { path: '/api/customers/export.csv' });
    assert.equal(req.user, 'alice@acme.test');
    assert.equal(req.query, '?page=1&size=25');
    assert.equal(await page.locator('acme-toolbar').getAttribute('data-last-click-trusted'), 'true');

    const allBtn = page.locator('acme-toolbar button[data-action=export-all]');
    assert.equal((await allBtn.textContent()).trim(), 'Export all customers');
    const [dlAll] = await Promise.all([page.waitForEvent('download'), allBtn.click()]);
    assert.equal(dlAll.suggestedFilename(), 'customers-all.csv');
    assert.equal((await readFile(await dlAll.path(), 'utf8')).trimEnd().split('\r\n').length, 2001);
    assert.equal(requestsMatching(fx.saas, { path: '/api/customers/export-all.csv' }).length, 1);

    // The record page has a light-DOM Export CSV button (same selector) and a download link.
    await page.goto(url('crm', '/crm/customers/42'));
    const [one] = await Promise.all([page.waitForEvent('download'), page.locator('button[data-action=export-csv]').click()]);
    assert.equal(one.suggestedFilename(), 'customer-42.csv');
    assert.equal((await readFile(await one.path(), 'utf8')).trimEnd().split('\r\n').length, 2);
  });

  test('synthetic clicks by the page itself reach the export (isTrusted = false)', async () => {
    await loginByCookie(ctx, fx.saas, 'crm');
    for (const [query, path] of [
      ['autoclick=1', '/api/customers/export.csv'],
      ['autoclick=export-all&via=dispatch', '/api/customers/export-all.csv'],
    ]) {
      fx.saas.reset();
      const download = page.waitForEvent('download');
      await page.goto(url('crm', `/crm/customers?${query}`));
      await download;
      await page.locator('main[data-autoclick-done=true]').waitFor({ state: 'attached' });
      assert.equal(await page.locator('acme-toolbar').getAttribute('data-last-click-trusted'), 'false', query);
      await waitForRequest(fx.saas, { method: 'GET', path });
    }
  });

  test('HR payroll: fetch submit and native submit both reach the server', async () => {
    await loginByCookie(ctx, fx.saas, 'hr');
    await page.goto(url('hr', '/hr/payroll/2026-11'));
    const form = page.locator('form#payroll-approve');
    await form.locator('[name=amount]').fill('12500.00');
    await form.locator('[name=currency]').selectOption('USD');
    await form.locator('button[type=submit]').click();
    await page.locator('#flash[data-result=approved]').waitFor();
    assert.equal(await page.locator('#payroll-status').getAttribute('data-status'), 'approved');
    const viaFetch = requestsMatching(fx.saas, { method: 'POST', path: '/api/payroll/approve' });
    assert.equal(viaFetch.length, 1);
    assert.equal(viaFetch[0].native, false);
    assert.deepEqual(viaFetch[0].body, { run: '2026-11', amount: '12500.00', currency: 'USD', period: '2026-11' });
    assert.equal(new URL(page.url()).pathname, '/hr/payroll/2026-11', 'SPA submit: no navigation');

    // form.submit() skips submit listeners and posts natively; the server answers 303 + ?done=.
    await Promise.all([
      page.waitForURL('**/hr/payroll/2026-11-bonus?done=approved'),
      page.goto(url('hr', '/hr/payroll/2026-11-bonus?autosubmit=submit')),
    ]);
    await page.locator('#flash[data-result=approved]').waitFor();
    const native = requestsMatching(fx.saas, { method: 'POST', path: '/api/payroll/approve', native: true });
    assert.equal(native.length, 1);
    assert.deepEqual(native[0].body, { run: '2026-11-bonus', amount: '8500.00', currency: 'EUR', period: '2026-11' });
    assert.equal(fx.saas.state().approvals['2026-11-bonus'].by, 'alice@acme.test');

    // requestSubmit() fires an (untrusted) submit event: the app's fetch path.
    fx.saas.reset();
    await page.goto(url('hr', '/hr/payroll/2026-10?autosubmit=requestSubmit'));
    const req = await waitForRequest(fx.saas, { method: 'POST', path: '/api/payroll/approve' });
    assert.equal(req.native, false);
  });

  test('HR bank details and the interactive payroll summary iframe', async () => {
    await loginByCookie(ctx, fx.saas, 'hr');
    await page.goto(url('hr', '/hr/employees/e-17'));
    await page.locator('a[href="/hr/employees/e-17/bank"]').click();
    await page.waitForURL('**/hr/employees/e-17/bank');
    const form = page.locator('form#bank-details');
    await form.locator('[name=iban]').fill('DE44 5001 0517 5407 3249 31');
    await form.locator('[name=bic]').fill('INGDDEFFXXX');
    await form.locator('[name=account_holder]').fill('Radia Perlman');
    await form.locator('button[type=submit]').click();
    await page.locator('#flash[data-result=saved]').waitFor();
    const req = requestsMatching(fx.saas, { method: 'POST', path: '/api/employees/e-17/bank' });
    assert.deepEqual(req[0].body, { iban: 'DE44 5001 0517 5407 3249 31', bic: 'INGDDEFFXXX', account_holder: 'Radia Perlman' });
    assert.equal(await page.locator('#bank-masked').textContent(), '•••• 4931');

    await page.goto(url('hr', '/hr/payroll/2026-11'));
    const frameEl = page.locator('iframe#payroll-summary');
    assert.equal(await frameEl.getAttribute('src'), '/hr/payroll/2026-11/summary');
    const frame = page.frameLocator('iframe#payroll-summary');
    await frame.locator('[data-action=toggle-details]').click();
    assert.equal(await frame.locator('[data-action=toggle-details]').getAttribute('aria-expanded'), 'true');
    assert.equal(await frame.locator('tr.details').first().isVisible(), true);
    await frame.locator('#payroll-flag [name=reason]').fill('check overtime');
    await frame.locator('#payroll-flag button').click();
    await frame.locator('#flash[data-result=flagged]').waitFor();
    const flag = requestsMatching(fx.saas, { method: 'POST', path: '/api/payroll/2026-11/flag' });
    assert.deepEqual(flag[0].body, { reason: 'check overtime' });
  });

  test('console: role change, disable MFA, and the token form inside an iframe', async () => {
    await loginByCookie(ctx, fx.saas, 'console', 'bob@acme.test');
    await page.goto(url('console', '/console/iam/users/u-9/role'));
    const form = page.locator('form#role-change');
    assert.equal(await form.locator('[name=user]').inputValue(), await form.locator('[name=user]').getAttribute('value'));
    assert.ok((await form.locator('[name=role] option').allTextContents()).includes('Administrator'));
    await form.locator('[name=role]').selectOption('Administrator');
    await form.locator('button[type=submit]').click();
    await page.locator('#flash[data-result=saved]').waitFor();
    const role = requestsMatching(fx.saas, { method: 'POST', path: '/api/iam/users/u-9/role' })[0];
    assert.equal(role.body.role, 'Administrator');
    assert.match(role.body.user, /@acme\.test$/);
    assert.equal(role.user, 'bob@acme.test');
    assert.equal(fx.saas.state().roles['u-9'], 'Administrator');

    await page.goto(url('console', '/console/iam/users/u-9/mfa'));
    const disable = page.locator('button[data-action=disable-mfa]');
    assert.equal((await disable.textContent()).trim(), 'Disable MFA');
    await disable.click();
    await page.locator('#mfa-status[data-status=disabled]').waitFor();
    assert.equal(requestsMatching(fx.saas, { method: 'POST', path: '/api/iam/users/u-9/mfa/disable' }).length, 1);
    assert.equal(fx.saas.state().mfa['u-9'], false);

    await page.goto(url('console', '/console/iam/tokens/new'));
    assert.equal(await page.locator('form#api-token-create').count(), 0, 'the form is only inside the iframe');
    const frame = page.frameLocator('iframe#token-frame');
    await frame.locator('form#api-token-create [name=token_name]').fill('ci-deploy');
    await frame.locator('form#api-token-create [name=scope]').selectOption('write');
    await frame.locator('form#api-token-create button[type=submit]').click();
    await frame.locator('#flash[data-result=tok-1]').waitFor();
    assert.match(await frame.locator('#token-secret').textContent(), /^acme_pat_[0-9a-f]{24}$/);
    const tok = requestsMatching(fx.saas, { method: 'POST', path: '/api/iam/tokens' })[0];
    assert.deepEqual(tok.body, { token_name: 'ci-deploy', scope: 'write' });
    assert.equal(tok.native, false);
  });

  test('logout clears the cookie and ends the server session', async () => {
    await login(page, fx.saas, 'console');
    const before = await cookieFor('console');
    assert.ok(before);
    await Promise.all([page.waitForURL('**/logout'), page.locator('[data-action=logout]').click()]);
    assert.equal(await cookieFor('console'), undefined, 'cookie cleared');
    assert.equal(requestsMatching(fx.saas, { path: '/logout', native: true }).length, 1);
    await page.goto(url('console', '/console/iam/users'));
    assert.equal(new URL(page.url()).pathname, '/login');
    // Replaying the old cookie does not help: the session is gone server-side.
    await ctx.addCookies([{ name: SESSION_COOKIE, value: before.value, url: url('console', '/') }]);
    await page.goto(url('console', '/console/iam/users'));
    assert.equal(new URL(page.url()).pathname, '/login');
  });

  test('the large page renders at least 10,000 elements under the same toolbar', async () => {
    await loginByCookie(ctx, fx.saas, 'crm');
    await page.goto(url('crm', '/crm/big'));
    assert.equal(new URL(page.url()).pathname, '/crm/customers');
    const counts = await page.evaluate(() => ({
      elements: document.getElementsByTagName('*').length,
      rows: document.querySelectorAll('#customers tbody tr').length,
      toolbar: !!document.querySelector('acme-toolbar').shadowRoot,
    }));
    assert.ok(counts.elements >= 10_000, JSON.stringify(counts));
    assert.ok(counts.elements < 11_000, JSON.stringify(counts));
    assert.equal(counts.toolbar, true);
  });

  test('IdP: discovery, JWKS and the implicit flow return a verifiable id_token', async () => {
    const { idp } = fx;
    const disc = await (await fetch(`${idp.localUrl}/.well-known/openid-configuration`)).json();
    assert.equal(disc.issuer, idp.issuer);
    assert.equal(disc.authorization_endpoint, `${idp.issuer}/authorize`);
    assert.deepEqual(disc.response_types_supported, ['id_token']);
    const jwks = await (await fetch(`${idp.localUrl}/jwks`)).json();
    assert.equal(jwks.keys[0].kty, 'RSA');

    const before = Math.floor(Date.now() / 1000);
    const r = await idpAuthorize(page, idp, { prompt: 'login', maxAge: 0, clientId: 'sessiontrail-ext' });
    assert.equal(r.showedForm, true);
    assert.equal(r.params.state, r.state);
    assert.equal(r.header.alg, 'RS256');
    assert.equal(verifyJwt(r.params.id_token, jwks), true, 'signature verifies against the JWKS');
    const c = r.claims;
    assert.equal(c.iss, idp.issuer);
    assert.equal(c.aud, 'sessiontrail-ext');
    assert.equal(c.nonce, r.nonce);
    assert.equal(c.email, 'alice@acme.test');
    assert.match(c.sub, /^usr_[0-9a-f]{16}$/);
    assert.ok(c.auth_time >= before && c.auth_time <= c.iat, 'auth_time is now');
    assert.ok(c.exp > c.iat);

    // The login page is as strict as the apps (and not frameable).
    const res = await httpRequest({ port: idp.port, path: `/authorize?${new URLSearchParams({ response_type: 'id_token', client_id: 'x', redirect_uri: 'https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org/cb', scope: 'openid', nonce: 'n' })}` });
    assert.match(res.headers['content-security-policy'], /script-src 'self'/);
    assert.match(res.headers['content-security-policy'], /form-action 'self' https:\/\/abcdefghijklmnopabcdefghijklmnop\.chromiumapp\.org/);
    assert.doesNotMatch(res.text, /<script/);
    // Unregistered redirect targets get an error page, never a redirect.
    const bad = await httpRequest({ port: idp.port, path: `/authorize?${new URLSearchParams({ response_type: 'id_token', client_id: 'x', redirect_uri: 'https://evil.example/cb', scope: 'openid', nonce: 'n' })}` });
    assert.equal(bad.status, 400);
  });

  test('IdP: the SSO session answers silently unless prompt=login or max_age=0', async () => {
    const { idp } = fx;
    const first = await idpAuthorize(page, idp, {});
    assert.equal(first.showedForm, true);
    await new Promise((r) => setTimeout(r, 1100)); // let the clock move past the first auth_time
    const silent = await idpAuthorize(page, idp, { login: false });
    assert.equal(silent.showedForm, false);
    assert.equal(silent.claims.auth_time, first.claims.auth_time, 'silent answer keeps the old auth_time');
    for (const opts of [{ prompt: 'login' }, { maxAge: 0 }]) {
      const stepUp = await idpAuthorize(page, idp, opts);
      assert.equal(stepUp.showedForm, true, JSON.stringify(opts));
      assert.ok(stepUp.claims.auth_time > first.claims.auth_time, JSON.stringify(opts));
    }
    const none = await idpAuthorize(page, idp, { prompt: 'none', login: false });
    assert.ok(none.params.id_token, 'prompt=none with a session');
    const log = idp.requests().filter((r) => r.method === 'GET').map((r) => [r.prompt, r.max_age, r.outcome]);
    assert.deepEqual(log, [['', '', 'form'], ['', '', 'issued:sso'], ['login', '', 'form'], ['', '0', 'form'], ['none', '', 'issued:sso']]);
  });

  test('IdP: each fixture mode produces exactly its defect', async () => {
    const { idp } = fx;
    const jwks = idp.jwks();
    const setMode = async (mode) => {
      const res = await fetch(`${idp.localUrl}/__fixture/mode`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ mode }),
      });
      assert.equal(res.status, 200, mode);
    };
    const rejected = await fetch(`${idp.localUrl}/__fixture/mode`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"mode":"nope"}' });
    assert.equal(rejected.status, 400);

    const run = async (mode) => {
      await setMode(mode);
      const r = await idpAuthorize(page, idp, { prompt: 'login', clientId: 'sessiontrail-ext' });
      return { ...r, now: Math.floor(Date.now() / 1000), valid: verifyJwt(r.params.id_token, jwks) };
    };
    const good = await run('normal');
    assert.equal(good.valid, true);

    const stale = await run('stale_auth_time');
    assert.equal(stale.valid, true);
    assert.equal(stale.showedForm, true);
    assert.ok(stale.claims.auth_time <= stale.now - 3000, 'auth_time an hour old');
    assert.equal(stale.claims.nonce, stale.nonce);

    const badSig = await run('bad_signature');
    assert.equal(badSig.valid, false, 'signature must not verify');
    assert.equal(badSig.header.kid, jwks.keys[0].kid, 'same kid: only the signature is wrong');
    assert.equal(badSig.claims.nonce, badSig.nonce);

    const nonce = await run('wrong_nonce');
    assert.equal(nonce.valid, true);
    assert.notEqual(nonce.claims.nonce, nonce.nonce);

    const aud = await run('wrong_audience');
    assert.equal(aud.valid, true);
    assert.notEqual(aud.claims.aud, 'sessiontrail-ext');
    assert.equal(aud.claims.nonce, aud.nonce);

    const expired = await run('expired');
    assert.equal(expired.valid, true);
    assert.ok(expired.claims.exp < expired.now);

    const iss = await run('wrong_issuer');
    assert.equal(iss.valid, true);
    assert.notEqual(iss.claims.iss, idp.issuer);

    const none = await run('alg_none');
    assert.equal(none.header.alg, 'none');
    assert.equal(none.valid, false);
    assert.equal(decodeJwt(none.params.id_token).signature.length, 0);

    await setMode('normal');
    assert.equal((await run('normal')).valid, true);
  });
});

async function expectCount(locator, n) {
  assert.equal(await locator.count(), n);
}

// The same apps over HTTPS (self-signed): what real SaaS looks like to the
// browser — a secure context, Sec-Fetch-* metadata, Secure cookies.
describe('fixtures over HTTPS', { timeout: 120_000 }, () => {
  let fx;
  let browser;
  let page;

  before(async () => {
    fx = await startFixtures({ tls: true });
    browser = await launchBrowser();
    browser.ctx.setDefaultTimeout(10_000);
    page = await browser.ctx.newPage();
  });

  after(async () => {
    await browser?.close();
    await fx?.close();
  });

  test('login, routing, native post and export behave the same, with fetch metadata', async () => {
    const { saas } = fx;
    assert.match(saas.url('hr', '/'), /^https:\/\/hr\.acme\.test:\d+\/$/);
    await login(page, saas, 'hr', { next: '/hr/employees' });
    assert.equal(await page.evaluate(() => window.isSecureContext && typeof navigator.clipboard?.writeText), 'function');
    const cookie = (await browser.ctx.cookies(saas.url('hr', '/'))).find((c) => c.name === SESSION_COOKIE);
    assert.equal(cookie.secure, true);
    assert.equal(cookie.httpOnly, true);
    const res = await httpRequest({ tls: true, port: saas.port, host: `hr.acme.test:${saas.port}`, path: '/login' });
    assert.match(res.headers['content-security-policy'], /script-src 'self'/);

    saas.reset();
    await page.locator('#employees a[href="/hr/employees/e-17"]').click();
    await page.waitForURL('**/hr/employees/e-17');
    const nav = requestsMatching(saas, { path: '/hr/employees/e-17' })[0];
    assert.equal(nav.mode, 'cors');
    assert.equal(nav.native, false);

    await Promise.all([
      page.waitForURL('**/hr/payroll/2026-11?done=approved'),
      page.goto(saas.url('hr', '/hr/payroll/2026-11?autosubmit=submit')),
    ]);
    const post = requestsMatching(saas, { method: 'POST', path: '/api/payroll/approve' })[0];
    assert.equal(post.mode, 'navigate');
    assert.equal(post.native, true);

    await loginByCookie(browser.ctx, saas, 'crm');
    await page.goto(saas.url('crm', '/crm/customers'));
    const [dl] = await Promise.all([page.waitForEvent('download'), page.locator('acme-toolbar button[data-action=export-csv]').click()]);
    assert.equal(dl.suggestedFilename(), 'customers-page-1.csv');
  });

  test('the IdP flow over HTTPS', async () => {
    const { idp } = fx;
    assert.match(idp.issuer, /^https:\/\/idp\.acme\.test:\d+$/);
    const disc = (await httpRequest({ tls: true, port: idp.port, host: `idp.acme.test:${idp.port}`, path: '/.well-known/openid-configuration' })).json();
    assert.equal(disc.issuer, idp.issuer);
    const r = await idpAuthorize(page, idp, { prompt: 'login' });
    assert.equal(verifyJwt(r.params.id_token, idp.jwks()), true);
    assert.equal(r.claims.iss, idp.issuer);
  });
});
