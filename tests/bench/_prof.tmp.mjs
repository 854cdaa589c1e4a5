// TEMPORARY profiling helper (to be deleted).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { launchBrowser, loginByCookie, startFixtures, waitFor } from '../e2e/harness.mjs';
const ROOT = resolve(import.meta.dirname, '../..');
const EXT_DIR = join(ROOT, 'target/extension');
const CELL = 'table#customers tbody tr td:nth-child(3)';
const work = mkdtempSync(join(tmpdir(), 'st-prof-'));
const packFile = join(work, 'acme.strp');
const signed = spawnSync('cargo', ['run', '-q', '-p', 'sessiontrail-wasm', '--example', 'sign_pack', '--', 'rulepacks/demo/acme.toml', randomBytes(32).toString('hex'), packFile], { cwd: ROOT, encoding: 'utf8' });
const adminKey = signed.stdout.trim();
const fx = await startFixtures();
const ext = await launchBrowser({ extensionDir: EXT_DIR, policy: { adminPublicKeys: [adminKey], bootstrapRulePacks: [readFileSync(packFile).toString('base64')], identity: { source: 'page' }, maskKey: randomBytes(32).toString('hex') } });
try {
  await waitFor(() => ext.sw.evaluate(async () => (await chrome.scripting.getRegisteredContentScripts()).length > 0), { timeout: 20000 });
  await loginByCookie(ext.ctx, fx.saas, 'crm');
  const page = await ext.ctx.newPage();
  await page.goto(fx.url('crm', '/crm/big'));
  await page.locator(CELL).first().waitFor();
  await page.evaluate((sel) => { window.__cells = Array.from(document.querySelectorAll(sel)); }, CELL);
  const click = async (i) => {
    const p = await page.evaluate((k) => { const c = window.__cells[k % window.__cells.length]; c.scrollIntoView({ block: 'center' }); const r = c.getBoundingClientRect(); return { x: r.x + 4, y: r.y + r.height / 2 }; }, i);
    await page.mouse.click(p.x, p.y);
  };
  for (let i = 0; i < 5; i++) await click(i * 389 + 1000);
  const s = await ext.ctx.newCDPSession(page);
  await s.send('Profiler.enable');
  await s.send('Profiler.setSamplingInterval', { interval: 25 });
  await s.send('Profiler.start');
  for (let i = 0; i < 120; i++) await click((i * 389) % 1430);
  const { profile } = await s.send('Profiler.stop');
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stack = (id) => { const out = []; for (let x = id; x; x = parent.get(x)) { const f = byId.get(x).callFrame; out.push(`${f.functionName || '(anon)'}@${f.url.split('/').pop()}:${f.lineNumber}`); } return out; };
  const self = new Map(); const incl = new Map();
  let t = profile.startTime; const runs = []; let cur = null;
  profile.samples.forEach((id, k) => {
    const dt = profile.timeDeltas[k + 1] ?? 0; t += profile.timeDeltas[k];
    const st = stack(id);
    const inExt = st.some((x) => x.includes('content.js'));
    if (inExt) {
      self.set(st[0], (self.get(st[0]) ?? 0) + dt);
      for (const x of new Set(st)) incl.set(x, (incl.get(x) ?? 0) + dt);
      if (!cur) { cur = { t, us: 0, tops: new Map() }; runs.push(cur); }
      cur.us += dt; cur.tops.set(st[0], (cur.tops.get(st[0]) ?? 0) + dt);
    } else cur = null;
  });
  const top = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${(v / 120).toFixed(1)}µs/click ${k}`).join('\n');
  console.log('SELF per click\n' + top(self, 25));
  console.log('INCL per click\n' + top(incl, 25));
  runs.sort((a, b) => b.us - a.us);
  for (const r of runs.slice(0, 4)) console.log('RUN', r.us, [...r.tops].sort((a, b) => b[1] - a[1]).slice(0, 6));
} finally { await ext.close(); await fx.close(); rmSync(work, { recursive: true, force: true }); }
