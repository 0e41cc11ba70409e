/**
 * Authorization with real MQTT.js clients over mutual TLS: the default device policy (a
 * device reaching another device's topic is refused: PUBACK/SUBACK 0x87 in v5, dropped
 * and acknowledged / SUBACK 0x80 in v3.1.1), hostile CNs (`+`, `a+b`) that never expand
 * into `${cert.cn}`, deny beating allow, maxQos downgrade and refusal, retain refusal,
 * wills authorized at CONNECT, and a rule change at run time stopping a live subscription.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { IClientOptions, MqttClient, Packet } from 'mqtt';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { issueClient } from '../helpers/pki.js';
import type { Logger } from '../../src/core/logger.js';
import { connectMqtt, endQuietly, Inbox, inboxOf, withTimeout } from './support.js';

const WAIT = 5000;

class WarnLog implements Logger {
  readonly warnings = new Inbox<{ obj: Record<string, unknown>; msg: string }>();
  debug(): void {}
  info(): void {}
  error(): void {}
  warn(obj: object, msg?: string): void {
    this.warnings.push({ obj: obj as Record<string, unknown>, msg: msg ?? '' });
  }
}

function tlsOptions(b: TestBroker, name: string, version: 4 | 5, extra: IClientOptions = {}): IClientOptions {
  const files = b.pki.clients[name]!;
  return { ca: readFileSync(b.pki.caCert), cert: readFileSync(files.cert), key: readFileSync(files.key), protocolVersion: version, clientId: `${name}-v${version}`, ...extra };
}

function connect(b: TestBroker, name: string, version: 4 | 5, extra: IClientOptions = {}): Promise<MqttClient> {
  return connectMqtt(`mqtts://localhost:${b.tlsPort}`, tlsOptions(b, name, version, extra));
}

/**
 * The reason code of the PUBACK/PUBREC as it came off the wire (MQTT.js hides 0x10 behind
 * success). One publish at a time per client.
 */
function pubackCode(c: MqttClient, topic: string, opts: { qos: 1 | 2; retain?: boolean }): Promise<number> {
  const ack = new Promise<number>((resolve) => {
    const on = (p: Packet): void => {
      if (p.cmd !== 'puback' && p.cmd !== 'pubrec') return;
      c.off('packetreceive', on);
      resolve(p.reasonCode ?? 0);
    };
    c.on('packetreceive', on);
  });
  c.publish(topic, 'x', opts, () => undefined);
  return withTimeout(ack, WAIT, `acknowledgement of ${topic}`);
}

/** The SUBACK code for one filter (MQTT.js rejects a failure with an error carrying the SUBACK). */
async function granted(c: MqttClient, filter: string, qos: 0 | 1 | 2): Promise<number> {
  try {
    const g = await withTimeout(c.subscribeAsync(filter, { qos }), WAIT, `SUBACK for ${filter}`);
    return g[0]!.qos;
  } catch (err) {
    const code = (err as { packet?: { granted?: unknown[] } }).packet?.granted?.[0];
    if (typeof code === 'number') return code;
    throw err;
  }
}

