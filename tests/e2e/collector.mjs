// The real collector, as the end-to-end suites (and tests/bench) use it:
// the binary on a temp data dir, its tokens, the signed demo pack, the
// managed policy that points the extension at it, and an independent
// decoder/verifier of what it stored (docs/formats.md, Node crypto only).
// One copy, so every suite checks the stored records the same way.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, createPublicKey, randomBytes, verify as edVerify } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';

import { canWriteManagedPolicy, waitFor } from './harness.mjs';

export const ROOT = resolve(import.meta.dirname, '../..');
/** The staged extension (`cargo xtask package`). */
export const EXT_DIR = join(ROOT, 'target/extension');
export const COLLECTOR_BIN = join(ROOT, 'target/debug/sessiontrail');
export const SIGN_PACK_BIN = join(ROOT, 'target/debug/examples/sign_pack');
/** The demo rule pack the suites sign and ship through policy. */
export const DEMO_PACK = 'rulepacks/demo/acme.toml';

/**
 * Why a suite that loads the staged extension under managed policy cannot
 * run here (a `describe` skip reason), or false.
 */
export function extensionSkipReason() {
  return !canWriteManagedPolicy()
    ? 'needs root: Chromium reads managed policy only from /etc/chromium/policies/managed'
    : !existsSync(join(EXT_DIR, 'manifest.json'))
      ? 'the extension is not staged: run `cargo xtask package` (or `cargo xtask test`)'
      : false;
}

/** A port nothing listens on right now, so a restarted collector can reuse it. */
export function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

/** Runs a command from the repo root; its trimmed stdout, or throws with stderr. */
export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

/** Builds the collector binary if it is missing, so a suite run alone still works. */
export function buildCollectorIfMissing() {
  if (!existsSync(COLLECTOR_BIN)) run('cargo', ['build', '-q', '-p', 'sessiontrail-collector', '--bin', 'sessiontrail']);
}

/**
 * Tokens minted offline by the collector CLI on `dataDir` (before `serve`):
 * an enrollment token for the extension (5 uses), an auditor token to read
 * records back and, with `admin`, an admin token to publish packs.
 */
export function createCredentials(dataDir, { admin = false } = {}) {
  const creds = {
    enrollToken: run(COLLECTOR_BIN, ['enroll-token', 'create', '--data-dir', dataDir, '--uses', '5']),
    auditor: run(COLLECTOR_BIN, ['token', 'create', '--role', 'auditor', '--data-dir', dataDir]),
  };
  if (admin) creds.admin = run(COLLECTOR_BIN, ['token', 'create', '--role', 'admin', '--data-dir', dataDir]);
  return creds;
}

/**
 * The collector as a child process on a fixed data dir and port, so it can
 * be killed and started again on the same address (the extension keeps the
 * URL it was given). `start` resolves once /healthz answers.
 */
