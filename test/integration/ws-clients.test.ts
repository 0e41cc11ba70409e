/**
 * Real clients over MQTT-over-WebSocket against a real Bastion: MQTT.js over wss:// with a
 * client certificate from our PKI (MQTT 5 and 3.1.1), refused without one; Python
 * paho-mqtt 1.6.1 over wss; MQTT.js over plain ws://; and WebSocket clients exchanging
 * messages with TCP and TLS clients through the same broker.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { IClientOptions, MqttClient } from 'mqtt';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { connectMqtt, endQuietly, Inbox, inboxOf, killAllProcs, PAHO_DIR, Proc } from './support.js';

const WAIT_MS = 10000;
let broker: TestBroker;
const clients: MqttClient[] = [];
const uid = (): string => randomBytes(4).toString('hex');

function certOptions(name: 'client1' | 'client2'): IClientOptions {
  const files = broker.pki.clients[name]!;
  return { ca: readFileSync(broker.pki.caCert), cert: readFileSync(files.cert), key: readFileSync(files.key), rejectUnauthorized: true };
}

async function track(p: Promise<MqttClient>): Promise<MqttClient> {
  const c = await p;
  clients.push(c);
  return c;
}

function wssClient(name: 'client1' | 'client2', protocolVersion: 4 | 5): Promise<MqttClient> {
  return track(connectMqtt(`wss://127.0.0.1:${broker.wssPort}/mqtt`, { ...certOptions(name), protocolVersion, clientId: `ws-${name}-${uid()}` }));
}

before(async () => {
  broker = await startTestBroker({ clients: ['client1', 'client2'], webSocket: true });
});

after(async () => {
  await killAllProcs();
  await Promise.all(clients.map((c) => endQuietly(c)));
  await broker?.stop();
});

describe('MQTT.js over secure WebSocket with a client certificate', () => {
  for (const protocolVersion of [5, 4] as const) {
    test(`MQTT ${protocolVersion === 5 ? '5' : '3.1.1'}: subscribe, publish at QoS 1, receive`, async () => {
      const topic = `wss/${uid()}/v${protocolVersion}`;
      const sub = await wssClient('client1', protocolVersion);
      const pub = await wssClient('client2', protocolVersion);
      const inbox = inboxOf(sub);
      const granted = await sub.subscribeAsync(topic, { qos: 1 });
      assert.deepEqual(
        granted.map((g) => g.qos),
        [1],
      );
      const ack = await pub.publishAsync(topic, 'over wss', { qos: 1 });
      // v5 reports the PUBACK reason code: 0 (success), not 0x10 (no matching subscribers).
      if (protocolVersion === 5) assert.equal((ack as { reasonCode?: number } | undefined)?.reasonCode ?? 0, 0);
      const [m] = await inbox.waitForCount(1, WAIT_MS, 'the message over wss');
      assert.deepEqual({ topic: m!.topic, payload: m!.payload, qos: m!.packet.qos }, { topic, payload: 'over wss', qos: 1 });
      // The identity is the certificate verified on the TLS socket under the WebSocket.
      const identities = [...broker.server.listeners[3]!.connections].map((c) => c.peer?.identity).sort();
      assert.ok(identities.includes('client1') && identities.includes('client2'), `identities on wss: ${JSON.stringify(identities)}`);
    });
  }

  test('without a client certificate the connection is refused when certificates are required', async () => {
    const { ca } = certOptions('client1');
    await assert.rejects(
      connectMqtt(`wss://127.0.0.1:${broker.wssPort}/mqtt`, { ca, rejectUnauthorized: true, protocolVersion: 5, clientId: `ws-nocert-${uid()}` }, WAIT_MS),
      (err: Error) => {
        // The TLS handshake fails (alert "certificate required"), or the socket closes before
        // any WebSocket or MQTT exchange: never a CONNACK.
        assert.doesNotMatch(err.message, /timed out/, `refused quickly, not by a timeout: ${err.message}`);
        return true;
      },
    );
  });
});

describe('paho-mqtt 1.6.1 over secure WebSocket', () => {
  test('publishes and receives its own message at QoS 1 (transport="websockets", path /mqtt)', async () => {
    const files = broker.pki.clients.client1!;
    const topic = `paho-wss/${uid()}`;
    const args = [join(PAHO_DIR, 'paho_agent.py'), '--port', String(broker.wssPort), '--cafile', broker.pki.caCert, '--cert', files.cert, '--key', files.key];
    args.push('--client-id', `paho-wss-${uid()}`, '--protocol', '311', '--transport', 'websockets', '--ws-path', '/mqtt');
    const agent = Proc.spawn('/usr/bin/python3', args, { label: 'paho over wss' });
    const events = new Inbox<Record<string, unknown>>();
    let buffered = '';
    agent.child.stdout!.on('data', (d: string) => {
      buffered += d;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line.length > 0) events.push(JSON.parse(line) as Record<string, unknown>);
      }
    });
    void agent.exited.then(() => events.poke());
    const expect = (pred: (e: Record<string, unknown>) => boolean, what: string): Promise<unknown> =>
      events.waitFor(
        (items) => {
          if (items.some(pred)) return true;
          if (agent.result !== null) throw new Error(`paho exited before ${what}: ${agent.stderr}`);
          const err = items.find((e) => e.event === 'error');
          if (err !== undefined) throw new Error(`paho error before ${what}: ${JSON.stringify(err)}`);
          return false;
        },
        WAIT_MS,
        what,
      );
    const send = (cmd: Record<string, unknown>): void => {
      agent.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    };
    await expect((e) => e.event === 'connected' && e.rc === 0, 'CONNACK 0');
    send({ op: 'subscribe', topic, qos: 1 });
    await expect((e) => e.event === 'subscribed', 'SUBACK');
    assert.deepEqual(events.items.find((e) => e.event === 'subscribed')!.granted, [1]);
    send({ op: 'publish', ref: 'p1', topic, payload: 'paho over wss', qos: 1 });
    await expect((e) => e.event === 'published' && e.ref === 'p1', 'PUBACK');
    await expect((e) => e.event === 'message', 'its own message');
    const m = events.items.find((e) => e.event === 'message')!;
    assert.deepEqual({ topic: m.topic, payload: m.payload, qos: m.qos }, { topic, payload: 'paho over wss', qos: 1 });
    send({ op: 'disconnect' });
    agent.child.stdin!.end();
    assert.equal((await agent.waitExit(WAIT_MS)).code, 0, agent.stderr);
  });
});

describe('plain WebSocket and mixed transports', () => {
  test('MQTT.js over ws:// on a listener with insecure: true', async () => {
    const topic = `ws-plain/${uid()}`;
    const client = await track(connectMqtt(`ws://127.0.0.1:${broker.wsPort}/mqtt`, { protocolVersion: 5, clientId: `ws-plain-${uid()}` }));
    const inbox = inboxOf(client);
    await client.subscribeAsync(topic, { qos: 1 });
    await client.publishAsync(topic, 'plain ws', { qos: 1 });
    const [m] = await inbox.waitForCount(1, WAIT_MS, 'the message over ws');
    assert.equal(m!.payload, 'plain ws');
  });

  test('WebSocket, TCP and TLS clients exchange messages through one broker', async () => {
    const id = uid();
    const overWs = await track(connectMqtt(`ws://127.0.0.1:${broker.wsPort}/mqtt`, { protocolVersion: 4, clientId: `mix-ws-${id}` }));
    const overWss = await wssClient('client1', 5);
    const overTcp = await track(connectMqtt(`mqtt://127.0.0.1:${broker.plainPort}`, { protocolVersion: 5, clientId: `mix-tcp-${id}` }));
    const overTls = await track(connectMqtt(`mqtts://127.0.0.1:${broker.tlsPort}`, { ...certOptions('client2'), protocolVersion: 5, clientId: `mix-tls-${id}` }));
    const all = [
      { name: 'ws', client: overWs },
      { name: 'wss', client: overWss },
      { name: 'tcp', client: overTcp },
      { name: 'tls', client: overTls },
    ].map((c) => ({ ...c, inbox: inboxOf(c.client) }));
    for (const { client } of all) await client.subscribeAsync(`mix/${id}/#`, { qos: 1 });
    for (const { name, client } of all) await client.publishAsync(`mix/${id}/${name}`, `from ${name}`, { qos: 1 });
    for (const { name, inbox } of all) {
      const got = await inbox.waitForCount(4, WAIT_MS, `four messages at ${name}`);
      assert.deepEqual(got.map((m) => m.payload).sort(), ['from tcp', 'from tls', 'from ws', 'from wss'], `what ${name} received`);
    }
  });
});
