/**
 * `$SYS/broker/...` topics under an authorization policy that is not allow-all: a client
 * whose role allows `subscribe $SYS/#` (bound to its certificate CN) reads them (MQTT.js
 * v5 and mosquitto_sub v3.1.1), retained and with Mosquitto's names and value formats; a
 * device without the role is refused (SUBACK 0x87 in v5, 0x80 in v3.1.1) and receives
 * nothing; a `#` subscription never sees a `$SYS` topic [MQTT-4.7.2-1]; and no client may
 * publish to `$SYS`, not even one whose rules say it may. With persistence on, $SYS values
 * stay in memory: the database never holds one, and a restart with $SYS off brings none back
 * (not even one an older version stored), while an ordinary retained message survives.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { connectMqtt, endQuietly, inboxOf, type Inbox, type Received, run, withTimeout } from './support.js';
import { clientTls } from './tls-support.js';

const WAIT = 8000;
let broker: TestBroker;
let monitor: MqttClient;
let monitorInbox: Inbox<Received>;
const open: MqttClient[] = [];

async function connect(cn: string, protocolVersion: 4 | 5 = 5, clientId = cn): Promise<MqttClient> {
  const c = await connectMqtt(`mqtts://127.0.0.1:${broker.tlsPort}`, { clientId, protocolVersion, servername: 'localhost', ...clientTls(broker.pki, broker.pki.clients[cn]!) });
  open.push(c);
  return c;
}

/** The SUBACK code for one filter (MQTT.js rejects a refusal; the code is on its packet). */
async function subackCode(c: MqttClient, filter: string): Promise<number> {
  try {
    const g = await withTimeout(c.subscribeAsync(filter, { qos: 0 }), WAIT, `SUBACK for ${filter}`);
    return g[0]!.qos;
  } catch (err) {
    const code = (err as { packet?: { granted?: unknown[] } }).packet?.granted?.[0];
    if (typeof code === 'number') return code;
    throw err;
  }
}

/** Waits until the monitor has seen a $SYS publication that arrived after `mark` messages: a full tick has passed. */
async function nextTick(): Promise<void> {
  const mark = monitorInbox.items.length;
  await monitorInbox.waitFor((items) => items.slice(mark).some((m) => m.topic === '$SYS/broker/uptime'), WAIT, 'the next $SYS tick');
}

before(async () => {
  broker = await startTestBroker({
    clients: ['monitor1', 'device1', 'wide1'],
    sys: { intervalSeconds: 1 },
    authz: {
      roles: {
        device: { rules: [{ effect: 'allow', action: 'all', topic: 'devices/${cert.cn}/#' }] },
        // The publish rule is a misconfiguration the broker must not honour: $ topics are its own.
        monitor: {
          rules: [
            { effect: 'allow', action: 'subscribe', topic: '$SYS/#' },
            { effect: 'allow', action: 'publish', topic: '$SYS/#' },
          ],
        },
        wide: { rules: [{ effect: 'allow', action: 'subscribe', topic: '#' }] },
      },
      bindings: [
        { role: 'device', attribute: 'cert.cn', value: '*' },
        { role: 'monitor', attribute: 'cert.cn', value: 'monitor1' },
        { role: 'wide', attribute: 'cert.cn', value: 'wide1' },
      ],
    },
  });
  monitor = await connect('monitor1');
  monitorInbox = inboxOf(monitor);
  assert.equal(await subackCode(monitor, '$SYS/#'), 0, 'the monitor role may subscribe to $SYS/#');
});

after(async () => {
  await Promise.all(open.map((c) => endQuietly(c)));
  await broker.stop();
});