describe('the default device policy (config without authz)', () => {
  let broker: TestBroker;
  let log: WarnLog;
  const clients: MqttClient[] = [];
  before(async () => {
    log = new WarnLog();
    broker = await startTestBroker({ clients: ['dev1', 'dev2'], authz: null, logger: log });
    await issueClient(broker.pki, 'plus', { commonName: '+' });
    await issueClient(broker.pki, 'aplusb', { commonName: 'a+b' });
    await issueClient(broker.pki, 'hash', { commonName: '#' });
    await issueClient(broker.pki, 'op', { organizationalUnit: 'operators' });
  });
  after(async () => {
    for (const c of clients) await endQuietly(c);
    await broker.stop();
  });

  test('the server warns that the default policy applies', async () => {
    await log.warnings.waitFor((w) => w.some((x) => x.obj.policy === 'default-device'), WAIT, 'the default-policy warning');
  });

  for (const version of [5, 4] as const) {
    test(`MQTT ${version === 5 ? '5' : '3.1.1'}: a device uses its own topics; another device's topic is refused`, async () => {
      const dev1 = await connect(broker, 'dev1', version);
      const dev2 = await connect(broker, 'dev2', version);
      clients.push(dev1, dev2);
      const inbox2 = inboxOf(dev2);
      assert.equal(await granted(dev2, 'devices/dev2/#', 1), 1);
      // dev1 reaching into dev2's topics: subscribe and publish are refused.
      assert.equal(await granted(dev1, 'devices/dev2/#', 1), version === 5 ? 0x87 : 0x80);
      assert.equal(await granted(dev1, 'devices/+/cmd', 1), version === 5 ? 0x87 : 0x80);
      assert.equal(await granted(dev1, '#', 0), version === 5 ? 0x87 : 0x80);
      // v5: PUBACK 0x87. v3.1.1 has no code: PUBACK as usual (as Mosquitto does), message dropped.
      assert.equal(await pubackCode(dev1, 'devices/dev2/cmd', { qos: 1 }), version === 5 ? 0x87 : 0);
      assert.equal(await pubackCode(dev1, 'broadcast/all', { qos: 1 }), version === 5 ? 0x87 : 0, 'broadcast is read-only for devices');
      // dev2's own publish arrives, and is the first thing dev2 receives.
      assert.equal(await pubackCode(dev2, 'devices/dev2/state', { qos: 1 }), 0);
      const got = await inbox2.waitFor((m) => m.length >= 1, WAIT, 'dev2 own message');
      assert.deepEqual(got.map((m) => m.topic), ['devices/dev2/state']);
      assert.equal(await granted(dev1, 'broadcast/#', 1), 1);
    });
  }

  test('SECURITY: certificates with CN +, a+b or # never expand ${cert.cn}: no device topic at all', async () => {
    const dev2 = await connect(broker, 'dev2', 5, { clientId: 'victim' });
    clients.push(dev2);
    const victimInbox = inboxOf(dev2);
    assert.equal(await granted(dev2, 'devices/dev2/#', 1), 1);
    for (const name of ['plus', 'aplusb', 'hash']) {
      const c = await connect(broker, name, 5);
      clients.push(c);
      const inbox = inboxOf(c);
      assert.equal(await granted(c, 'devices/+/#', 1), 0x87, name);
      assert.equal(await granted(c, 'devices/#', 1), 0x87, name);
      assert.equal(await pubackCode(c, 'devices/dev2/cmd', { qos: 1 }), 0x87, name);
      // Rules without a variable still apply to them.
      assert.equal(await granted(c, 'broadcast/#', 0), 0, name);
      assert.equal(await pubackCode(dev2, 'devices/dev2/after', { qos: 1 }), 0);
      await victimInbox.waitFor((m) => m.some((x) => x.topic === 'devices/dev2/after'), WAIT, 'the victim own message');
      assert.equal(inbox.items.length, 0, `${name} received nothing`);
      victimInbox.items.length = 0;
    }
    assert.ok(victimInbox.items.every((m) => m.topic !== 'devices/dev2/cmd'));
    // One warning per hostile client (compiled once per client), naming the variable.
    const unsafe = log.warnings.items.filter((w) => /unsafe in a topic/.test(w.msg));
    assert.deepEqual(unsafe.map((w) => [w.obj.variable, w.obj.value]), [
      ['cert.cn', '"+"'],
      ['cert.cn', '"a+b"'],
      ['cert.cn', '"#"'],
    ]);
  });

  test('operators (OU operators) read every device and $SYS, and cannot publish to a device', async () => {
    const op = await connect(broker, 'op', 5);
    const dev1 = await connect(broker, 'dev1', 5, { clientId: 'dev1-for-op' });
    clients.push(op, dev1);
    const inbox = inboxOf(op);
    assert.equal(await granted(op, 'devices/+/#', 1), 1);
    assert.equal(await granted(op, '$SYS/#', 0), 0);
    assert.equal(await pubackCode(op, 'devices/dev1/cmd', { qos: 1 }), 0x87);
    assert.equal(await pubackCode(dev1, 'devices/dev1/temp', { qos: 1 }), 0);
    await inbox.waitFor((m) => m.some((x) => x.topic === 'devices/dev1/temp'), WAIT, 'the operator reads a device');
  });

  test('a will on a topic the device may not publish to refuses the CONNECT (v5 0x87, v3.1.1 return code 5)', async () => {
    for (const version of [5, 4] as const) {
      const opts = tlsOptions(broker, 'dev1', version, { clientId: `will-${version}`, will: { topic: 'devices/dev2/cmd', payload: Buffer.from('x'), qos: 0, retain: false } });
      await assert.rejects(connectMqtt(`mqtts://localhost:${broker.tlsPort}`, opts), (err: Error & { code?: number }) => err.code === (version === 5 ? 0x87 : 5));
    }
    const ok = await connect(broker, 'dev1', 5, { clientId: 'will-ok', will: { topic: 'devices/dev1/status', payload: Buffer.from('gone'), qos: 1, retain: false } });
    await endQuietly(ok);
  });
});

