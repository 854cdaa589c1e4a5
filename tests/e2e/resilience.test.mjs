// Lossless shipping, end to end (issue 4, scenarios 6 and 7): the staged
// extension (target/extension) in real headless Chromium, configured by a
// real managed-policy file, shipping to the real collector binary.
//
// - Scenario 6: the collector process is killed during a working session,
//   events keep coming (they queue in IndexedDB), the collector restarts on
//   the same data dir and port, and a new event wakes the shipper once its
//   backoff has passed.
// - Scenario 7: the service worker is stopped (CDP Target.closeTarget, as
//   Chrome does after 30 s idle) while a batch is in flight — once after the
//   collector committed it but before the ack reached the worker, once before
//   the collector saw it — and a new event wakes it.
//
// - Scenario 8: the worker loses its stored credential but keeps its key
//   (and a batch is in flight), then loses the answer to its first
//   re-enrollment too; it re-enrolls (challenge + proof of the same key)
//   and ships everything, and the lost credentials are refused.
// - Scenario 9: an admin revokes the device: the worker stops sending and
//   enrolling (no retry loop, across a restart), keeps its queue and says so.
//
// Scenarios 6–8 end with the same check: what the collector stored for the device is
// every record the extension signed (seq 1..tip, contiguous, no gaps, no
// duplicates), each one verified here with Node crypto and chained to its
// predecessor, and the last one is the worker's persisted chain tip.
//
// Between the extension and the collector sits a small HTTP relay (this
// file), so a test can hold a batch mid-flight. It forwards every request
// verbatim; when the collector is down it drops the client connection
// (the worker sees a network error, as with no relay).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  EXT_DIR, buildCollectorIfMissing, createCredentials, decodeBatch, extensionPolicy, extensionSkipReason, parseRecord,
  signDemoPack, startCollector,
} from './collector.mjs';
import { launchBrowser, login, stopServiceWorker, waitFor, waitForServiceWorker } from './harness.mjs';

const ADMIN_SEED = randomBytes(32).toString('hex');
const CELL = 'table#customers tbody tr td:nth-child(3)';

const skip = extensionSkipReason();

/**
 * An HTTP relay in front of the collector. `hold` decides what happens to
 * the next batches (POST /v1/batches): 'after' forwards the batch and keeps
 * the collector's answer from the worker; 'before' keeps the batch from the
 * collector. `held` lists them, with their record count. `holdPath` keeps
 * the collector's answer to the next request on that path from the worker
 * (as 'after'; `held[i].answer` is the answer's body). `log` lists every
 * request as "METHOD /path".
 */
async function startRelay(upstreamPort) {
  const relay = { hold: null, holdPath: null, held: [], batches: 0, log: [] };
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const isBatch = req.method === 'POST' && req.url.startsWith('/v1/batches');
      if (isBatch) relay.batches += 1;
      relay.log.push(`${req.method} ${req.url.split('?')[0]}`);
      let hold = isBatch ? relay.hold : null;
      if (relay.holdPath && req.url.startsWith(relay.holdPath)) {
        relay.holdPath = null;
        hold = 'after';
      }
      const records = isBatch ? decodeBatch(body).map(parseRecord) : [];
      if (hold === 'before') {
        relay.held.push({ res, records, committed: false });
        return;
      }
      const headers = { ...req.headers };
      delete headers.connection;
      const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers }, (ur) => {
        const uc = [];
        ur.on('data', (c) => uc.push(c));
        ur.on('end', () => {
          if (hold === 'after') {
            relay.held.push({ res, records, committed: ur.statusCode === 200, status: ur.statusCode, answer: Buffer.concat(uc) });
            return;
          }
          const h = { ...ur.headers };
          delete h.connection;
          delete h['keep-alive'];
          res.writeHead(ur.statusCode, h);
          res.end(Buffer.concat(uc));
        });
      });
      // The collector is down: drop the connection, so the worker sees the
      // same network error as without the relay.
      up.on('error', () => res.socket?.destroy());
      up.end(body);
    });
  });
  srv.keepAliveTimeout = 1000;
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  relay.base = `http://127.0.0.1:${srv.address().port}`;
  relay.release = () => {
    for (const h of relay.held) h.res.socket?.destroy();
    relay.held = [];
    relay.hold = null;
  };
  relay.close = () => {
    relay.release();
    srv.closeAllConnections?.();
    return new Promise((r) => srv.close(r));
  };
  return relay;
}

