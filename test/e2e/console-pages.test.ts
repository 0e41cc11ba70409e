/**
 * Every page of the operator web console, at a desktop (1280×800) and a phone (390×844)
 * width, in headless Chromium against a real broker: each link of the "Main" navigation is
 * followed (so pages added later are covered without a change here), the page's heading and
 * data load, a full-page screenshot is saved (test-artifacts/console/page-<name>-<width>.png),
 * axe-core finds no serious or critical violation and the CSP refuses nothing.
 * Owns: the page-by-page sweep. Must not: edit or stub the console or the API; sleep (it
 * waits on locators and on the page's own API requests).
 * The flows (kick, revoke, explain, scopes, CSRF) are in console.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { MqttClient } from 'mqtt';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { until } from '../integration/support.js';
import { hashAdminToken } from '../../src/admin/api/tokens.js';
import { SqliteAdminStore } from '../../src/store/sqlite/admin-store.js';
import { describeAxe, launchBrowser, runAxe, severe, shoot, spkiHash, watchedPage, type Watched } from './browser.js';

const ADMIN_TOKEN = 'bst_e2e-pages-admin-token-0123456789abcdef0123456789';
const WAIT = { timeout: 15_000 };
const VIEWPORTS = [
  { name: 'desktop', width: 1280, height: 800 },
  { name: 'phone', width: 390, height: 844 },
];

let pb: ProvisioningBroker;
let base: string;
let browser: Browser;
const opened: Watched[] = [];
const devices: MqttClient[] = [];

/** Counts the page's API requests in flight (event streams excepted: they never finish). */
function trackApi(page: Page): () => number {
  let pending = 0;
  const isApi = (url: string): boolean => url.includes('/api/v1/') && !url.includes('/api/v1/stream/');
  page.on('request', (r) => { if (isApi(r.url())) pending++; });
  page.on('requestfinished', (r) => { if (isApi(r.url())) pending--; });
  page.on('requestfailed', (r) => { if (isApi(r.url())) pending--; });
  return () => pending;
}

before(async () => {
  pb = await startProvisioningBroker({ admin: {} });
  base = `https://localhost:${pb.adminPort!}`;
  const store = SqliteAdminStore.open(join(pb.dataDir, 'admin.db'));
  try {
    store.createToken({ name: 'ops', hash: hashAdminToken(ADMIN_TOKEN), createdAt: Date.now(), scope: 'admin' });
  } finally {
    store.close();
  }
  // Something to show: two connected devices, a claim and a one-time token.
  for (const cn of ['pages-sensor-1', 'pages-sensor-2']) {
    const c = await pb.clientCert(cn);
    devices.push(await pb.connect({ clientId: cn, cert: c.cert, key: c.key }));
  }
  await pb.claim('sensor', { maxDevices: 3 });
  pb.token('sensor');
  browser = await launchBrowser([spkiHash(readFileSync(join(pb.pkiDir, 'issued', 'broker.crt'), 'utf8'))]);
});

after(async () => {
  for (const d of devices) d.end(true);
  for (const w of opened) await w.context.close().catch(() => undefined);
  await browser?.close();
  await pb?.stop();
});

describe('console pages', () => {
  test('the CSP watcher is not blind: an inline script injected into the console is refused and recorded', async () => {
    const w = await watchedPage(browser);
    opened.push(w);
    await w.page.goto(`${base}/console/`);
    await w.page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor(WAIT);
    assert.deepEqual(w.csp, []);
    const ran = await w.page.evaluate(() => {
      const doc = (globalThis as unknown as { document: { createElement(t: string): { textContent: string }; body: { appendChild(n: unknown): void } } }).document;
      const s = doc.createElement('script');
      s.textContent = 'globalThis.__inlineRan = true';
      doc.body.appendChild(s);
      return (globalThis as unknown as { __inlineRan?: boolean }).__inlineRan === true;
    });
    assert.equal(ran, false, "script-src 'self' stops an inline script");
    await until(() => w.csp.length > 0, 15_000, 'the violation to be recorded');
    assert.match(w.csp.join('\n'), /script-src/);
    await w.context.close();
  });

  for (const vp of VIEWPORTS) {
    test(`every page of the Main navigation at ${vp.width}×${vp.height}: loads, no CSP violation, no serious axe violation, screenshot`, async (tc) => {
      const w = await watchedPage(browser, { viewport: { width: vp.width, height: vp.height } });
      opened.push(w);
      const pending = trackApi(w.page);
      await w.page.goto(`${base}/console/`);
      await w.page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor(WAIT);
      await w.page.getByLabel('Admin token').fill(ADMIN_TOKEN);
      await w.page.getByRole('button', { name: 'Sign in', exact: true }).click();
      await w.page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor(WAIT);

      const nav = w.page.getByRole('navigation', { name: 'Main' });
      const names = (await nav.getByRole('link').allInnerTexts()).map((n) => n.trim());
      tc.diagnostic(`${vp.name}: pages ${names.join(', ')}`);
      for (const required of ['Overview', 'Clients', 'Certificates', 'Access', 'Audit', 'Alerts']) assert.ok(names.includes(required), `${required} in the navigation: ${names.join(', ')}`);

      const findings: string[] = [];
      for (const name of names) {
        const link = nav.getByRole('link', { name, exact: true });
        // Every page asks the API for its data when it opens: wait for that answer, then for
        // no request left in flight, so the screenshot and axe see the page with its data.
        // (The page already shown, the Overview after sign-in, has had its answer.)
        const current = (await link.getAttribute('aria-current')) === 'page';
        const answered = current ? Promise.resolve(null) : w.page.waitForResponse((r) => r.url().includes('/api/v1/') && !r.url().includes('/api/v1/session'), WAIT);
        await link.click();
        await until(async () => (await link.getAttribute('aria-current')) === 'page', 15_000, `${name} to be the current page`);
        // One <h1> per page; its words may differ from the link's (Updates: "OTA campaigns").
        const h1 = w.page.getByRole('heading', { level: 1 });
        await h1.first().waitFor(WAIT);
        assert.equal(await h1.count(), 1, `one h1 on ${name}`);
        assert.notEqual((await h1.innerText()).trim(), '', `the heading of ${name}`);
        await answered.catch(() => undefined);
        await until(() => pending() === 0, 15_000, `${name}'s API requests`);
        await shoot(w.page, `page-${name.toLowerCase()}-${vp.width}`);
        const violations = await runAxe(w.page);
        if (violations.length > 0) findings.push(`${name}:\n${describeAxe(violations)}`);
        assert.deepEqual(severe(violations).map((v) => v.id), [], `serious/critical axe violations on ${name} at ${vp.width} px:\n${describeAxe(severe(violations))}`);
        assert.deepEqual(w.csp, [], `CSP violations after ${name} at ${vp.width} px`);
        const overflow = await w.page.evaluate(() => {
          const el = (globalThis as unknown as { document: { documentElement: { scrollWidth: number; clientWidth: number } } }).document.documentElement;
          return el.scrollWidth - el.clientWidth;
        });
        if (overflow > 0) findings.push(`${name}: the page scrolls sideways by ${overflow} px at ${vp.width} px`);
      }
      if (findings.length > 0) tc.diagnostic(`minor findings at ${vp.width} px:\n${findings.join('\n')}`);
      if (w.errors.length > 0) tc.diagnostic(`console errors at ${vp.width} px: ${w.errors.join(' | ')}; answers ≥ 400: ${w.failed.join(' | ')}`);
      await w.context.close();
    });
  }
});
