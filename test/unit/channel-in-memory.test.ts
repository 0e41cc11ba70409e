/**
 * The channel as a pure state machine: a whole broker driven through in-memory
 * connection ports, no sockets (Aedes' style), to show protocol rules are testable alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket from 'mqtt-packet';
import { Broker } from '../../src/broker/broker.js';
import { Channel } from '../../src/broker/channel/channel.js';
import type { ConnectionPort, TlsPeer } from '../../src/broker/channel/connection-port.js';
import type { Packet } from '../../src/protocol/packets.js';
import { PacketDecoder, encodePacket } from '../../src/protocol/codec.js';
import { DefaultAuthorizer } from '../../src/security/authz/default-authorizer.js';
import { brokerCounts, brokerStats } from '../../src/broker/sys/broker-stats.js';
import { ListenerAuthenticator } from '../../src/security/authn/listener-authenticator.js';

class RecordingPort implements ConnectionPort {
  readonly remoteAddress = '127.0.0.1';
  readonly listenerName = 'memory';
  congested = false;
  ended = false;
  readonly out: Packet[] = [];
  /** Called with each packet the broker writes, as it writes it. */
  onPacket: ((p: Packet) => void) | null = null;
  private readonly parser = mqttPacket.parser({ protocolVersion: 5 });
  constructor(
    readonly allowAnonymous: boolean,
    readonly peer: TlsPeer | null = null,
  ) {
    this.parser.on('packet', (p: Packet) => {
      this.out.push(p);
      this.onPacket?.(p);
    });
  }
  private parsing = false;
  private readonly later: Buffer[] = [];
  write(bytes: Buffer): void {
    // The parser is not re-entrant: bytes written while onPacket runs are parsed after it.
    this.later.push(bytes);
    if (this.parsing) return;
    this.parsing = true;
    try {
      for (let next = this.later.shift(); next !== undefined; next = this.later.shift()) this.parser.parse(next);
    } finally {
      this.parsing = false;
    }
  }
  end(): void {
    this.ended = true;
  }
  pauseReading(): void {}
  resumeReading(): void {}
  onDrain(cb: () => void): void {
    cb();
  }
}

function newBroker(): Broker {
  return new Broker({ authenticator: new ListenerAuthenticator(), authorizer: new DefaultAuthorizer() });
}

/** One decoder per channel, as a connection has: it learns the version from CONNECT. */
const decoders = new Map<Channel, PacketDecoder>();

/** As a connection feeds its channel: a fast-path PUBLISH or acknowledgement comes without its frame. */
function feed(ch: Channel, packet: Packet): void {
  const frame = encodePacket(packet, 5);
  let decoder = decoders.get(ch);
  if (decoder === undefined) {
    decoder = new PacketDecoder();
    decoders.set(ch, decoder);
  }
  const decoded = decoder.decodeAt(frame, 0, frame.length);
  ch.handlePacket(decoded, decoder.frameNeeded ? frame : null);
}

const topicsOf = (port: RecordingPort): string[] => port.out.filter((p) => p.cmd === 'publish').map((p) => (p as { topic: string }).topic);

function connect(broker: Broker, clientId: string, port = new RecordingPort(true)): { ch: Channel; port: RecordingPort } {
  const ch = new Channel(port, broker);
  feed(ch, { cmd: 'connect', protocolVersion: 5, protocolId: 'MQTT', clientId, clean: true, keepalive: 0 });
  return { ch, port };
}

