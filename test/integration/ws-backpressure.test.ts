/**
 * Flow control with a WebSocket subscriber, as on TCP: while the subscriber does not read,
 * the broker stops reading the publishers instead of buffering without bound for it; when the subscriber reads again, every QoS 0 message arrives and nothing
 * stalls (the WebSocket adapter's 'drain' releases the publishers).
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { startTestBroker } from '../helpers/broker.js';
import { pump, rawConnect } from '../helpers/flood.js';
import { Inbox, withTimeout } from './support.js';

const PER_PUBLISHER = 40_000;
const PUBLISHERS = 3;
const TOTAL = PER_PUBLISHER * PUBLISHERS;
/** The write-buffer size above which the broker counts a connection as congested (connection.ts). */
const CONGESTION_MARK = 512 * 1024;

/** Re-checks `cond` every 5 ms until it holds; fails after `timeoutMs`. */
async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

test('a WebSocket subscriber that stops reading holds the TCP publishers back; resumed, it gets every message', { timeout: 60_000 }, async () => {
  // Flow control, not quotas: per-client publish rates off (the slow-client defence stays on).
  const broker = await startTestBroker({ webSocket: true, limits: { client: { publishRate: { perSecond: 0 }, bandwidth: { perSecond: 0 } } } });
  const sockets: net.Socket[] = [];
  const sink = new WebSocket(`ws://127.0.0.1:${broker.wsPort}/mqtt`, ['mqtt']);
  let watchdog: NodeJS.Timeout | undefined;
  try {
    await withTimeout(new Promise((resolve, reject) => sink.once('open', resolve).once('error', reject)), 5000, 'WebSocket open');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let received = 0;
    let subscribed: () => void = () => undefined;
    const suback = new Promise<void>((resolve) => (subscribed = resolve));
    const allReceived = new Promise<void>((resolve, reject) => {
      let last = -1;
      // Fails if no progress is made for 10 s once reading resumed: a stall, not slowness.
      watchdog = setInterval(() => {
        if (!sink.isPaused && received === last) reject(new Error(`stalled at ${received} of ${TOTAL}`));
        last = received;
      }, 10_000);
      parser.on('packet', (p: mqttPacket.Packet) => {
        if (p.cmd === 'suback') subscribed();
        if (p.cmd === 'publish' && ++received === TOTAL) resolve();
      });
    });
    sink.on('message', (d: Buffer) => parser.parse(d));
    sink.send(mqttPacket.generate({ cmd: 'connect', clientId: 'ws-sink', protocolVersion: 4, protocolId: 'MQTT', clean: true, keepalive: 60 }));
    sink.send(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'wsload/0', qos: 0 }] }));
    await withTimeout(suback, 5000, 'SUBACK');
    // The subscriber stops reading its socket.
    sink.pause();

    const frame = mqttPacket.generate({ cmd: 'publish', topic: 'wsload/0', payload: Buffer.alloc(64, 7), qos: 0, retain: false, dup: false });
    for (let i = 0; i < PUBLISHERS; i++) {
      const pub = rawConnect(broker.plainPort, `ws-pub-${i}`);
      sockets.push(pub);
      void pump(pub, frame, PER_PUBLISHER);
    }
    const [subscriber] = broker.server.listeners[2]!.connections;
    // Condition, not time: the subscriber's write buffer passes the congestion mark.
    await waitUntil(() => subscriber!.writeBufferedBytes > CONGESTION_MARK, 20_000, 'the paused subscriber to be congested');
    // Then the broker turns its event loop many times (each PINGREQ answered is at least one
    // turn, in which it would read every publisher it has not paused). Without flow control
    // each turn would add a read's worth per publisher to the subscriber's buffer.
    const probe = rawConnect(broker.plainPort, 'ws-probe');
    sockets.push(probe);
    const probeParser = mqttPacket.parser({ protocolVersion: 4 });
    const probePackets = new Inbox<string>();
    probeParser.on('packet', (p: mqttPacket.Packet) => probePackets.push(p.cmd));
    probe.on('data', (d: Buffer) => probeParser.parse(d));
    await probePackets.waitForCount(1, 5000, 'CONNACK of the probe');
    for (let i = 1; i <= 30; i++) {
      probe.write(mqttPacket.generate({ cmd: 'pingreq' }));
      await probePackets.waitForCount(1 + i, 5000, `PINGRESP ${i}`);
    }
    assert.ok(received < TOTAL, `the paused subscriber cannot have everything yet (${received})`);
    // What the broker holds for the subscriber stays near the congestion mark plus one read
    // per publisher, far below the ${TOTAL * frame.length} bytes published.
    const held = subscriber!.writeBufferedBytes;
    assert.ok(held < 2 * CONGESTION_MARK, `the broker buffers ${held} bytes for the paused subscriber`);
    sink.resume();
    await allReceived;
    assert.equal(received, TOTAL);
  } finally {
    clearInterval(watchdog);
    for (const s of sockets) s.destroy();
    sink.terminate();
    await broker.stop();
  }
});
