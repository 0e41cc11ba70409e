/**
 * The slow-client defence with real sockets: a subscriber that stops reading (a raw TCP
 * client that CONNECTs, SUBSCRIBEs, then socket.pause()s) is disconnected, by the
 * congestion clock (limits.slowClient.maxCongestedSeconds) or at once when its write buffer
 * passes maxWriteBufferBytes; one that stops acknowledging QoS 1 is cut the same way. The
 * publisher is not blocked for good, a fast subscriber keeps receiving, and the broker's
 * memory stays bounded while 200 MB go through.
 *
 * Without the defence, backpressure pauses the publisher behind the stalled reader forever
 * (every test here would time out).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { EventRecorder } from '../helpers/event-recorder.js';
import { pump } from '../helpers/flood.js';
import { connectMqtt, endQuietly, Inbox, withTimeout } from './support.js';

const WAIT = 20_000;
/** Per-client publish rates off: these tests flood on purpose. */
const NO_RATES = { publishRate: { perSecond: 0 }, bandwidth: { perSecond: 0 } };

v8.setFlagsFromString('--expose_gc');
const gc = vm.runInNewContext('gc') as () => void;

/**
 * Heap and external memory after collection. Buffers freed by a collection release their
 * external memory in a later task, so collect, let that task run, and collect again
 * (measured on Node 24/26: a single gc() left tens of MB of dead Buffers counted).
 */
async function memory(): Promise<number> {
  gc();
  await new Promise((resolvePromise) => setImmediate(resolvePromise));
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

type Event = SecurityEvent;

/** Every security event the broker emits from now on (the shared recorder's inbox: these waits need their own timeouts). */
function events(broker: TestBroker): Inbox<Event> {
  return new EventRecorder(broker.server.broker.events).inbox;
}

/** A raw MQTT client: packets parsed into an inbox, the close observed. */
class Raw {
  readonly packets = new Inbox<mqttPacket.Packet>();
  publishes = 0;
  closed = false;
  private readonly parser: mqttPacket.Parser;

  constructor(
    readonly socket: net.Socket,
    version: 4 | 5,
  ) {
    this.parser = mqttPacket.parser({ protocolVersion: version });
    this.parser.on('packet', (p: mqttPacket.Packet) => {
      // Publishes are counted, not kept: 200 MB of them go through a fast subscriber.
      if (p.cmd === 'publish') {
        this.publishes++;
        this.packets.poke();
      } else this.packets.push(p);
    });
    socket.on('data', (d: Buffer) => this.parser.parse(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.packets.poke();
    });
  }

  static async connect(port: number, clientId: string, version: 4 | 5, sessionExpiry = 0): Promise<Raw> {
    const socket = net.connect(port, '127.0.0.1');
    const raw = new Raw(socket, version);
    const persistent = sessionExpiry > 0 ? { clean: false, properties: { sessionExpiryInterval: sessionExpiry } } : { clean: true };
    socket.write(mqttPacket.generate({ cmd: 'connect', clientId, protocolVersion: version, protocolId: 'MQTT', keepalive: 0, ...persistent }, { protocolVersion: version }));
    await raw.packets.waitFor((p) => p.some((x) => x.cmd === 'connack'), WAIT, `CONNACK for ${clientId}`);
    return raw;
  }

  async subscribe(topic: string, qos: 0 | 1, version: 4 | 5): Promise<void> {
    this.socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] }, { protocolVersion: version }));
    await this.packets.waitFor((p) => p.some((x) => x.cmd === 'suback'), WAIT, 'SUBACK');
  }

  /** Connects, subscribes to `filter`, then stops reading (the socket paused): the stalled reader every test here needs. */
  static async stalled(port: number, clientId: string, filter: string, qos: 0 | 1, version: 4 | 5): Promise<Raw> {
    const raw = await Raw.connect(port, clientId, version);
    await raw.subscribe(filter, qos, version);
    raw.socket.pause();
    return raw;
  }

  waitClosed(what: string): Promise<unknown> {
    return this.packets.waitFor(() => this.closed, WAIT, what);
  }
}

