// Screenshots of the operator web console for the README: docs/images/console/<page>.png.
// Run after a build: `npm run screenshots` (= npm run build && node scripts/console-screenshots.mjs).
// Starts a real broker from dist/ (the test helper with its built-in PKI and HTTPS admin
// listener), makes a little demo data (connected MQTT.js devices with certificates, an issued
// and a revoked certificate, a ban, a behaviour alert, a claim and a one-time token, and the
// audit trail these leave), signs in with an admin token in Debian's headless Chromium, and
// saves a 1280×800 viewport shot of every page of the "Main" navigation (so new pages are
// included) plus the Clients page at 390 px as clients-phone.png. Then stops everything.
// Must not: be run by the test suite (it writes into docs/), download a browser.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const dist = join(root, 'dist');
const out = join(root, 'docs', 'images', 'console');
const CHROMIUM = '/usr/bin/chromium';
if (!existsSync(join(dist, 'test', 'helpers', 'provisioning-broker.js')) || !existsSync(join(dist, 'console', 'index.html'))) {
  console.error('console-screenshots: build first (npm run build, or npm run screenshots which does)');
  process.exit(1);
}
if (!existsSync(CHROMIUM)) {
  console.error(`console-screenshots: Chromium is missing at ${CHROMIUM}; install it with \`apt-get install chromium\``);
  process.exit(1);
}

const { startProvisioningBroker } = await import(join(dist, 'test/helpers/provisioning-broker.js'));
const { consoleRequest } = await import(join(dist, 'test/helpers/console-http.js'));
const { hashAdminToken } = await import(join(dist, 'src/admin/api/tokens.js'));
const { SqliteAdminStore } = await import(join(dist, 'src/store/sqlite/admin-store.js'));
const { PkiService } = await import(join(dist, 'src/server/pki-service.js'));

// A demo token, known only to this throw-away broker (its data directory is removed at the end).
const TOKEN = `bst_screenshots-${createHash('sha256').update(String(Date.now())).digest('hex').slice(0, 40)}`;

