/**
 * Role quotas beyond publish rates (issue 11, part 6): the subscription cap and the session
 * queue size come from the client's most specific quota role, over mutual TLS with MQTT.js.
 * With limits.client.maxSubscriptions 3 and mqtt.maxQueued 100, a device's fourth filter
 * is refused (0x97) while the gateway role's cap of 10 admits six; and the gateway role's
 * maxQueued of 5 keeps only 5 of 10 messages published while its persistent session is
 * offline (the rest counted as queue-full drops).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { parseConfig } from '../../src/server/load-config.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import { EventRecorder } from '../helpers/event-recorder.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { connectMqtt, endQuietly, inboxOf } from './support.js';
import { clientTls } from './tls-support.js';

let dir: string;
let pki: TestPki;
let server: BastionServer;
let events: EventRecorder;
const open: MqttClient[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-quota-session-'));
  pki = await makeTestPki(join(dir, 'pki'), ['gw1', 'dev1', 'pub1']);
  const allow = [{ effect: 'allow', action: 'all', topic: 'plant/#' }];
  const { config, baseDir } = parseConfig(
    {
      dataDir: join(dir, 'data'),
      listeners: [{ name: 'mtls', protocol: 'mqtts', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, revocation: 'none' } }],
      persistence: { enabled: false },
      mqtt: { maxQueued: 100 },
      limits: { client: { maxSubscriptions: 3 } },
      sys: { intervalSeconds: 0 },
      authz: {
        roles: { device: { rules: allow }, gateway: { rules: allow, quota: { maxSubscriptions: 10, maxQueued: 5 } } },
        bindings: [
          { role: 'device', attribute: 'cert.cn', value: '*' },
          { role: 'gateway', attribute: 'cert.cn', value: 'gw1' },
        ],
      },
    },
    dir,
  );
  server = await startServer({ config, baseDir });
  events = new EventRecorder(server.broker.events);
});

after(async () => {
  events.stop();
  await Promise.all(open.map((c) => endQuietly(c)));
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

function connect(name: string, extra: Record<string, unknown> = {}): Promise<MqttClient> {
  return connectMqtt(`mqtts://127.0.0.1:${server.listeners[0]!.port}`, { ...clientTls(pki, pki.clients[name]!), servername: 'localhost', clientId: name, protocolVersion: 5, reconnectPeriod: 0, ...extra });
}

/** Subscribes to `filters` in one SUBSCRIBE and returns the SUBACK's own reason codes. */
async function subackCodes(client: MqttClient, filters: string[]): Promise<number[]> {
  const codes = new Promise<number[]>((resolvePromise) => {
    const onPacket = (packet: { cmd: string; granted?: unknown }): void => {
      if (packet.cmd !== 'suback' || !Array.isArray(packet.granted)) return;
      client.removeListener('packetreceive', onPacket);
      resolvePromise(packet.granted.map((g) => (typeof g === 'number' ? g : -1)));
    };
    client.on('packetreceive', onPacket);
  });
  // MQTT.js rejects when a filter is refused; the SUBACK itself is what counts here.
  await client.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 0 as const }]))).catch(() => undefined);
  return codes;
}

test('the subscription cap: a device gets limits.client (3), the gateway its role (10)', async () => {
  const filters = (who: string, n: number): string[] => Array.from({ length: n }, (_, i) => `plant/${who}/${i}`);
  const dev = await connect('dev1');
  open.push(dev);
  assert.deepEqual(await subackCodes(dev, filters('dev', 4)), [0, 0, 0, 0x97]);
  const gw = await connect('gw1');
  open.push(gw);
  assert.deepEqual(await subackCodes(gw, filters('gw', 6)), [0, 0, 0, 0, 0, 0]);
  await endQuietly(gw);
});

test("the gateway's offline queue holds its role's maxQueued (5), not mqtt.maxQueued (100)", async () => {
  const session = { clean: false, properties: { sessionExpiryInterval: 300 }, clientId: 'gw1-queue' };
  const gw = await connect('gw1', session);
  await gw.subscribeAsync('plant/queue/#', { qos: 1 });
  await endQuietly(gw);
  const pub = await connect('pub1');
  open.push(pub);
  for (let i = 0; i < 10; i++) await pub.publishAsync(`plant/queue/${i}`, `m${i}`, { qos: 1 });
  await events.inbox.waitFor((all) => all.filter((e) => e.type === 'limit.hit' && e.limit === 'queue-full').length >= 5, 5000, 'five queue-full drops');
  let inbox: ReturnType<typeof inboxOf> | undefined;
  // The queued messages may arrive in the same read as the CONNACK: listen before CONNECT.
  const resumed = await connectMqtt(
    `mqtts://127.0.0.1:${server.listeners[0]!.port}`,
    { ...clientTls(pki, pki.clients.gw1!), servername: 'localhost', protocolVersion: 5, reconnectPeriod: 0, ...session },
    5000,
    (c) => {
      inbox = inboxOf(c);
    },
  );
  open.push(resumed);
  const received = await inbox!.waitFor((items) => items.length >= 5, 5000, 'the queued messages');
  assert.deepEqual(
    received.map((m) => m.payload.toString()),
    ['m0', 'm1', 'm2', 'm3', 'm4'],
  );
  assert.equal(events.of('limit.hit', (e) => e.limit === 'queue-full').length, 5);
});