function slowCut(e: Event): e is Extract<Event, { type: 'limit.hit' }> {
  return e.type === 'limit.hit' && e.limit === 'slow-client' && e.action === 'disconnected';
}

test('a reader that stops is cut by the congestion clock; the publisher and a fast reader go on; memory stays bounded over 200 MB', { timeout: 120_000 }, async () => {
  const broker = await startTestBroker({ limits: { client: NO_RATES, slowClient: { maxWriteBufferBytes: 256 * 1024 * 1024, maxCongestedSeconds: 2 } } });
  const seen = events(broker);
  const sockets: net.Socket[] = [];
  try {
    const slow = await Raw.stalled(broker.plainPort, 'slow', 'flood/#', 0, 5);
    sockets.push(slow.socket);
    const fast = await Raw.connect(broker.plainPort, 'fast', 4);
    sockets.push(fast.socket);
    await fast.subscribe('flood/#', 0, 4);
    const pub = await Raw.connect(broker.plainPort, 'flooder', 4);
    sockets.push(pub.socket);

    const payload = Buffer.alloc(64 * 1024, 0x61);
    const frame = mqttPacket.generate({ cmd: 'publish', topic: 'flood/a', payload, qos: 0, retain: false, dup: false });
    const count = Math.ceil((200 * 1024 * 1024) / frame.length);
    // Once cut, the slow client reads again: it finds the end of its stream, DISCONNECT 0x97
    // then the close (the broker lingers 2 s for it to be read).
    const cutSeen = seen.waitFor((e) => e.some(slowCut), 60_000, 'slow-client limit.hit').then((e) => {
      slow.socket.resume();
      return e.find(slowCut)!;
    });
    const before = await memory();
    await withTimeout(pump(pub.socket, frame, count), 60_000, 'the publisher writing 200 MB');
    await fast.packets.waitFor(() => fast.publishes === count, 60_000, `all ${count} messages at the fast reader`);
    const grown = (await memory()) - before;
    console.log(`slow-client: ${count} x ${frame.length} B pushed; heap+external grew ${(grown / 1048576).toFixed(1)} MB`);
    assert.ok(grown < 64 * 1024 * 1024, `memory grew ${grown} bytes while 200 MB went through`);

    const cut = await cutSeen;
    assert.equal(cut.clientId, 'slow');
    assert.equal(cut.listener, 'plain');
    assert.match(cut.detail ?? '', /socket not drained for \d+ ms/);
    const disconnected = seen.items.find((e) => e.type === 'client.disconnected');
    assert.deepEqual(disconnected && { ...disconnected, remoteAddress: '' }, { type: 'client.disconnected', clientId: 'slow', listener: 'plain', remoteAddress: '', reasonCode: 0x97, reason: 'slow consumer' });
    await slow.waitClosed('the slow socket to close');
    const last = slow.packets.items.at(-1) as mqttPacket.IDisconnectPacket | undefined;
    assert.equal(last?.cmd, 'disconnect');
    assert.equal(last?.reasonCode, 0x97);
    assert.equal(fast.closed, false);
  } finally {
    for (const s of sockets) s.destroy();
    await broker.stop();
  }
});

test('a write buffer over maxWriteBufferBytes is cut at once, long before the congestion clock', { timeout: 60_000 }, async () => {
  const broker = await startTestBroker({
    mqtt: { maxPacketSize: 128 * 1024 },
    limits: { client: NO_RATES, slowClient: { maxWriteBufferBytes: 256 * 1024, maxCongestedSeconds: 600 } },
  });
  const seen = events(broker);
  const sockets: net.Socket[] = [];
  try {
    const slow = await Raw.stalled(broker.plainPort, 'stuck', 'big/#', 0, 4);
    sockets.push(slow.socket);
    // No second reader here: below the 512 kB high-water mark the bound would also cut a
    // reader in this busy process that falls 256 kB behind, which is the point of the bound.
    const pub = await Raw.connect(broker.plainPort, 'big-pub', 4);
    sockets.push(pub.socket);
    const frame = mqttPacket.generate({ cmd: 'publish', topic: 'big/a', payload: Buffer.alloc(32 * 1024, 0x62), qos: 0, retain: false, dup: false });
    // 64 MB: far more than the kernel's socket buffers and the 256 kB bound together.
    const count = 2048;
    await withTimeout(pump(pub.socket, frame, count), WAIT, 'the publisher writing');
    const cut = (await seen.waitFor((e) => e.some(slowCut), WAIT, 'slow-client limit.hit')).find(slowCut)!;
    assert.equal(cut.clientId, 'stuck');
    assert.match(cut.detail ?? '', /write buffer of \d+ bytes over the limit of 262144/);
    // The publisher was read to the end and is still served: PINGREQ → PINGRESP.
    pub.socket.write(mqttPacket.generate({ cmd: 'pingreq' }));
    await pub.packets.waitFor((p) => p.some((x) => x.cmd === 'pingresp'), WAIT, 'PINGRESP to the publisher');
    assert.equal(pub.closed, false);
  } finally {
    for (const s of sockets) s.destroy();
    await broker.stop();
  }
});

