/**
 * Issue 13's acceptance test: a fleet of 200 simulated devices provisions concurrently over
 * loopback mutual TLS from one claim certificate, with the real CLI (`bastion device
 * simulate --count 200 --concurrency 25`, a child process) against a real broker
 * (device-support.ts: the claim made by `bastion cert issue --profile claim`). Every device
 * reports provisioned; each publishes one message to `devices/{identity}/telemetry` with its
 * own new certificate, and a privileged subscriber (the PKI's demo device, role `observer`:
 * subscribe `devices/#`) receives exactly 200, one per identity, each on its own topic.
 * Then a sample of the devices, connecting with the certificates `--out` left on disk, may
 * use their own topics only: a publish to another device's topic is PUBACK 0x87 (and never
 * delivered), `devices/#` and another device's topics are SUBACK 0x87.
 *
 * The broker's per-address connection rate (limits.connections.perIpRate, default 20/s,
 * burst 100) is raised: 200 devices make 400 connections from 127.0.0.1 in a few seconds,
 * which a real fleet spreads over many addresses. provisioning.ratePerMinute is 1000 in
 * device-support.ts (2 requests per device: 400 from the one claim).
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { identityDirName, type SimulationSummary as Summary } from '../../src/cli/device.js';
import { BastionDevice, FileIdentityStore, MemoryIdentityStore, type DeviceIdentity, type DeviceMessage } from '../../src/device/index.js';
import { startDeviceBroker, type DeviceBroker } from './device-support.js';
import { pubackCode, subackCodes } from './provisioning-support.js';
import { BASTION_MAIN, connectMqtt, Inbox, run } from './support.js';

const COUNT = 200;
const CONCURRENCY = 25;
/** Devices whose access is checked one by one: the first, the last and three between. */
const SAMPLE = [1, 50, 100, 151, 200];

let broker: DeviceBroker;
let observer: BastionDevice;
const seen = new Inbox<DeviceMessage>();

before(async () => {
  broker = await startDeviceBroker({ limits: { connections: { perIpRate: { perSecond: 1000, burst: 1000 } } } });
  observer = new BastionDevice({ url: broker.url, ca: broker.caPem, store: new MemoryIdentityStore(broker.observer) });
  observer.on('message', (m) => seen.push(m));
  await observer.connect();
  await observer.subscribe('devices/#');
});
after(async () => {
  await observer?.close();
  await broker?.stop();
});

const identityOf = (i: number): string => `sensor-FLEET-${i}`;
const telemetry = (): DeviceMessage[] => seen.items.filter((m) => /^devices\/[^/]+\/telemetry$/.test(m.topic));


/** MQTT v5 with a device's certificate, as MQTT.js (reconnect off); the client id is its identity. */
function connectAs(id: DeviceIdentity): Promise<MqttClient> {
  return connectMqtt(broker.url, { ca: broker.caPem, cert: id.certPem, key: id.keyPem, clientId: id.identity, protocolVersion: 5 });
}

