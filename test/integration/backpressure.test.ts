/**
 * Flow control between fast publishers and a subscriber: publishers are paused while the
 * subscriber's socket is behind and resumed when it catches up; no QoS 0 message is lost
 * on the way and nothing stalls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import mqttPacket from 'mqtt-packet';
import { startTestBroker } from '../helpers/broker.js';
import { pump, rawConnect } from '../helpers/flood.js';

const PER_PUBLISHER = 50_000;
const PUBLISHERS = 4;

test('fast QoS 0 publishers into one subscriber: everything arrives, nothing stalls', { timeout: 60_000 }, async () => {
  // Flow control, not quotas: per-client publish rates off (the slow-client defence stays on).
  const broker = await startTestBroker({ limits: { client: { publishRate: { perSecond: 0 }, bandwidth: { perSecond: 0 } } } });
  const sockets: net.Socket[] = [];
  let watchdog: NodeJS.Timeout | undefined;
  try {
    const sub = rawConnect(broker.plainPort, 'sink');
    sockets.push(sub);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let received = 0;
    const done = new Promise<void>((resolve, reject) => {
      let last = -1;
      // Fails if no progress is made for 10 s: a stall, not slowness.
      watchdog = setInterval(() => {
        if (received === last) reject(new Error(`stalled at ${received} of ${PER_PUBLISHER * PUBLISHERS}`));
        last = received;
      }, 10_000);
      parser.on('packet', (p: mqttPacket.Packet) => {
        if (p.cmd === 'suback') startPublishers();
        if (p.cmd === 'publish' && ++received === PER_PUBLISHER * PUBLISHERS) {
          clearInterval(watchdog);
          resolve();
        }
      });
    });
    sub.on('data', (d: Buffer) => parser.parse(d));
    sub.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'load/0', qos: 0 }] }));
    const frame = mqttPacket.generate({ cmd: 'publish', topic: 'load/0', payload: Buffer.alloc(64, 7), qos: 0, retain: false, dup: false });
    function startPublishers(): void {
      for (let i = 0; i < PUBLISHERS; i++) {
        const pub = rawConnect(broker.plainPort, `pub-${i}`);
        sockets.push(pub);
        void pump(pub, frame, PER_PUBLISHER);
      }
    }
    await done;
    assert.equal(received, PER_PUBLISHER * PUBLISHERS);
  } finally {
    clearInterval(watchdog);
    for (const s of sockets) s.destroy();
    await broker.stop();
  }
});
