/**
 * The admin API as the web console uses it (issue 16), against a real broker with its
 * built-in PKI, real HTTPS and real MQTT clients: sign-in with a token or an operator
 * certificate for an HttpOnly session cookie, CSRF and origin checks on every change,
 * viewer and admin scopes, the console's files under a strict CSP, the overview's event
 * stream, client search, certificates issued and revoked (the live session drops), and the
 * audit log's records, chain verification and export.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { consoleRequest, readEvents, sessionCookie, type ConsoleTarget } from '../helpers/console-http.js';
import { until } from './support.js';
import { hashAdminToken } from '../../src/admin/api/tokens.js';
import { PkiService } from '../../src/server/pki-service.js';
import { SqliteAdminStore } from '../../src/store/sqlite/admin-store.js';

const ADMIN_TOKEN = 'bst_console-admin-token-for-tests-0123456789abcdef';
const VIEWER_TOKEN = 'bst_console-viewer-token-for-tests-0123456789abcdef';

let pb: ProvisioningBroker;
let t: ConsoleTarget;
let store: SqliteAdminStore;
let operator: { cert: string; key: string };
let outsider: { cert: string; key: string };
let auditor: { cert: string; key: string };
const clients: MqttClient[] = [];

async function signIn(token: string): Promise<{ cookie: string; csrf: string; scope: string }> {
  const a = await consoleRequest(t, { method: 'POST', path: '/api/v1/session', body: { token }, origin: `https://localhost:${t.port}` });
  assert.equal(a.status, 200, a.text);
  return { cookie: sessionCookie(a), csrf: String(a.json.csrfToken), scope: String(a.json.scope) };
}

before(async () => {
  pb = await startProvisioningBroker({ admin: { viewerOu: 'auditors' } });
  t = { port: pb.adminPort!, caPem: pb.caPem };
  store = SqliteAdminStore.open(join(pb.dataDir, 'admin.db'));
  store.createToken({ name: 'ops', hash: hashAdminToken(ADMIN_TOKEN), createdAt: Date.now(), scope: 'admin' });
  store.createToken({ name: 'auditor', hash: hashAdminToken(VIEWER_TOKEN), createdAt: Date.now(), scope: 'viewer' });
  const pki = await PkiService.open(pb.pkiDir);
  try {
    const op = await pki.issueBundle({ profile: 'client', commonName: 'alice', organizationalUnit: 'operators' });
    operator = { cert: op.certPem, key: op.keyPem };
    const other = await pki.issueBundle({ profile: 'client', commonName: 'mallory', organizationalUnit: 'devices' });
    outsider = { cert: other.certPem, key: other.keyPem };
    const watcher = await pki.issueBundle({ profile: 'client', commonName: 'carol', organizationalUnit: 'auditors' });
    auditor = { cert: watcher.certPem, key: watcher.keyPem };
  } finally {
    pki.close();
  }
});

after(async () => {
  for (const c of clients) c.end(true);
  store.close();
  await pb.stop();
});

describe('console sessions', () => {
  test('a token signs in for a __Host- cookie that is HttpOnly, Secure and SameSite=Strict', async () => {
    const a = await consoleRequest(t, { method: 'POST', path: '/api/v1/session', body: { token: ADMIN_TOKEN } });
    assert.equal(a.status, 200, a.text);
    const cookie = (a.headers['set-cookie'] ?? [])[0] ?? '';
    assert.match(cookie, /^__Host-bastion-session=[A-Za-z0-9_-]{40,};/);
    for (const attr of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']) assert.ok(cookie.includes(attr), `${attr} in ${cookie}`);
    assert.deepEqual(a.json.actor, { kind: 'token', name: 'ops' });
    assert.equal(a.json.scope, 'admin');
    const again = await consoleRequest(t, { path: '/api/v1/session', cookie: sessionCookie(a) });
    assert.equal(again.status, 200);
    assert.equal(again.json.csrfToken, a.json.csrfToken);
    const none = await consoleRequest(t, { path: '/api/v1/session' });
    assert.equal(none.status, 401);
  });

  test('a wrong token, and a sign-in from another origin, are refused', async () => {
    const wrong = await consoleRequest(t, { method: 'POST', path: '/api/v1/session', body: { token: 'bst_nope' } });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers['set-cookie'], undefined);
    const forged = await consoleRequest(t, { method: 'POST', path: '/api/v1/session', body: { token: ADMIN_TOKEN }, origin: 'https://evil.example' });
    assert.equal(forged.status, 403);
    assert.match(forged.json.error ?? '', /cross-origin/);
  });

  test('a change without the CSRF token, with a wrong one, or from another origin is refused; with it, it runs', async () => {
    const s = await signIn(ADMIN_TOKEN);
    const bare = await consoleRequest(t, { method: 'DELETE', path: '/api/v1/clients/nobody', cookie: s.cookie });
    assert.equal(bare.status, 403);
    assert.match(bare.json.error ?? '', /CSRF/);
    const wrong = await consoleRequest(t, { method: 'DELETE', path: '/api/v1/clients/nobody', cookie: s.cookie, csrf: `${s.csrf.slice(1)}x` });
    assert.equal(wrong.status, 403);
    const elsewhere = await consoleRequest(t, { method: 'DELETE', path: '/api/v1/clients/nobody', cookie: s.cookie, csrf: s.csrf, origin: 'https://evil.example' });
    assert.equal(elsewhere.status, 403);
    const ok = await consoleRequest(t, { method: 'DELETE', path: '/api/v1/clients/nobody', cookie: s.cookie, csrf: s.csrf, origin: `https://localhost:${t.port}` });
    assert.equal(ok.status, 404, 'past the gate: there is just no such client');
  });

  test('a viewer reads and explains, but may not kick or ban, by session or by bearer token', async () => {
    const v = await signIn(VIEWER_TOKEN);
    assert.equal(v.scope, 'viewer');
    assert.equal((await consoleRequest(t, { path: '/api/v1/clients', cookie: v.cookie })).status, 200);
    const kick = await consoleRequest(t, { method: 'DELETE', path: '/api/v1/clients/x', cookie: v.cookie, csrf: v.csrf });
    assert.equal(kick.status, 403);
    assert.match(kick.json.error ?? '', /viewer scope/);
    const explain = await consoleRequest(t, { method: 'POST', path: '/api/v1/acl/explain', cookie: v.cookie, csrf: v.csrf, body: { clientId: 'c1', action: 'publish', topic: 'devices/other/x' } });
    assert.equal(explain.status, 200, explain.text);
    assert.equal(explain.json.decision, 'deny');
    const ban = await consoleRequest(t, { method: 'POST', path: '/api/v1/bans', token: VIEWER_TOKEN, body: { kind: 'clientId', value: 'x' } });
    assert.equal(ban.status, 403);
  });

  test('revoking the token ends the sessions made with it at the next request', async () => {
    const name = `temp-${Date.now()}`;
    const token = `bst_${name}-0123456789abcdef0123456789`;
    store.createToken({ name, hash: hashAdminToken(token), createdAt: Date.now(), scope: 'admin' });
    const s = await signIn(token);
    assert.equal((await consoleRequest(t, { path: '/api/v1/session', cookie: s.cookie })).status, 200);
    store.revokeToken(name);
    const after = await consoleRequest(t, { path: '/api/v1/session', cookie: s.cookie });
    assert.equal(after.status, 401);
    assert.match(after.json.error ?? '', /revoked/);
  });

  test('an operator certificate signs in; the session then needs that certificate on every connection', async () => {
    const a = await consoleRequest(t, { method: 'POST', path: '/api/v1/session', cert: operator });
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(a.json.actor, { kind: 'certificate', name: 'alice' });
    const cookie = sessionCookie(a);
    assert.equal((await consoleRequest(t, { path: '/api/v1/session', cookie, cert: operator })).status, 200);
    const without = await consoleRequest(t, { path: '/api/v1/session', cookie });
    assert.equal(without.status, 401);
    const other = await consoleRequest(t, { path: '/api/v1/session', cookie, cert: outsider });
    assert.equal(other.status, 401);
    const notOperator = await consoleRequest(t, { method: 'POST', path: '/api/v1/session', cert: outsider });
    assert.equal(notOperator.status, 403);
  });

  test('a certificate with the viewerOu signs in as a viewer, and its bearer-less requests read but do not change', async () => {
    const a = await consoleRequest(t, { method: 'POST', path: '/api/v1/session', cert: auditor });
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(a.json.actor, { kind: 'certificate', name: 'carol' });
    assert.equal(a.json.scope, 'viewer');
    assert.equal((await consoleRequest(t, { path: '/api/v1/bans', cert: auditor })).status, 200);
    const kick = await consoleRequest(t, { method: 'DELETE', path: '/api/v1/clients/x', cert: auditor });
    assert.equal(kick.status, 403);
    assert.match(kick.json.error ?? '', /viewer scope/);
  });

  test('a browser request riding a client certificate without a session cannot change anything', async () => {
    const forged = await consoleRequest(t, { method: 'DELETE', path: '/api/v1/clients/x', cert: operator, origin: 'https://evil.example' });
    assert.equal(forged.status, 403);
    // The CLI (no Origin) keeps working with its certificate.
    assert.equal((await consoleRequest(t, { method: 'DELETE', path: '/api/v1/clients/x', cert: operator })).status, 404);
  });

  test('signing out ends the session', async () => {
    const s = await signIn(ADMIN_TOKEN);
    const out = await consoleRequest(t, { method: 'DELETE', path: '/api/v1/session', cookie: s.cookie, csrf: s.csrf });
    assert.equal(out.status, 200);
    assert.match(String((out.headers['set-cookie'] ?? [])[0]), /Max-Age=0/);
    assert.equal((await consoleRequest(t, { path: '/api/v1/session', cookie: s.cookie })).status, 401);
  });
});

describe('console pages and data', () => {
  test('the console is served under a strict Content-Security-Policy, without authentication', async () => {
    const root = await consoleRequest(t, { path: '/' });
    assert.equal(root.status, 302);
    assert.equal(root.headers.location, '/console/');
    const page = await consoleRequest(t, { path: '/console/' });
    assert.equal(page.status, 200, page.text);
    assert.match(String(page.headers['content-type']), /text\/html/);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(page.headers['x-frame-options'], 'DENY');
    assert.equal(page.headers['cache-control'], 'no-store');
    const script = /<script[^>]+src="([^"]+)"/.exec(page.text)?.[1];
    assert.ok(script !== undefined, 'the page loads its script from a file');
    const js = await consoleRequest(t, { path: script });
    assert.equal(js.status, 200);
    assert.match(String(js.headers['cache-control']), /immutable/);
    assert.equal((await consoleRequest(t, { path: '/console/assets/nope.js' })).status, 404);
    assert.equal((await consoleRequest(t, { path: '/console/%2e%2e/%2e%2e/package.json' })).text.includes('"name"'), false);
    assert.equal((await consoleRequest(t, { method: 'POST', path: '/console/' })).status, 405);
  });

  test('clients: search by client id prefix; detail with quota', async () => {
    const s = await signIn(ADMIN_TOKEN);
    const pki = await PkiService.open(pb.pkiDir);
    let certs: Array<{ cert: string; key: string }>;
    try {
      certs = await Promise.all(['search-a1', 'search-a2', 'zz-other'].map(async (cn) => {
        const b = await pki.issueBundle({ profile: 'client', commonName: cn });
        return { cert: b.certPem, key: b.keyPem };
      }));
    } finally {
      pki.close();
    }
    for (const [i, cn] of ['search-a1', 'search-a2', 'zz-other'].entries()) clients.push(await pb.connect({ clientId: cn, cert: certs[i]!.cert, key: certs[i]!.key }));
    const page = await consoleRequest(t, { path: '/api/v1/clients?prefix=search-&limit=10', cookie: s.cookie });
    assert.equal(page.status, 200, page.text);
    assert.equal(page.json.total, 2);
    assert.deepEqual((page.json.clients as Array<{ clientId: string }>).map((c) => c.clientId), ['search-a1', 'search-a2']);
    const detail = await consoleRequest(t, { path: '/api/v1/clients/search-a1', cookie: s.cookie });
    assert.equal(detail.status, 200);
    assert.ok('quota' in detail.json);
    assert.equal((detail.json.tls as { version: string }).version.startsWith('TLSv1.'), true);
  });

  test('overview: the event stream sends samples with the connected clients', async () => {
    const s = await signIn(VIEWER_TOKEN);
    const info = await consoleRequest(t, { path: '/api/v1/overview', cookie: s.cookie });
    assert.equal(info.status, 200);
    assert.match(String(info.json.version), /^\d+\.\d+\.\d+/);
    const stream = await readEvents(t, { path: '/api/v1/stream/overview', cookie: s.cookie }, 'sample', 2, 10_000);
    assert.equal(stream.status, 200);
    assert.match(String(stream.headers['content-type']), /text\/event-stream/);
    const last = stream.events[stream.events.length - 1] as { connections: number; messagesInPerSec: number; t: number };
    assert.equal(typeof last.t, 'number');
    assert.equal(typeof last.messagesInPerSec, 'number');
    assert.ok(last.connections >= 0);
    const anonymous = await readEvents(t, { path: '/api/v1/stream/overview' }, 'sample', 1, 5000);
    assert.equal(anonymous.status, 401);
  });

  test('certificates: issue a bundle, see it listed, revoke it, and its live MQTT session drops; the audit log has it', async () => {
    const s = await signIn(ADMIN_TOKEN);
    const issued = await consoleRequest(t, { method: 'POST', path: '/api/v1/certificates', cookie: s.cookie, csrf: s.csrf, body: { commonName: 'console-device-1', profile: 'client', days: 30 } });
    assert.equal(issued.status, 201, issued.text);
    const serial = String(issued.json.serialNumber);
    assert.match(String(issued.json.keyPem), /PRIVATE KEY/);
    assert.match(String(issued.json.caPem), /BEGIN CERTIFICATE/);
    const listed = await consoleRequest(t, { path: '/api/v1/certificates?q=console-device&status=valid', cookie: s.cookie });
    assert.equal(listed.json.total, 1);
    assert.equal((listed.json.certificates as Array<{ serialNumber: string }>)[0]!.serialNumber, serial);

    const device = await pb.connect({ clientId: 'console-device-1', cert: String(issued.json.certPem), key: String(issued.json.keyPem) });
    clients.push(device);
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
    const viewer = await signIn(VIEWER_TOKEN);
    assert.equal((await consoleRequest(t, { method: 'POST', path: `/api/v1/certificates/${serial}/revoke`, cookie: viewer.cookie, csrf: viewer.csrf, body: { reason: 'keyCompromise' } })).status, 403);
    const revoked = await consoleRequest(t, { method: 'POST', path: `/api/v1/certificates/${serial}/revoke`, cookie: s.cookie, csrf: s.csrf, body: { reason: 'keyCompromise' } });
    assert.equal(revoked.status, 200, revoked.text);
    assert.equal(revoked.json.status, 'revoked');
    assert.equal(revoked.json.reason, 'keyCompromise');
    await closed;
    assert.equal((await consoleRequest(t, { method: 'POST', path: '/api/v1/certificates/ABCDEF0123/revoke', cookie: s.cookie, csrf: s.csrf, body: {} })).status, 404);
    assert.equal((await consoleRequest(t, { method: 'POST', path: '/api/v1/certificates', cookie: s.cookie, csrf: s.csrf, body: { commonName: 'x', sans: ['bogus'] } })).status, 400);

    let found: Array<{ type: string; event: { action?: string; target?: string } }> = [];
    await until(async () => {
      const a = await consoleRequest(t, { path: '/api/v1/audit?type=admin.change&limit=50', cookie: s.cookie });
      found = a.json.records as typeof found;
      return found.some((r) => r.event.action === 'cert.revoke' && r.event.target === serial);
    }, 10_000, 'the revocation in the audit log');
    const verify = await consoleRequest(t, { path: '/api/v1/audit/verify', cookie: s.cookie });
    assert.equal(verify.status, 200);
    assert.equal(verify.json.ok, true, verify.text);
    const exported = await consoleRequest(t, { path: '/api/v1/audit/export?type=admin.change', cookie: s.cookie });
    assert.equal(exported.status, 200);
    assert.match(String(exported.headers['content-disposition']), /attachment/);
    const lines = exported.text.trim().split('\n').map((l) => JSON.parse(l) as { event: { action?: string } });
    assert.ok(lines.some((l) => l.event.action === 'cert.revoke'));
    assert.equal((await consoleRequest(t, { path: '/api/v1/audit?since=yesterday', cookie: s.cookie })).status, 400);
  });
});

describe('console fleet data', () => {
  test('provisioning: templates, claims and one-time tokens, never a secret', async () => {
    const s = await signIn(VIEWER_TOKEN);
    const claim = await pb.claim('sensor', { maxDevices: 5 });
    const token = pb.token('sensor');
    const a = await consoleRequest(t, { path: '/api/v1/provisioning', cookie: s.cookie });
    assert.equal(a.status, 200, a.text);
    assert.deepEqual((a.json.templates as Array<{ name: string }>).map((x) => x.name), ['sensor']);
    const claims = a.json.claims as Array<{ serialNumber: string; status: string; maxDevices: number }>;
    assert.ok(claims.some((c) => c.serialNumber === claim.serialNumber && c.status === 'active' && c.maxDevices === 5));
    const tokens = a.json.tokens as Array<{ id: string; status: string }>;
    assert.equal(tokens.length, 1);
    assert.equal(tokens[0]!.status, 'unused');
    const secret = token.slice(token.lastIndexOf('_') + 1);
    assert.equal(a.text.includes(token), false);
    assert.equal(a.text.includes(secret), false, 'the token secret is not in the answer');
  });

  test('OTA campaigns: the list and its event stream answer (no campaign yet)', async () => {
    const s = await signIn(VIEWER_TOKEN);
    const a = await consoleRequest(t, { path: '/api/v1/ota/campaigns', cookie: s.cookie });
    assert.equal(a.status, 200);
    assert.deepEqual(a.json.campaigns, []);
    const stream = await readEvents(t, { path: '/api/v1/stream/ota', cookie: s.cookie }, 'campaigns', 1, 5000);
    assert.deepEqual(stream.events, [[]]);
  });
});

test('admin.console false: no console files, the API as before', async () => {
  const plain = await startProvisioningBroker({ admin: { console: false } });
  try {
    const target = { port: plain.adminPort!, caPem: plain.caPem };
    const page = await consoleRequest(target, { path: '/console/' });
    assert.equal(page.status, 404);
    assert.match(page.json.error ?? '', /admin\.console: false/);
    assert.equal((await consoleRequest(target, { path: '/' })).status, 404);
    assert.equal((await consoleRequest(target, { path: '/api/v1/clients' })).status, 401);
  } finally {
    await plain.stop();
  }
});