describe('extension: nothing lost, nothing duplicated (collector outage, worker stopped mid-batch)', { skip, timeout: 300_000 }, () => {
  let fx;
  let browser;
  let collector;
  let relay;
  let dataDir;
  let auditor;
  let admin;
  let page;
  let deviceKey;

  /** What the worker holds: queue length, upload state, persisted tip. */
  const swState = (sw) =>
    sw.evaluate(async () => {
      const st = globalThis.sessiontrail;
      await st.whenReady();
      const tip = await st.db.get('tip');
      return {
        queue: await st.db.queueCount(),
        dead: await st.db.deadCount(),
        tip: tip ? { seq: Number(tip.seq), hash: tip.hash } : null,
        upload: { ...st.state.upload },
        now: Date.now(),
      };
    });

  async function stored() {
    const headers = { authorization: `Bearer ${auditor}` };
    const res = await fetch(`${collector.base}/v1/devices/${deviceKey}/records?limit=10000`, { headers });
    const recs = res.status === 204 ? [] : decodeBatch(Buffer.from(await res.arrayBuffer())).map(parseRecord);
    const dev = await (await fetch(`${collector.base}/v1/devices/${deviceKey}`, { headers })).json();
    return { recs, dev };
  }

  /**
   * The invariant: the collector stored exactly the records the extension
   * signed — seq 1..tip, each once, each verifying, each linked — and the
   * worker's queue is empty.
   */
  async function assertLossless(sw, label) {
    const s = await swState(sw);
    assert.equal(s.queue, 0, `${label}: the queue drained`);
    assert.equal(s.dead, 0, `${label}: no dead letters`);
    assert.equal(s.upload.rejected, 0, `${label}: the collector rejected nothing`);
    const { recs, dev } = await stored();
    assert.equal(recs.length, s.tip.seq, `${label}: the collector holds every record the extension signed (tip ${s.tip.seq})`);
    const seqs = recs.map((r) => Number(r.seq));
    assert.equal(new Set(seqs).size, seqs.length, `${label}: no record stored twice`);
    for (const [i, r] of recs.entries()) {
      assert.equal(r.key, deviceKey);
      assert.equal(r.seq, BigInt(i + 1), `${label}: seq ${i + 1} is where it belongs (no gap)`);
      assert.ok(r.sigOk, `${label}: record ${r.seq} signature verifies`);
      assert.equal(r.prev, i === 0 ? '0'.repeat(64) : recs[i - 1].hash, `${label}: record ${r.seq} links to its predecessor`);
    }
    assert.equal(recs.at(-1).hash, s.tip.hash, `${label}: the last stored record is the worker's chain tip`);
    assert.equal(Number(dev.high_water), s.tip.seq, `${label}: the collector's high-water mark is the tip`);
    assert.deepEqual(dev.gaps, [], `${label}: the collector saw no gaps`);
    return { s, recs };
  }

  /** Clicks `n` table cells (one signed `click` record each); resolves when all are signed. */
  async function clicks(sw, n) {
    const before_ = (await swState(sw)).tip?.seq ?? 0;
    const cells = page.locator(CELL);
    for (let i = 0; i < n; i++) await cells.nth(i % 25).click();
    await waitFor(async () => ((await swState(sw)).tip?.seq ?? 0) >= before_ + n, { timeout: 15_000, message: `${n} clicks signed` });
  }

  async function drained(sw, message) {
    return waitFor(async () => {
      const s = await swState(sw);
      return s.queue === 0 ? s : null;
    }, { timeout: 30_000, interval: 200, message });
  }

  before(async () => {
    buildCollectorIfMissing();
    dataDir = await mkdtemp(join(tmpdir(), 'sessiontrail-collector-'));
    let enrollToken;
    ({ enrollToken, auditor, admin } = createCredentials(dataDir, { admin: true }));
    collector = await startCollector(dataDir);
    relay = await startRelay(Number(new URL(collector.base).port));

    const { adminKey, blob } = signDemoPack(dataDir, ADMIN_SEED);
    const { startFixtures } = await import('./harness.mjs');
    fx = await startFixtures();
    browser = await launchBrowser({
      extensionDir: EXT_DIR,
      policy: extensionPolicy({ collectorUrl: relay.base, enrollmentToken: enrollToken, adminKey, packs: [blob] }),
    });
    browser.ctx.setDefaultTimeout(10_000);
    await waitFor(
      () => browser.sw.evaluate(async () => (await chrome.scripting.getRegisteredContentScripts()).length > 0),
      { timeout: 15_000, message: 'content script registration' },
    );
    deviceKey = await browser.sw.evaluate(async () => {
      await globalThis.sessiontrail.whenReady();
      return globalThis.sessiontrail.state.agent.publicKey();
    });
    // A working session, shipped and acknowledged.
    page = await browser.ctx.newPage();
    await login(page, fx.saas, 'crm');
    await page.goto(fx.url('crm', '/crm/customers'));
    await page.locator(CELL).first().waitFor();
    await clicks(browser.sw, 3);
    await drained(browser.sw, 'the first events shipped');
  });

  after(async () => {
    await browser?.close();
    await fx?.close();
    await relay?.close();
    await collector?.kill('SIGTERM');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('scenario 6: the collector is down for a while, then comes back on the same data dir and port', async () => {
    const { sw } = browser;
    const start = await assertLossless(sw, 'before the outage');

    await collector.kill('SIGKILL');
    // Work goes on: every event is signed and committed to IndexedDB.
    await clicks(sw, 40);
    await page.locator('a[href^="/crm/customers/"]').first().click(); // SPA navigation
    await page.waitForURL(/\/crm\/customers\/\d+/);
    await page.goBack();
    await page.locator(CELL).first().waitFor();
    await clicks(sw, 20);
    // The shipper tried, failed and backs off; nothing left the queue.
    const down = await waitFor(async () => {
      const s = await swState(sw);
      return s.upload.failures >= 1 && s.upload.nextMs > 0 ? s : null;
    }, { timeout: 15_000, message: 'a failed upload attempt while the collector is down' });
    assert.ok(down.queue >= 60, `events queue while the collector is down (${down.queue})`);
    assert.match(down.upload.lastError, /unreachable/);
    assert.equal((await swState(sw)).tip.seq - start.s.tip.seq >= 60, true);

    await collector.start();
    // No test hook: once the backoff has passed, the next event schedules a
    // flush (the 30 s `flush` alarm would too, later).
    const gate = (await swState(sw)).upload.nextMs;
    await waitFor(async () => (await swState(sw)).now >= gate, { timeout: 20 * 60_000, interval: 250, message: 'the backoff to pass' });
    await clicks(sw, 1);
    const after_ = await drained(sw, 'the queue drained after the collector came back');
    assert.equal(after_.upload.failures, 0, 'the backoff reset after the ack');
    const { recs } = await assertLossless(sw, 'after the outage');
    assert.ok(recs.length >= start.recs.length + 61);
    assert.ok(recs.some((r) => r.body.kind.type === 'route_change'), 'the SPA navigation during the outage is there');
  });

  for (const [hold, label] of [
    ['after', 'after the collector committed the batch, before the ack reached the worker'],
    ['before', 'before the collector saw the batch'],
  ]) {
    test(`scenario 7: the service worker is stopped mid-batch (${label})`, async () => {
      const { ctx, extensionId } = browser;
      let sw = browser.sw;
      const start = await assertLossless(sw, 'before');
      const dupBefore = start.s.upload.duplicates;

      relay.hold = hold;
      await clicks(sw, 50);
      await waitFor(() => relay.held.length > 0, { timeout: 15_000, message: 'a batch in flight' });
      const inFlight = relay.held[0];
      if (hold === 'after') assert.ok(inFlight.committed, `the collector committed the held batch (${inFlight.status})`);
      assert.ok(inFlight.records.length > 0);

      // Stop the worker while it awaits the answer.
      assert.equal(await stopServiceWorker(ctx, extensionId), true, 'the worker was running and is stopped');
      relay.release(); // the worker is gone; its connection goes too
      const stoppedAt = relay.batches;

      // A new event wakes it: the content script's message starts the worker.
      await page.locator(CELL).nth(7).click();
      sw = await waitForServiceWorker(ctx, extensionId, { timeout: 20_000 });
      await drained(sw, 'the queue drained after the worker restarted');
      assert.ok(relay.batches > stoppedAt, 'the restarted worker resent the batch');
      const { s, recs } = await assertLossless(sw, 'after the stop');
      const held = inFlight.records.map((r) => r.hash);
      const storedHashes = new Set(recs.map((r) => r.hash));
      assert.ok(held.every((h) => storedHashes.has(h)), 'every record of the interrupted batch is stored');
      const dups = s.upload.duplicates - dupBefore;
      if (hold === 'after') {
        assert.equal(dups, inFlight.records.length, 'the resent, already committed records were answered as duplicates');
      } else {
        assert.equal(dups, 0, 'nothing was a duplicate: the collector had not seen the batch');
      }
      browser.sw = sw;
    });
  }

  /** The collector's admin audit trail (auditor token). */
  async function audit() {
    const res = await fetch(`${collector.base}/v1/admin/audit?limit=1000`, { headers: { authorization: `Bearer ${auditor}` } });
    assert.equal(res.status, 200);
    return res.json();
  }

  /** What the collector answers a batch posted with `credential` (auth comes before the body). */
  async function batchWith(credential) {
    const res = await fetch(`${collector.base}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/octet-stream' },
      body: Buffer.from('not a batch'),
    });
    return { status: res.status, code: (await res.json()).error?.code };
  }

  /** The popup's "agent" paragraph, as the employee reads it. */
  async function popupAgentText() {
    const p = await browser.ctx.newPage();
    await p.goto(`chrome-extension://${browser.extensionId}/extension/popup.html`);
    const text = await waitFor(async () => {
      const t = await p.locator('#agent').textContent();
      return t && t !== 'Starting…' ? t : null;
    }, { timeout: 5_000, message: 'the popup rendered' });
    await p.close();
    return text;
  }

  test('scenario 8: the stored credential is lost (key kept, a batch in flight), then the re-enrollment answer too', async () => {
    const { ctx, extensionId } = browser;
    let sw = browser.sw;
    const start = await assertLossless(sw, 'before');
    const dupBefore = start.s.upload.duplicates;
    const reenrollsBefore = (await audit()).filter((a) => a.action === 'device.reenroll').length;
    const oldCredential = await sw.evaluate(async () => (await globalThis.sessiontrail.db.get('enrollment')).credential);

    // Events are signed and a batch is on its way (held before the
    // collector) when the credential disappears from IndexedDB.
    relay.hold = 'before';
    await clicks(sw, 20);
    await waitFor(() => relay.held.length > 0, { timeout: 15_000, message: 'a batch in flight' });
    await sw.evaluate(() => globalThis.sessiontrail.db.put({ enrollment: undefined }));
    assert.equal(await stopServiceWorker(ctx, extensionId), true);
    relay.release();

    // The next worker finds no credential; the collector knows the key
    // (409), so it re-enrolls, but that answer is lost as well: the
    // collector committed a credential the worker never sees.
    relay.holdPath = '/v1/reenroll';
    await page.locator(CELL).nth(3).click();
    sw = await waitForServiceWorker(ctx, extensionId, { timeout: 20_000 });
    await waitFor(() => relay.held.length > 0, { timeout: 20_000, message: 'a re-enrollment in flight' });
    const lost = relay.held[0];
    assert.equal(lost.status, 200, `the collector re-enrolled the key (${lost.answer})`);
    const lostCredential = JSON.parse(lost.answer).credential;
    assert.equal(await stopServiceWorker(ctx, extensionId), true);
    relay.release();

    // And the one after that re-enrolls again (a fresh challenge) and ships everything.
    const logAt = relay.log.length;
    await page.locator(CELL).nth(4).click();
    sw = await waitForServiceWorker(ctx, extensionId, { timeout: 20_000 });
    await drained(sw, 'the queue drained after the re-enrollment');
    const { s } = await assertLossless(sw, 'after the re-enrollment');
    assert.equal(s.upload.duplicates - dupBefore, 0, 'nothing was a duplicate: the held batch never reached the collector');
    const calls = relay.log.slice(logAt);
    assert.deepEqual(
      calls.filter((c) => !c.startsWith('POST /v1/batches') && !c.startsWith('GET /v1/rulepacks')),
      ['POST /v1/enroll', 'POST /v1/enroll/challenge', 'POST /v1/reenroll'],
      `one enrollment attempt, answered by a re-enrollment (${calls.join(', ')})`,
    );

    const st = await sw.evaluate(() => globalThis.sessiontrail.status());
    assert.equal(st.enrolled, true);
    assert.equal(st.enrollment.state, 'enrolled');
    assert.ok(st.enrollment.reenrolledMs > 0, 'the status says the device re-enrolled');
    assert.ok(!JSON.stringify(st).includes(oldCredential.split('.')[2]), 'no credential in the status');
    assert.match(await popupAgentText(), /re-enrolled at/);
    // Both lost credentials are dead; each re-enrollment is on the audit trail.
    assert.deepEqual(await batchWith(oldCredential), { status: 401, code: 'token_revoked' });
    assert.deepEqual(await batchWith(lostCredential), { status: 401, code: 'token_revoked' });
    const re = (await audit()).filter((a) => a.action === 'device.reenroll');
    assert.equal(re.length - reenrollsBefore, 2);
    assert.ok(re.slice(-2).every((a) => a.subject === deviceKey && a.details.credentials_revoked === 1));
    browser.sw = sw;
  });

  test('scenario 9: the device is revoked: the worker stops sending and enrolling, keeps its queue and says so', async () => {
    const { ctx, extensionId } = browser;
    let sw = browser.sw;
    const res = await fetch(`${collector.base}/v1/devices/${deviceKey}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
    assert.equal(res.status, 200);
    await clicks(sw, 3);
    const st = await waitFor(async () => {
      await sw.evaluate(() => globalThis.sessiontrail.flush());
      const x = await sw.evaluate(() => globalThis.sessiontrail.status());
      return x.enrollment.state === 'refused' ? x : null;
    }, { timeout: 20_000, interval: 500, message: 'the worker saw the revocation' });
    assert.equal(st.enrollment.code, 'device_revoked');
    assert.equal(st.enrolled, false);

    // No retry loop: more events, forced flushes and a worker restart send
    // nothing to the collector.
    const quiet = relay.log.length;
    await clicks(sw, 3);
    for (let i = 0; i < 3; i++) await sw.evaluate(() => globalThis.sessiontrail.flush());
    assert.equal(await stopServiceWorker(ctx, extensionId), true);
    await page.locator(CELL).nth(5).click();
    sw = await waitForServiceWorker(ctx, extensionId, { timeout: 20_000 });
    await waitFor(async () => (await swState(sw)).tip.seq > 0, { message: 'the restarted worker is up' });
    await sw.evaluate(() => globalThis.sessiontrail.flush());
    await new Promise((r) => setTimeout(r, 2_000));
    assert.deepEqual(relay.log.slice(quiet), [], 'nothing was sent to the collector after the revocation');
    const after_ = await swState(sw);
    assert.ok(after_.queue >= 7, `the events are kept on the device (${after_.queue} queued)`);
    assert.equal((await sw.evaluate(() => globalThis.sessiontrail.status())).enrollment.state, 'refused');
    assert.match(await popupAgentText(), /revoked by your organisation/);
    browser.sw = sw;
  });
});
