/**
 * Prometheus metrics at /metrics on the HTTPS admin listener, scraped with a bearer token
 * made by the real CLI after real traffic: MQTT.js clients over mutual TLS publishing QoS 0
 * and 1 (one retained), a resumed TLS session, a TLS handshake refused for a missing client
 * certificate, an anonymous client refused on a listener that needs credentials, and an
 * operator ban. The values moved as expected, `promtool check metrics` accepts the scrape,
 * and our own reader of the text format parses every line. Without credentials: 401; a
 * device certificate: 403.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { adminRequest, type AdminCall } from '../helpers/admin.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { parseExposition, sampleValue, type Family } from '../helpers/prom-text.js';
import { BASTION_MAIN, connectMqtt, endQuietly, Inbox, inboxOf, run, withTimeout } from './support.js';
import { clientTls, tlsHandshake } from './tls-support.js';

const WAIT = 5000;
let broker: TestBroker;
let token: string;
let events: Inbox<SecurityEvent>;
let stopEvents: () => void;
const open: MqttClient[] = [];

function call(c: AdminCall): ReturnType<typeof adminRequest> {
  return adminRequest(broker.pki, broker.server.admin!.port, c);
}

async function scrape(): Promise<{ text: string; families: Map<string, Family>; contentType: string }> {
  const r = await call({ path: '/metrics', token });
  assert.equal(r.status, 200, r.text);
  return { text: r.text, families: parseExposition(r.text), contentType: String(r.headers['content-type']) };
}

/** Bytes of a v5 PUBLISH with no properties (remaining length under 128). */
function publishBytes(topic: string, payload: string, qos: 0 | 1): number {
  return 2 + 2 + Buffer.byteLength(topic) + (qos > 0 ? 2 : 0) + 1 + Buffer.byteLength(payload);
}

function waitEvent(pred: (e: SecurityEvent) => boolean, what: string): Promise<SecurityEvent[]> {
  return events.waitFor((items) => items.some(pred), WAIT, what);
}

before(async () => {
  // $SYS off: the message counters then hold exactly this test's traffic.
  broker = await startTestBroker({ admin: {}, plainAnonymous: false, sys: { intervalSeconds: 0 } });
  events = new Inbox<SecurityEvent>();
  stopEvents = broker.server.broker.events.on((e) => events.push(e));
  const created = await run('node', [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'prometheus', '--data-dir', broker.dataDir]);
  assert.equal(created.code, 0, created.stderr);
  token = created.stdout.trim();
});

after(async () => {
  stopEvents();
  await Promise.all(open.map((c) => endQuietly(c)));
  await broker.stop();
});

describe('/metrics access', () => {
  test('no credential: 401; a device certificate (not an operator): 403', async () => {
    const anonymous = await call({ path: '/metrics' });
    assert.equal(anonymous.status, 401);
    assert.doesNotMatch(anonymous.text, /bastion_/);
    const device = await call({ path: '/metrics', client: broker.pki.clients.client1! });
    assert.equal(device.status, 403);
    assert.doesNotMatch(device.text, /bastion_/);
  });

  test('metrics.enabled false: there is no /metrics route (404 for an operator)', async () => {
    const off = await startTestBroker({ admin: {}, metrics: { enabled: false }, sys: { intervalSeconds: 0 } });
    try {
      const created = await run('node', [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'p', '--data-dir', off.dataDir]);
      assert.equal(created.code, 0, created.stderr);
      const r = await adminRequest(off.pki, off.server.admin!.port, { path: '/metrics', token: created.stdout.trim() });
      assert.equal(r.status, 404);
      assert.doesNotMatch(r.text, /bastion_/);
    } finally {
      await off.stop();
    }
  });

  test('a wrong method is 405 for an operator', async () => {
    const r = await call({ method: 'POST', path: '/metrics', token });
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'GET, HEAD');
  });
});

