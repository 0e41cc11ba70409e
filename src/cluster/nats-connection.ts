/**
 * This node's one connection to NATS (issue 12). Owns: turning the `cluster.nats` config
 * into a connected client (servers, secrets read from their files, TLS), naming the
 * connection after the node id, detecting what the connected server can do
 * (`NatsFeatures`), reporting disconnects and reconnects, and closing. Must not: route MQTT
 * messages or hold session state (that comes next, on top of this).
 *
 * Consumers and the close: every JetStream consumer this node makes (a KV watch or key
 * listing, an object store read, a replay fetch) is made through `consumer()`. Once
 * `close()` has begun none is made, and the connection closes only after those being made
 * have settled. Why: @nats-io/jetstream 3.4.0 starts a push consumer's idle-heartbeat timer
 * before it subscribes; a consumer made while the client is closing (or after) either
 * throws with that timer already running, or subscribes after the client closed its
 * subscriptions and is never told of the close. Either way the timer outlives the
 * connection, resets the consumer on it every few seconds (ClosedConnectionError) and keeps
 * the process from exiting.
 *
 * SECURITY: fail closed. A first connection that does not succeed within
 * `connectTimeoutSeconds` (bad credentials, no server, no TLS where TLS is configured, a
 * server without JetStream or older than 2.9.4) throws one readable line naming the
 * servers; nothing runs half-connected. Secrets are read here, never logged, and never
 * taken from the config text itself (cluster-config.ts).
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { AuthorizationError, connect, TimeoutError, credsAuthenticator, nkeyAuthenticator, type ConnectionOptions, type NatsConnection, type ServerInfo, type Status } from '@nats-io/transport-node';
import { BastionError } from '../core/errors.js';
import type { ClusterConfig } from '../core/cluster-config.js';
import type { Logger } from '../core/logger.js';

/** What the connected nats-server can do; cluster code picks its strategy from this, not from guesses. */
export interface NatsFeatures {
  /** The server's version as it reports it, e.g. `2.9.10`. */
  version: string;
  major: number;
  minor: number;
  patch: number;
  jetstream: boolean;
  /** ≥ 2.10: one consumer with several `filter_subjects` (2.9: one filter per consumer, merged by stream sequence). */
  multiFilterConsumers: boolean;
  /** ≥ 2.10: a KV watch over several keys at once (2.9: one key or one wildcard per watch). */
  kvMultiKeyWatch: boolean;
  /** The largest message the server takes (bytes; nats-server's default is 1 MiB). */
  maxPayload: number;
}

/** The oldest nats-server the cluster layer supports: the JetStream consumers API (JS_SIMPLIFICATION). */
export const MIN_NATS_VERSION = { major: 2, minor: 9, patch: 4 } as const;

function atLeast(f: { major: number; minor: number; patch: number }, v: { major: number; minor: number; patch: number }): boolean {
  if (f.major !== v.major) return f.major > v.major;
  if (f.minor !== v.minor) return f.minor > v.minor;
  return f.patch >= v.patch;
}

/** Features from the server's INFO (a pre-release such as `2.11.0-RC.1` counts as its release). */
export function detectFeatures(info: Pick<ServerInfo, 'version' | 'jetstream' | 'max_payload'>): NatsFeatures {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(info.version);
  const [major, minor, patch] = m === null ? [0, 0, 0] : [Number(m[1]), Number(m[2]), Number(m[3])];
  const v = { major, minor, patch };
  const v210 = atLeast(v, { major: 2, minor: 10, patch: 0 });
  return { version: info.version, major, minor, patch, jetstream: info.jetstream === true, multiFilterConsumers: v210, kvMultiKeyWatch: v210, maxPayload: info.max_payload };
}

