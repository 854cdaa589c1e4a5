// Self-test of harness.mjs with a tiny probe extension
// (tests/fixtures/probe-extension): the extension suites rely on these
// helpers, so their failures should surface here first.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import {
  DEMO_PASSWORD, POLICY_FILE, canWriteManagedPolicy, decodeJwt, verifyJwt, extensionIdForDir, launchBrowser, loginByCookie, startFixtures, stopServiceWorker,
  reloadPolicies, waitFor, waitForServiceWorker, writeManagedPolicy,
} from './harness.mjs';

const PROBE = fileURLToPath(new URL('../fixtures/probe-extension', import.meta.url));
const POLICY = { collectorUrl: 'http://127.0.0.1:9/v1', tenant: 'acme', rulePackUrls: ['http://127.0.0.1:9/packs/acme'] };

describe('harness with the probe extension', { timeout: 120_000, skip: !canWriteManagedPolicy() && 'needs root for managed policy' }, () => {
  let fx;
  let browser;

  before(async () => {
    fx = await startFixtures();
    browser = await launchBrowser({ extensionDir: PROBE, policy: POLICY });
  });

  after(async () => {
    await browser?.close();
    await fx?.close();
  });

  test('the pinned key gives the id the browser uses, and managed policy arrives', async () => {
    assert.equal(browser.extensionId, extensionIdForDir(PROBE));
    assert.equal(existsSync(POLICY_FILE), true);
    const managed = await waitFor(async () => {
      const m = await browser.sw.evaluate(() => self.probe.managed());
      return m.tenant ? m : null;
    }, { timeout: 10_000, message: 'chrome.storage.managed' });
    assert.deepEqual(managed, POLICY);
  });

  test('content scripts run in the fixture pages and their iframes', async () => {
    const { ctx } = browser;
    await loginByCookie(ctx, fx.saas, 'console');
    const page = await ctx.newPage();
    try {
      await page.goto(fx.url('console', '/console/iam/tokens/new'));
      const frame = page.frameLocator('iframe#token-frame');
      await frame.locator('form#api-token-create').waitFor();
      assert.equal(await page.locator('html').getAttribute('data-sessiontrail-probe'), 'loaded');
      assert.equal(await frame.locator('html').getAttribute('data-sessiontrail-probe'), 'loaded');
      const hellos = await waitFor(async () => {
        const h = await browser.sw.evaluate(() => self.probe.hellos());
        return h.length >= 2 ? h : null;
      }, { message: 'hello from page and frame' });
      assert.ok(hellos.some((h) => h.url.endsWith('/console/iam/tokens/new/frame') && h.frameId !== 0));
    } finally {
      await page.close();
    }
  });

  test('stopServiceWorker stops the worker; the next event starts a fresh one', async () => {
    const { ctx, extensionId } = browser;
    const startedBefore = await browser.sw.evaluate(() => self.probe.startedAt());
    assert.equal(await stopServiceWorker(ctx, extensionId), true);
    const cdp = await ctx.browser().newBrowserCDPSession();
    const { targetInfos } = await cdp.send('Target.getTargets');
    await cdp.detach();
    assert.equal(targetInfos.filter((t) => t.type === 'service_worker' && t.url.includes(extensionId)).length, 0);

    // A content script message wakes it, as in production.
    await loginByCookie(ctx, fx.saas, 'crm');
    const page = await ctx.newPage();
    try {
      const next = waitForServiceWorker(ctx, extensionId);
      await page.goto(fx.url('crm', '/crm/customers'));
      const sw = await next;
      assert.ok((await sw.evaluate(() => self.probe.startedAt())) > startedBefore);
      assert.deepEqual(await sw.evaluate(() => self.probe.managed()), POLICY, 'policy survives the restart');
      browser.sw = sw;
    } finally {
      await page.close();
    }
  });

  test('chrome.identity.launchWebAuthFlow completes against the fixture IdP', async () => {
    const { ctx, sw, extensionId } = browser;
    const redirectUri = await sw.evaluate(() => self.probe.redirectUrl());
    assert.equal(redirectUri, `https://${extensionId}.chromiumapp.org/cb`);
    const nonce = `n-${Date.now()}`;
    const q = new URLSearchParams({
      response_type: 'id_token', client_id: 'sessiontrail-probe', redirect_uri: redirectUri, scope: 'openid email',
      nonce, state: 'st-1', prompt: 'login', max_age: '0',
    });
    const idpPage = ctx.waitForEvent('page', { predicate: (p) => p.url().startsWith(fx.idp.issuer) });
    const flow = sw.evaluate((u) => self.probe.authFlow(u), `${fx.idp.issuer}/authorize?${q}`);
    const page = await idpPage;
    await page.locator('#idp-login #username').fill('carol@acme.test');
    await page.locator('#idp-login #password').fill(DEMO_PASSWORD);
    await page.locator('#idp-submit').click();
    const final = new URL(await flow);
    assert.equal(`${final.origin}${final.pathname}`, redirectUri);
    const params = new URLSearchParams(final.hash.slice(1));
    assert.equal(params.get('state'), 'st-1');
    const token = params.get('id_token');
    assert.equal(verifyJwt(token, fx.idp.jwks()), true);
    const { claims } = decodeJwt(token);
    assert.equal(claims.nonce, nonce);
    assert.equal(claims.email, 'carol@acme.test');
    assert.equal(claims.aud, 'sessiontrail-probe');
  });

  test('a rewritten policy reaches the running extension after reloadPolicies()', async () => {
    const next = { ...POLICY, tenant: 'acme-2' };
    writeManagedPolicy(browser.extensionId, next);
    await reloadPolicies(browser.ctx);
    const managed = await waitFor(async () => {
      const m = await browser.sw.evaluate(() => self.probe.managed());
      return m.tenant === 'acme-2' ? m : null;
    }, { timeout: 10_000, message: 'the new policy' });
    assert.deepEqual(managed, next);
  });

  test('close() removes the policy file', async () => {
    await browser.close();
    browser = null;
    assert.equal(existsSync(POLICY_FILE), false);
  });
});