test('a QoS 1 subscriber that stops acknowledging is cut; the QoS 1 publisher gets every PUBACK', { timeout: 60_000 }, async () => {
  const broker = await startTestBroker({ mqtt: { maxQueued: 200 }, limits: { client: NO_RATES, slowClient: { maxCongestedSeconds: 1 } } });
  const seen = events(broker);
  let pub: MqttClient | undefined;
  let slow: Raw | undefined;
  try {
    slow = await Raw.stalled(broker.plainPort, 'no-acks', 'acks/#', 1, 5);
    pub = await connectMqtt(`mqtt://127.0.0.1:${broker.plainPort}`, { protocolVersion: 5, clientId: 'q1-pub' });
    // Ten times the subscriber's queue bound, sent at once.
    const acks = await withTimeout(
      Promise.all(Array.from({ length: 2000 }, (_, i) => pub!.publishAsync('acks/a', `m${i}`, { qos: 1 }))),
      WAIT,
      'PUBACKs for all 2000 messages',
    );
    assert.equal(acks.length, 2000);
    const cut = seen.items.find(slowCut);
    assert.ok(cut !== undefined, 'the slow consumer was cut');
    assert.equal(cut.clientId, 'no-acks');
    assert.match(cut.detail ?? '', /queue not acknowledged for \d+ ms/);
  } finally {
    slow?.socket.destroy();
    await endQuietly(pub);
    await broker.stop();
  }
});

test('every delivery dropped at a full queue is counted and is one limit.hit queue-full event', { timeout: 60_000 }, async () => {
  const broker = await startTestBroker({ mqtt: { maxQueued: 50 }, limits: { client: NO_RATES } });
  const seen = events(broker);
  const url = `mqtt://127.0.0.1:${broker.plainPort}`;
  let pub: MqttClient | undefined;
  try {
    // A persistent session, offline: its queue fills to the bound, the rest is dropped.
    const away = await Raw.connect(broker.plainPort, 'away', 5, 300);
    await away.subscribe('q/#', 1, 5);
    // The broker closes the socket after it handled the DISCONNECT: the session is offline then.
    away.socket.write(mqttPacket.generate({ cmd: 'disconnect' }, { protocolVersion: 5 }));
    await away.waitClosed('the broker to close after DISCONNECT');
    assert.equal(broker.server.broker.sessions.get('away')?.online, false);
    pub = await connectMqtt(url, { protocolVersion: 5, clientId: 'filler' });
    await Promise.all(Array.from({ length: 80 }, (_, i) => pub!.publishAsync('q/a', `m${i}`, { qos: 1 })));
    const drops = seen.items.filter((e) => e.type === 'limit.hit' && e.limit === 'queue-full');
    assert.equal(drops.length, 30);
    assert.equal(broker.server.broker.counters.droppedQueueFull, 30);
    assert.deepEqual(drops[0], { type: 'limit.hit', limit: 'queue-full', listener: 'plain', remoteAddress: (drops[0] as { remoteAddress: string }).remoteAddress, clientId: 'away', action: 'dropped', count: 1 });
  } finally {
    await endQuietly(pub);
    await broker.stop();
  }
});