/** What the connection reports while it lives. */
export type NatsStatusEvent =
  | { type: 'disconnect'; server: string }
  | { type: 'reconnecting' }
  /** Connected again, possibly to another server: its features are re-read. */
  | { type: 'reconnect'; server: string; features: NatsFeatures }
  /** The server is going away (lame duck mode): reconnect elsewhere soon. */
  | { type: 'lame-duck'; server: string }
  | { type: 'error'; message: string }
  /** Closed for good: by `close()`, or the client gave up (e.g. credentials refused twice). */
  | { type: 'close'; error?: string };

export interface ClusterNatsConnection {
  /** The client, for the cluster layer's JetStream and KV use. */
  readonly nc: NatsConnection;
  readonly nodeId: string;
  /** The NATS connection name the servers show (`/connz`): `bastion:<nodeId>`. */
  readonly name: string;
  /** The connected server's features; updated on every reconnect. */
  readonly features: NatsFeatures;
  /** host:port of the connected server. */
  server(): string;
  /** Listens to status events; returns the function that stops listening. */
  onStatus(listener: (event: NatsStatusEvent) => void): () => void;
  /** Resolves once the connection is closed for good (by `close()` or otherwise). */
  readonly closed: Promise<void>;
  /**
   * Makes a JetStream consumer with `create` (a KV `watch`/`keys`, an object store `get`, a
   * pull `fetch`): rejects with `ConnectionClosingError`, without calling it, once `close()`
   * has begun or the connection is closed; when `close()` begins while it is being made,
   * `stop` ends it and the call rejects the same way. `close()` waits for it meanwhile.
   */
  consumer<T>(create: () => Promise<T>, stop: (made: T) => void): Promise<T>;
  /** Closes the connection (idempotent), once the consumers being made have settled. */
  close(): Promise<void>;
}

/** A consumer asked for while the connection closes (or after): not made. */
export class ConnectionClosingError extends Error {
  constructor() {
    super('the NATS connection is closing');
  }
}

/**
 * The longest `close()` waits for consumers being made. Each is a few JetStream requests,
 * each bounded by the client's request timeout (5 s), so this is a guard, not the rule.
 */
const CONSUMERS_SETTLE_MS = 15_000;

export interface ConnectNatsOptions {
  cluster: ClusterConfig;
  /** The resolved node id (`resolveNodeId` in core/cluster-config.ts). */
  nodeId: string;
  /** Relative file paths in the config resolve against this (the config file's directory). */
  baseDir: string;
  logger?: Logger;
}

