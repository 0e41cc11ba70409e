/**
 * Shared scaffolding for the conformance tests (Mosquitto's style): a real broker per test
 * on port 0, byte-level clients that are cleaned up with it, and builders for hand-made
 * frames. Every wait is on an event (a packet, a close, a broker state change) with a
 * timeout. Must not: be imported by src/ (test-only).
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { Packet } from '../../src/protocol/packets.js';
import { startTestBroker, type TestBroker, type TestBrokerOptions } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';

/** MQTT 3.1.1 (protocol level 4) and MQTT 5. */
export const VERSIONS = [4, 5] as const;
export type Version = (typeof VERSIONS)[number];

export type ConnectPacket = Extract<Packet, { cmd: 'connect' }>;
export type ConnackPacket = Extract<Packet, { cmd: 'connack' }>;
export type PublishPacket = Extract<Packet, { cmd: 'publish' }>;
export type SubscribePacket = Extract<Packet, { cmd: 'subscribe' }>;
export type DisconnectPacket = Extract<Packet, { cmd: 'disconnect' }>;

export function vname(v: Version): string {
  return v === 5 ? 'v5' : 'v3.1.1';
}

/** A client with its protocol version, so tests need not repeat it on every send. */
export class Peer {
  constructor(
    readonly raw: RawClient,
    readonly version: Version,
    readonly clientId: string,
  ) {}

  send(packet: Packet): void {
    this.raw.send(packet, this.version);
  }

  sendBytes(bytes: Buffer | number[]): void {
    this.raw.sendBytes(bytes);
  }

  next(timeoutMs?: number): Promise<Packet> {
    return this.raw.next(timeoutMs);
  }

  expect<C extends Packet['cmd']>(cmd: C, timeoutMs?: number): Promise<Extract<Packet, { cmd: C }>> {
    return this.raw.expect(cmd, timeoutMs);
  }

  expectClose(timeoutMs?: number): Promise<Packet[]> {
    return this.raw.expectClose(timeoutMs);
  }

  expectNothingBeforePing(): Promise<void> {
    return this.raw.expectNothingBeforePing(this.version);
  }

  /** SUBSCRIBE and its SUBACK; returns the granted codes. */
  async subscribe(subscriptions: SubscribePacket['subscriptions'], properties?: SubscribePacket['properties'], messageId = 1): Promise<number[]> {
    const packet: SubscribePacket = { cmd: 'subscribe', messageId, subscriptions };
    if (properties !== undefined) packet.properties = properties;
    this.send(packet);
    const suback = await this.expect('suback');
    assert.equal(suback.messageId, messageId);
    return suback.granted as number[];
  }

  /** PUBLISH and, for QoS 1/2, the whole acknowledgement flow; returns the first ack's reason code. */
  async publish(topic: string, payload: string | Buffer, opts: { qos?: 0 | 1 | 2; retain?: boolean; messageId?: number; properties?: PublishPacket['properties'] } = {}): Promise<number | undefined> {
    const qos = opts.qos ?? 0;
    const packet: PublishPacket = { cmd: 'publish', topic, payload, qos, retain: opts.retain ?? false, dup: false };
    if (qos > 0) packet.messageId = opts.messageId ?? 1;
    if (opts.properties !== undefined) packet.properties = opts.properties;
    this.send(packet);
    if (qos === 0) return undefined;
    if (qos === 1) {
      const ack = await this.expect('puback');
      assert.equal(ack.messageId, packet.messageId);
      return ack.reasonCode ?? 0;
    }
    const rec = await this.expect('pubrec');
    assert.equal(rec.messageId, packet.messageId);
    this.send({ cmd: 'pubrel', messageId: packet.messageId! });
    const comp = await this.expect('pubcomp');
    assert.equal(comp.messageId, packet.messageId);
    return rec.reasonCode ?? 0;
  }

  /**
   * Collects the PUBLISH packets that arrive before the PINGRESP of a ping sent now: the
   * server answers one connection in order, so this is everything already routed to it.
   */
  async drainPublishes(): Promise<PublishPacket[]> {
    this.send({ cmd: 'pingreq' });
    const out: PublishPacket[] = [];
    for (;;) {
      const p = await this.next();
      if (p.cmd === 'pingresp') return out;
      assert.equal(p.cmd, 'publish', `unexpected ${JSON.stringify(p)}`);
      out.push(p as PublishPacket);
    }
  }

  /**
   * A QoS 0 round trip that proves every earlier packet from this client was processed:
   * the server handles one connection's packets in order, so PINGRESP comes after.
   */
  async sync(): Promise<void> {
    this.send({ cmd: 'pingreq' });
    await this.expect('pingresp');
  }

  destroy(): void {
    this.raw.destroy();
  }
}

/** A broker for one test, with every client it opened closed at the end. */
export class Harness {
  private readonly clients: RawClient[] = [];
  private seq = 0;

  constructor(readonly tb: TestBroker) {}

  get port(): number {
    return this.tb.plainPort;
  }

  get broker() {
    return this.tb.server.broker;
  }

  /** A unique client id for this test. */
  id(prefix = 'c'): string {
    return `${prefix}-${++this.seq}-${process.pid}`;
  }

