// The auditor UI in real headless Chromium against a real collector:
// sign in, search, open a session timeline (with its gap row), export an
// evidence bundle from the UI and verify it offline with
// `sessiontrail evidence verify`.
//
// Needs target/debug/sessiontrail (cargo build -p sessiontrail-collector)
// and /usr/bin/chromium. Run: node --test tests/e2e/auditor-ui.test.mjs
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { BIN, CHROMIUM, seedAndServe } from './auditor-ui-harness.mjs';

let srv;
let browser;
let page;
const problems = [];

before(async () => {
  srv = await seedAndServe({ events: 400 });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1400, height: 900 } });
  page = await ctx.newPage();
  // Any console error (a CSP violation, a failed module) fails the suite.
  // (The deliberate wrong sign-in logs one 401, which is expected.)
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

// Runs the search form and waits for this search's answer. The form only
// changes the URL hash and the search starts on `hashchange`, so the status
// still shows the previous answer right after the click: blank it first.
async function search() {
  await page.evaluate(() => { document.querySelector('#search-status').textContent = ''; });
  await page.click('#do-search');
  await page.waitForFunction(() => {
    const t = document.querySelector('#search-status').textContent;
    return t !== '' && !t.startsWith('Searching');
  });
}

test('signing in with a wrong credential is refused, the right one opens the search', async () => {
  await page.goto(`${srv.url}/ui/`);
  await page.waitForSelector('#signin:not([hidden])');
  await page.fill('#credential', 'st1.0123456789abcdef.not-a-secret');
  await page.press('#credential', 'Enter');
  await page.waitForSelector('#signin-error:not([hidden])');
  await page.fill('#credential', srv.credential);
  await page.press('#credential', 'Enter');
  await page.waitForSelector('#results tbody tr');
  const stored = await page.evaluate(() => sessionStorage.getItem('sessiontrail.credential'));
  assert.equal(stored, srv.credential);
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
});

test('search filters by text and severity', async () => {
  await page.fill('#f-q', 'export');
  await page.selectOption('#f-severity', 'high');
  await search();
  assert.match(await page.textContent('#search-status'), /event/);
  const rows = await page.$$eval('#results tbody tr', (trs) => trs.map((tr) => tr.textContent));
  assert.ok(rows.length > 0, 'some high-severity exports');
  for (const r of rows) {
    assert.match(r, /Export all accounts/);
    assert.match(r, /high|critical/);
  }
  assert.match(page.url(), /#\/search\?.*q=export/);
  // FTS5 syntax typed by an auditor is just text: a clear answer, no error.
  await page.fill('#f-q', 'NEAR( "export');
  await page.selectOption('#f-severity', '');
  await search();
  assert.doesNotMatch(await page.textContent('#search-status'), /internal/);
});

test('a result opens its session timeline with keyboard, gaps are shown inline', async () => {
  await page.fill('#f-q', '');
  await page.fill('#f-user', srv.gapUser);
  await page.selectOption('#f-app', srv.gapApp);
  await search();
  assert.match(await page.textContent('#search-status'), /events?, newest first/);
  await page.focus('#results tbody tr');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#view-timeline:not([hidden]) .t-entry');
  assert.match(await page.textContent('#timeline-title'), new RegExp(`${srv.gapUser.replace('.', '\\.')} in ${srv.gapApp}`));
  // Open the session that has the gap.
  await page.goto(`${srv.url}/ui/#/timeline?${new URLSearchParams({ user: srv.gapUser, app: srv.gapApp, session: srv.gapSession })}`);
  await page.waitForSelector('.t-gap');
  const gap = await page.textContent('.t-gap');
  assert.match(gap, /3 events missing/);
  assert.match(gap, /seq 13–15/);
  const verified = await page.$$eval('.t-entry:not(.t-gap) .t-verify', (els) => els.map((e) => e.textContent));
  assert.ok(verified.length > 5);
  for (const v of verified) assert.match(v, /signature verified/);
  assert.ok(verified.some((v) => /after a gap/.test(v)));
  assert.match(await page.textContent('#timeline-summary'), /Missing\s*3/);
});

test('export evidence from the timeline and verify it offline', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'st-bundle-'));
  try {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('#timeline-export'),
    ]);
    const file = join(dir, download.suggestedFilename());
    assert.match(download.suggestedFilename(), /^sessiontrail-evidence-\d+\.zip$/);
    await download.saveAs(file);
    const out = execFileSync(BIN, ['evidence', 'verify', file, '--collector-key', srv.verifierKey], { encoding: 'utf8' });
    assert.match(out, /RESULT: OK/);
    assert.match(out, /seq 13–15 not in this bundle — the collector recorded missing events there/);
    // A wrong key is refused, with a non-zero exit code.
    const other = srv.verifierKey.replace(/\+[0-9a-f]{8}\+/, '+00000000+');
    const bad = spawnSync(BIN, ['evidence', 'verify', file, '--collector-key', other], { encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stdout, /FAIL/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('export from the search form, sessions list, no console errors', async () => {
  await page.goto(`${srv.url}/ui/#/search?severity=critical`);
  await page.waitForSelector('#results tbody tr');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#do-export')]);
  assert.ok((await download.path()) !== null);
  await page.click('#nav-sessions');
  await page.fill('#s-user', srv.gapUser);
  await page.click('#sessions-form button[type=submit]');
  await page.waitForSelector('#sessions tbody tr');
  assert.match(await page.textContent('#sessions tbody'), new RegExp(srv.gapSession));
  assert.deepEqual(problems, []);
});