describe(`a fleet: ${COUNT} devices from one claim certificate, ${CONCURRENCY} at a time`, () => {
  let outDir: string;
  let summary: Summary;

  test(`bastion device simulate --count ${COUNT} --concurrency ${CONCURRENCY}: every device provisioned and published on its own topic`, { timeout: 90_000 }, async (t) => {
    const claim = await broker.claim('sensor');
    outDir = join(broker.dir, 'fleet');
    const started = performance.now();
    const r = await run(
      process.execPath,
      [BASTION_MAIN, 'device', 'simulate', '--url', broker.url, '--ca', broker.caFile, '--template', 'sensor', '--claim-cert', claim.certFile, '--claim-key', claim.keyFile,
        '--count', String(COUNT), '--concurrency', String(CONCURRENCY), '--parameter', 'serialNumber=FLEET-{i}', '--out', outDir, '--json'],
      { timeoutMs: 75_000 },
    );
    const wallSeconds = (performance.now() - started) / 1000;
    assert.equal(r.code, 0, `simulate failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    summary = JSON.parse(r.stdout) as Summary;
    assert.deepEqual(
      { requested: summary.requested, provisioned: summary.provisioned, published: summary.published, failed: summary.failed, reasons: summary.reasons },
      { requested: COUNT, provisioned: COUNT, published: COUNT, failed: 0, reasons: [] },
    );
    const expected = Array.from({ length: COUNT }, (_, i) => identityOf(i + 1)).sort();
    assert.deepEqual([...summary.identities].sort(), expected, 'one identity per device, from the template (sensor-${serialNumber})');
    t.diagnostic(`${COUNT} devices provisioned in ${summary.seconds.toFixed(2)} s: ${summary.devicesPerSecond.toFixed(1)} devices/s at concurrency ${CONCURRENCY} (simulate's figure; ${wallSeconds.toFixed(2)} s with the CLI's start), Node ${process.version}`);

    // The privileged subscriber: exactly one message per device, on that device's own topic.
    await seen.waitFor(() => telemetry().length >= COUNT, 15_000, `${COUNT} telemetry messages`);
    const got = telemetry();
    assert.equal(got.length, COUNT, 'no device published twice or elsewhere under devices/+/telemetry');
    const byTopic = new Map<string, string>();
    for (const m of got) {
      const body = JSON.parse(m.payload.toString('utf8')) as { identity: string; device: number };
      assert.equal(m.topic, `devices/${body.identity}/telemetry`, 'each device publishes on its own topic');
      assert.equal(body.identity, identityOf(body.device));
      byTopic.set(m.topic, body.identity);
    }
    assert.equal(byTopic.size, COUNT, `${COUNT} distinct topics`);
    assert.deepEqual([...byTopic.values()].sort(), expected, `${COUNT} distinct identities`);
  });

  test('--out left each identity on disk (FileIdentityStore: directory 0700, key 0600)', async () => {
    assert.ok(summary !== undefined, 'the fleet ran');
    assert.equal(statSync(outDir).mode & 0o777, 0o700);
    for (const i of SAMPLE) {
      const dir = join(outDir, identityDirName(identityOf(i)));
      const store = new FileIdentityStore(dir);
      const id = await store.load();
      assert.ok(id !== null, `${dir} holds an identity`);
      assert.equal(id.identity, identityOf(i));
      assert.deepEqual(id.roles, ['sensor']);
      const paths = await store.paths();
      assert.ok(paths !== null);
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      assert.equal(statSync(paths.key).mode & 0o777, 0o600);
    }
  });

  test(`devices ${SAMPLE.join(', ')}: their own topics only (PUBACK 0x87 on another's, SUBACK 0x87 on devices/# and another's)`, { timeout: 30_000 }, async () => {
    assert.ok(summary !== undefined, 'the fleet ran');
    for (const [k, i] of SAMPLE.entries()) {
      const id = await new FileIdentityStore(join(outDir, identityDirName(identityOf(i)))).load();
      assert.ok(id !== null);
      const other = identityOf(SAMPLE[(k + 1) % SAMPLE.length]!);
      const c = await connectAs(id);
      try {
        assert.equal(await pubackCode(c, `devices/${other}/telemetry`, `forged by ${id.identity}`), 0x87, `${id.identity} → ${other}'s topic`);
        assert.equal(await pubackCode(c, `devices/${other}/cmd`, `forged by ${id.identity}`), 0x87);
        assert.deepEqual(await subackCodes(c, ['devices/#', `devices/${other}/#`, 'devices/+/telemetry']), [0x87, 0x87, 0x87], `${id.identity} subscribing beyond its own topics`);
        // Its own topics work on the same connection (the refusals are the ACL, not a broken client).
        assert.deepEqual(await subackCodes(c, [`devices/${id.identity}/cmd`]), [1]);
        const marker = `own ${id.identity}`;
        assert.equal(await pubackCode(c, `devices/${id.identity}/status`, marker), 0);
        // Delivered in order from one connection: once the allowed message is in, a refused one would be too.
        await seen.waitFor((items) => items.some((m) => m.payload.toString() === marker), 5000, `${marker} at the observer`);
        assert.ok(!seen.items.some((m) => m.payload.toString() === `forged by ${id.identity}`), 'a refused publish is never delivered');
      } finally {
        await c.endAsync();
      }
    }
  });
});

test('identityDirName: a plain identity as is; anything that is no plain file name percent-encoded', () => {
  assert.equal(identityDirName('sensor-FLEET-1'), 'sensor-FLEET-1');
  assert.equal(identityDirName('a.b_c'), 'a.b_c');
  assert.equal(identityDirName('..'), '%2E.');
  assert.equal(identityDirName('.hidden'), '%2Ehidden');
  assert.equal(identityDirName('a\\b c'), 'a%5Cb%20c');
  assert.equal(identityDirName('100%'), '100%25');
  assert.equal(identityDirName('é'), '%C3%A9');
});
