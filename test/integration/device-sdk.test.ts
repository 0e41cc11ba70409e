/**
 * The device SDK (`bastion-mqtt/device`) against a real broker started in-process with
 * provisioning templates and the built-in PKI (device-support.ts): provisioning by claim
 * certificate and by one-time token (the token works once), rejections as
 * ProvisioningErrors with the broker's status and code, a broker that does not verify is
 * refused, the offline queue across a real disconnect (order kept, QoS 1 until PUBACK),
 * and renewal: on the CONNACK's notice automatically (a new key, the new certificate
 * stored, a reconnect with it, the old one revoked) and on demand, up to the daily quota.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createRootCa } from '../../src/pki/index.js';
import { BastionDevice, DeviceError, FileIdentityStore, MemoryIdentityStore, ProvisioningError, provision, type DeviceEvents, type DeviceMessage, type ProvisionOptions } from '../../src/device/index.js';
import { startDeviceBroker, type DeviceBroker } from './device-support.js';
import { Inbox, withTimeout } from './support.js';

let broker: DeviceBroker;
let sensorClaim: { cert: string; key: string };
const open: BastionDevice[] = [];

before(async () => {
  broker = await startDeviceBroker();
  const c = await broker.claim('sensor');
  sensorClaim = { cert: c.cert, key: c.key };
});
after(async () => {
  await Promise.all(open.map((d) => d.close()));
  await broker?.stop();
});

function base(template = 'sensor'): Pick<ProvisionOptions, 'url' | 'ca' | 'template'> {
  return { url: broker.url, ca: broker.caPem, template };
}

/** A BastionDevice closed after the file's tests. */
function device(opts: Partial<ConstructorParameters<typeof BastionDevice>[0]> & Pick<ConstructorParameters<typeof BastionDevice>[0], 'store'>): BastionDevice {
  const d = new BastionDevice({ url: broker.url, ca: broker.caPem, reconnect: { minDelayMs: 20, maxDelayMs: 200 }, ...opts });
  open.push(d);
  return d;
}

function next<K extends keyof DeviceEvents>(d: BastionDevice, event: K, timeoutMs = 10_000): Promise<DeviceEvents[K]> {
  return withTimeout(once(d, event) as Promise<DeviceEvents[K]>, timeoutMs, `device event ${event}`);
}

function messagesOf(d: BastionDevice): Inbox<DeviceMessage> {
  const inbox = new Inbox<DeviceMessage>();
  d.on('message', (m) => inbox.push(m));
  return inbox;
}

function rejected(code: string, status: number, step: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof ProvisioningError, String(err));
    assert.deepEqual([err.errorCode, err.statusCode, err.step], [code, status, step], err.message);
    assert.ok(err.errorMessage.length > 0);
    return true;
  };
}

