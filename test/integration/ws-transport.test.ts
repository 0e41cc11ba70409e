/**
 * The WebSocket transport at the frame and HTTP level, driven with the `ws` package and raw
 * sockets against a real Bastion: MQTT packets split across frames and several packets in
 * one frame, text frames and oversized frames refused without harm to the broker, the
 * upgrade refused for another path or without the MQTT subprotocol, HTTP requests that
 * never upgrade closed after connectTimeout, graceful shutdown, and config errors.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import type { Packet } from '../../src/protocol/packets.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { BASTION_MAIN, connectMqtt, endQuietly, Inbox, nextEvent, run, startBrokerProcess, withTimeout } from './support.js';

const WAIT_MS = 5000;
const MAX_PACKET = 4096;
/** Seconds; short so the never-upgrading request is closed quickly. */
const CONNECT_TIMEOUT_S = 1;
let broker: TestBroker;
const uid = (): string => randomBytes(4).toString('hex');

/** A WebSocket speaking hand-built MQTT bytes; collects decoded packets and the close. */
class RawWsClient {
  readonly packets = new Inbox<Packet>();
  closeCode: number | null = null;
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });

  private constructor(readonly ws: WebSocket) {
    this.parser.on('packet', (p: Packet) => this.packets.push(p));
    ws.on('message', (data: Buffer) => this.parser.parse(data));
    ws.on('close', (code: number) => {
      this.closeCode = code;
      this.packets.poke();
    });
    ws.on('error', () => undefined);
  }

  static open(port: number, protocols: string[] = ['mqtt'], path = '/mqtt'): Promise<RawWsClient> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, protocols);
    return withTimeout(
      new Promise((resolve, reject) => {
        ws.once('open', () => resolve(new RawWsClient(ws)));
        ws.once('error', reject);
      }),
      WAIT_MS,
      'WebSocket open',
    );
  }

  /** Each buffer goes out as one binary frame. */
  sendFrames(...frames: Buffer[]): void {
    for (const f of frames) this.ws.send(f, { binary: true });
  }

  expect(pred: (p: Packet) => boolean, what: string): Promise<Packet> {
    return this.packets
      .waitFor(
        (items) => {
          if (items.some(pred)) return true;
          if (this.closeCode !== null) throw new Error(`closed (${this.closeCode}) before ${what}`);
          return false;
        },
        WAIT_MS,
        what,
      )
      .then((items) => items.find(pred)!);
  }

  async closed(): Promise<number> {
    await this.packets.waitFor(() => this.closeCode !== null, WAIT_MS, 'the WebSocket to close');
    return this.closeCode!;
  }
}

const gen = (p: Packet): Buffer => mqttPacket.generate(p as mqttPacket.Packet, { protocolVersion: 4 });
const connectBytes = (clientId: string): Buffer => gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 60 } as Packet);

/** The HTTP status a WebSocket handshake is answered with (101 when it opens). */
function handshakeStatus(port: number, path: string, protocols: string[]): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, protocols);
  return withTimeout(
    new Promise<number>((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.once('open', () => {
        resolve(101);
        ws.close();
      });
      ws.once('error', (err) => reject(err));
    }),
    WAIT_MS,
    `handshake at ${path}`,
  );
}

before(async () => {
  broker = await startTestBroker({ webSocket: true, mqtt: { maxPacketSize: MAX_PACKET, connectTimeout: CONNECT_TIMEOUT_S } });
});

after(async () => {
  await broker?.stop();
});

