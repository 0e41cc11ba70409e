/**
 * The `admin` config section and the listener's TLS modes: an API nobody could log in to
 * is a config error, plain HTTP gets no answer, `clientCerts: required` refuses a
 * certificate-less caller at the handshake, and admin changes reach the security event
 * stream (the audit log's entry point) of their own server only, with two in one process.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { parseConfig } from '../../src/server/load-config.js';
import { adminRequest } from '../helpers/admin.js';
import { EventRecorder } from '../helpers/event-recorder.js';
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
    assert.match(configError({ port: 0, tls: { cert: 'c', key: 'k', ca: 'a' }, viewerOu: 'operators' }), /admin\.viewerOu: viewerOu must differ from operatorOu/);
    assert.equal(configError({ port: 0, tls: { cert: 'c', key: 'k', ca: 'a' }, viewerOu: 'auditors', console: false }), 'accepted');
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

  test('admin changes reach their own server\'s event stream with the actor, not another server\'s in the same process', async () => {
    const a = await startTestBroker({ clients: [], admin: {} });
    brokers.push(a);
    const b = await startTestBroker({ clients: [], admin: {} });
    brokers.push(b);
    const recA = new EventRecorder(a.server.broker.events);
    const recB = new EventRecorder(b.server.broker.events);
    try {
      const opA = await issueClient(a.pki, 'op-audit', { organizationalUnit: 'operators' });
      const opB = await issueClient(b.pki, 'op-other', { organizationalUnit: 'operators' });
      // recordAdminChange emits before the reply is sent: once a reply is in, its event was emitted.
      assert.equal((await adminRequest(a.pki, a.server.admin!.port, { method: 'POST', path: '/api/v1/bans', client: opA, body: { kind: 'ip', value: '192.0.2.7' } })).status, 201);
      assert.equal((await adminRequest(a.pki, a.server.admin!.port, { method: 'DELETE', path: '/api/v1/clients/none', client: opA })).status, 404);
      assert.equal((await adminRequest(b.pki, b.server.admin!.port, { method: 'DELETE', path: '/api/v1/clients/other', client: opB })).status, 404);
      const seen = (r: EventRecorder): unknown[] => r.of('admin.change').map((c) => [c.action, c.target, c.outcome, c.actor]);
      assert.deepEqual(seen(recA), [
        ['ban.add', 'ip:192.0.2.7', 'ok', 'certificate:op-audit'],
        ['client.kick', 'none', 'not-found', 'certificate:op-audit'],
      ]);
      assert.deepEqual(seen(recB), [['client.kick', 'other', 'not-found', 'certificate:op-other']]);
    } finally {
      recA.stop();
      recB.stop();
    }
  });
});