describe('provisioning', () => {
  test('by claim: the template decides identity and roles, the key is made on the device, and the device connects as its identity', async () => {
    const result = await provision({ ...base(), claim: sensorClaim, parameters: { serialNumber: 'CLAIM-1' } });
    assert.equal(result.identity, 'sensor-CLAIM-1');
    assert.deepEqual(result.roles, ['sensor']);
    assert.deepEqual(result.deviceConfiguration, { interval: 30, unit: 'C', telemetry: true });
    const leaf = new X509Certificate(result.certPem);
    assert.match(leaf.subject, /CN=sensor-CLAIM-1/);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(result.keyPem)), 'the certificate is for the key made on the device');
    assert.ok(Math.abs(result.notAfter.getTime() - (Date.now() + 30 * 86_400_000)) < 2 * 86_400_000);
    assert.equal(leaf.validToDate.getTime(), result.notAfter.getTime());

    const store = new FileIdentityStore(join(broker.dir, 'devices', 'claim-1'));
    await store.save(result);
    const d = device({ store });
    const inbox = messagesOf(d);
    const connected = next(d, 'connected');
    await d.connect();
    assert.deepEqual(await connected, [{ identity: 'sensor-CLAIM-1', certificateId: result.certificateId }]);
    assert.equal(d.identity, 'sensor-CLAIM-1');
    await d.subscribe('devices/sensor-CLAIM-1/telemetry');
    await d.publish('devices/sensor-CLAIM-1/telemetry', '{"t":21.5}');
    const [m] = await inbox.waitForCount(1, 5000, 'own telemetry');
    assert.equal(m!.topic, 'devices/sensor-CLAIM-1/telemetry');
    assert.equal(m!.payload.toString(), '{"t":21.5}');
  });

  test('by one-time token (TLS server-auth only, user name $provision); the token works once', async () => {
    const [token] = await broker.tokens('sensor', 1);
    const result = await provision({ ...base(), token: token!, parameters: { serialNumber: 'TOKEN-1' } });
    assert.equal(result.identity, 'sensor-TOKEN-1');
    const d = device({ store: new MemoryIdentityStore(result) });
    await d.connect();
    assert.equal(d.connected, true);
    await assert.rejects(provision({ ...base(), token: token!, parameters: { serialNumber: 'TOKEN-2' } }), (err: unknown) => {
      assert.ok(err instanceof DeviceError && err.code === 'ERR_DEVICE_CONNACK', String(err));
      assert.equal(err.reasonCode, 0x86);
      assert.ok(!err.message.includes(token!), 'the token is not in the message');
      return true;
    });
  });

  test('rejections: a ProvisioningError with the broker status, code and step', async () => {
    await assert.rejects(provision({ ...base(), claim: sensorClaim, parameters: { serialNumber: 'bad serial!' } }), rejected('InvalidParameters', 400, 'register'));
    await assert.rejects(provision({ ...base(), claim: sensorClaim, parameters: { serialNumber: 'OK-9', colour: 'red' } }), rejected('InvalidParameters', 400, 'register'));
    await assert.rejects(provision({ ...base(), claim: sensorClaim, parameters: {} }), rejected('InvalidParameters', 400, 'register'));
    await assert.rejects(provision({ ...base('listed'), claim: sensorClaim, parameters: { serialNumber: 'OK-1' } }), rejected('WrongTemplate', 403, 'register'));
    const [listedToken] = await broker.tokens('listed', 1);
    await assert.rejects(provision({ ...base('listed'), token: listedToken!, parameters: { serialNumber: 'NO-1' } }), rejected('NotAllowListed', 403, 'register'));
  });

  test('an unknown template is NotFound', async () => {
    await assert.rejects(provision({ ...base('nosuch'), claim: sensorClaim, parameters: { serialNumber: 'X-123' } }), rejected('NotFound', 404, 'register'));
  });

  test('refused before anything is sent: a broker the CA does not vouch for, a malformed token, claim and token together', async () => {
    const other = await createRootCa({ commonName: 'Not The Broker CA' });
    await assert.rejects(provision({ ...base(), ca: other.certPem, claim: sensorClaim, parameters: { serialNumber: 'X-124' } }), (err: unknown) => {
      assert.ok(err instanceof DeviceError && err.code === 'ERR_DEVICE_CONNECTION', String(err));
      assert.match(err.message, /certificate/i);
      return true;
    });
    await assert.rejects(provision({ ...base(), token: 'bpt_nope', parameters: {} }), (err: unknown) => err instanceof DeviceError && err.code === 'ERR_DEVICE_INVALID_INPUT');
    await assert.rejects(provision({ ...base(), token: 'x', claim: sensorClaim }), (err: unknown) => err instanceof DeviceError && err.code === 'ERR_DEVICE_INVALID_INPUT');
    await assert.rejects(provision({ ...base(), url: `mqtt://127.0.0.1:${broker.port}`, claim: sensorClaim }), (err: unknown) => err instanceof DeviceError && err.code === 'ERR_DEVICE_INVALID_INPUT');
  });
});

