// Screenshots of the auditor UI for review (not a test):
//   cargo build -p sessiontrail-collector && node tests/e2e/auditor-ui-screenshots.mjs
// Writes target/screenshots/auditor-ui-*.png.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { CHROMIUM, seedAndServe } from './auditor-ui-harness.mjs';

const out = join(process.cwd(), 'target', 'screenshots');
mkdirSync(out, { recursive: true });
const srv = await seedAndServe({ events: 900 });
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  page.on('console', (m) => { if (m.type() === 'error') console.error('console:', m.text()); });
  await page.goto(`${srv.url}/ui/`);
  await page.screenshot({ path: join(out, 'auditor-ui-signin.png') });
  await page.fill('#credential', srv.credential);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#results tbody tr');
  await page.screenshot({ path: join(out, 'auditor-ui-search.png') });
  await page.selectOption('#f-severity', 'high');
  await page.click('#do-search');
  await page.waitForFunction(() => document.querySelector('#search-status').textContent.includes('events'));
  await page.screenshot({ path: join(out, 'auditor-ui-search-high.png') });
  await page.goto(`${srv.url}/ui/#/timeline?${new URLSearchParams({ user: srv.gapUser, app: srv.gapApp, session: srv.gapSession })}`);
  await page.waitForSelector('.t-gap');
  await page.evaluate(() => document.querySelector('.t-gap').scrollIntoView({ block: 'center' }));
  await page.screenshot({ path: join(out, 'auditor-ui-timeline-gap.png') });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(out, 'auditor-ui-timeline.png') });
  await page.goto(`${srv.url}/ui/#/sessions`);
  await page.waitForSelector('#sessions tbody tr');
  await page.screenshot({ path: join(out, 'auditor-ui-sessions.png') });
  console.log(`screenshots in ${out}`);
} finally {
  await browser.close();
  await srv.stop();
}