const pb = await startProvisioningBroker({
  admin: {},
  authz: {
    policy: 'rules',
    roles: { sensor: { rules: [{ effect: 'allow', action: 'all', topic: 'devices/${cert.cn}/#' }] } },
    bindings: [{ role: 'sensor', attribute: 'cert.ou', value: 'sensors' }],
  },
  defender: {
    detect: {
      windowSeconds: 3600,
      rules: [{ kind: 'static', name: 'denials', metric: 'authzDenials', operator: 'gt', value: 2 }],
      actions: { denials: ['quarantine'] },
    },
    audit: { intervalSeconds: 0 },
  },
});
const devices = [];
const timers = [];
let browser = null;
try {
  const t = { port: pb.adminPort, caPem: pb.caPem };
  const base = `https://localhost:${pb.adminPort}`;
  const store = SqliteAdminStore.open(join(pb.dataDir, 'admin.db'));
  try {
    store.createToken({ name: 'ops', hash: hashAdminToken(TOKEN), createdAt: Date.now(), scope: 'admin' });
  } finally {
    store.close();
  }
  const api = async (method, path, body) => {
    const a = await consoleRequest(t, { method, path, token: TOKEN, ...(body !== undefined ? { body } : {}) });
    if (a.status >= 300) throw new Error(`${method} ${path}: ${a.status} ${a.text}`);
    return a.json;
  };

  const pki = await PkiService.open(pb.pkiDir);
  const bundles = [];
  try {
    for (const cn of ['sensor-0001', 'sensor-0002', 'sensor-0003', 'sensor-0004', 'gateway-lab']) bundles.push(await pki.issueBundle({ profile: 'client', commonName: cn, organizationalUnit: 'sensors', days: cn === 'gateway-lab' ? 20 : 90 }));
    await pki.issueBundle({ profile: 'client', commonName: 'alice', organizationalUnit: 'operators', days: 30 });
  } finally {
    pki.close();
  }
  // Devices that subscribe and publish a little telemetry, so the overview has rates.
  for (const b of bundles.slice(0, 4)) {
    const c = await pb.connect({ clientId: b.commonName, cert: b.certPem, key: b.keyPem });
    await c.subscribeAsync(`devices/${b.commonName}/cmd/#`, { qos: 1 });
    devices.push(c);
    timers.push(setInterval(() => c.publish(`devices/${b.commonName}/telemetry`, JSON.stringify({ t: Date.now(), temp: 20 + Math.random() * 3 })), 250));
  }
  // A device that publishes outside its own topics: denied three times, an alert, quarantined.
  const rogue = bundles[4];
  const rc = await pb.connect({ clientId: rogue.commonName, cert: rogue.certPem, key: rogue.keyPem });
  devices.push(rc);
  for (let i = 0; i < 4; i++) await rc.publishAsync(`devices/sensor-0001/cmd/reboot`, 'x', { qos: 1 }).catch(() => undefined);
  // The detector evaluates on its own clock; one evaluation now raises the alert.
  pb.server.defender.tick();

  // Certificates: one issued from the API, one revoked (its audit record too).
  await api('POST', '/api/v1/certificates', { commonName: 'sensor-0005', profile: 'client', organizationalUnit: 'sensors', days: 60 });
  const lost = await api('POST', '/api/v1/certificates', { commonName: 'sensor-lost-07', profile: 'client', organizationalUnit: 'sensors', days: 60 });
  await api('POST', `/api/v1/certificates/${lost.serialNumber}/revoke`, { reason: 'keyCompromise' });
  await api('POST', '/api/v1/bans', { kind: 'clientId', value: 'scanner-42', reason: 'probing topics', ttlSeconds: 86400 });
  await pb.claim('sensor', { maxDevices: 25 });
  pb.token('sensor');

  const spki = createHash('sha256').update(new X509Certificate(readFileSync(join(pb.pkiDir, 'issued', 'broker.crt'))).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // SECURITY: trust exactly the demo broker's server key (no certificate tool to add its CA).
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--ignore-certificate-errors-spki-list=${spki}`],
  });
  mkdirSync(out, { recursive: true });

  const session = async (width, height) => {
    const context = await browser.newContext({ viewport: { width, height } });
    const page = await context.newPage();
    let pending = 0;
    const isApi = (u) => u.includes('/api/v1/') && !u.includes('/api/v1/stream/');
    page.on('request', (r) => { if (isApi(r.url())) pending++; });
    page.on('requestfinished', (r) => { if (isApi(r.url())) pending--; });
    page.on('requestfailed', (r) => { if (isApi(r.url())) pending--; });
    const settled = async () => {
      const deadline = Date.now() + 15000;
      while (pending > 0 && Date.now() < deadline) await page.waitForTimeout(50);
    };
    await page.goto(`${base}/console/`);
    await page.getByLabel('Admin token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor({ timeout: 15000 });
    return { context, page, settled };
  };

  const desk = await session(1280, 800);
  const nav = desk.page.getByRole('navigation', { name: 'Main' });
  const names = (await nav.getByRole('link').allInnerTexts()).map((n) => n.trim());
  // Let the overview's charts gather a few seconds of samples first.
  await desk.page.waitForTimeout(6000);
  for (const name of names) {
    const link = nav.getByRole('link', { name, exact: true });
    if ((await link.getAttribute('aria-current')) !== 'page') {
      const answered = desk.page.waitForResponse((r) => r.url().includes('/api/v1/'), { timeout: 15000 }).catch(() => null);
      await link.click();
      await answered;
    }
    await desk.page.getByRole('heading', { level: 1 }).first().waitFor({ timeout: 15000 });
    await desk.settled();
    if (name === 'Access') {
      await desk.page.getByLabel('Client id').fill('sensor-0002');
      await desk.page.getByLabel('Topic').fill('devices/sensor-0001/cmd/reboot');
      await desk.page.getByRole('button', { name: 'Explain', exact: true }).click();
      await desk.page.getByTestId('explain-result').getByText(/Allowed|Denied/).first().waitFor({ timeout: 15000 });
    }
    if (name === 'Alerts') {
      await desk.page.getByRole('button', { name: 'Run audit' }).click();
      await desk.page.getByTestId('security-audit').waitFor({ timeout: 15000 });
      await desk.settled();
    }
    const file = join(out, `${name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}.png`);
    await desk.page.screenshot({ path: file });
    console.log(`wrote ${file}`);
  }
  await desk.context.close();

  const phone = await session(390, 844);
  await phone.page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Clients', exact: true }).click();
  await phone.page.getByRole('table', { name: 'Connected clients' }).getByRole('link').first().waitFor({ timeout: 15000 });
  await phone.settled();
  await phone.page.screenshot({ path: join(out, 'clients-phone.png') });
  console.log(`wrote ${join(out, 'clients-phone.png')}`);
  await phone.context.close();
} finally {
  for (const timer of timers) clearInterval(timer);
  for (const d of devices) d.end(true);
  await browser?.close();
  await pb.stop();
}