describe('BastionDevice', () => {
  test('offline queue: what is published while disconnected goes out in order after the reconnect', async () => {
    const result = await provision({ ...base(), claim: sensorClaim, parameters: { serialNumber: 'QUEUE-1' } });
    const d = device({ store: new MemoryIdentityStore(result) });
    const inbox = messagesOf(d);
    await d.connect();
    const topic = `devices/${result.identity}/telemetry`;
    await d.subscribe(topic);
    await d.publish(topic, '0');
    await inbox.waitForCount(1, 5000, 'the first message');

    const disconnected = next(d, 'disconnected');
    const kicked = broker.server.broker.disconnectWhere((c) => c.clientId === result.identity, 0x98, 'test: kicked');
    assert.deepEqual(kicked, [result.identity]);
    const [{ reason, reconnecting }] = await disconnected;
    assert.equal(reconnecting, true);
    assert.match(reason, /0x98/);
    assert.equal(d.connected, false);
    const reconnected = next(d, 'connected');
    const sent = Array.from({ length: 20 }, (_, i) => d.publish(topic, String(i + 1), { qos: i % 4 === 0 ? 0 : 1 }));
    assert.equal(d.queued, 20, 'held while offline');
    await reconnected;
    await withTimeout(Promise.all(sent), 10_000, 'PUBACKs of the queued messages');
    assert.equal(d.queued, 0);
    const got = await inbox.waitForCount(21, 10_000, 'the queued messages');
    assert.deepEqual(
      got.map((m) => m.payload.toString()),
      Array.from({ length: 21 }, (_, i) => String(i)),
    );
  });

  test('a refused publish rejects with the PUBACK reason code; the device stays connected', async () => {
    const result = await provision({ ...base(), claim: sensorClaim, parameters: { serialNumber: 'REFUSED-1' } });
    const d = device({ store: new MemoryIdentityStore(result) });
    await d.connect();
    // The provisioning guard keeps a device off another device's certificate topics.
    await assert.rejects(d.publish('$bastion/certs/sensor-CLAIM-1/renew/json', '{}'), (err: unknown) => {
      assert.ok(err instanceof DeviceError && err.code === 'ERR_DEVICE_PUBLISH', String(err));
      assert.equal(err.reasonCode, 0x87);
      return true;
    });
    await assert.rejects(d.subscribe('$bastion/certs/sensor-CLAIM-1/#'), (err: unknown) => err instanceof DeviceError && err.code === 'ERR_DEVICE_SUBSCRIBE');
    // The template's role allows the device its own topics only (the ACL).
    await assert.rejects(d.publish('devices/sensor-CLAIM-1/telemetry', 'not mine'), (err: unknown) => err instanceof DeviceError && err.reasonCode === 0x87);
    assert.equal(d.connected, true);
    await d.publish(`devices/${result.identity}/telemetry`, 'still here');
  });

  test('renewal on the CONNACK notice: a new key, the new certificate stored, a reconnect with it, the old one revoked', async () => {
    const shortClaim = await broker.claim('short');
    const result = await provision({ ...base('short'), claim: { cert: shortClaim.cert, key: shortClaim.key }, parameters: { serialNumber: 'RENEW-1' } });
    const store = new FileIdentityStore(join(broker.dir, 'devices', 'renew-1'));
    await store.save(result);
    // A 1-day certificate is inside the 7-day window at once; renew it although it is fresh.
    const d = device({ store, renewal: { minLifetimeUsed: 0 } });
    const due = next(d, 'renewal-due');
    const renewed = next(d, 'renewed', 15_000);
    const events: string[] = [];
    d.on('connected', ({ certificateId }) => events.push(`connected ${certificateId}`));
    d.on('disconnected', ({ reason }) => events.push(`disconnected ${reason}`));
    await d.connect();
    const [{ source }] = await due;
    assert.equal(source, 'connack');
    const [{ certificateId, notAfter }] = await renewed;
    assert.notEqual(certificateId, result.certificateId);
    assert.ok(notAfter.getTime() > Date.now());
    const stored = (await store.load())!;
    assert.equal(stored.certificateId, certificateId);
    assert.notEqual(stored.keyPem, result.keyPem, 'a renewal makes a new key');
    assert.equal(stored.identity, 'short-RENEW-1');
    if (!events.includes(`connected ${certificateId}`)) await next(d, 'connected');
    assert.deepEqual(events.slice(0, 3), [`connected ${result.certificateId}`, 'disconnected reconnecting with the renewed certificate', `connected ${certificateId}`]);
    await d.close();

    // The old certificate is revoked (superseded) once the new one has been used.
    let revoked: Array<{ serialNumber: string; reason: string }> = [];
    for (let i = 0; i < 20 && !revoked.some((c) => c.serialNumber.toLowerCase() === result.certificateId.toLowerCase()); i++) {
      const r = await broker.bastion(['cert', 'list', '--json', '--status', 'revoked', '--data-dir', broker.dataDir], false);
      assert.equal(r.code, 0, r.stderr);
      revoked = JSON.parse(r.stdout) as typeof revoked;
    }
    const old = revoked.find((c) => c.serialNumber.toLowerCase() === result.certificateId.toLowerCase());
    assert.equal(old?.reason, 'superseded', JSON.stringify(revoked));
  });

  test('renew() on demand, up to provisioning.renewal.maxPerDay; then Throttled', async () => {
    const result = await provision({ ...base(), claim: sensorClaim, parameters: { serialNumber: 'RENEW-2' } });
    const store = new MemoryIdentityStore(result);
    const d = device({ store, renewal: { auto: false } });
    await d.connect();
    const ids = [result.certificateId];
    for (let i = 0; i < 3; i++) {
      const connected = next(d, 'connected');
      await d.renew();
      await connected;
      ids.push((await store.load())!.certificateId!);
    }
    assert.equal(new Set(ids).size, 4, 'every renewal is a new certificate');
    await assert.rejects(d.renew(), rejected('Throttled', 429, 'renew'));
    assert.equal(d.connected, true);
    assert.equal((await store.load())!.certificateId, ids[3]);
  });
});