describe('MQTT packets and WebSocket frames', () => {
  test('a packet split across two frames, and two packets in one frame, are each handled once', async () => {
    const c = await RawWsClient.open(broker.wsPort);
    const connect = connectBytes(`split-${uid()}`);
    // CONNECT split inside its variable header: two frames, one packet.
    c.sendFrames(connect.subarray(0, 5), connect.subarray(5));
    const connack = await c.expect((p) => p.cmd === 'connack', 'CONNACK');
    assert.equal((connack as Extract<Packet, { cmd: 'connack' }>).returnCode, 0);
    const topic = `frames/${uid()}`;
    // SUBSCRIBE and a QoS 1 PUBLISH in one frame: two packets, in order.
    const subscribe = gen({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] } as Packet);
    const publish = gen({ cmd: 'publish', topic, payload: Buffer.from('two in one'), qos: 1, messageId: 2, retain: false, dup: false } as Packet);
    c.sendFrames(Buffer.concat([subscribe, publish]));
    await c.expect((p) => p.cmd === 'suback', 'SUBACK');
    await c.expect((p) => p.cmd === 'puback' && p.messageId === 2, 'PUBACK for the publish');
    const delivered = (await c.expect((p) => p.cmd === 'publish', 'the message back')) as Extract<Packet, { cmd: 'publish' }>;
    assert.equal(delivered.payload.toString(), 'two in one');
    // A PUBLISH split inside its remaining-length bytes, across three frames.
    const big = gen({ cmd: 'publish', topic, payload: Buffer.alloc(300, 0x61), qos: 0, retain: false, dup: false } as Packet);
    c.sendFrames(big.subarray(0, 2), big.subarray(2, 150), big.subarray(150));
    const second = await c.packets.waitFor((items) => items.filter((p) => p.cmd === 'publish').length >= 2, WAIT_MS, 'the split message back');
    const last = second.filter((p) => p.cmd === 'publish').at(-1) as Extract<Packet, { cmd: 'publish' }>;
    assert.equal(last.payload.length, 300);
    c.ws.close();
  });

  test('a text frame closes the connection with 1003 and the broker keeps serving', async () => {
    const c = await RawWsClient.open(broker.wsPort);
    c.sendFrames(connectBytes(`text-${uid()}`));
    await c.expect((p) => p.cmd === 'connack', 'CONNACK');
    c.ws.send('not binary');
    assert.equal(await c.closed(), 1003);
    const next = await RawWsClient.open(broker.wsPort);
    next.sendFrames(connectBytes(`after-text-${uid()}`));
    await next.expect((p) => p.cmd === 'connack', 'CONNACK after the refused client');
    next.ws.close();
  });

  test('a frame larger than the frame limit closes the connection (1009) and the broker keeps serving', async () => {
    const c = await RawWsClient.open(broker.wsPort);
    c.sendFrames(connectBytes(`huge-${uid()}`));
    await c.expect((p) => p.cmd === 'connack', 'CONNACK');
    // maxPayload is maxPacketSize + 64 KiB: this frame is refused from its header.
    c.sendFrames(Buffer.alloc(MAX_PACKET + 70 * 1024));
    assert.equal(await c.closed(), 1009);
    const next = await RawWsClient.open(broker.wsPort);
    next.sendFrames(connectBytes(`after-huge-${uid()}`));
    await next.expect((p) => p.cmd === 'connack', 'CONNACK after the refused client');
    next.ws.close();
  });

  test('an MQTT packet over maxPacketSize inside an acceptable frame is refused by the framing layer', async () => {
    const c = await RawWsClient.open(broker.wsPort);
    c.sendFrames(connectBytes(`toolarge-${uid()}`));
    await c.expect((p) => p.cmd === 'connack', 'CONNACK');
    c.sendFrames(gen({ cmd: 'publish', topic: 't', payload: Buffer.alloc(MAX_PACKET), qos: 0, retain: false, dup: false } as Packet));
    await c.closed();
    assert.equal(
      c.packets.items.some((p) => p.cmd === 'publish'),
      false,
    );
  });
});

describe('the WebSocket handshake', () => {
  test('another path is refused with 404, a missing or foreign subprotocol with 400', async () => {
    assert.equal(await handshakeStatus(broker.wsPort, '/other', ['mqtt']), 404);
    assert.equal(await handshakeStatus(broker.wsPort, '/mqtt', []), 400);
    assert.equal(await handshakeStatus(broker.wsPort, '/mqtt', ['chat', 'soap']), 400);
    // The broker saw none of them: no connection was ever created.
    assert.equal(broker.server.listeners[2]!.connections.size, 0);
  });

  test('"mqtt" is chosen when offered, and the legacy "mqttv3.1" is accepted', async () => {
    const both = await RawWsClient.open(broker.wsPort, ['mqttv3.1', 'mqtt']);
    assert.equal(both.ws.protocol, 'mqtt');
    both.ws.close();
    const legacy = await RawWsClient.open(broker.wsPort, ['mqttv3.1']);
    assert.equal(legacy.ws.protocol, 'mqttv3.1');
    legacy.ws.close();
    // The path may carry a query string.
    const withQuery = await RawWsClient.open(broker.wsPort, ['mqtt'], '/mqtt?token=x');
    withQuery.ws.close();
  });

  test('the client address is the socket\'s, never an X-Forwarded-For header', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${broker.wsPort}/mqtt`, ['mqtt'], { headers: { 'X-Forwarded-For': '10.9.9.9', 'X-Real-IP': '10.9.9.9' } });
    await withTimeout(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), WAIT_MS, 'WebSocket open');
    try {
      const addresses = [...broker.server.listeners[2]!.connections].map((c) => c.remoteAddress);
      assert.ok(addresses.length > 0);
      assert.ok(!addresses.includes('10.9.9.9'), `addresses: ${JSON.stringify(addresses)}`);
      assert.ok(addresses.every((a) => a === '127.0.0.1' || a === '::ffff:127.0.0.1'), `addresses: ${JSON.stringify(addresses)}`);
    } finally {
      ws.terminate();
    }
  });

  test('a plain HTTP request without an upgrade gets 426', async () => {
    const res = await withTimeout(fetch(`http://127.0.0.1:${broker.wsPort}/mqtt`), WAIT_MS, 'HTTP response');
    assert.equal(res.status, 426);
    await res.text();
  });

  test('an HTTP request that never upgrades is closed after connectTimeout; upgraded connections stay', async () => {
    const client = await connectMqtt(`ws://127.0.0.1:${broker.wsPort}/mqtt`, { protocolVersion: 4, keepalive: 60, clientId: `stays-${uid()}` });
    try {
      const started = Date.now();
      const silent = net.connect(broker.wsPort, '127.0.0.1');
      const partial = net.connect(broker.wsPort, '127.0.0.1', () => partial.write('GET /mqtt HTTP/1.1\r\nHost: x\r\n'));
      const closedAfter = (s: net.Socket): Promise<number> => withTimeout(new Promise<number>((resolve) => s.once('close', () => resolve(Date.now() - started))), 10_000, 'the server to close the socket');
      silent.on('error', () => undefined);
      partial.on('error', () => undefined);
      const [silentMs, partialMs] = await Promise.all([closedAfter(silent), closedAfter(partial)]);
      assert.ok(silentMs >= CONNECT_TIMEOUT_S * 1000 - 100, `a silent socket lives until the timeout (closed after ${silentMs} ms)`);
      assert.ok(partialMs >= CONNECT_TIMEOUT_S * 1000 - 100, `headers without an end live until the timeout (closed after ${partialMs} ms)`);
      // The WebSocket opened before is older than the timeout and still answers.
      assert.ok(client.connected);
      const topic = `stays/${uid()}`;
      await client.subscribeAsync(topic, { qos: 1 });
      const got = new Promise<string>((resolve) => client.once('message', (_t, p) => resolve(p.toString())));
      await client.publishAsync(topic, 'still here', { qos: 1 });
      assert.equal(await withTimeout(got, WAIT_MS, 'the message'), 'still here');
    } finally {
      await endQuietly(client);
    }
  });
});

