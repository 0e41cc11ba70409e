/**
 * The operator web console end to end: headless Chromium (Debian's, via playwright-core)
 * against a real broker with its built-in PKI and HTTPS admin listener, real MQTT clients
 * (MQTT.js and mosquitto_sub). Sign-in by token and by operator certificate, live overview,
 * kicking a client, revoking a certificate (its live session drops), explaining a denial,
 * finding the revocation in the audit log, the viewer scope, and CSRF refusal.
 * Every page visited is screenshotted (test-artifacts/console/), checked by axe-core (no
 * serious or critical violation) and must cause no CSP violation.
 * Owns: these browser flows. Must not: edit or stub the console or the API (it drives the
 * real ones); sleep (it waits on locators or polls with until()).
 * Page-by-page checks at two widths are in console-pages.test.ts.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import type { MqttClient } from 'mqtt';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { consoleRequest, type ConsoleTarget } from '../helpers/console-http.js';
import { until } from '../integration/support.js';
import { hashAdminToken } from '../../src/admin/api/tokens.js';
import { PkiService, type IssuedBundle } from '../../src/server/pki-service.js';
import { SqliteAdminStore } from '../../src/store/sqlite/admin-store.js';
import { describeAxe, launchBrowser, runAxe, severe, shoot, spkiHash, trustCaForClientCertificates, watchedPage, type Watched } from './browser.js';

const ADMIN_TOKEN = 'bst_e2e-admin-token-for-console-tests-0123456789abcdef';
const VIEWER_TOKEN = 'bst_e2e-viewer-token-for-console-tests-0123456789abcdef';
const WAIT = { timeout: 15_000 };

let pb: ProvisioningBroker;
let t: ConsoleTarget;
let base: string;
let browser: Browser;
let admin: Watched;
const opened: Watched[] = [];
const mqttClients: MqttClient[] = [];
let sub: ChildProcess | null = null;
let revokedSerial = '';

async function issue(commonName: string, organizationalUnit?: string): Promise<IssuedBundle> {
  const pki = await PkiService.open(pb.pkiDir);
  try {
    return await pki.issueBundle({ profile: 'client', commonName, ...(organizationalUnit !== undefined ? { organizationalUnit } : {}) });
  } finally {
    pki.close();
  }
}

/** Screenshot, axe and CSP checks of the page as it is now. */
async function checkPage(tc: TestContext, w: Watched, name: string): Promise<void> {
  await shoot(w.page, name);
  const violations = await runAxe(w.page);
  if (violations.length > 0) tc.diagnostic(`axe on ${name}:\n${describeAxe(violations)}`);
  assert.deepEqual(severe(violations).map((v) => v.id), [], `serious/critical axe violations on ${name}:\n${describeAxe(severe(violations))}`);
  assert.deepEqual(w.csp, [], `CSP violations on ${name}`);
}

async function signInWithToken(w: Watched, token: string): Promise<void> {
  await w.page.goto(`${base}/console/`);
  await w.page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor(WAIT);
  await w.page.getByLabel('Admin token').fill(token);
  await w.page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await w.page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor(WAIT);
}

async function nav(w: Watched, name: string): Promise<void> {
  await w.page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click();
  await w.page.getByRole('heading', { name, level: 1, exact: true }).waitFor(WAIT);
}

/** The broker's connected client ids with this prefix, as the API (bearer token) reports them. */
async function connectedIds(prefix: string): Promise<string[]> {
  const a = await consoleRequest(t, { path: `/api/v1/clients?prefix=${encodeURIComponent(prefix)}&limit=50`, token: ADMIN_TOKEN });
  assert.equal(a.status, 200, a.text);
  return (a.json.clients as Array<{ clientId: string }>).map((c) => c.clientId);
}

before(async () => {
  // The helper's ACL (role `sensor` on devices/${cert.cn}/#), bound to the test's client ids:
  // the helper binds it to no one, and mosquitto_sub exits when its subscription is refused.
  pb = await startProvisioningBroker({
    admin: {},
    authz: { policy: 'rules', roles: { sensor: { rules: [{ effect: 'allow', action: 'all', topic: 'devices/${cert.cn}/#' }] } }, bindings: [{ role: 'sensor', attribute: 'clientId', value: 'msub-*' }, { role: 'sensor', attribute: 'clientId', value: 'e2e-*' }] },
  });
  t = { port: pb.adminPort!, caPem: pb.caPem };
  base = `https://localhost:${pb.adminPort!}`;
  const store = SqliteAdminStore.open(join(pb.dataDir, 'admin.db'));
  try {
    store.createToken({ name: 'ops', hash: hashAdminToken(ADMIN_TOKEN), createdAt: Date.now(), scope: 'admin' });
    store.createToken({ name: 'auditor', hash: hashAdminToken(VIEWER_TOKEN), createdAt: Date.now(), scope: 'viewer' });
  } finally {
    store.close();
  }
  trustCaForClientCertificates(pb.caPem);
  browser = await launchBrowser([spkiHash(readFileSync(join(pb.pkiDir, 'issued', 'broker.crt'), 'utf8'))]);
  admin = await watchedPage(browser);
  opened.push(admin);
});

