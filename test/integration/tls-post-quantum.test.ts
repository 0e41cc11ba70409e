/**
 * Hybrid post-quantum key exchange (X25519MLKEM768, TLS 1.3) on by default, seen from the
 * broker's own records: the connect's security event (what the audit log stores), the
 * admin API's client detail and the handshake metrics by group, on mqtts and wss. Classic clients keep
 * working (Debian's mosquitto_pub links OpenSSL 3.0, which has no ML-KEM; TLS 1.2), and a
 * `tls.requirePostQuantum` listener refuses them with a logged, counted reason, on the
 * MQTT listener and on the admin API.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { adminRequest } from '../helpers/admin.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { EventRecorder } from '../helpers/event-recorder.js';
import { parseExposition, sampleValue } from '../helpers/prom-text.js';
import { BASTION_MAIN, connectMqtt, endQuietly, run } from './support.js';
import { clientTls, RecordingLogger, tlsHandshake } from './tls-support.js';

async function operatorToken(broker: TestBroker): Promise<string> {
  const created = await run(process.execPath, [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'pq-test', '--data-dir', broker.dataDir]);
  assert.equal(created.code, 0, created.stderr);
  return created.stdout.trim();
}

async function metric(broker: TestBroker, token: string, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const r = await adminRequest(broker.pki, broker.server.admin!.port, { path: '/metrics', token });
  assert.equal(r.status, 200, r.text);
  return sampleValue(parseExposition(r.text), name, labels);
}

function mosquittoPub(broker: TestBroker, clientId: string): ReturnType<typeof run> {
  const c = broker.pki.clients.client1!;
  return run(
    'mosquitto_pub',
    ['-h', '127.0.0.1', '-p', String(broker.tlsPort), '--cafile', broker.pki.caCert, '--cert', c.cert, '--key', c.key, '-i', clientId, '-t', 'pq/test', '-m', 'hello', '-V', 'mqttv5'],
    { timeoutMs: 10000 },
  );
}

describe('default listener: hybrid first, classic clients unaffected', () => {
  let broker: TestBroker;
  let events: EventRecorder;
  let token: string;
  const open: MqttClient[] = [];

  before(async () => {
    broker = await startTestBroker({ admin: {}, webSocket: true, sys: { intervalSeconds: 0 } });
    events = new EventRecorder(broker.server.broker.events);
    token = await operatorToken(broker);
  });
  after(async () => {
    events.stop();
    await Promise.all(open.map((c) => endQuietly(c)));
    await broker.stop();
  });

  test('a Node client with default TLS options negotiates X25519MLKEM768: the connect record, the admin API and the metrics say so', async () => {
    const client = await connectMqtt(`mqtts://127.0.0.1:${broker.tlsPort}`, { ...clientTls(broker.pki, broker.pki.clients.client1!), clientId: 'pq-node', protocolVersion: 5, servername: 'localhost', reconnectPeriod: 0 });
    open.push(client);
    const accepted = await events.waitFor('connection.accepted', (e) => e.clientId === 'pq-node');
    assert.equal(accepted.tls?.group, 'X25519MLKEM768');
    assert.equal(accepted.tls?.version, 'TLSv1.3');

    const detail = await adminRequest(broker.pki, broker.server.admin!.port, { path: '/api/v1/clients/pq-node', token });
    assert.equal(detail.status, 200, detail.text);
    assert.deepEqual((detail.json as { tls?: unknown }).tls, { version: 'TLSv1.3', cipher: accepted.tls!.cipher, group: 'X25519MLKEM768', resumed: false });

    assert.ok((await metric(broker, token, 'bastion_tls_handshakes_total', { listener: 'mqtts', kind: 'full', group: 'X25519MLKEM768' }))! >= 1);
  });

  test('MQTT over secure WebSocket (wss) negotiates X25519MLKEM768 too', async () => {
    const client = await connectMqtt(`wss://127.0.0.1:${broker.wssPort}/mqtt`, { ...clientTls(broker.pki, broker.pki.clients.client1!), clientId: 'pq-wss', protocolVersion: 5, servername: 'localhost', reconnectPeriod: 0 });
    open.push(client);
    const accepted = await events.waitFor('connection.accepted', (e) => e.clientId === 'pq-wss');
    assert.equal(accepted.listener, 'wss');
    assert.equal(accepted.tls?.group, 'X25519MLKEM768');
  });

  test('mosquitto_pub (OpenSSL 3.0, no ML-KEM) still connects, over classic X25519, and is recorded as such', async () => {
    const r = await mosquittoPub(broker, 'pq-mosquitto');
    assert.equal(r.code, 0, r.stderr);
    const accepted = await events.waitFor('connection.accepted', (e) => e.clientId === 'pq-mosquitto');
    assert.equal(accepted.tls?.group, 'X25519');
    assert.ok((await metric(broker, token, 'bastion_tls_handshakes_total', { listener: 'mqtts', kind: 'full', group: 'X25519' }))! >= 1);
  });

  test('a TLS 1.2 client still connects (classic ECDHE, named in the handshake event)', async () => {
    const files = broker.pki.clients.client1!;
    const socket = await tlsHandshake(broker.tlsPort, { ...clientTls(broker.pki, files), maxVersion: 'TLSv1.2' });
    try {
      assert.equal(socket.getProtocol(), 'TLSv1.2');
      const hs = await events.waitFor('tls.handshake', (e) => e.ok && e.group === 'X25519');
      assert.equal(hs.listener, 'mqtts');
    } finally {
      socket.destroy();
    }
  });

  test('bastion pub -v offers the hybrid group first and prints the group it got', async () => {
    const c = broker.pki.clients.client1!;
    const r = await run(process.execPath, [BASTION_MAIN, 'pub', '-h', 'localhost', '-p', String(broker.tlsPort), '--cafile', broker.pki.caCert, '--cert', c.cert, '--key', c.key, '-i', 'pq-cli', '-t', 'pq/cli', '-m', 'x', '-v'], {
      timeoutMs: 15000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^info: connected to localhost:\d+ over TLSv1\.3, cipher \S+, key exchange X25519MLKEM768 \(hybrid post-quantum\)$/m);
    const accepted = await events.waitFor('connection.accepted', (e) => e.clientId === 'pq-cli');
    assert.equal(accepted.tls?.group, 'X25519MLKEM768');
  });

  test('bastion pub -v against a classic-only listener says the exchange is not post-quantum', async () => {
    const classic = await startTestBroker({ tls: { groups: 'X25519:P-256' }, sys: { intervalSeconds: 0 } });
    try {
      const c = classic.pki.clients.client1!;
      const r = await run(process.execPath, [BASTION_MAIN, 'pub', '-h', 'localhost', '-p', String(classic.tlsPort), '--cafile', classic.pki.caCert, '--cert', c.cert, '--key', c.key, '-t', 'pq/cli', '-m', 'x', '-v'], {
        timeoutMs: 15000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /key exchange X25519 \(classic, not post-quantum\)$/m);
    } finally {
      await classic.stop();
    }
  });
});

describe('tls.requirePostQuantum', () => {
  let broker: TestBroker;
  let events: EventRecorder;
  let token: string;
  const logger = new RecordingLogger();

  before(async () => {
    broker = await startTestBroker({
      tls: { minVersion: 'TLSv1.3', requirePostQuantum: true },
      admin: { tls: { minVersion: 'TLSv1.3', requirePostQuantum: true } },
      sys: { intervalSeconds: 0 },
      logger,
    });
    events = new EventRecorder(broker.server.broker.events);
    token = await operatorToken(broker);
  });
  after(async () => {
    events.stop();
    await broker.stop();
  });

  test('mosquitto_pub (classic only) is refused; the refusal is logged with its reason and counted', async () => {
    const r = await mosquittoPub(broker, 'pq-refused');
    assert.notEqual(r.code, 0, `mosquitto_pub connected to a requirePostQuantum listener:\n${r.stdout}${r.stderr}`);
    const line = await logger.waitFor('TLS handshake failed', { listener: 'mqtts', reason: 'no post-quantum key exchange' });
    assert.match(String(line.obj.reason), /tls\.requirePostQuantum/);
    assert.equal(events.of('connection.accepted', (e) => e.clientId === 'pq-refused').length, 0);
    assert.ok((await metric(broker, token, 'bastion_tls_handshake_failures_total', { listener: 'mqtts', reason: 'post_quantum_required' }))! >= 1);
  });

  test('a hybrid-capable client connects, with X25519MLKEM768', async () => {
    const client = await connectMqtt(`mqtts://127.0.0.1:${broker.tlsPort}`, { ...clientTls(broker.pki, broker.pki.clients.client1!), clientId: 'pq-ok', protocolVersion: 5, servername: 'localhost', reconnectPeriod: 0 });
    try {
      const accepted = await events.waitFor('connection.accepted', (e) => e.clientId === 'pq-ok');
      assert.equal(accepted.tls?.group, 'X25519MLKEM768');
    } finally {
      await endQuietly(client);
    }
  });

  test('the admin API with requirePostQuantum refuses a classic TLS client and serves a hybrid one', async () => {
    const port = broker.server.admin!.port;
    await assert.rejects(tlsHandshake(port, { ca: clientTls(broker.pki, broker.pki.clients.client1!).ca, ecdhCurve: 'X25519:P-256' }));
    const r = await adminRequest(broker.pki, port, { path: '/api/v1/clients', token });
    assert.equal(r.status, 200, r.text);
  });
});
