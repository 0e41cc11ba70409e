/**
 * Bytes allocated per routed message, measured in-process (issue 17): a whole broker driven
 * through its real framing, decoder and channels with in-memory ports (no sockets), one QoS 0
 * publisher and one subscriber, 64-byte payloads. Run with `node --expose-gc
 * --max-semi-space-size=64 dist/bench/alloc-probe.js [messages]`: after a warm-up and a full
 * GC, the heap's growth over the measured messages (no GC may run meanwhile: the young
 * generation is made large enough, and a GC seen makes the run invalid) divided by their
 * count. Prints one JSON line. Owns: that measurement. Must not: open a socket or a file.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { Broker } from '../src/broker/broker.js';
import { Channel } from '../src/broker/channel/channel.js';
import type { ConnectionPort } from '../src/broker/channel/connection-port.js';
import { PacketDecoder, encodePacket } from '../src/protocol/codec.js';
import { FrameReader, type FrameTarget } from '../src/protocol/framing.js';
import type { Packet } from '../src/protocol/packets.js';
import { ListenerAuthenticator } from '../src/security/authn/listener-authenticator.js';
import { DefaultAuthorizer } from '../src/security/authz/default-authorizer.js';

/** A connection that only counts what the broker writes to it. */
class CountingPort implements ConnectionPort {
  readonly remoteAddress = '127.0.0.1';
  readonly listenerName = 'memory';
  readonly allowAnonymous = true;
  readonly peer = null;
  readonly congested = false;
  bytes = 0;
  writes = 0;
  write(bytes: Buffer): void {
    this.bytes += bytes.length;
    this.writes++;
  }
  end(): void {}
  pauseReading(): void {}
  resumeReading(): void {}
  onDrain(cb: () => void): void {
    cb();
  }
}

/** A client as a connection drives its channel: bytes in, frames out of the framer, decoded. */
class Client {
  readonly port = new CountingPort();
  readonly channel: Channel;
  private readonly framer = new FrameReader(1024 * 1024);
  private readonly decoder = new PacketDecoder();
  private readonly target: FrameTarget = {
    frame: (bytes, start, end) => {
      const packet = this.decoder.decodeAt(bytes, start, end);
      this.channel.handlePacket(packet, this.decoder.frameNeeded ? bytes.subarray(start, end) : null);
    },
    readingStopped: () => false,
  };

  constructor(broker: Broker) {
    this.channel = new Channel(this.port, broker);
  }

  send(bytes: Buffer): void {
    this.framer.push(bytes, this.target);
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function main(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with node --expose-gc');
  const measured = Number(process.argv[2] ?? 10_000);
  const batch = 100;
  const broker = new Broker({ authenticator: new ListenerAuthenticator(), authorizer: new DefaultAuthorizer() });
  const connect = (clientId: string): Buffer => encodePacket({ cmd: 'connect', protocolVersion: 4, protocolId: 'MQTT', clientId, clean: true, keepalive: 0 } as Packet, 4);
  const sub = new Client(broker);
  sub.send(connect('alloc-sub'));
  sub.send(encodePacket({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'devices/alloc-pub/#', qos: 0 }] } as Packet, 4));
  const pub = new Client(broker);
  pub.send(connect('alloc-pub'));
  const publish = encodePacket({ cmd: 'publish', topic: 'devices/alloc-pub/telemetry', payload: Buffer.alloc(64, 7), qos: 0, dup: false, retain: false } as Packet, 4);
  const run = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i += batch) {
      for (let j = 0; j < batch; j++) pub.send(publish);
      await turn();
    }
  };
  await run(50_000);
  let gcs = 0;
  const observer = new PerformanceObserver((list) => {
    gcs += list.getEntries().length;
  });
  gc();
  await turn();
  observer.observe({ entryTypes: ['gc'] });
  const deliveredBefore = sub.port.writes;
  const before = process.memoryUsage().heapUsed;
  await run(measured);
  const after = process.memoryUsage().heapUsed;
  await turn();
  observer.disconnect();
  const delivered = sub.port.writes - deliveredBefore;
  process.stdout.write(
    `${JSON.stringify({ node: process.version, messages: measured, delivered, bytesPerMessage: Math.round((after - before) / measured), gcDuringMeasure: gcs, valid: gcs === 0 && delivered > 0 })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`alloc-probe: ${(err as Error).message}\n`);
  process.exit(1);
});
