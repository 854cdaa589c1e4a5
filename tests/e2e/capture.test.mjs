// Capture end to end, beyond clicks and submits (issue 4: capture, in-session
// response): the staged extension (target/extension) in real headless
// Chromium under a real managed-policy file, the real collector binary and
// the fixture SaaS apps.
//
// - Routine events wait in the content script for a deferred, batched send
//   (docs/extension.md, "Main-thread cost"): none may be lost when the tab
//   closes or navigates right after them, and they keep page order.
// - Copy, cut, paste and dropped files cannot be replayed after an approval:
//   the user repeats the action, which goes through once (allow-once). A
//   `block` never lets it through.
// - Ctrl+P is held for a rule that holds printing and printed on approval;
//   a print the page starts itself is recorded, not held.
//
// Every assertion is on what the collector stored (records decoded and
// signature-checked with Node crypto), on what the page itself saw (its own
// listeners, its field values) or on the worker's state.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  EXT_DIR, ROOT, buildCollectorIfMissing, createCredentials, extensionPolicy, extensionSkipReason, flushUntilStored,
  run, signPack, startCollector,
} from './collector.mjs';
import { launchBrowser, login, startFixtures, waitFor } from './harness.mjs';

const ADMIN_SEED = randomBytes(32).toString('hex');
const IBAN = 'DE44 5001 0517 5407 3249 31';
const TOKEN_NAME = 'deploy-bot-7';

const skip = extensionSkipReason();

// The demo pack plus rules that hold a paste (justify; block inside the
// console's token iframe) and a print (warn). Risk 1 each: no session
// threshold is reached by this file.
const EXTRA_RULES = `
[[rule]]
id = "hr.bank_details.paste"
app = "hr"
title = "Bank details pasted"
actions = ["paste"]
path = "/hr/employees/*/bank"
selector = "form#bank-details"
severity = "medium"
risk = 1
response = "justify"

[[rule]]
id = "console.tokens.paste"
app = "console"
title = "Paste into the API token form"
actions = ["paste"]
path = "/console/iam/tokens/**"
severity = "high"
risk = 1
response = "block"

[[rule]]
id = "crm.reports.print"
app = "crm"
title = "CRM report printed"
actions = ["print"]
path = "/crm/reports"
severity = "medium"
risk = 1
response = "warn"
`;