test('connect, subscribe and publish flow through channels with no socket', () => {
  const broker = newBroker();
  const sub = connect(broker, 'sub');
  assert.equal(sub.port.out[0]?.cmd, 'connack');
  feed(sub.ch, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/+', qos: 1 }] });
  assert.deepEqual((sub.port.out[1] as { granted: number[] }).granted, [1]);

  const pub = connect(broker, 'pub');
  feed(pub.ch, { cmd: 'publish', topic: 'a/b', payload: Buffer.from('hi'), qos: 1, dup: false, retain: false, messageId: 7 });
  const ack = pub.port.out[1];
  assert.equal(ack?.cmd, 'puback');
  const delivered = sub.port.out[2];
  assert.equal(delivered?.cmd, 'publish');
  assert.equal((delivered as { topic: string }).topic, 'a/b');
});

test('a refused anonymous client gets CONNACK 0x87 and is closed', () => {
  const broker = newBroker();
  const { port } = connect(broker, 'anon', new RecordingPort(false));
  assert.equal(port.out[0]?.cmd, 'connack');
  assert.equal((port.out[0] as { reasonCode: number }).reasonCode, 0x87);
  assert.equal(port.ended, true);
});

test('a verified certificate admits its common name as the principal', () => {
  const broker = newBroker();
  const { ch, port } = connect(broker, 'dev-1', new RecordingPort(false, { method: 'certificate', identity: 'dev-1', source: 'cn', clientIdMustMatch: false, certificate: { commonName: 'dev-1', serialNumber: '01', fingerprint256: 'AA', issuer: 'CN=ca', subject: 'CN=dev-1', organizationalUnits: [], sans: { dns: [], uri: [], ip: [], email: [] } } }));
  assert.equal((port.out[0] as { reasonCode: number }).reasonCode, 0);
  assert.equal(ch.client?.principal, 'dev-1');
});

test('an administrative disconnect closes the selected clients with the reason code, and an admission guard refuses them afterwards', () => {
  const broker = newBroker();
  const doomed = connect(broker, 'doomed');
  const bystander = connect(broker, 'bystander');
  const kicked = broker.disconnectWhere((c) => c.clientId === 'doomed', 0x98, 'certificate revoked');
  assert.deepEqual(kicked, ['doomed']);
  const disconnect = doomed.port.out.at(-1) as { cmd: string; reasonCode: number; properties?: { reasonString?: string } };
  assert.equal(disconnect.cmd, 'disconnect');
  assert.equal(disconnect.reasonCode, 0x98);
  assert.equal(disconnect.properties?.reasonString, 'certificate revoked');
  assert.equal(doomed.port.ended, true);
  assert.equal(bystander.port.ended, false);

  broker.addAdmissionGuard((c) => (c.clientId === 'doomed' ? { reasonCode: 0x87, reason: 'certificate revoked' } : null));
  const again = connect(broker, 'doomed');
  const connack = again.port.out[0] as { cmd: string; reasonCode: number };
  assert.equal(connack.cmd, 'connack');
  assert.equal(connack.reasonCode, 0x87);
  assert.equal(connect(broker, 'other').port.out[0]?.cmd, 'connack');
  assert.equal((broker.sessions.has('doomed')), false);
});

test('a publish made while a delivery is being written reaches every subscriber, and so does the first one', () => {
  const broker = newBroker();
  const a = connect(broker, 'a');
  const b = connect(broker, 'b');
  for (const s of [a, b]) feed(s.ch, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 0 }] });
  const pub = connect(broker, 'pub');
  // The second socket to take the first message publishes a new one before that fan-out returns.
  let taken = 0;
  const nest = (p: Packet): void => {
    if (p.cmd === 'publish' && (p as { topic: string }).topic === 'a/first' && ++taken === 2) feed(pub.ch, { cmd: 'publish', topic: 'a/nested', payload: Buffer.from('2'), qos: 0, dup: false, retain: false });
  };
  a.port.onPacket = nest;
  b.port.onPacket = nest;
  const outcome = broker.publish({ topic: 'a/first', payload: Buffer.from('1'), qos: 0, retain: false, properties: undefined, expiresAt: 0, origin: '' });
  assert.equal(outcome.matched, 2, 'the first fan-out counts its own deliveries, not the nested one');
  for (const s of [a, b]) assert.deepEqual(topicsOf(s.port).sort(), ['a/first', 'a/nested'], s.ch.clientId);
});

test('a client changing topics between publishes: each message is routed by its own topic', () => {
  const broker = newBroker();
  const plus = connect(broker, 'plus');
  feed(plus.ch, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/+', qos: 0 }] });
  const hash = connect(broker, 'hash');
  feed(hash.ch, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'x/#', qos: 0 }] });
  const pub = connect(broker, 'pub');
  for (const topic of ['a/b', 'x/y', 'a/b', 'a/c', 'x/y/z', 'a/b/c']) feed(pub.ch, { cmd: 'publish', topic, payload: Buffer.from(topic), qos: 0, dup: false, retain: false });
  assert.deepEqual(topicsOf(plus.port), ['a/b', 'a/b', 'a/c']);
  assert.deepEqual(topicsOf(hash.port), ['x/y', 'x/y/z']);
});

test('the once-a-second counts (no walk over the sessions) agree with the full stats', () => {
  const broker = newBroker();
  const a = connect(broker, 'a');
  const b = connect(broker, 'b');
  feed(a.ch, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'x/#', qos: 0 }, { topic: 'x/+', qos: 1 }, { topic: '$share/g/jobs/+', qos: 1 }] });
  feed(b.ch, { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'x/#', qos: 0 }, { topic: '$share/g/jobs/+', qos: 1 }] });
  feed(b.ch, { cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['x/#'] });
  const full = brokerStats(broker);
  const counts = brokerCounts(broker);
  assert.deepEqual(counts, { connected: full.connected, sessions: full.sessions, subscriptions: full.subscriptions });
  assert.deepEqual(counts, { connected: 2, sessions: 2, subscriptions: 4 });
});