/** Reads one configured file, or throws a line naming its key. */
function readConfigFile(baseDir: string, key: string, path: string): Buffer {
  const full = isAbsolute(path) ? path : resolve(baseDir, path);
  try {
    return readFileSync(full);
  } catch (err) {
    throw new BastionError('ERR_CLUSTER_FILE', `cannot read ${key} ${full}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function readSecret(baseDir: string, key: string, path: string): string {
  const secret = readConfigFile(baseDir, key, path).toString('utf8').trim();
  if (secret === '') throw new BastionError('ERR_CLUSTER_FILE', `${key} ${path} is empty`);
  return secret;
}

/** The client options of the config: servers, credentials and TLS (files read here). */
export function natsClientOptions(opts: ConnectNatsOptions): ConnectionOptions {
  const { cluster, baseDir } = opts;
  const n = cluster.nats;
  const out: ConnectionOptions = {
    servers: n.servers,
    name: `bastion:${opts.nodeId}`,
    timeout: Math.round(n.connectTimeoutSeconds * 1000),
    // After the first connection, keep trying: the broker refuses new work while NATS is
    // away and resumes when it returns (fail closed, not dead).
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: false,
    // The client otherwise builds an Error (a stack capture) for every request and every
    // request's timer, in case one fails: 22% of a node's CPU under durable QoS 1 in
    // `bench --cluster` (each JetStream store is a request). Our errors say what failed
    // without the client's stack.
    noAsyncTraces: true,
  };
  const c = n.credentials;
  if (c !== undefined) {
    const key = 'cluster.nats.credentials';
    if (c.user !== undefined && c.passwordFile !== undefined) {
      out.user = c.user;
      out.pass = readSecret(baseDir, `${key}.passwordFile`, c.passwordFile);
    } else if (c.tokenFile !== undefined) {
      out.token = readSecret(baseDir, `${key}.tokenFile`, c.tokenFile);
    } else if (c.credsFile !== undefined) {
      out.authenticator = credsAuthenticator(new Uint8Array(readConfigFile(baseDir, `${key}.credsFile`, c.credsFile)));
    } else if (c.nkeySeedFile !== undefined) {
      out.authenticator = nkeyAuthenticator(new TextEncoder().encode(readSecret(baseDir, `${key}.nkeySeedFile`, c.nkeySeedFile)));
    }
  }
  if (n.tls !== undefined) {
    const t = n.tls;
    out.tls = {
      ...(t.ca !== undefined ? { ca: readConfigFile(baseDir, 'cluster.nats.tls.ca', t.ca).toString('utf8') } : {}),
      ...(t.cert !== undefined ? { cert: readConfigFile(baseDir, 'cluster.nats.tls.cert', t.cert).toString('utf8') } : {}),
      ...(t.key !== undefined ? { key: readConfigFile(baseDir, 'cluster.nats.tls.key', t.key).toString('utf8') } : {}),
    };
  }
  return out;
}

function noAnswer(timeoutSeconds: number): string {
  return `no NATS handshake within ${timeoutSeconds} s (cluster.nats.connectTimeoutSeconds)`;
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** Why a first connection failed, as a readable phrase. */
function describeConnectError(err: unknown, timeoutSeconds: number): string {
  if (err instanceof AuthorizationError) return `authentication refused (${err.message}): check cluster.nats.credentials`;
  if (err instanceof TimeoutError) return noAnswer(timeoutSeconds);
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? err.cause.message : undefined;
    return oneLine(cause !== undefined && cause !== err.message ? `${err.message} (${cause})` : err.message);
  }
  return oneLine(String(err));
}

/**
 * Connects to the configured NATS servers, or throws a `BastionError` whose message is one
 * line naming them. The connection is checked before it is returned: JetStream enabled and
 * a server of at least 2.9.4.
 */
export async function connectNats(opts: ConnectNatsOptions): Promise<ClusterNatsConnection> {
  const clientOpts = natsClientOptions(opts);
  const servers = opts.cluster.nats.servers.join(', ');
  const limitMs = Math.round(opts.cluster.nats.connectTimeoutSeconds * 1000);
  const fail = (why: string): BastionError => new BastionError('ERR_CLUSTER_CONNECT', `cannot connect to NATS at ${servers}: ${why}`);

  const attempt = connect(clientOpts);
  let timer: NodeJS.Timeout | undefined;
  let nc: NatsConnection;
  try {
    nc = await Promise.race([
      attempt,
      new Promise<never>((_, reject) => {
        // The client's own timeout covers one handshake; this bounds the whole first connect.
        timer = setTimeout(() => reject(fail(noAnswer(opts.cluster.nats.connectTimeoutSeconds))), limitMs + 250);
      }),
    ]);
  } catch (err) {
    // A connection that completes after the deadline is closed, not leaked. (Known gap:
    // @nats-io/transport-node 3.4.0 keeps the socket of a server that accepted TCP but sent
    // no INFO before the timeout, with no handle to it; a failed start ends the process.)
    attempt.then((late) => late.close(), () => undefined);
    throw err instanceof BastionError ? err : fail(describeConnectError(err, opts.cluster.nats.connectTimeoutSeconds));
  } finally {
    clearTimeout(timer);
  }

  const info = nc.info;
  const features = detectFeatures(info ?? { version: '0.0.0', jetstream: false, max_payload: 0 });
  const refuse = async (why: string): Promise<never> => {
    await nc.close().catch(() => undefined);
    throw fail(why);
  };
  if (!features.jetstream) await refuse(`the server ${nc.getServer()} has no JetStream (start nats-server with -js, or jetstream {} in its config)`);
  if (!atLeast(features, MIN_NATS_VERSION)) await refuse(`the server ${nc.getServer()} is nats-server ${features.version}; cluster mode needs ${MIN_NATS_VERSION.major}.${MIN_NATS_VERSION.minor}.${MIN_NATS_VERSION.patch} or newer`);
  return new LiveConnection(nc, opts.nodeId, String(clientOpts.name), features, opts.logger);
}

class LiveConnection implements ClusterNatsConnection {
  features: NatsFeatures;
  readonly closed: Promise<void>;
  private readonly listeners = new Set<(event: NatsStatusEvent) => void>();
  private closing: Promise<void> | undefined;
  /** Consumers being made (settled: never rejects), which `close()` waits for. */
  private readonly making = new Set<Promise<void>>();

  constructor(
    readonly nc: NatsConnection,
    readonly nodeId: string,
    readonly name: string,
    features: NatsFeatures,
    private readonly logger: Logger | undefined,
  ) {
    this.features = features;
    void this.watchStatus();
    this.closed = nc.closed().then((err) => {
      this.emit(err instanceof Error ? { type: 'close', error: oneLine(err.message) } : { type: 'close' });
    });
  }

  server(): string {
    return this.nc.getServer();
  }

  onStatus(listener: (event: NatsStatusEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async consumer<T>(create: () => Promise<T>, stop: (made: T) => void): Promise<T> {
    if (this.closing !== undefined || this.nc.isClosed()) throw new ConnectionClosingError();
    const made = create();
    const settled = made.then(
      () => undefined,
      () => undefined,
    );
    this.making.add(settled);
    try {
      const consumer = await made;
      // close() began while it was being made (close() is still waiting for this one, so
      // the connection is open): end it here rather than trust the close to reach it.
      if (this.closing !== undefined) {
        stop(consumer);
        throw new ConnectionClosingError();
      }
      return consumer;
    } finally {
      this.making.delete(settled);
    }
  }

  close(): Promise<void> {
    this.closing ??= this.settleConsumers()
      .then(() => this.nc.close())
      .then(() => this.closed);
    return this.closing;
  }

  /** Waits (bounded) for the consumers being made; see the header. */
  private async settleConsumers(): Promise<void> {
    if (this.making.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      Promise.all([...this.making]).then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), CONSUMERS_SETTLE_MS);
      }),
    ]);
    clearTimeout(timer);
    if (late) this.logger?.warn({ pending: this.making.size }, `NATS close: consumers still being made after ${CONSUMERS_SETTLE_MS / 1000} s; closing anyway (their heartbeat timers may keep the process alive)`);
  }

  private emit(event: NatsStatusEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.logger?.error({ err, event: event.type }, 'a NATS status listener threw');
      }
    }
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      const event = this.translate(s);
      if (event === undefined) continue;
      if (event.type === 'reconnect') this.features = event.features;
      this.logger?.[event.type === 'reconnect' ? 'info' : 'warn']({ nats: event.type, server: 'server' in event ? event.server : undefined }, `NATS ${event.type}`);
      this.emit(event);
    }
  }

  private translate(s: Status): NatsStatusEvent | undefined {
    switch (s.type) {
      case 'disconnect':
        return { type: 'disconnect', server: s.server };
      case 'reconnecting':
        return { type: 'reconnecting' };
      case 'reconnect':
        return { type: 'reconnect', server: s.server, features: this.nc.info !== undefined ? detectFeatures(this.nc.info) : this.features };
      case 'ldm':
        return { type: 'lame-duck', server: s.server };
      case 'error':
        return { type: 'error', message: oneLine(s.error.message) };
      default:
        // ping, update, staleConnection, slowConsumer, forceReconnect: not events the broker acts on; close comes from closed().
        return undefined;
    }
  }
}