describe('a scrape after real traffic', () => {
  let families: Map<string, Family>;
  let text: string;
  const topic = 't/x';
  const messages: Array<{ payload: string; qos: 0 | 1; retain: boolean }> = [
    { payload: 'm0', qos: 0, retain: false },
    { payload: 'm1', qos: 0, retain: false },
    { payload: 'm2', qos: 0, retain: false },
    { payload: 'p0', qos: 1, retain: false },
    { payload: 'p1', qos: 1, retain: false },
    { payload: 'kept', qos: 1, retain: true },
  ];

  before(async () => {
    const sub = await connectMqtt(`mqtts://127.0.0.1:${broker.tlsPort}`, { clientId: 'client1', protocolVersion: 5, servername: 'localhost', ...clientTls(broker.pki, broker.pki.clients.client1!) });
    open.push(sub);
    const inbox = inboxOf(sub);
    await sub.subscribeAsync('t/#', { qos: 1 });
    const pub = await connectMqtt(`mqtts://127.0.0.1:${broker.tlsPort}`, { clientId: 'client2', protocolVersion: 5, servername: 'localhost', ...clientTls(broker.pki, broker.pki.clients.client2!) });
    open.push(pub);
    for (const m of messages) await pub.publishAsync(topic, m.payload, { qos: m.qos, retain: m.retain });
    await inbox.waitForCount(messages.length, WAIT, 'every message at the subscriber');

    // A TLS 1.3 session, then a second connection resuming it.
    const first = await tlsHandshake(broker.tlsPort, { ...clientTls(broker.pki, broker.pki.clients.client1!), minVersion: 'TLSv1.3' });
    const session = await withTimeout(new Promise<Buffer>((resolve) => first.once('session', resolve)), WAIT, 'a session ticket');
    first.destroy();
    const resumed = await tlsHandshake(broker.tlsPort, { ...clientTls(broker.pki, broker.pki.clients.client1!), minVersion: 'TLSv1.3', session });
    assert.equal(resumed.isSessionReused(), true, 'the second handshake resumed');
    // TLS 1.3: the client is done before the server has read its Finished; close after the server saw it.
    await waitEvent((e) => e.type === 'tls.handshake' && e.ok && e.resumed, 'the resumed handshake event');
    resumed.destroy();

    // No client certificate where one is required: the server refuses (TLS 1.3: after the
    // client's Finished, so the client waits for the server's alert and close).
    const refused = tls.connect({ host: '127.0.0.1', port: broker.tlsPort, servername: 'localhost', ca: readFileSync(broker.pki.caCert) });
    refused.on('error', () => undefined);
    await withTimeout(new Promise((resolve) => refused.once('close', resolve)), WAIT, 'the refused TLS connection to close');
    await waitEvent((e) => e.type === 'tls.handshake' && !e.ok, 'the refused handshake event');

    // No credentials on a listener that needs them: an authentication failure.
    const refusal = await connectMqtt(`mqtt://127.0.0.1:${broker.plainPort}`, { clientId: 'nobody', protocolVersion: 5 }).then(
      (c) => {
        open.push(c);
        return null;
      },
      (err: Error & { code?: number }) => err,
    );
    assert.ok(refusal !== null, 'an anonymous client is refused where credentials are needed');
    await waitEvent((e) => e.type === 'auth.failure', 'the auth.failure event');

    // An operator bans a client id through the API.
    const ban = await call({ method: 'POST', path: '/api/v1/bans', token, body: { kind: 'clientId', value: 'evil-device', reason: 'metrics test' } });
    assert.equal(ban.status, 201, ban.text);

    ({ families, text } = await scrape());
  });

  test('served as the Prometheus text format, version 0.0.4', async () => {
    const { contentType } = await scrape();
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
  });

  test('messages and bytes received and sent, by QoS', () => {
    assert.equal(sampleValue(families, 'bastion_messages_received_total', { qos: '0' }), 3);
    assert.equal(sampleValue(families, 'bastion_messages_received_total', { qos: '1' }), 3);
    assert.equal(sampleValue(families, 'bastion_messages_received_total', { qos: '2' }), 0);
    assert.equal(sampleValue(families, 'bastion_messages_sent_total', { qos: '0' }), 3);
    assert.equal(sampleValue(families, 'bastion_messages_sent_total', { qos: '1' }), 3);
    const bytes = messages.reduce((n, m) => n + publishBytes(topic, m.payload, m.qos), 0);
    assert.equal(sampleValue(families, 'bastion_messages_received_bytes_total'), bytes);
    assert.equal(sampleValue(families, 'bastion_messages_sent_bytes_total'), bytes);
  });

  test('connections, sessions, subscriptions, retained messages, queues', () => {
    assert.ok((sampleValue(families, 'bastion_connections', { listener: 'mqtts' }) ?? 0) >= 2, 'the two MQTT.js clients are connected on mqtts');
    assert.notEqual(sampleValue(families, 'bastion_connections', { listener: 'plain' }), undefined);
    assert.equal(sampleValue(families, 'bastion_connections_accepted_total'), 2);
    assert.equal(sampleValue(families, 'bastion_sessions', { state: 'online' }), 2);
    assert.equal(sampleValue(families, 'bastion_sessions', { state: 'offline' }), 0);
    assert.equal(sampleValue(families, 'bastion_subscriptions'), 1);
    assert.equal(sampleValue(families, 'bastion_retained_messages'), 1);
    assert.equal(sampleValue(families, 'bastion_queued_messages'), 0);
    assert.equal(sampleValue(families, 'bastion_session_queue_max_messages'), 0);
    assert.equal(sampleValue(families, 'bastion_messages_dropped_total', { cause: 'queue_full' }), 0);
    assert.equal(sampleValue(families, 'bastion_messages_dropped_total', { cause: 'rate_limit' }), 0);
  });

  test('TLS handshakes: full and resumed by listener, the refusal by reason', () => {
    // client1 and client2 (MQTT.js) and the first raw session: full; the second: resumed.
    assert.equal(sampleValue(families, 'bastion_tls_handshakes_total', { listener: 'mqtts', kind: 'full', group: 'X25519MLKEM768' }), 3, 'Node clients negotiate the hybrid group');
    assert.equal(sampleValue(families, 'bastion_tls_handshakes_total', { listener: 'mqtts', kind: 'resumed', group: 'X25519MLKEM768' }), 1);
    assert.equal(sampleValue(families, 'bastion_tls_handshake_failures_total', { listener: 'mqtts', reason: 'no_certificate' }), 1);
  });

  test('authentication failures by provider, bans in force and added by origin', () => {
    const failures = families.get('bastion_auth_failures_total')!.samples.reduce((n, s) => n + s.value, 0);
    assert.equal(failures, 1);
    assert.equal(sampleValue(families, 'bastion_bans', { kind: 'clientId', list: 'deny' }), 1);
    assert.equal(sampleValue(families, 'bastion_bans_added_total', { origin: 'operator' }), 1);
    assert.equal(sampleValue(families, 'bastion_bans_added_total', { origin: 'auto' }), 0);
  });

  test('certificate expiry (seconds left): the server certificate and the CA, per TLS listener', () => {
    const secondsLeft = (file: string): number => (Date.parse(new X509Certificate(readFileSync(file)).validTo) - Date.now()) / 1000;
    for (const listener of ['mqtts', 'admin']) {
      const server = sampleValue(families, 'bastion_certificate_expiry_seconds', { listener, cert: 'server' });
      const ca = sampleValue(families, 'bastion_certificate_expiry_seconds', { listener, cert: 'ca' });
      assert.ok(server !== undefined && Math.abs(server - secondsLeft(broker.pki.serverCert)) < 600, `server certificate of ${listener}: ${String(server)}`);
      assert.ok(ca !== undefined && Math.abs(ca - secondsLeft(broker.pki.caCert)) < 600, `CA of ${listener}: ${String(ca)}`);
      assert.ok(ca > 86_400, 'the test CA has days left');
    }
    assert.equal(sampleValue(families, 'bastion_certificate_expiry_seconds', { listener: 'plain', cert: 'server' }), undefined, 'a plaintext listener has none');
  });

  test('process metrics: event-loop lag and heap', () => {
    assert.ok((sampleValue(families, 'nodejs_eventloop_lag_seconds') ?? -1) >= 0);
    assert.ok((sampleValue(families, 'nodejs_heap_size_used_bytes') ?? 0) > 0);
    assert.ok(families.get('nodejs_heap_space_size_used_bytes')!.samples.length > 0);
  });

  test('our reader: every sample line parses, every family has HELP and TYPE, counters end in _total', () => {
    const sampleLines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
    const parsed = [...families.values()].reduce((n, f) => n + f.samples.length, 0);
    assert.equal(parsed, sampleLines);
    for (const f of families.values()) {
      assert.ok(f.help !== undefined && f.help.length > 0, `${f.name} has HELP`);
      if (f.name.startsWith('bastion_') && f.type === 'counter') assert.match(f.name, /_total$/);
      if (f.name.startsWith('bastion_') && f.type === 'gauge') assert.doesNotMatch(f.name, /_total$/);
    }
    assert.throws(() => parseExposition('bastion_x 1\n'), /without HELP and TYPE/, 'the reader is strict');
    assert.throws(() => parseExposition('# HELP a x\n# TYPE a gauge\na{b="1} 2\n'), /unterminated/);
  });

  test('promtool check metrics accepts the scrape', (t) => {
    const found = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
    if (found.error !== undefined) {
      t.skip('promtool is not installed here (Debian package "prometheus"; .ci/run installs it)');
      return;
    }
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
  });
});