  /** A TCP connection that has sent nothing yet. */
  async socket(version: Version = 4): Promise<RawClient> {
    const c = await RawClient.connect(this.port, version);
    this.clients.push(c);
    return c;
  }

  /** Sends CONNECT and returns the CONNACK without judging it. */
  async connectRaw(version: Version, clientId: string, extra: Partial<ConnectPacket> = {}): Promise<{ peer: Peer; connack: ConnackPacket }> {
    const raw = await this.socket(version);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId, clean: true, keepalive: 60, ...extra }, version);
    const connack = await raw.expect('connack');
    return { peer: new Peer(raw, version, clientId), connack };
  }

  /** Sends hand-built CONNECT bytes and returns the CONNACK without judging it. */
  async connectBytes(version: Version, bytes: Buffer): Promise<{ peer: Peer; connack: ConnackPacket }> {
    const raw = await this.socket(version);
    raw.sendBytes(bytes);
    const connack = await raw.expect('connack');
    return { peer: new Peer(raw, version, ''), connack };
  }

  /** CONNECT that must succeed. */
  async connect(version: Version, clientId = this.id(), extra: Partial<ConnectPacket> = {}): Promise<Peer> {
    const { peer, connack } = await this.connectRaw(version, clientId, extra);
    assert.equal(version === 5 ? connack.reasonCode : connack.returnCode, 0, `CONNACK for ${clientId}: ${JSON.stringify(connack)}`);
    return peer;
  }

  /** Proves the broker still accepts and serves a new client (no crash, no wedge). */
  async assertAlive(version: Version): Promise<void> {
    const a = await this.connect(version);
    assert.deepEqual(await a.subscribe([{ topic: 'alive/check', qos: 1 }]), [1]);
    const b = await this.connect(version);
    await b.publish('alive/check', 'yes', { qos: 1 });
    const p = await a.expect('publish');
    assert.equal(p.topic, 'alive/check');
    assert.equal(p.payload.toString(), 'yes');
    a.destroy();
    b.destroy();
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.destroy();
    await this.tb.stop();
  }
}

/** Starts a broker for the test and stops it (and its clients) when the test ends. */
export async function harness(t: TestContext, opts: TestBrokerOptions = {}): Promise<Harness> {
  const h = new Harness(await startTestBroker(opts));
  t.after(() => h.close());
  return h;
}

/** Waits for a condition on broker state, re-checking on each event-loop turn, with a timeout. */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// ---- hand-built frames ----

export function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

/** Variable byte integer [MQTT-1.5.5]. */
export function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** A length-prefixed string from raw bytes (so tests can put ill-formed UTF-8 in it). */
export function str(bytes: number[] | string): number[] {
  const b = typeof bytes === 'string' ? [...Buffer.from(bytes, 'utf8')] : bytes;
  return [...u16(b.length), ...b];
}

/** Fixed header byte + remaining length + body. */
export function frame(first: number, body: number[]): Buffer {
  return Buffer.from([first, ...varint(body.length), ...body]);
}

/**
 * A CONNECT built by hand (mqtt-packet refuses to encode some cases the broker must
 * handle, such as an empty client id with clean session 0). No will, user name or password.
 */
export function rawConnect(version: Version, clientId: string, opts: { clean?: boolean; keepalive?: number; level?: number; flags?: number } = {}): Buffer {
  const flags = opts.flags ?? (opts.clean === false ? 0x00 : 0x02);
  return frame(0x10, [...str('MQTT'), opts.level ?? version, flags, ...u16(opts.keepalive ?? 60), ...(version === 5 ? [0] : []), ...str(clientId)]);
}

/** A QoS 0 PUBLISH whose topic is given as raw bytes. */
export function rawPublish(version: Version, topicBytes: number[], payload = 'x'): Buffer {
  return frame(0x30, [...str(topicBytes), ...(version === 5 ? [0] : []), ...Buffer.from(payload)]);
}

/** The reason code of the last DISCONNECT among packets received before a close, if any. */
export function disconnectCode(packets: Packet[]): number | undefined {
  const d = packets.filter((p): p is DisconnectPacket => p.cmd === 'disconnect');
  assert.ok(d.length <= 1, `at most one DISCONNECT: ${JSON.stringify(packets)}`);
  return d[0] === undefined ? undefined : (d[0].reasonCode ?? 0);
}

/**
 * Asserts the server closed the connection and, on v5, said why with exactly one
 * DISCONNECT carrying `code` as the last packet; on v3.1.1 nothing but a close.
 */
export async function expectServerDisconnect(peer: Peer, code: number, timeoutMs = 3000): Promise<Packet[]> {
  const packets = await peer.expectClose(timeoutMs);
  if (peer.version === 5) {
    const last = packets[packets.length - 1];
    assert.equal(last?.cmd, 'disconnect', `expected DISCONNECT 0x${code.toString(16)} before close, got ${JSON.stringify(packets)}`);
    assert.equal(disconnectCode(packets), code, `DISCONNECT reason code`);
  } else {
    assert.equal(packets.filter((p) => p.cmd === 'disconnect').length, 0, 'no DISCONNECT from a v3.1.1 server');
  }
  return packets;
}
