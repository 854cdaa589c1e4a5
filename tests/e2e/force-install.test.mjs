// Scenario 10: force-install. A managed policy names the extension with
// `installation_mode: force_installed` and an `update_url` on the collector;
// Chromium fetches the update manifest and the CRX (target/dist, written by
// `cargo xtask package`) and installs it, with no --load-extension.
//
// The collector serves `GET /updates.xml` and `GET /extension/{file}` from
// `DATA_DIR/dist/` (crates/collector/src/rulepacks.rs). If the collector
// binary at hand does not (an older build), a tiny Node server serves the
// same two files instead: equally real for Chromium's extension updater.
//
// BRIEF.md: Playwright's default --disable-background-networking and
// --disable-component-update stop the extension updater, so both are
// dropped here (and --disable-extensions, which the harness only drops when
// it loads an unpacked extension).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { EXT_DIR, ROOT, buildCollectorIfMissing, collectorProcess, freePort } from './collector.mjs';
import { canWriteManagedPolicy, extensionIdForDir, launchBrowser, waitForServiceWorker } from './harness.mjs';

const DIST = join(ROOT, 'target/dist');

function distFiles() {
  if (!existsSync(join(DIST, 'updates.xml'))) return null;
  const xml = readFileSync(join(DIST, 'updates.xml'), 'utf8');
  const appid = /appid='([a-p]{32})'/.exec(xml)?.[1];
  const version = /version='([^']+)'/.exec(xml.slice(xml.indexOf('<updatecheck')))?.[1];
  const crxName = `sessiontrail-${version}.crx`;
  if (!appid || !version || !existsSync(join(DIST, crxName))) return null;
  return { appid, version, crxName, crx: readFileSync(join(DIST, crxName)) };
}

const dist = distFiles();
const skip = !canWriteManagedPolicy()
  ? 'needs root: Chromium reads managed policy only from /etc/chromium/policies/managed'
  : !dist
    ? 'no packaged extension: run `cargo xtask package` (target/dist/updates.xml + CRX)'
    : false;

/** The gupdate manifest for this server: same app id and version, codebase here. */
function updateManifest(base) {
  return `<?xml version='1.0' encoding='UTF-8'?>
<gupdate xmlns='http://www.google.com/update2/response' protocol='2.0'>
  <app appid='${dist.appid}'>
    <updatecheck codebase='${base}/extension/${dist.crxName}' version='${dist.version}' />
  </app>
</gupdate>
`;
}

describe('force-install from the collector-served update manifest', { skip, timeout: 120_000 }, () => {
  let server; // {base, served: () => string[] | null, close}
  let browser;
  let dataDir;

  /** The collector on a data dir holding dist/, if this build serves it. */
  async function startCollector() {
    try {
      buildCollectorIfMissing();
    } catch {
      return null;
    }
    dataDir = await mkdtemp(join(tmpdir(), 'sessiontrail-collector-'));
    const collector = collectorProcess(dataDir, await freePort());
    const { base } = collector;
    mkdirSync(join(dataDir, 'dist'));
    writeFileSync(join(dataDir, 'dist', 'updates.xml'), updateManifest(base));
    writeFileSync(join(dataDir, 'dist', dist.crxName), dist.crx);
    const close = () => collector.kill('SIGTERM');
    try {
      await collector.start();
      const xml = await fetch(`${base}/updates.xml`);
      const crx = await fetch(`${base}/extension/${dist.crxName}`);
      if (xml.status === 200 && (await xml.text()).includes(dist.appid) && crx.status === 200 && Buffer.from(await crx.arrayBuffer()).equals(dist.crx)) {
        return { base, kind: 'collector', served: () => null, close };
      }
    } catch {
      // fall through to the Node server
    }
    await close();
    return null;
  }

  /** The same two files from a Node server (the fallback). */
  async function startNodeServer() {
    const served = [];
    const srv = http.createServer((req, res) => {
      const path = new URL(req.url, 'http://x').pathname;
      served.push(path);
      if (path === '/updates.xml') {
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end(updateManifest(`http://127.0.0.1:${srv.address().port}`));
      } else if (path === `/extension/${dist.crxName}`) {
        res.writeHead(200, { 'content-type': 'application/x-chrome-extension' });
        res.end(dist.crx);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    return {
      base: `http://127.0.0.1:${srv.address().port}`,
      kind: 'node',
      served: () => served,
      close: () => new Promise((r) => srv.close(r)),
    };
  }

  before(async () => {
    server = (process.env.ST_FORCE_INSTALL_SERVER === "node" ? null : await startCollector()) ?? (await startNodeServer());
  });

  after(async () => {
    await browser?.close();
    await server?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('Chromium installs the CRX named by ExtensionSettings.update_url; the worker runs with the expected id and version', async () => {
    // The packed CRX must be the extension the manifest key pins.
    const expectedId = extensionIdForDir(EXT_DIR);
    assert.equal(dist.appid, expectedId, 'updates.xml names the id the manifest key pins');
    const expectedVersion = JSON.parse(readFileSync(join(EXT_DIR, 'manifest.json'), 'utf8')).version;
    assert.equal(dist.version, expectedVersion);

    browser = await launchBrowser({
      // No extensionDir: nothing is loaded unpacked; the policy installs it.
      chromePolicies: {
        // Measured here: Chromium's default for DeveloperToolsAvailability
        // under policy (0) disallows DevTools on policy-installed
        // extensions, and with it CDP: Playwright never attaches to the
        // worker (Target.attachToTarget: "Not allowed") and a page sent to
        // the extension's URL is closed. 1 = allowed everywhere.
        DeveloperToolsAvailability: 1,
        ExtensionSettings: {
          [expectedId]: { installation_mode: 'force_installed', update_url: `${server.base}/updates.xml` },
        },
      },
      // --disable-extensions too: without extensionDir the harness keeps
      // Playwright's default, which would refuse the force-install.
      ignoreDefaultArgs: ['--disable-extensions', '--disable-background-networking', '--disable-component-update'],
    });
    const sw = await waitForServiceWorker(browser.ctx, expectedId, { timeout: 60_000 });
    assert.equal(new URL(sw.url()).pathname, '/extension/sw.js');
    const self = await sw.evaluate(async () => {
      await globalThis.sessiontrail.whenReady();
      return {
        id: chrome.runtime.id,
        version: chrome.runtime.getManifest().version,
        name: chrome.runtime.getManifest().name,
        installType: (await chrome.management.getSelf()).installType,
        status: await globalThis.sessiontrail.status(),
      };
    });
    assert.equal(self.id, expectedId);
    assert.equal(self.version, expectedVersion, 'the installed manifest version is the packaged one');
    assert.equal(self.name, 'sessiontrail');
    assert.equal(self.installType, 'admin', 'installed by policy (force-installed), not unpacked');
    assert.match(self.status.deviceKey, /^[0-9a-f]{64}$/, 'the worker booted the wasm core and has a device key');
    // Installed from the CRX into the profile's extension store.
    const installed = join(browser.userDataDir, 'Default', 'Extensions', expectedId);
    const dirs = existsSync(installed) ? readdirSync(installed) : [];
    assert.ok(dirs.some((d) => d.startsWith(`${expectedVersion}_`)), `the CRX was unpacked under ${installed} (found ${dirs})`);
    const served = server.served();
    if (served) {
      assert.ok(served.includes('/updates.xml'), 'the update manifest was fetched');
      assert.ok(served.includes(`/extension/${dist.crxName}`), 'the CRX was fetched');
    }
    console.log(`force-install served by the ${server.kind}`);
  });
});
