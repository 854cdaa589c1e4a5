// A minimal raw Chrome DevTools Protocol client over the browser's
// --remote-debugging-port, for what Playwright does not reach:
//
// - Measured here (Chromium 156, playwright-core 1.65): Playwright does not
//   attach to the service worker of an extension that policy force-installs
//   after launch (ctx.serviceWorkers() stays empty while CDP lists the
//   target; connectOverCDP does not see it either), and navigating a
//   Playwright page to that extension's pages closes the page.
// - Playwright's browser CDP session refuses Target.attachToTarget ("Not
//   allowed"), so per-target domains (Runtime.getHeapUsage on a service
//   worker) need their own connection.
//
// Launch Chromium with `--remote-debugging-port=0` (next to Playwright's
// pipe); Chromium writes the port to `<profile>/DevToolsActivePort`.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import utils from 'playwright-core/lib/utilsBundle';

const { ws: WebSocket } = utils;

/** Connects to the browser endpoint of the Chromium using `profileDir`. */
export async function connectCdp(profileDir, { timeout = 10_000 } = {}) {
  const end = Date.now() + timeout;
  let lines;
  for (;;) {
    try {
      lines = readFileSync(join(profileDir, 'DevToolsActivePort'), 'utf8').split('\n');
      if (lines[1]) break;
    } catch {
      // not written yet
    }
    if (Date.now() > end) throw new Error(`no DevToolsActivePort in ${profileDir}: launch with --remote-debugging-port=0`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const sock = new WebSocket(`ws://127.0.0.1:${lines[0].trim()}${lines[1].trim()}`, { perMessageDeflate: false });
  await new Promise((res, rej) => {
    sock.once('open', res);
    sock.once('error', rej);
  });
  let next = 0;
  const waiting = new Map();
  sock.on('message', (data) => {
    const m = JSON.parse(String(data));
    if (m.id === undefined || !waiting.has(m.id)) return;
    const { res, rej, method } = waiting.get(m.id);
    waiting.delete(m.id);
    if (m.error) rej(new Error(`${method}: ${m.error.message}`));
    else res(m.result);
  });
  const send = (method, params = {}, sessionId = undefined) =>
    new Promise((res, rej) => {
      const id = ++next;
      waiting.set(id, { res, rej, method });
      sock.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    });
  return {
    send,
    /** The first target matching `pred` (Target.getTargets). */
    async target(pred) {
      return (await send('Target.getTargets')).targetInfos.find(pred) ?? null;
    },
    /** A flat session on a target: `{send(method, params)}`. */
    async attach(targetId) {
      const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
      return {
        sessionId,
        send: (method, params) => send(method, params, sessionId),
        detach: () => send('Target.detachFromTarget', { sessionId }).catch(() => {}),
      };
    },
    /** Runtime.evaluate of an (async) expression, by value. */
    async evaluate(session, expression) {
      const r = await session.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true });
      if (r.exceptionDetails) throw new Error(`evaluate: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
      return r.result.value;
    },
    close() {
      sock.close();
    },
  };
}
