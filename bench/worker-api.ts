/**
 * The contract between the bench coordinator (run.ts) and its load-generating worker
 * threads. Owns: role descriptions, report messages, and the layout of the shared
 * counters. Must not: contain behaviour (worker.ts and run.ts do).
 */

/** Indexes into the Int32Array over the shared counters buffer. */
export const Counter = {
  /** PUBLISH packets handed to the socket by publishers. */
  Sent: 0,
  /** PUBACKs received by publishers. */
  Puback: 1,
  /** PUBLISH packets received by subscribers (deliveries). */
  Received: 2,
  /** Completed CONNECT→CONNACK exchanges. */
  Connects: 3,
  /** Failed connection attempts (refused, TLS error, bad CONNACK, timeout). */
  ConnectFails: 4,
  /** Deliveries the end-to-end window stopped waiting for (presumed dropped by the broker). */
  Forgiven: 5,
  /** Set to 1 by the coordinator: stop generating. */
  Stop: 6,
  /** Set to 1 by the coordinator while latency samples should be recorded. */
  Measuring: 7,
  /** Connections that closed or failed while the run was going. */
  SocketErrors: 8,
  /** Times a publisher waited because the end-to-end window was full. */
  GateWaits: 9,
  /** Connections whose TLS handshake resumed an earlier session (no certificate exchange). */
  Resumed: 10,
  /**
   * Connector with `countBytes`: TLS bytes the client wrote on its TCP socket from connect
   * to CONNACK, less the CONNECT record (handshake: ClientHello(s), certificate, Finished).
   */
  HandshakeBytesOut: 11,
  /** The same read by the client, less the CONNACK record (HelloRetryRequest, server flight, session tickets). */
  HandshakeBytesIn: 12,
  /** Bytes the client had written when its handshake completed ('secureConnect'): its ClientHello(s). */
  HelloBytesOut: 13,
  /** Bytes the client had read when its handshake completed: HelloRetryRequest and the server's flight, no tickets. */
  ServerFlightBytesIn: 14,
  /** Connections whose negotiated group was not the client's first (the only one it sent a key share for): a HelloRetryRequest. */
  GroupFallbacks: 15,
} as const;
export const COUNTER_SLOTS = 16;

export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
  /**
   * The client's key-exchange groups (Node's `ecdhCurve`, OpenSSL's list); undefined: Node's
   * defaults (with OpenSSL 3.5: key shares for X25519MLKEM768 and X25519). With an explicit
   * list OpenSSL sends a key share for the first group only.
   */
  groups?: string;
}

export interface Target {
  host: string;
  port: number;
  /** null: plain TCP. */
  tls: TlsMaterial | null;
}

interface RoleBase {
  target: Target;
  version: 4 | 5;
}

/** Publishes pre-encoded messages as fast as the windows allow. */
export interface PublisherRole extends RoleBase {
  kind: 'publisher';
  /** One pre-encoded CONNECT per connection this worker opens. */
  connects: Uint8Array[];
  /** One pre-encoded PUBLISH per connection (QoS 1: packet id patched per message). */
  publishes: Uint8Array[];
  qos: 0 | 1;
  /** Messages per write. */
  batch: number;
  /** QoS 1: unacknowledged messages allowed per connection. */
  window: number;
  /** Deliveries each published message should produce (subscribers matching it). */
  fanout: number;
  /** Deliveries allowed to be in the broker (sent × fanout − received) before publishers wait. */
  e2eWindow: number;
}

/** Subscribes, counts deliveries by scanning frames, acknowledges QoS 1 in batches. */
export interface SubscriberRole extends RoleBase {
  kind: 'subscriber';
  connects: Uint8Array[];
  subscribe: Uint8Array;
  /** Batch reads by pausing briefly after small reads (QoS 0 throughput only; adds latency). */
  coalesceReads: boolean;
}

/** Publishes at a fixed rate with a monotonic timestamp (ns, uint64 LE) at the payload start. */
export interface LatencyPublisherRole extends RoleBase {
  kind: 'latency-publisher';
  connect: Uint8Array;
  publish: Uint8Array;
  rate: number;
}

/** Subscribes and records one-way latency samples while Counter.Measuring is set. */
export interface LatencySubscriberRole extends RoleBase {
  kind: 'latency-subscriber';
  connect: Uint8Array;
  subscribe: Uint8Array;
  capacity: number;
}

/** Opens, completes and closes connections in a loop (connection setup rate). */
export interface ConnectorRole extends RoleBase {
  kind: 'connector';
  /** CONNECT with a fixed-width client-id placeholder at `clientIdOffset`. */
  connectTemplate: Uint8Array;
  clientIdOffset: number;
  concurrency: number;
  maxConnects: number;
  /** Offer each lane's last TLS session again (tickets), to measure resumed handshakes. */
  resume: boolean;
  /** TLS: count the bytes on each connection's TCP socket (counters HandshakeBytesOut to ServerFlightBytesIn). */
  countBytes: boolean;
}

/** Opens `count` connections and holds them idle until stopped. */
export interface IdleRole extends RoleBase {
  kind: 'idle';
  connectTemplate: Uint8Array;
  clientIdOffset: number;
  count: number;
  concurrency: number;
}

export type Role = PublisherRole | SubscriberRole | LatencyPublisherRole | LatencySubscriberRole | ConnectorRole | IdleRole;

export interface WorkerInit {
  role: Role;
  counters: SharedArrayBuffer;
  /** Distinguishes client ids across workers. */
  index: number;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  /** Samples not recorded because the sample buffer was full. */
  overflow: number;
}

export type CoordinatorMessage = { type: 'start' } | { type: 'stop' };

export type WorkerReport =
  | { type: 'ready'; opened: number; failed: number }
  | { type: 'fatal'; message: string }
  | { type: 'done'; latency: LatencySummary | null; behind: number; errors: string[]; tlsGroups: Record<string, number> };