describe('capture: deferred sends on tab close, held paste (allow-once, block), held print', { skip, timeout: 300_000 }, () => {
  let fx;
  let browser;
  let collector;
  let dataDir;
  let base;
  let auditor;

  async function stored(predicate, message) {
    const recs = await flushUntilStored(browser.sw, { base, auditor }, predicate, { interval: 300, message });
    for (const r of recs) assert.ok(r.sigOk, `record ${r.seq} signature verifies`);
    return recs;
  }

  const swState = (fn, arg) => browser.sw.evaluate(fn, arg);

  /** The id of the held action awaiting `response` that is not in `seen`. */
  function pendingAction(response, seen = new Set()) {
    return waitFor(
      () => swState(([r, s]) => Object.entries(globalThis.sessiontrail.state.pending).find(([id, p]) => p.response === r && !s.includes(id))?.[0], [response, [...seen]]),
      { timeout: 10_000, message: `a held action awaiting ${response}` },
    );
  }

  const pendingCount = (response) => swState((r) => Object.values(globalThis.sessiontrail.state.pending).filter((p) => p.response === r).length, response);

  /** What the page's own scripts see (main world): pastes, prints, Ctrl+P keydowns, in one frame. */
  function watchPage(frame) {
    return frame.evaluate(() => {
      const seen = { pastes: [], prints: 0, ctrlP: 0 };
      Object.defineProperty(window, '__seen', { value: seen, configurable: true });
      window.addEventListener('paste', (e) => seen.pastes.push(e.isTrusted));
      window.addEventListener('beforeprint', () => (seen.prints += 1));
      window.addEventListener('keydown', (e) => e.ctrlKey && e.code === 'KeyP' && (seen.ctrlP += 1));
    });
  }
  /**
   * Marks the overlay now shown in `frame` (its host element is in the
   * page's DOM; its contents are in a closed shadow root), so that
   * `nextOverlay` waits for the one that replaces it.
   */
  const markOverlay = (frame) => frame.evaluate(() => document.querySelectorAll('sessiontrail-overlay').forEach((h) => h.setAttribute('data-test-old', '')));
  const nextOverlay = (frame) => frame.locator('sessiontrail-overlay:not([data-test-old]):focus').waitFor({ state: 'attached' });

  const seen = (frame) => frame.evaluate(() => ({ ...window.__seen, pastes: [...window.__seen.pastes] }));

  /** Puts `text` on the (headless browser's) clipboard through the page: type it in `field`, select it, Ctrl+C, clear. */
  async function clipboard(field, text) {
    await field.fill(text);
    await field.focus();
    await field.press('Control+a');
    await field.press('Control+c');
    await field.fill('');
  }

  before(async () => {
    buildCollectorIfMissing();
    run('cargo', ['build', '-q', '-p', 'sessiontrail-wasm', '--example', 'sign_pack']);
    dataDir = await mkdtemp(join(tmpdir(), 'sessiontrail-capture-'));
    let enrollToken;
    ({ enrollToken, auditor } = createCredentials(dataDir));
    collector = await startCollector(dataDir);
    base = collector.base;
    const acme = readFileSync(join(ROOT, 'rulepacks/demo/acme.toml'), 'utf8');
    const pack = signPack(dataDir, 'acme-held', `${acme}\n${EXTRA_RULES}`, ADMIN_SEED, 1);
    fx = await startFixtures();
    browser = await launchBrowser({
      extensionDir: EXT_DIR,
      policy: extensionPolicy({ collectorUrl: base, enrollmentToken: enrollToken, adminKey: pack.key, packs: [pack.blob] }),
    });
    browser.ctx.setDefaultTimeout(10_000);
    await waitFor(
      () => swState(async () => (await chrome.scripting.getRegisteredContentScripts()).length > 0 && !!globalThis.sessiontrail.state.inForce.acme),
      { timeout: 15_000, message: 'the pack in force and the content script registered' },
    );
  });

  after(async () => {
    await browser?.close();
    await fx?.close();
    await collector?.kill('SIGTERM');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('routine events still waiting for their deferred send reach the collector when the tab closes or navigates at once, in page order', async () => {
    const { ctx } = browser;
    const page = await ctx.newPage();
    await login(page, fx.saas, 'crm');
    const cells = (p) => p.locator('table#customers tbody tr:not([hidden]) td:nth-child(3)');
    // Three clicks, then the tab closes straight away (well inside the
    // content script's send delay).
    await page.goto(fx.url('crm', '/crm/customers'));
    const closed = [];
    for (const i of [4, 1, 7]) {
      const cell = cells(page).nth(i);
      closed.push(await cell.locator('xpath=..').getAttribute('data-id'));
      await cell.click();
    }
    await page.close();
    // Two clicks, then a navigation to another app page at once.
    const nav = await ctx.newPage();
    await nav.goto(fx.url('crm', '/crm/customers'));
    const navigated = [];
    for (const i of [2, 9]) {
      const cell = cells(nav).nth(i);
      navigated.push(await cell.locator('xpath=..').getAttribute('data-id'));
      await cell.click();
    }
    await nav.goto(fx.url('crm', '/crm/reports'));
    const rowOf = (r) => /tr\[data-id="([^"]+)"\]/.exec(r.body.target?.path ?? '')?.[1];
    const cellClicks = (rs) => rs.filter((r) => r.body.kind.type === 'click' && rowOf(r));
    const reportsLoad = (rs) => rs.findLast((r) => r.body.kind.type === 'page_load' && r.body.url.endsWith('/crm/reports'));
    const recs = await stored(
      (rs) => [...closed, ...navigated].every((id) => cellClicks(rs).some((r) => rowOf(r) === id)) && reportsLoad(rs),
      'every click made right before the tab closed or navigated, and the page navigated to',
    );
    const order = cellClicks(recs).map(rowOf);
    assert.deepEqual(order.filter((id) => closed.includes(id)), closed, 'the closed tab\'s clicks, in page order');
    assert.deepEqual(order.filter((id) => navigated.includes(id)), navigated, 'the navigated tab\'s clicks, in page order');
    for (const r of cellClicks(recs)) {
      assert.equal(r.body.trusted, true);
      assert.equal(r.body.target.tag, 'td');
      assert.match(r.body.target.path, /^table#customers > tbody:nth-child\(2\) > tr\[data-id="[^"]+"\] > td:nth-child\(3\)$/);
      assert.ok(r.body.target.text.length > 0, 'the cell text is described');
    }
    // Each click came before the navigation that followed it.
    const navLoad = reportsLoad(recs);
    assert.ok(cellClicks(recs).filter((r) => navigated.includes(rowOf(r))).every((r) => r.seq < navLoad.seq));
  });

  test('a paste held for `justify` lands only when repeated after the approval, once; the evidence links the repeat to the approval', async () => {
    const { ctx } = browser;
    const page = await ctx.newPage();
    await login(page, fx.saas, 'hr');
    await page.goto(fx.url('hr', '/hr/employees/e-17/bank'));
    await watchPage(page);
    const iban = page.locator('form#bank-details input[name=iban]');
    // Copying here is not held (no rule): the clipboard holds the IBAN.
    await clipboard(iban, IBAN);
    await iban.press('Control+v');
    const held = await pendingAction('justify');
    await page.locator('sessiontrail-overlay:focus').waitFor({ state: 'attached' });
    assert.equal(await iban.inputValue(), '', 'held: nothing pasted');
    assert.deepEqual((await seen(page)).pastes, [], 'held: the page never saw the paste');

    // The reason, then Continue: the overlay says to paste again, and gives
    // the focus back to the field when dismissed.
    const reason = 'New account confirmed by phone with the employee';
    await page.keyboard.type(reason);
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    await markOverlay(page);
    await page.keyboard.press('Enter');
    await waitFor(async () => (await pendingCount('justify')) === 0, { message: 'the justification recorded' });
    await nextOverlay(page); // "Approved — paste again"
    assert.equal(await iban.inputValue(), '', 'an approval alone pastes nothing (no synthetic paste)');
    await page.keyboard.press('Enter');
    await page.locator('sessiontrail-overlay').waitFor({ state: 'detached' });
    assert.ok(await iban.evaluate((el) => el === document.activeElement), 'the field has the focus again');
    // The allowance is for that field: a paste into another one is held.
    const bic = page.locator('form#bank-details input[name=bic]');
    await bic.focus();
    await bic.press('Control+v');
    const elsewhere = await pendingAction('justify', new Set([held]));
    await page.locator('sessiontrail-overlay:focus').waitFor({ state: 'attached' });
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter'); // Cancel
    await waitFor(async () => (await pendingCount('justify')) === 0, { message: 'the other field\'s paste refused' });
    assert.equal(await bic.inputValue(), '');
    await iban.focus();
    await page.keyboard.press('Control+v');
    await waitFor(async () => (await iban.inputValue()) === IBAN, { message: 'the repeated paste landed' });
    assert.deepEqual((await seen(page)).pastes, [true], 'the page saw one paste, the user\'s own (trusted)');

    // The allowance is used up: the next paste is held again (and refused).
    await iban.fill('');
    await iban.press('Control+v');
    const again = await pendingAction('justify', new Set([held, elsewhere]));
    await page.locator('sessiontrail-overlay:focus').waitFor({ state: 'attached' });
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter'); // Cancel
    await waitFor(async () => (await pendingCount('justify')) === 0, { message: 'the refusal recorded' });
    assert.equal(await iban.inputValue(), '', 'the second paste never landed');
    assert.deepEqual((await seen(page)).pastes, [true]);

    const recs = await stored(
      (rs) => rs.some((r) => r.body.kind.type === 'response_resolved' && r.body.decision.action_id === again),
      'both held pastes, the repeat and both outcomes',
    );
    const pastes = recs.filter((r) => r.body.kind.type === 'paste');
    const heldRec = pastes.find((r) => r.body.decision.action_id === held && r.seq < recs.find((x) => x.body.kind.type === 'response_resolved' && x.body.decision.action_id === held).seq);
    assert.ok(heldRec, 'the held paste is recorded before its outcome');
    assert.deepEqual(heldRec.body.classification.rules, ['hr.bank_details.paste']);
    assert.equal(heldRec.body.decision.response, 'justify');
    assert.equal(heldRec.body.target.tag, 'input');
    assert.match(heldRec.body.target.path, /input\[name="iban"\]$/);
    const resolved = recs.find((r) => r.body.kind.type === 'response_resolved' && r.body.decision.action_id === held);
    assert.equal(resolved.body.kind.outcome, 'allowed');
    assert.equal(resolved.body.kind.justification, reason);
    const repeat = pastes.filter((r) => r.body.decision.action_id === held);
    assert.equal(repeat.length, 2, 'the held paste and its repeat carry the approved action id');
    assert.ok(repeat[1].seq > resolved.seq, 'the repeat follows the approval');
    assert.equal(repeat[1].body.trusted, true);
    for (const id of [elsewhere, again]) {
      const refused = recs.find((r) => r.body.kind.type === 'response_resolved' && r.body.decision.action_id === id);
      assert.equal(refused.body.kind.outcome, 'refused');
      const p = pastes.filter((r) => r.body.decision.action_id === id);
      assert.equal(p.length, 1, 'a refused paste is recorded once');
      assert.equal(p[0].body.decision.response, 'justify');
    }
    assert.match(pastes.find((r) => r.body.decision.action_id === elsewhere).body.target.path, /input\[name="bic"\]$/);
    // The clipboard contents are never captured.
    assert.ok(!JSON.stringify(recs.map((r) => r.body)).replaceAll(' ', '').includes(IBAN.replaceAll(' ', '')), 'the pasted IBAN appears in no record');
    // The repeat was not asked about again after the fact.
    assert.equal(await pendingCount('justify'), 0);
    await page.close();
  });

  test('a paste a rule blocks never lands, not even when repeated (inside the token form\'s iframe)', async () => {
    const { ctx } = browser;
    const page = await ctx.newPage();
    await login(page, fx.saas, 'console');
    await page.goto(fx.url('console', '/console/iam/tokens/new'));
    const frame = page.frameLocator('#token-frame');
    const name = frame.locator('form#api-token-create input[name=token_name]');
    await name.waitFor();
    const inner = page.frames().find((f) => f.url().endsWith('/console/iam/tokens/new/frame'));
    await watchPage(inner);
    await clipboard(name, TOKEN_NAME);
    for (let i = 0; i < 2; i++) {
      await name.focus();
      await name.press('Control+v');
      // The "Blocked" notice takes the focus inside the frame; OK closes it.
      await frame.locator('sessiontrail-overlay:focus').waitFor({ state: 'attached' });
      assert.equal(await name.inputValue(), '', `paste ${i + 1}: nothing pasted`);
      await page.keyboard.press('Enter');
      await frame.locator('sessiontrail-overlay').waitFor({ state: 'detached' });
    }
    assert.deepEqual((await seen(inner)).pastes, [], 'the page never saw a paste');
    const blockedPastes = (rs) => rs.filter((r) => r.body.kind.type === 'paste' && r.body.decision.response === 'block');
    const recs = await stored(
      (rs) => blockedPastes(rs).length === 2 && blockedPastes(rs).every((p) => rs.some((r) => r.body.kind.type === 'response_resolved' && r.body.decision.action_id === p.body.decision.action_id)),
      'two blocked pastes and their refusals',
    );
    for (const p of blockedPastes(recs)) {
      assert.deepEqual(p.body.classification.rules, ['console.tokens.paste']);
      assert.ok(p.body.url.endsWith('/console/iam/tokens/new/frame'), 'recorded by the iframe\'s content script');
      const r = recs.find((x) => x.body.kind.type === 'response_resolved' && x.body.decision.action_id === p.body.decision.action_id);
      assert.equal(r.body.kind.outcome, 'blocked');
    }
    assert.equal(await name.inputValue(), '');
    await page.close();
  });

  test('a print the page starts itself is recorded (it cannot be held); Ctrl+P is held, and printed once approved', async () => {
    const { ctx } = browser;
    // Signed in to the CRM by the first test, or here.
    const page = await ctx.newPage();
    await page.goto(fx.url('crm', '/crm/customers'));
    if (new URL(page.url()).pathname === '/login') await login(page, fx.saas, 'crm');

    // Where no rule holds printing, Ctrl+P is the page's and the browser's.
    await page.goto(fx.url('crm', '/crm/customers'));
    await watchPage(page);
    await page.keyboard.press('Control+p');
    assert.equal((await seen(page)).ctrlP, 1, 'the page saw Ctrl+P');
    await page.close();

    // window.print() from the page: beforeprint cannot be cancelled.
    const own = await ctx.newPage();
    await own.goto(fx.url('crm', '/crm/reports'));
    await watchPage(own);
    await own.evaluate(() => window.print());
    assert.equal((await seen(own)).prints, 1, 'the page printed at once');
    let recs = await stored(
      (rs) => rs.some((r) => r.body.kind.type === 'print' && r.body.url.endsWith('/crm/reports')),
      'the page-started print',
    );
    const pagePrint = recs.findLast((r) => r.body.kind.type === 'print');
    assert.deepEqual(pagePrint.body.classification.rules, ['crm.reports.print']);
    assert.equal(pagePrint.body.decision.action_id, null, 'not held');
    await own.close();

    // Ctrl+P: held before the browser prints, printed on Continue.
    const page2 = await ctx.newPage();
    await page2.goto(fx.url('crm', '/crm/reports'));
    await watchPage(page2);
    await page2.keyboard.press('Control+p');
    const held = await waitFor(
      () => swState(() => Object.entries(globalThis.sessiontrail.state.pending).find(([, p]) => p.response === 'warn' && p.kind === 'print')?.[0]),
      { message: 'the held print' },
    );
    await page2.locator('sessiontrail-overlay:focus').waitFor({ state: 'attached' });
    assert.deepEqual(await seen(page2), { pastes: [], prints: 0, ctrlP: 0 }, 'held: no print yet, and the page never saw the keydown');
    await page2.keyboard.press('Enter'); // Continue
    await waitFor(async () => (await seen(page2)).prints === 1, { message: 'the approved print' });
    recs = await stored(
      (rs) => rs.some((r) => r.body.kind.type === 'response_resolved' && r.body.decision.action_id === held),
      'the held print and its outcome',
    );
    const prints = recs.filter((r) => r.body.decision.action_id === held);
    assert.deepEqual(prints.map((r) => r.body.kind.type), ['print', 'response_resolved']);
    assert.equal(prints[0].body.decision.response, 'warn');
    assert.equal(prints[0].body.trusted, true);
    assert.equal(prints[1].body.kind.outcome, 'allowed');
    // The replayed print is not recorded a second time.
    await page2.waitForTimeout(1500);
    recs = await stored((rs) => rs.length >= recs.length, 'the records after the print');
    assert.equal(recs.filter((r) => r.body.kind.type === 'print' && r.seq > prints[0].seq).length, 0, 'one record for the held print');
    assert.equal((await seen(page2)).prints, 1);
    await page2.close();
  });
});