describe('rules from the config', () => {
  let broker: TestBroker;
  const clients: MqttClient[] = [];
  before(async () => {
    broker = await startTestBroker({
      clients: ['dev1', 'dev2'],
      authz: {
        roles: {
          plant: {
            rules: [
              { effect: 'allow', action: 'all', topic: 'plant/#' },
              { effect: 'allow', action: 'all', topic: 'limited/#', maxQos: 1, retain: false },
            ],
          },
          guard: { rules: [{ effect: 'deny', action: 'all', topic: 'plant/secret/#' }] },
        },
        bindings: [
          { role: 'plant', attribute: 'cert.cn', value: 'dev*' },
          { role: 'guard', attribute: 'clientId', value: '*' },
        ],
      },
    });
  });
  after(async () => {
    for (const c of clients) await endQuietly(c);
    await broker.stop();
  });

  for (const version of [5, 4] as const) {
    test(`MQTT ${version === 5 ? '5' : '3.1.1'}: deny beats allow; maxQos grants lower and refuses above; retain refused`, async () => {
      const pub = await connect(broker, 'dev1', version);
      const sub = await connect(broker, 'dev2', version);
      clients.push(pub, sub);
      const inbox = inboxOf(sub);
      const refused = version === 5 ? 0x87 : 0x80;
      assert.equal(await granted(sub, 'plant/secret/#', 0), refused, 'deny covers the filter');
      assert.equal(await granted(sub, 'plant/#', 2), 2, 'a partial deny does not refuse the filter');
      assert.equal(await granted(sub, 'limited/#', 2), 1, 'maxQos 1: granted at 1');
      assert.equal(await pubackCode(pub, 'plant/secret/key', { qos: 1 }), version === 5 ? 0x87 : 0);
      assert.equal(await pubackCode(pub, 'limited/a', { qos: 2 }), version === 5 ? 0x87 : 0, 'QoS above the rule maximum');
      assert.equal(await pubackCode(pub, 'limited/b', { qos: 1, retain: true }), version === 5 ? 0x87 : 0, 'retain not allowed');
      assert.equal(await pubackCode(pub, 'limited/c', { qos: 1 }), 0);
      assert.equal(await pubackCode(pub, 'plant/line', { qos: 1 }), 0);
      const got = await inbox.waitFor((m) => m.length >= 2, WAIT, 'the allowed messages');
      assert.deepEqual(got.map((m) => `${m.topic}@${m.packet.qos}`), ['limited/c@1', 'plant/line@1']);
    });
  }

  test('v5: the PUBACK reason string says why', async () => {
    const pub = await connect(broker, 'dev1', 5, { clientId: 'why' });
    clients.push(pub);
    const reason = await new Promise<string | undefined>((resolve) => {
      pub.publish('limited/x', 'x', { qos: 2 }, (err, packet) => resolve((packet as { properties?: { reasonString?: string } } | undefined)?.properties?.reasonString ?? (err as Error | undefined)?.message));
    });
    assert.match(reason ?? '', /QoS 2 above the maximum of 1/);
  });
});

describe('a rule change at run time', () => {
  let broker: TestBroker;
  let log: WarnLog;
  before(async () => {
    log = new WarnLog();
    broker = await startTestBroker({ clients: ['dev1', 'dev2'], authz: { roles: { base: { rules: [{ effect: 'allow', action: 'publish', topic: 'feed/#' }, { effect: 'allow', action: 'subscribe', topic: 'probe/#' }, { effect: 'allow', action: 'publish', topic: 'probe/#' }] } }, bindings: [{ role: 'base', attribute: 'clientId', value: '*' }] }, logger: log });
  });
  after(async () => broker.stop());

  test('revoking a role through the PolicyService stops delivery on an existing subscription', async () => {
    const service = broker.server.authz;
    service.putRole('readers', [{ effect: 'allow', action: 'subscribe', topic: 'feed/#' }]);
    service.putBinding({ role: 'readers', attribute: 'cert.cn', value: 'dev2' });
    const pub = await connect(broker, 'dev1', 5);
    const sub = await connect(broker, 'dev2', 5);
    try {
      const inbox = inboxOf(sub);
      assert.equal(await granted(sub, 'feed/#', 1), 1);
      assert.equal(await granted(sub, 'probe/#', 1), 1);
      assert.equal(await pubackCode(pub, 'feed/one', { qos: 1 }), 0);
      await inbox.waitFor((m) => m.some((x) => x.topic === 'feed/one'), WAIT, 'feed/one while allowed');
      assert.equal(service.deleteRole('readers'), true);
      assert.equal(await pubackCode(pub, 'feed/two', { qos: 1 }), 0x10, 'no subscriber may receive it now (0x10)');
      assert.equal(await pubackCode(pub, 'probe/after', { qos: 1 }), 0);
      const got = await inbox.waitFor((m) => m.some((x) => x.topic === 'probe/after'), WAIT, 'the probe');
      assert.deepEqual(got.map((m) => m.topic), ['feed/one', 'probe/after']);
      assert.equal(service.explain({ clientId: 'dev2-v5', action: 'subscribe', topic: 'feed/#' }).decision, 'deny');
    } finally {
      await endQuietly(pub);
      await endQuietly(sub);
    }
  });

  test('config roles are read-only at run time; an invalid rule is refused', () => {
    const service = broker.server.authz;
    assert.throws(() => service.putRole('base', []), (e: Error & { code?: string }) => e.code === 'ERR_AUTHZ_READONLY');
    assert.throws(() => service.putRole('bad', [{ effect: 'allow', action: 'publish', topic: 'a/#/b' }]), (e: Error & { code?: string }) => e.code === 'ERR_AUTHZ_INVALID');
    assert.throws(() => service.putBinding({ role: 'nope', attribute: 'clientId', value: 'x' }), (e: Error & { code?: string }) => e.code === 'ERR_AUTHZ_INVALID');
  });
});
