/**
 * The `admin` config section and the listener's TLS modes: an API nobody could log in to
 * is a config error, plain HTTP gets no answer, `clientCerts: required` refuses a
 * certificate-less caller at the handshake, and change events reach a consumer hooked
 * with onAdminChange (the audit log's entry point).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { onAdminChange, type AdminChange } from '../../src/admin/api/admin-change.js';
import { parseConfig } from '../../src/server/load-config.js';
import { adminRequest } from '../helpers/admin.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { issueClient } from '../helpers/pki.js';
import { withTimeout } from './support.js';

const brokers: TestBroker[] = [];
after(async () => {
  for (const b of brokers) await b.stop();
});

function configError(admin: Record<string, unknown>): string {
  try {
    parseConfig({ listeners: [{ name: 'l', protocol: 'mqtts', port: 0, tls: { cert: 'c', key: 'k', ca: 'a' } }], admin }, '/tmp');
  } catch (err) {
    return (err as Error).message;
  }
  return 'accepted';
}

describe('admin config', () => {
  test('refuses an API nobody could authenticate to, tokens with required certificates, certificates without a CA, unknown keys', () => {
    assert.match(configError({ port: 0, tls: { cert: 'c', key: 'k', clientCerts: 'none' }, tokens: false }), /admin\.tokens: .*no operator could authenticate/);
    assert.match(configError({ port: 0, tls: { cert: 'c', key: 'k', ca: 'a', clientCerts: 'required' } }), /admin\.tokens: tokens need tls\.clientCerts optional or none/);
    assert.match(configError({ port: 0, tls: { cert: 'c', key: 'k' } }), /admin\.tls\.ca/);
    assert.match(configError({ port: 0, tls: { cert: 'c', key: 'k', ca: 'a' }, plainHttp: true }), /^config error at admin/);
    assert.equal(configError({ port: 0, tls: { cert: 'c', key: 'k', ca: 'a' } }), 'accepted');
  });

  test('plain HTTP to the admin port gets no HTTP answer', async () => {
    const b = await startTestBroker({ clients: [], admin: {} });
    brokers.push(b);
    const outcome = await withTimeout(
      new Promise<string>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port: b.server.admin!.port, path: '/api/v1/clients' }, (res) => resolve(`HTTP ${res.statusCode ?? 0}`));
        req.on('error', (err) => resolve(`error ${err.message}`));
      }),
      5000,
      'plain HTTP outcome',
    );
    assert.match(outcome, /^error /);
  });

  test('clientCerts required: no certificate fails the handshake; an operator certificate works', async () => {
    const required = await startTestBroker({ clients: [], admin: { tokens: false, tls: { clientCerts: 'required' } } });
    brokers.push(required);
    const op = await issueClient(required.pki, 'op-strict', { organizationalUnit: 'operators' });
    await assert.rejects(adminRequest(required.pki, required.server.admin!.port, { path: '/api/v1/clients' }));
    assert.equal((await adminRequest(required.pki, required.server.admin!.port, { path: '/api/v1/clients', client: op })).status, 200);
  });

  test('onAdminChange consumers receive every change with its actor', async () => {
    const b = await startTestBroker({ clients: [], admin: {} });
    brokers.push(b);
    const op = await issueClient(b.pki, 'op-audit', { organizationalUnit: 'operators' });
    const seen: AdminChange[] = [];
    const off = onAdminChange((c) => seen.push(c));
    try {
      await adminRequest(b.pki, b.server.admin!.port, { method: 'POST', path: '/api/v1/bans', client: op, body: { kind: 'ip', value: '192.0.2.7' } });
      await adminRequest(b.pki, b.server.admin!.port, { method: 'DELETE', path: '/api/v1/clients/none', client: op });
    } finally {
      off();
    }
    assert.deepEqual(
      seen.map((c) => [c.action, c.target, c.outcome, c.actor.kind, c.actor.name]),
      [
        ['ban.add', 'ip:192.0.2.7', 'ok', 'certificate', 'op-audit'],
        ['client.kick', 'none', 'not-found', 'certificate', 'op-audit'],
      ],
    );
  });
});