export function collectorProcess(dataDir, port) {
  const base = `http://127.0.0.1:${port}`;
  let child = null;
  let stderr = '';
  return {
    base,
    async start() {
      stderr = '';
      child = spawn(COLLECTOR_BIN, ['serve', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`], {
        cwd: ROOT,
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, SESSIONTRAIL_LOG: 'warn' },
      });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      await waitFor(async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok, {
        timeout: 15_000,
        message: `collector on ${base} (${stderr})`,
      });
    },
    /** SIGKILL by default: the process dies without any shutdown work. */
    async kill(signal = 'SIGKILL') {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
      child = null;
    },
  };
}

/** Starts a collector on `dataDir` and a free port (see collectorProcess). */
export async function startCollector(dataDir) {
  const collector = collectorProcess(dataDir, await freePort());
  await collector.start();
  return collector;
}

/**
 * Signs the demo pack with `seed` (hex) via the wasm crate's sign_pack
 * example; the admin public key to pin and the pack bytes. Through cargo so
 * the example is built on first use.
 */
export function signDemoPack(dir, seed = randomBytes(32).toString('hex')) {
  const packFile = join(dir, 'acme.strp');
  const adminKey = run('cargo', ['run', '-q', '-p', 'sessiontrail-wasm', '--example', 'sign_pack', '--', DEMO_PACK, seed, packFile]);
  return { adminKey, packFile, blob: readFileSync(packFile) };
}

/**
 * Compiles and signs `toml` (text) as `version` with `seed` using the built
 * sign_pack example (build it first); the blob and the signer's public key.
 */
export function signPack(dir, name, toml, seed, version) {
  const src = join(dir, `${name}.toml`);
  const out = join(dir, `${name}.strp`);
  writeFileSync(src, toml);
  const key = run(SIGN_PACK_BIN, [src, seed, out, String(version)]);
  return { blob: readFileSync(out), key };
}

/** Publishes a signed pack to the collector's `default` group (admin token); expects 201. */
export async function publishPack(base, adminToken, blob) {
  const res = await fetch(`${base}/v1/rulepacks?group=default`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/octet-stream' },
    body: blob,
  });
  assert.equal(res.status, 201, `publish: ${await res.text()}`);
}

/**
 * The extension's managed policy as the suites deploy it: the pinned admin
 * key, the packs bootstrapped through policy (the collector's pack feed is
 * not relied on), page identity and a fresh mask key. Without
 * `collectorUrl` nothing ships (events stay queued). `extra` is merged last.
 */
export function extensionPolicy({ collectorUrl, enrollmentToken, adminKey, packs, ...extra }) {
  return {
    ...(collectorUrl !== undefined ? { collectorUrl } : {}),
    ...(enrollmentToken !== undefined ? { enrollmentToken } : {}),
    adminPublicKeys: [adminKey],
    bootstrapRulePacks: packs.map((p) => Buffer.from(p).toString('base64')),
    identity: { source: 'page' },
    maskKey: randomBytes(32).toString('hex'),
    ...extra,
  };
}

/** Decodes the core batch format (docs/formats.md) into record buffers; checks magic and trailer hash. */
export function decodeBatch(buf) {
  assert.equal(buf.subarray(0, 4).toString('latin1'), 'STBA');
  const body = buf.subarray(0, buf.length - 32);
  assert.deepEqual(createHash('sha256').update(body).digest(), buf.subarray(buf.length - 32));
  const n = buf.readUInt32BE(8);
  const out = [];
  let at = 12;
  for (let i = 0; i < n; i++) {
    const len = buf.readUInt32BE(at);
    out.push(buf.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return out;
}

/**
 * One record, checked independently of the Rust code (Node crypto only):
 * header and length asserted, Ed25519 signature result in `sigOk`, and
 * `prev`/`hash` so a suite can check the chain links.
 */
export function parseRecord(rec) {
  assert.equal(rec.subarray(0, 4).toString('latin1'), 'STEV');
  const key = rec.subarray(6, 38);
  const n = rec.readUInt32BE(86);
  assert.equal(rec.length, 90 + n + 64);
  const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: key.toString('base64url') }, format: 'jwk' });
  return {
    key: key.toString('hex'),
    seq: rec.readBigUInt64BE(38),
    prev: rec.subarray(46, 78).toString('hex'),
    hash: createHash('sha256').update(rec).digest('hex'),
    sigOk: edVerify(null, rec.subarray(0, 90 + n), pub, rec.subarray(90 + n)),
    body: JSON.parse(rec.subarray(90, 90 + n).toString('utf8')),
  };
}

/**
 * Everything the collector stored for `deviceKey`, decoded and parsed (204 =
 * none yet). Read with an auditor token, as an auditor would.
 */
export async function fetchRecords(base, auditor, deviceKey) {
  const res = await fetch(`${base}/v1/devices/${deviceKey}/records?limit=10000`, { headers: { authorization: `Bearer ${auditor}` } });
  if (res.status === 204) return [];
  assert.equal(res.status, 200, await res.clone().text());
  return decodeBatch(Buffer.from(await res.arrayBuffer())).map(parseRecord);
}

/**
 * Flushes the extension's queue (service worker `sw`) until the collector
 * holds records for its device key that satisfy `predicate`; those records.
 * Shipping is asynchronous, so a test waits on what was stored, never on the
 * flush call; on timeout the error carries the worker's upload status and
 * the stored record kinds, which is what one needs to see why.
 */
export async function flushUntilStored(sw, { base, auditor }, predicate, { interval, message }) {
  let last = [];
  return waitFor(
    async () => {
      await sw.evaluate(() => globalThis.sessiontrail.flush());
      const key = await sw.evaluate(() => globalThis.sessiontrail.state.agent.publicKey());
      last = await fetchRecords(base, auditor, key).catch(() => []);
      return predicate(last) ? last : null;
    },
    { timeout: 20_000, interval, message },
  ).catch(async (e) => {
    const st = await sw.evaluate(() => globalThis.sessiontrail.status());
    const kinds = last.map((r) => `${r.seq}:${r.body.kind.type}:${r.body.decision?.response}`).join(' ');
    throw new Error(`${e.message}\nstatus: ${JSON.stringify({ queue: st.queue, upload: st.upload, packErrors: st.packErrors, last: st.lastResponse })}\nrecords: ${kinds}`);
  });
}