describe('lifecycle and configuration', () => {
  test('graceful shutdown sends an MQTT 5 WebSocket client DISCONNECT 0x8B', async () => {
    const own = await startTestBroker({ webSocket: true });
    const client = await connectMqtt(`ws://127.0.0.1:${own.wsPort}/mqtt`, { protocolVersion: 5, clientId: `bye-${uid()}` });
    try {
      const disconnect = nextEvent<{ reasonCode?: number }>(client, 'disconnect', WAIT_MS);
      await own.stop();
      assert.equal((await disconnect).reasonCode, 0x8b);
      assert.equal(own.server.listeners[2]!.connections.size, 0);
    } finally {
      await endQuietly(client);
    }
  });

  test('`bastion serve` with a ws listener at a configured path prints the URL clients connect to', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bastion-ws-serve-'));
    try {
      const file = join(dir, 'bastion.yaml');
      const lines = ['listeners:', '  - name: web', '    protocol: ws', '    port: 0', '    path: /devices/mqtt', '    insecure: true', '    allowAnonymous: true'];
      writeFileSync(file, [...lines, 'persistence:', '  enabled: false', 'log:', '  level: warn', ''].join('\n'));
      const { proc, port } = await startBrokerProcess(['-c', file]);
      try {
        assert.match(proc.stderr, new RegExp(`Bastion listening on ws://127\\.0\\.0\\.1:${port}/devices/mqtt \\(web; PLAINTEXT \\(insecure: true\\)\\)`));
        const client = await connectMqtt(`ws://127.0.0.1:${port}/devices/mqtt`, { protocolVersion: 5, clientId: `serve-${uid()}` });
        await endQuietly(client);
        assert.equal(await handshakeStatus(port, '/mqtt', ['mqtt']), 404, 'the default path is not served when another is configured');
      } finally {
        await proc.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('protocol ws without insecure: true stops `bastion serve` with one config error line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bastion-ws-config-'));
    try {
      const file = join(dir, 'bastion.yaml');
      writeFileSync(file, ['listeners:', '  - name: web', '    protocol: ws', '    port: 0', 'persistence:', '  enabled: false', ''].join('\n'));
      const r = await run(process.execPath, [BASTION_MAIN, 'serve', '-c', file], { cwd: dir });
      assert.notEqual(r.code, 0);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /listeners\[0\]\.insecure: a plaintext \(protocol: ws\) listener must say insecure: true/);
      writeFileSync(file, ['listeners:', '  - name: web', '    protocol: wss', '    port: 0', 'persistence:', '  enabled: false', ''].join('\n'));
      const wss = await run(process.execPath, [BASTION_MAIN, 'serve', '-c', file], { cwd: dir });
      assert.notEqual(wss.code, 0);
      assert.match(wss.stderr.trim(), /^[^\n]*listeners\[0\]\.tls: a TLS listener \(protocol: wss\) needs tls\.cert and tls\.key$/);
      writeFileSync(file, ['listeners:', '  - name: tcp', '    protocol: mqtt', '    insecure: true', '    path: /mqtt', '    port: 0', ''].join('\n'));
      const path = await run(process.execPath, [BASTION_MAIN, 'serve', '-c', file], { cwd: dir });
      assert.notEqual(path.code, 0);
      assert.match(path.stderr.trim(), /^[^\n]*listeners\[0\]\.path: path applies only to ws and wss listeners$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
