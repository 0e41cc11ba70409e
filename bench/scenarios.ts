/**
 * The bench scenarios. Owns: the list the runner picks from: each scenario's number, id,
 * title, reported metrics, persistence setting and the load it runs (scenario-runs.ts
 * builds the loads; measure.ts times the warm-up and measurement windows). Must not: start
 * or stop brokers (run.ts does) or touch sockets (workers do).
 */
import { connectRate, idleMemory, latency, pubSub, type PubSubShape } from './scenario-runs.js';
import type { Scenario, ServerKey } from './scenario-api.js';

/** A TLS-only connection-rate scenario (scenario 5 is the full P-256 handshake over both transports). */
function handshake(n: number, id: string, title: string, serverKey: ServerKey, resume: boolean): Scenario {
  return {
    n,
    id,
    title,
    metrics: [
      { key: 'rate', label: resume ? 'resumed handshake + CONNACK' : 'full handshake + CONNACK', unit: 'conn/s', lowerIsBetter: false },
      { key: 'brokerMsPerConn', label: 'broker CPU per connection', unit: 'ms', lowerIsBetter: true },
    ],
    persistence: false,
    tlsOnly: true,
    serverKey,
    // The figure is the handshake's cost, not the per-address rate limit's (20/s by default).
    raiseConnectionLimits: true,
    run: (ctx) => connectRate(ctx, { resume }),
  };
}

/**
 * The client's key-exchange groups in the key-exchange scenarios. Hybrid: a key share for
 * X25519MLKEM768 only, X25519 accepted after a HelloRetryRequest (a hybrid-first client
 * against a server that lacks the hybrid, e.g. Mosquitto 2.0.11 on OpenSSL 3.0; with
 * X25519MLKEM768 alone that handshake fails). Classic: X25519 only.
 */
export const HYBRID_CLIENT_GROUPS = 'X25519MLKEM768:X25519';
export const CLASSIC_CLIENT_GROUPS = 'X25519';

/**
 * A TLS-only key-exchange scenario: mTLS with the P-256 server certificate, the client's
 * groups forced, the handshake's bytes counted on the client's TCP socket.
 */
function keyExchange(n: number, id: string, title: string, groups: string, resume: boolean): Scenario {
  const what = resume ? 'resumed handshake' : 'full handshake';
  return {
    n,
    id,
    title,
    metrics: [
      { key: 'rate', label: `${what} + CONNACK`, unit: 'conn/s', lowerIsBetter: false },
      { key: 'brokerMsPerConn', label: 'broker CPU per connection', unit: 'ms', lowerIsBetter: true },
      { key: 'bytesOut', label: `${what} bytes client→server`, unit: 'B/conn', lowerIsBetter: true },
      { key: 'bytesIn', label: `${what} bytes server→client`, unit: 'B/conn', lowerIsBetter: true },
    ],
    persistence: false,
    tlsOnly: true,
    serverKey: 'ec-p256',
    // The figure is the handshake's cost, not the per-address rate limit's (20/s by default).
    raiseConnectionLimits: true,
    run: (ctx) => connectRate(ctx, { resume, groups, countBytes: true }),
  };
}

const fanIn = (qos: 0 | 1, durable: boolean): PubSubShape => ({
  publishers: 4,
  publisherWorkers: 2,
  subscribers: 1,
  subscriberWorkers: 1,
  qos,
  topics: 'per-publisher',
  batch: qos === 0 ? 32 : 16,
  window: 64,
  e2eWindow: qos === 0 ? 10_000 : 5_000,
  durableSubscriber: durable,
});

export const SCENARIOS: Scenario[] = [
  {
    n: 1,
    id: 'qos0-fanin',
    title: 'QoS 0 fan-in 4→1',
    metrics: [{ key: 'rate', label: 'received', unit: 'msg/s', lowerIsBetter: false }],
    persistence: false,
    run: (ctx) => pubSub(ctx, fanIn(0, false)),
  },
  {
    n: 2,
    id: 'qos1-fanin',
    title: 'QoS 1 fan-in 4→1',
    metrics: [{ key: 'rate', label: 'received+acked', unit: 'msg/s', lowerIsBetter: false }],
    persistence: false,
    run: (ctx) => pubSub(ctx, fanIn(1, false)),
  },
  {
    n: 3,
    id: 'fanout',
    title: 'QoS 0 fan-out 1→50',
    metrics: [{ key: 'rate', label: 'deliveries', unit: 'msg/s', lowerIsBetter: false }],
    persistence: false,
    run: (ctx) =>
      pubSub(ctx, {
        publishers: 1,
        publisherWorkers: 1,
        subscribers: 50,
        subscriberWorkers: 2,
        qos: 0,
        topics: 'shared',
        batch: 8,
        window: 64,
        e2eWindow: 50 * 400,
        durableSubscriber: false,
      }),
  },
  {
    n: 4,
    id: 'latency',
    title: 'latency @10k msg/s QoS 0',
    metrics: [
      { key: 'p50', label: 'p50', unit: 'µs', lowerIsBetter: true },
      { key: 'p99', label: 'p99', unit: 'µs', lowerIsBetter: true },
      { key: 'p999', label: 'p99.9', unit: 'µs', lowerIsBetter: true },
    ],
    persistence: false,
    // One Mosquitto p99 was 604 µs in one run and 2,007 µs in another: a single run says little.
    minRepeat: 3,
    run: latency,
  },
  {
    n: 5,
    id: 'connect-rate',
    title: 'connection setup',
    metrics: [
      { key: 'rate', label: 'CONNECT→CONNACK', unit: 'conn/s', lowerIsBetter: false },
      { key: 'brokerMsPerConn', label: 'broker CPU per connection', unit: 'ms', lowerIsBetter: true },
    ],
    persistence: false,
    raiseConnectionLimits: true,
    run: connectRate,
  },
  {
    n: 6,
    id: 'idle-memory',
    title: 'memory per idle connection',
    metrics: [{ key: 'kbPerConn', label: 'RSS', unit: 'KB/conn', lowerIsBetter: true }],
    persistence: false,
    run: idleMemory,
  },
  {
    n: 7,
    id: 'durable-qos1',
    title: 'durable QoS 1 fan-in 4→1',
    metrics: [{ key: 'rate', label: 'received+acked', unit: 'msg/s', lowerIsBetter: false }],
    persistence: true,
    run: (ctx) => pubSub(ctx, fanIn(1, true)),
  },
  handshake(8, 'connect-resumed', 'mTLS resumed handshake (ticket), P-256 server', 'ec-p256', true),
  handshake(9, 'connect-full-rsa', 'mTLS full handshake, RSA-2048 server', 'rsa-2048', false),
  handshake(10, 'connect-resumed-rsa', 'mTLS resumed handshake (ticket), RSA-2048 server', 'rsa-2048', true),
  keyExchange(11, 'kex-hybrid-full', 'mTLS full, client X25519MLKEM768 first (Mosquitto: retry → X25519)', HYBRID_CLIENT_GROUPS, false),
  keyExchange(12, 'kex-x25519-full', 'mTLS full, client X25519 only', CLASSIC_CLIENT_GROUPS, false),
  keyExchange(13, 'kex-hybrid-resumed', 'mTLS resumed, client X25519MLKEM768 first (Mosquitto: retry → X25519)', HYBRID_CLIENT_GROUPS, true),
  keyExchange(14, 'kex-x25519-resumed', 'mTLS resumed, client X25519 only', CLASSIC_CLIENT_GROUPS, true),
];
