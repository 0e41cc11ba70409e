/**
 * A running broker's audit log reaches a syslog/TLS collector: a real mutual-TLS client's
 * connection arrives with its certificate's serial, fingerprint and CN in ECS fields, an
 * authentication failure as a warning, and after a clean stop the collector holds every
 * record stored in audit.db exactly once, in chain order.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { SD_ID } from '../../src/server/audit/syslog-format.js';
import { SqliteAuditStore } from '../../src/store/sqlite/audit-store.js';
import { startTestBroker } from '../helpers/broker.js';
import { makeTestPki } from '../helpers/pki.js';
import { at, collect, listenOn, type ParsedSyslog } from '../helpers/syslog-collector.js';
import { connectMqtt, endQuietly, Inbox } from './support.js';
import { clientTls } from './tls-support.js';

const dir = mkdtempSync(join(tmpdir(), 'bastion-audit-export-broker-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a running broker exports its audit records over syslog/TLS: real mTLS fields, every stored record once, in order', async () => {
  const pki = await makeTestPki(join(dir, 'pki-e2e'));
  const messages = new Inbox<ParsedSyslog>();
  const server = createTlsServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) });
  const sockets = collect(server, messages, 'secureConnection');
  const port = await listenOn(server);
  const dataDir = join(dir, 'e2e-data');
  const b = await startTestBroker({
    dataDir,
    plainAnonymous: false,
    authz: null,
    audit: { aggregateSeconds: 3600, syslog: { transport: 'tls', host: 'localhost', port, ca: pki.caCert } },
  });
  const seen = new Inbox<SecurityEvent>();
  const off = b.server.broker.events.on((e) => seen.push(e));
  try {
    const files = b.pki.clients.client1!;
    const c = await connectMqtt(`mqtts://127.0.0.1:${b.tlsPort}`, { clientId: 'client1', protocolVersion: 5, servername: 'localhost', ...clientTls(b.pki, files) });
    await seen.waitFor((es) => es.some((e) => e.type === 'connection.accepted' && e.clientId === 'client1'), 5000, 'connection.accepted');
    b.server.audit.flush();
    const accepted = (await messages.waitFor((ms) => ms.some((m) => m.msgId === 'connection.accepted'), 5000, 'the accepted connection over syslog')).find((m) => m.msgId === 'connection.accepted')!;
    const doc = JSON.parse(accepted.msg) as unknown;
    const cert = new X509Certificate(readFileSync(files.cert));
    assert.equal(accepted.severity, 6);
    assert.equal(at(doc, 'event.outcome'), 'success');
    assert.equal(at(doc, 'source.ip'), '127.0.0.1');
    assert.equal(at(doc, 'bastion.mqtt.client_id'), 'client1');
    assert.equal(at(doc, 'bastion.mqtt.listener'), 'mqtts');
    assert.equal(at(doc, 'tls.version'), '1.3');
    assert.equal(at(doc, 'tls.version_protocol'), 'tls');
    assert.match(String(at(doc, 'tls.cipher')), /^TLS_/);
    assert.equal(at(doc, 'tls.client.x509.serial_number'), cert.serialNumber.toUpperCase());
    assert.equal(at(doc, 'tls.client.hash.sha256'), cert.fingerprint256.replace(/:/g, ''));
    assert.deepEqual(at(doc, 'tls.client.x509.subject.common_name'), ['client1']);
    assert.equal(at(doc, 'event.sequence'), Number(accepted.sd.get(SD_ID)?.seq));
    await endQuietly(c);

    // An anonymous client where credentials are required: an auth.failure, a warning.
    const anon = await import('mqtt').then((m) => m.default.connect(`mqtt://127.0.0.1:${b.plainPort}`, { clientId: 'anon-e2e', protocolVersion: 5, reconnectPeriod: 0 }));
    anon.on('error', () => {});
    await seen.waitFor((es) => es.some((e) => e.type === 'auth.failure' && e.clientId === 'anon-e2e'), 5000, 'auth.failure');
    anon.end(true);
    b.server.audit.flush();
    const failed = (await messages.waitFor((ms) => ms.some((m) => m.msgId === 'auth.failure'), 5000, 'the auth failure over syslog')).find((m) => m.msgId === 'auth.failure')!;
    assert.equal(failed.severity, 4);
    assert.equal(at(JSON.parse(failed.msg), 'event.outcome'), 'failure');
    assert.equal(at(JSON.parse(failed.msg), 'bastion.mqtt.client_id'), 'anon-e2e');
  } finally {
    off();
    await b.stop();
  }
  // After a clean stop (which closes the exports), the collector holds every stored record once, in order.
  const store = SqliteAuditStore.open(join(dataDir, 'audit.db'), { create: false });
  const stored = [...store.all()];
  store.close();
  await messages.waitFor((ms) => ms.length >= stored.length, 5000, 'every stored record');
  assert.deepEqual(messages.items.map((m) => [Number(m.sd.get(SD_ID)?.seq), m.sd.get(SD_ID)?.hash]), stored.map((r) => [r.seq, r.hash]));
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
