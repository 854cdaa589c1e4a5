// Helpers for the auditor UI suite: seed a temporary data directory with
// `sessiontrail dev seed` (really signed, really ingested events), start
// `sessiontrail serve` on a free loopback port, and find a session with a gap.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const BIN = resolve(process.env.SESSIONTRAIL_BIN ?? 'target/debug/sessiontrail');

async function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function waitHealthy(url, child, ms = 15_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`sessiontrail serve exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('sessiontrail serve did not become healthy');
}

export async function seedAndServe({ events = 600 } = {}) {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo build -p sessiontrail-collector first`);
  const dir = await mkdtemp(join(tmpdir(), 'st-auditor-ui-'));
  const credential = execFileSync(BIN, ['dev', 'seed', '--data-dir', dir, '--events', String(events)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
  const port = await freePort();
  const child = spawn(BIN, ['serve', '--data-dir', dir, '--listen', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, SESSIONTRAIL_LOG: 'warn' },
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const url = `http://127.0.0.1:${port}`;
  await waitHealthy(url, child);
  const auth = { Authorization: `Bearer ${credential}` };
  // The seeded second device lost seq 13–15: find the session around them.
  const found = await (await fetch(`${url}/v1/events?${new URLSearchParams({ user: 'bob@acme.test', limit: '500' })}`, { headers: auth })).json();
  const after = found.events.find((e) => e.verification.chain === 'after_gap');
  const verifierKey = (await (await fetch(`${url}/v1/log/key`, { headers: auth })).text()).trim();
  return {
    dir,
    url,
    credential,
    verifierKey,
    gapUser: after?.user,
    gapApp: after?.app,
    gapSession: after?.session,
    stderr: () => stderr,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