after(async () => {
  if (sub !== null && sub.exitCode === null && sub.signalCode === null) sub.kill('SIGKILL');
  for (const c of mqttClients) c.end(true);
  for (const w of opened) await w.context.close().catch(() => undefined);
  await browser?.close();
  await pb?.stop();
});

describe('console end to end', () => {
  test('an admin token signs in; the overview is live and its cards follow the broker', async (tc) => {
    await signInWithToken(admin, ADMIN_TOKEN);
    assert.match(await admin.page.getByTestId('session-info').innerText(), /Signed in as ops \(token\), scope admin/);
    const live = admin.page.getByTestId('live-state');
    await until(async () => (await live.innerText()).startsWith('Live:'), 15_000, 'the live-state line to say Live');
    const card = admin.page.getByTestId('card-connections').locator('.value');
    const countNow = async (): Promise<number> => Number((await card.innerText()).replace(/[^0-9.]/g, ''));
    await until(async () => /^\s*\d+\s*$/.test(await card.innerText()), 15_000, 'a first sample in the connections card');
    const before = await countNow();
    const b = await issue('overview-dev');
    mqttClients.push(await pb.connect({ clientId: 'overview-dev', cert: b.certPem, key: b.keyPem }));
    await until(async () => (await countNow()) === before + 1, 15_000, `the connections card to go from ${before} to ${before + 1}`);
    await checkPage(tc, admin, 'overview');
    // Console errors are reported, not failed on: a 401 from the session probe before sign-in is one.
    if (admin.errors.length > 0) tc.diagnostic(`console errors: ${admin.errors.join(' | ')}; answers ≥ 400: ${admin.failed.join(' | ')}`);
  });

  test('an operator certificate (OU operators) signs in; the session shows its CN', async (tc) => {
    const op = await issue('alice-operator', 'operators');
    const w = await watchedPage(browser, { clientCertificates: [{ origin: base, cert: Buffer.from(op.certPem), key: Buffer.from(op.keyPem) }] });
    opened.push(w);
    await w.page.goto(`${base}/console/`);
    await w.page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor(WAIT);
    await checkPage(tc, w, 'sign-in');
    await w.page.getByRole('button', { name: 'Sign in with certificate' }).click();
    await w.page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor(WAIT);
    assert.match(await w.page.getByTestId('session-info').innerText(), /Signed in as alice-operator \(certificate\)/);
    assert.deepEqual(w.csp, []);
    await w.context.close();
  });

  test('a mosquitto_sub client is found by prefix, kicked from its detail page, and leaves the list', async (tc) => {
    const cn = 'msub-device';
    const b = await issue(cn);
    const crt = join(pb.dir, `${cn}.crt`);
    const key = join(pb.dir, `${cn}.key`);
    writeFileSync(crt, b.certPem);
    writeFileSync(key, b.keyPem, { mode: 0o600 });
    const clientId = 'msub-kick-1';
    const proc = spawn('/usr/bin/mosquitto_sub', ['-h', 'localhost', '-p', String(pb.port), '--cafile', join(pb.pkiDir, 'ca-chain.crt'), '--cert', crt, '--key', key, '-i', clientId, '-t', `devices/${cn}/#`, '-V', 'mqttv5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    sub = proc;
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    await until(async () => (await connectedIds('msub-')).includes(clientId), 15_000, `mosquitto_sub connected (${stderr})`);

    await nav(admin, 'Clients');
    await admin.page.getByLabel('Client id prefix').fill('msub-');
    await admin.page.getByRole('button', { name: 'Search' }).click();
    const table = admin.page.getByRole('table', { name: 'Connected clients' });
    await table.getByRole('link', { name: clientId, exact: true }).waitFor(WAIT);
    assert.equal(await admin.page.getByTestId('clients-range').innerText(), '1–1 of 1');
    await checkPage(tc, admin, 'clients-search');
    await table.getByRole('link', { name: clientId, exact: true }).click();
    await admin.page.getByRole('heading', { name: `Client ${clientId}`, level: 1 }).waitFor(WAIT);
    await admin.page.getByTestId('client-detail').waitFor(WAIT);
    await checkPage(tc, admin, 'client-detail');
    await admin.page.getByRole('button', { name: 'Kick' }).click();
    await admin.page.getByRole('heading', { name: 'Clients', level: 1, exact: true }).waitFor(WAIT);
    // mosquitto_sub takes the broker's DISCONNECT as the end and exits (seen: code 0); it
    // does not reconnect by default, so the broker's list must stay without it.
    const code = await exited;
    tc.diagnostic(`mosquitto_sub exited with ${String(code)} after the kick ${stderr.trim()}`);
    assert.deepEqual(await connectedIds('msub-'), []);
    // The list page came back without the search: search again, then refresh it.
    await admin.page.getByLabel('Client id prefix').fill('msub-');
    await admin.page.getByRole('button', { name: 'Search' }).click();
    await admin.page.getByRole('button', { name: 'Refresh' }).click();
    await until(async () => (await admin.page.getByTestId('clients-range').innerText()) === '0 of 0', 15_000, 'the list without the kicked client');
    assert.equal(await table.getByRole('link', { name: clientId, exact: true }).count(), 0);
    // The operator's kick is in the audit log, with its actor.
    const audit = await consoleRequest(t, { path: '/api/v1/audit?type=admin.change&limit=50', token: ADMIN_TOKEN });
    const kicks = (audit.json.records as Array<{ event: { action?: string; target?: string; outcome?: string; actor?: string } }>).filter((r) => r.event.action === 'client.kick' && r.event.target === clientId);
    assert.equal(kicks.length, 1, audit.text);
    assert.equal(kicks[0]!.event.outcome, 'ok');
    assert.match(String(kicks[0]!.event.actor), /ops/);
  });

  test('revoking a certificate on the Certificates page drops its live MQTT session', async (tc) => {
    const cn = 'e2e-revoke-me';
    const b = await issue(cn);
    revokedSerial = b.serialNumber;
    const device = await pb.connect({ clientId: cn, cert: b.certPem, key: b.keyPem, reconnectPeriod: 0 });
    mqttClients.push(device);
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));

    await nav(admin, 'Certificates');
    await admin.page.getByLabel('Common name contains').fill(cn);
    await admin.page.getByRole('button', { name: 'Filter' }).click();
    const table = admin.page.getByRole('table', { name: 'Certificates' });
    const row = table.getByRole('row').filter({ hasText: b.serialNumber });
    await row.waitFor(WAIT);
    assert.equal(await table.getByRole('row').filter({ hasText: cn }).count(), 1);
    await checkPage(tc, admin, 'certificates-filtered');
    await admin.page.getByRole('button', { name: `Revoke ${cn}` }).click();
    await admin.page.getByRole('combobox', { name: 'Reason' }).selectOption('keyCompromise');
    await admin.page.getByRole('button', { name: 'Confirm revoke' }).click();
    await admin.page.getByRole('status').filter({ hasText: `Revoked ${cn}` }).waitFor(WAIT);
    await closed;
    assert.equal(device.connected, false);
    await until(async () => /revoked/.test(await row.innerText()), 15_000, 'the row to show revoked');
    assert.match(await row.innerText(), /revoked \(keyCompromise\)/);
    assert.equal(await admin.page.getByRole('button', { name: `Revoke ${cn}` }).count(), 0, 'no Revoke button on a revoked row');
    await checkPage(tc, admin, 'certificates-revoked');
  });

  test('the Access page explains a denial with its reason and rule', async (tc) => {
    const clientId = 'e2e-explainer';
    const topic = 'devices/someone-else/cmd';
    const api = await consoleRequest(t, { method: 'POST', path: '/api/v1/acl/explain', token: ADMIN_TOKEN, body: { clientId, action: 'publish', topic } });
    assert.equal(api.status, 200, api.text);
    assert.equal(api.json.decision, 'deny');
    await nav(admin, 'Access');
    await admin.page.getByLabel('Client id').fill(clientId);
    await admin.page.getByLabel('Action').selectOption('publish');
    await admin.page.getByLabel('Topic').fill(topic);
    await admin.page.getByRole('button', { name: 'Explain', exact: true }).click();
    const result = admin.page.getByTestId('explain-result');
    await result.getByText('Denied', { exact: true }).waitFor(WAIT);
    const text = await result.innerText();
    assert.ok(text.includes(String(api.json.reason)), `the reason "${String(api.json.reason)}" in: ${text}`);
    assert.match(text, /Deciding rule/);
    assert.ok(text.includes(topic), text);
    assert.match(text, /sensor/, 'the role the client id is bound to');
    await checkPage(tc, admin, 'access-explain');
  });

  test('the revocation is in the Audit page and the chain is intact', async (tc) => {
    assert.notEqual(revokedSerial, '', 'the revocation test ran');
    await nav(admin, 'Audit');
    await admin.page.getByLabel('Type').fill('admin.change');
    await admin.page.getByRole('button', { name: 'Apply' }).click();
    const table = admin.page.getByRole('table', { name: 'Audit records' });
    const row = table.getByRole('row').filter({ hasText: 'cert.revoke' });
    await row.first().waitFor(WAIT);
    assert.equal(await row.count(), 1, 'one revocation in this broker');
    assert.match(await row.innerText(), /admin\.change/);
    // A long event is cut to a summary: "Show all" opens the whole record under its row.
    if (!(await row.innerText()).includes(revokedSerial)) {
      await row.getByRole('button', { name: /^Show all/ }).click();
      await table.locator('tr.subrow').filter({ hasText: revokedSerial }).waitFor(WAIT);
    }
    await until(async () => /^Chain intact: \d+ records/.test(await admin.page.getByTestId('chain-status').innerText()), 15_000, 'the chain status');
    assert.match(String(await admin.page.getByRole('link', { name: 'Export' }).getAttribute('href')), /type=admin\.change/);
    await checkPage(tc, admin, 'audit-revocation');
  });

  test('a viewer sees no Kick, Revoke or Issue, and the API refuses a viewer kick with 403', async (tc) => {
    const v = await watchedPage(browser);
    opened.push(v);
    await signInWithToken(v, VIEWER_TOKEN);
    assert.match(await v.page.getByTestId('session-info').innerText(), /scope viewer/);
    await nav(v, 'Clients');
    const link = v.page.getByRole('table', { name: 'Connected clients' }).getByRole('link', { name: 'overview-dev', exact: true });
    await link.waitFor(WAIT);
    await link.click();
    await v.page.getByTestId('client-detail').waitFor(WAIT);
    assert.equal(await v.page.getByRole('button', { name: 'Kick' }).count(), 0);
    assert.equal(await v.page.getByRole('button', { name: 'Ban…' }).count(), 0);
    await checkPage(tc, v, 'viewer-client-detail');
    await nav(v, 'Certificates');
    await v.page.getByRole('table', { name: 'Certificates' }).getByRole('row').filter({ hasText: 'overview-dev' }).waitFor(WAIT);
    assert.equal(await v.page.getByRole('button', { name: /^Revoke / }).count(), 0);
    assert.equal(await v.page.getByRole('button', { name: 'Issue', exact: true }).count(), 0);
    await checkPage(tc, v, 'viewer-certificates');
    const status = await v.page.evaluate(async (id) => {
      const s = (await (await fetch('/api/v1/session')).json()) as { csrfToken: string };
      const r = await fetch(`/api/v1/clients/${encodeURIComponent(id)}`, { method: 'DELETE', headers: { 'x-csrf-token': s.csrfToken } });
      return r.status;
    }, 'overview-dev');
    assert.equal(status, 403);
    assert.ok((await connectedIds('overview-dev')).includes('overview-dev'), 'the client is still connected');
    assert.deepEqual(v.csp, []);
    await v.context.close();
  });

  test('a change without the CSRF header is refused (403) and changes nothing; with it, it runs (201)', async () => {
    const bans = async (): Promise<string[]> => (await admin.page.evaluate(async () => {
      const r = await fetch('/api/v1/bans');
      return ((await r.json()) as { bans: Array<{ value: string }> }).bans.map((b) => b.value);
    })).sort();
    const before = await bans();
    const body = JSON.stringify({ kind: 'clientId', value: 'e2e-csrf-probe', reason: 'csrf test' });
    const without = await admin.page.evaluate(async (b) => (await fetch('/api/v1/bans', { method: 'POST', headers: { 'content-type': 'application/json' }, body: b })).status, body);
    assert.equal(without, 403);
    assert.deepEqual(await bans(), before);
    const withHeader = await admin.page.evaluate(async (b) => {
      const s = (await (await fetch('/api/v1/session')).json()) as { csrfToken: string };
      return (await fetch('/api/v1/bans', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': s.csrfToken }, body: b })).status;
    }, body);
    assert.equal(withHeader, 201);
    assert.deepEqual(await bans(), [...before, 'e2e-csrf-probe'].sort());
    assert.deepEqual(admin.csp, []);
  });
});