describe('a client with the monitor role', () => {
  test('receives $SYS/broker/version and clients/connected, retained, in Mosquitto formats', async () => {
    const items = await monitorInbox.waitFor(
      (all) => all.some((m) => m.topic === '$SYS/broker/version') && all.some((m) => m.topic === '$SYS/broker/clients/connected' && Number(m.payload) >= 1),
      WAIT,
      'version and clients/connected >= 1',
    );
    const version = items.find((m) => m.topic === '$SYS/broker/version')!;
    assert.match(version.payload, /^bastion version \d+\.\d+\.\d+/);
    assert.equal(version.packet.retain, true, 'held as a retained message when the monitor subscribed');
    const connected = items.find((m) => m.topic === '$SYS/broker/clients/connected' && Number(m.payload) >= 1)!;
    assert.match(connected.payload, /^\d+$/);
    const uptime = items.find((m) => m.topic === '$SYS/broker/uptime');
    assert.match(uptime?.payload ?? '', /^\d+ seconds$/);
    for (const name of ['clients/total', 'clients/maximum', 'clients/disconnected', 'messages/received', 'messages/sent', 'bytes/received', 'bytes/sent', 'subscriptions/count', 'retained messages/count', 'heap/current']) {
      const m = items.find((x) => x.topic === `$SYS/broker/${name}`);
      assert.ok(m !== undefined, `$SYS/broker/${name}`);
      assert.match(m.payload, /^\d+$/, `$SYS/broker/${name} is a count`);
    }
  });

  test('mosquitto_sub (MQTT 3.1.1) reads $SYS/broker/version with the monitor certificate', async () => {
    const files = broker.pki.clients.monitor1!;
    const r = await run(
      'mosquitto_sub',
      ['-h', '127.0.0.1', '-p', String(broker.tlsPort), '--cafile', broker.pki.caCert, '--cert', files.cert, '--key', files.key, '-i', 'monitor1-mosq', '-V', 'mqttv311', '-t', '$SYS/broker/version', '-C', '1', '-W', '10', '-v'],
      { timeoutMs: 15_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\$SYS\/broker\/version bastion version \d+\.\d+\.\d+\n$/);
  });

  test('load averages: after a burst, the 1-minute average is above the 5-minute, above the 15-minute', async () => {
    const device = await connect('device1');
    for (let i = 0; i < 20; i++) device.publish('devices/device1/burst', String(i), { qos: 0 });
    await device.publishAsync('devices/device1/burst', 'last', { qos: 1 });
    const base = 'load/messages/received/';
    const items = await monitorInbox.waitFor(
      (all) => {
        const i = all.findIndex((m) => m.topic === `$SYS/broker/${base}1min` && Number(m.payload) > 0);
        return i >= 0 && all.slice(i).some((m) => m.topic === `$SYS/broker/${base}15min`);
      },
      WAIT,
      'a tick with the burst in the load averages',
    );
    const i = items.findIndex((m) => m.topic === `$SYS/broker/${base}1min` && Number(m.payload) > 0);
    const tick = items.slice(i);
    const value = (window: string): number => Number(tick.find((m) => m.topic === `$SYS/broker/${base}${window}`)!.payload);
    assert.match(tick[0]!.payload, /^\d+\.\d\d$/, 'two decimals, as Mosquitto');
    assert.ok(value('1min') > value('5min') && value('5min') > value('15min') && value('15min') > 0, `1min ${value('1min')}, 5min ${value('5min')}, 15min ${value('15min')}`);
  });

  test('may not publish to $SYS even with a rule that says so: PUBACK 0x87, and nothing is forged', async () => {
    await assert.rejects(monitor.publishAsync('$SYS/broker/version', 'forged', { qos: 1, retain: true }), (err: Error & { code?: number }) => {
      assert.equal(err.code, 0x87);
      return true;
    });
    await nextTick();
    assert.ok(!monitorInbox.items.some((m) => m.payload === 'forged'), 'the forged value was not delivered');
    const fresh = await connect('monitor1', 5, 'monitor1-fresh');
    const inbox = inboxOf(fresh);
    await fresh.subscribeAsync('$SYS/broker/version');
    const [retained] = await inbox.waitForCount(1, WAIT, 'the retained version');
    assert.match(retained!.payload, /^bastion version /, 'the retained value is still the broker\'s');
  });
});

describe('clients without the role', () => {
  test('a v5 device is refused $SYS/# with 0x87 and receives nothing', async () => {
    const device = await connect('device1', 5, 'device1-v5');
    const inbox = inboxOf(device);
    assert.equal(await subackCode(device, '$SYS/#'), 0x87);
    await nextTick();
    assert.equal(inbox.items.length, 0);
  });

  test('a v3.1.1 device is refused $SYS/# with 0x80', async () => {
    const device = await connect('device1', 4, 'device1-v3');
    assert.equal(await subackCode(device, '$SYS/#'), 0x80);
  });

  test('a client allowed "#" gets ordinary topics but no $SYS topic, live or retained [MQTT-4.7.2-1]', async () => {
    const wide = await connect('wide1');
    const inbox = inboxOf(wide);
    assert.equal(await subackCode(wide, '#'), 0);
    const device = await connect('device1', 5, 'device1-pub');
    await device.publishAsync('devices/device1/hello', 'hi', { qos: 1 });
    await inbox.waitFor((items) => items.some((m) => m.topic === 'devices/device1/hello'), WAIT, 'the ordinary message');
    await nextTick();
    await nextTick();
    const dollar = inbox.items.filter((m) => m.topic.startsWith('$'));
    assert.deepEqual(dollar, [], 'no $ topic through #');
  });
});

describe('$SYS with persistence on', () => {
  /** The retained topics the database holds (read after the broker stopped). */
  function storedRetained(dataDir: string, plant?: string): string[] {
    const store = new SqliteStore({ path: join(dataDir, 'bastion.db') });
    try {
      // An older version wrote $SYS values to the store: plant one, as it would have.
      if (plant !== undefined) store.setRetained(plant, { topic: plant, payload: Buffer.from('stale'), qos: 0, retain: true, properties: undefined, expiresAt: 0, origin: '' });
      return store.load().retained.map((m) => m.topic).sort();
    } finally {
      store.close();
    }
  }

  test('$SYS values are retained in memory only: never stored, and a restart with $SYS off brings none back', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'bastion-sys-persist-'));
    try {
      const first = await startTestBroker({ dataDir, persistence: true, sys: { intervalSeconds: 1 } });
      try {
        const c = await connectMqtt(`mqtt://127.0.0.1:${first.plainPort}`, { clientId: 'keeper', protocolVersion: 5 });
        open.push(c);
        await c.publishAsync('plant/state', 'on', { qos: 1, retain: true });
        assert.equal(first.server.broker.retained.match('$SYS/broker/version').length, 1, '$SYS is retained while the broker runs');
      } finally {
        await first.stop();
      }
      assert.deepEqual(storedRetained(dataDir, '$SYS/broker/uptime'), ['$SYS/broker/uptime', 'plant/state'], 'only the ordinary message was stored (and the planted old one)');

      const second = await startTestBroker({ dataDir, persistence: true, sys: { intervalSeconds: 0 } });
      try {
        assert.deepEqual(second.server.broker.retained.match('$SYS/#'), [], 'no stale $SYS value after the restart');
        const c = await connectMqtt(`mqtt://127.0.0.1:${second.plainPort}`, { clientId: 'reader', protocolVersion: 5 });
        open.push(c);
        const inbox = inboxOf(c);
        await c.subscribeAsync('plant/state');
        const [m] = await inbox.waitForCount(1, WAIT, 'the retained plant/state');
        assert.equal(m!.payload, 'on', 'an ordinary retained message survives the restart');
      } finally {
        await second.stop();
      }
      assert.deepEqual(storedRetained(dataDir), ['plant/state'], 'the old $SYS row was removed at recovery');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
