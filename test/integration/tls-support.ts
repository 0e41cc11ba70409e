/**
 * Helpers for the TLS tests: an in-process broker with one mqtts listener whose TLS
 * settings the test chooses, a logger that records every line (to assert refusals are
 * logged), `openssl s_client` runs, and raw `tls.connect` handshakes.
 * Must not: be imported by src/ (test-only).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { ClientIdentity } from '../../src/broker/ports.js';
import type { Logger } from '../../src/core/logger.js';
import { parseConfig } from '../../src/server/load-config.js';
import { startServer, type BastionServer } from '../../src/server/server.js';
import type { TlsContextManager } from '../../src/transport/tls-context.js';
import type { RunningListener } from '../../src/transport/listener.js';
import mqtt, { type IClientOptions } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { makeTestPki, type TestClientFiles, type TestPki } from '../helpers/pki.js';
import { Inbox, run, withTimeout, type ProcResult } from './support.js';

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  obj: Record<string, unknown>;
}

/** A Logger that keeps every line in an Inbox, so a test can wait for one. */
export class RecordingLogger implements Logger {
  readonly lines = new Inbox<LogLine>();
  debug(obj: object, msg = ''): void {
    this.lines.push({ level: 'debug', msg, obj: obj as Record<string, unknown> });
  }
  info(obj: object, msg = ''): void {
    this.lines.push({ level: 'info', msg, obj: obj as Record<string, unknown> });
  }
  warn(obj: object, msg = ''): void {
    this.lines.push({ level: 'warn', msg, obj: obj as Record<string, unknown> });
  }
  error(obj: object, msg = ''): void {
    this.lines.push({ level: 'error', msg, obj: obj as Record<string, unknown> });
  }

  /** Waits for a line with message `msg` whose fields include `fields` (string fields: substring match). */
  async waitFor(msg: string | RegExp, fields: Record<string, unknown> = {}, timeoutMs = 5000): Promise<LogLine> {
    const matches = (l: LogLine): boolean =>
      (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)) &&
      Object.entries(fields).every(([k, v]) => (typeof v === 'string' && typeof l.obj[k] === 'string' ? (l.obj[k] as string).includes(v) : l.obj[k] === v));
    const items = await this.lines.waitFor((ls) => ls.some(matches), timeoutMs, `log line ${String(msg)} ${JSON.stringify(fields)}`);
    return items.find(matches)!;
  }
}

export interface TlsBroker {
  server: BastionServer;
  port: number;
  pki: TestPki;
  dir: string;
  logger: RecordingLogger;
  tls: TlsContextManager;
  stop(): Promise<void>;
}

export interface TlsBrokerOptions {
  /** Keys merged over the default `tls` section (cert, key and ca from the test PKI). */
  tls?: Record<string, unknown>;
  /** Keys merged over the listener (identity, clientIdMustMatch, psk, allowAnonymous). */
  listener?: Record<string, unknown>;
  mqtt?: Record<string, unknown>;
  clients?: string[];
  /** The config's `authz` section (default: allow-all, stated explicitly). */
  authz?: Record<string, unknown>;
  /** Share a directory (and so a data dir / ticket key file) with another broker. */
  dir?: string;
  pki?: TestPki;
  /** The config's `cluster` section (a node of a cluster over NATS). */
  cluster?: Record<string, unknown>;
}

/** Starts a broker with one mqtts listener on port 0 and a recording logger. */
export async function startTlsBroker(opts: TlsBrokerOptions = {}): Promise<TlsBroker> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'bastion-tls-'));
  const pki = opts.pki ?? (await makeTestPki(join(dir, 'pki'), opts.clients ?? ['client1']));
  const { config, baseDir } = parseConfig(
    {
      dataDir: join(dir, 'data'),
      listeners: [
        {
          name: 'mqtts',
          protocol: 'mqtts',
          host: '127.0.0.1',
          port: 0,
          tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, ...opts.tls },
          ...opts.listener,
        },
      ],
      mqtt: opts.mqtt ?? {},
      persistence: { enabled: false },
      log: { level: 'silent' },
      authz: opts.authz ?? { policy: 'allow-all-INSECURE' },
      ...(opts.cluster !== undefined ? { cluster: opts.cluster } : {}),
    },
    dir,
  );
  const logger = new RecordingLogger();
  const server = await startServer({ config, baseDir, logger });
  const listener = server.listeners[0] as RunningListener;
  return {
    server,
    port: listener.port,
    pki,
    dir,
    logger,
    tls: listener.tls!,
    async stop() {
      await server.stop();
      if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `openssl s_client -connect 127.0.0.1:port <args>` with stdin closed at once. */
export function sClient(port: number, args: string[]): Promise<ProcResult> {
  return run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...args], { input: '', timeoutMs: 10000 });
}

/** What s_client negotiated (`New, TLSv1.3, Cipher is X`), or null when no handshake completed. */
export function negotiated(r: ProcResult): { protocol: string; cipher: string } | null {
  const m = /New, (\S+), Cipher is (\S+)/.exec(r.stdout);
  if (m === null || m[1] === '(NONE)' || m[2] === '(NONE)') return null;
  return { protocol: m[1]!, cipher: m[2]! };
}

/** A finished TLS handshake (resolves) or the error that ended it (rejects). */
export function tlsHandshake(port: number, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolvePromise, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options }, () => resolvePromise(socket));
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the handshake finished')));
  });
}

/** How an MQTT.js connection attempt ended: CONNACK accepted (0), refused (its code), or closed without a CONNACK. */
export type ConnectOutcome = { connack: number } | { closed: string };

/** Connects MQTT.js over TLS once (no reconnect) and reports the outcome; the client is ended. */
export async function tryMqttConnect(port: number, opts: IClientOptions & { clientId: string }, timeoutMs = 5000): Promise<ConnectOutcome> {
  const client = mqtt.connect(`mqtts://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: timeoutMs, servername: 'localhost', rejectUnauthorized: true, ...opts });
  try {
    return await withTimeout(
      new Promise<ConnectOutcome>((resolvePromise) => {
        client.once('connect', () => resolvePromise({ connack: 0 }));
        client.once('error', (err: Error & { code?: unknown }) => {
          if (typeof err.code === 'number') resolvePromise({ connack: err.code });
          else resolvePromise({ closed: err.message });
        });
        client.once('close', () => resolvePromise({ closed: 'closed before CONNACK' }));
      }),
      timeoutMs + 1000,
      'MQTT connect outcome',
    );
  } finally {
    await client.endAsync(true).catch(() => undefined);
  }
}

/** TLS options for MQTT.js / tls.connect from a client's files and the test CA. */
export function clientTls(pki: TestPki, files: TestClientFiles): { cert: Buffer; key: Buffer; ca: Buffer } {
  return { cert: readFileSync(files.cert), key: readFileSync(files.key), ca: readFileSync(pki.caCert) };
}

/** The identity of every client `server` admits from now on, in admission order (an admission guard that admits all). */
export function recordIdentities(server: BastionServer): ClientIdentity[] {
  const identities: ClientIdentity[] = [];
  server.broker.addAdmissionGuard((client) => {
    identities.push(client.identity);
    return null;
  });
  return identities;
}

/** Sends CONNECT over an established TLS socket and returns the CONNACK reason/return code. */
export async function connackOver(socket: tls.TLSSocket, clientId: string): Promise<number> {
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  const code = new Promise<number>((resolve) => parser.on('packet', (p: mqttPacket.Packet) => p.cmd === 'connack' && resolve(p.reasonCode ?? -1)));
  socket.on('data', (d: Buffer) => parser.parse(d));
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId, clean: true, keepalive: 30 }));
  return withTimeout(code, 5000, 'CONNACK');
}
