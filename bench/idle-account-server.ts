/**
 * The server side of the idle-footprint account: one process per measured server, forked by
 * bench/idle-account.ts with --expose-gc. Owns: starting one server (bare net, bare TLS, or
 * Bastion in-process with a plain or mTLS listener), and answering the parent's IPC
 * requests: a memory reading after gc() twice, a heap snapshot, stop. Must not: open
 * client connections or compute per-connection figures (the parent does both), or change
 * anything in src/ (it starts Bastion the way test/helpers/broker.ts does).
 */
import net from 'node:net';
import tls from 'node:tls';
import { constants as cryptoConstants } from 'node:crypto';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { parseSmapsRollup, smapsByMapping, type Reading } from './idle-account-parse.js';

export type ServerKind = 'bare-net' | 'bare-tls' | 'bastion-tcp' | 'bastion-tls';

export interface ServerSpec {
  kind: ServerKind;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** bare-tls: SSL_OP_NO_TICKET (no session ticket sent after the handshake). */
  noTickets?: boolean;
  /** bare servers: after CONNACK, answer the first 16 KB received with 16 KB (record buffers used once). */
  exchange?: boolean;
  /** bare-tls: key-exchange groups instead of TLS_GROUPS (e.g. X25519 alone: no ML-KEM share). */
  groups?: string;
  /** bare-tls: no client certificate asked for (what holding the peer's chain costs). */
  noClientCert?: boolean;
}

export type ToServer = { cmd: 'measure' } | { cmd: 'snapshot'; path: string } | { cmd: 'stop' };
export type FromServer =
  | { type: 'ready'; port: number; node: string; openssl: string }
  | { type: 'reading'; reading: Reading }
  | { type: 'snapshot'; path: string }
  | { type: 'error'; message: string };

/** Bastion's default key-exchange groups, given to the bare TLS server too so both handshakes match. */
export const TLS_GROUPS = 'X25519MLKEM768:X25519:P-256:P-384';
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const EXCHANGE_BYTES = 16 * 1024;

/** Sockets the bare servers hold (so nothing is collected while idle). */
const held = new Set<net.Socket>();

function bareHandler(spec: ServerSpec): (socket: net.Socket) => void {
  return (socket) => {
    held.add(socket);
    let received = 0;
    let answered = false;
    let exchanged = false;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (!answered) {
        answered = true;
        socket.write(CONNACK);
      }
      // The CONNECT (< 100 bytes) plus the client's 16 KB: answer with as much.
      if (spec.exchange === true && !exchanged && received >= EXCHANGE_BYTES) {
        exchanged = true;
        socket.write(Buffer.alloc(EXCHANGE_BYTES, 0x61));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => held.delete(socket));
  };
}

async function startBare(spec: ServerSpec): Promise<number> {
  let server: net.Server;
  if (spec.kind === 'bare-net') {
    server = net.createServer({ noDelay: true }, bareHandler(spec));
  } else {
    // SECURITY: the same policy as Bastion's mTLS listener: a client certificate from the CA
    // is required and verified; TLS 1.3 only here (what Bastion negotiates with these clients).
    server = tls.createServer(
      {
        cert: readFileSync(spec.serverCert),
        key: readFileSync(spec.serverKey),
        ca: readFileSync(spec.caCert),
        requestCert: spec.noClientCert !== true,
        rejectUnauthorized: spec.noClientCert !== true,
        minVersion: 'TLSv1.3',
        ecdhCurve: spec.groups ?? TLS_GROUPS,
        noDelay: true,
        ...(spec.noTickets === true ? { secureOptions: cryptoConstants.SSL_OP_NO_TICKET } : {}),
      },
      bareHandler(spec),
    );
    server.on('tlsClientError', () => undefined);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : 0;
}

/** Per-address limits far above one burst from 127.0.0.1 (as bench/brokers.ts's `raised`). */
const UNREACHABLE_RATE = { perSecond: 1e9, burst: 1e9 };

async function startBastion(spec: ServerSpec): Promise<number> {
  // Imported here so the bare servers do not load Bastion's modules (their heap is the floor).
  const { parseConfig } = await import('../src/server/load-config.js');
  const { startServer } = await import('../src/server/server.js');
  const dir = mkdtempSync(join(tmpdir(), 'bastion-idle-account-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const listener =
    spec.kind === 'bastion-tcp'
      ? { name: 'idle-tcp', protocol: 'mqtt', host: '127.0.0.1', port: 0, insecure: true, allowAnonymous: true }
      : { name: 'idle-mtls', protocol: 'mqtts', host: '127.0.0.1', port: 0, tls: { cert: spec.serverCert, key: spec.serverKey, ca: spec.caCert, clientCerts: 'required' } };
  const { config, baseDir } = parseConfig(
    {
      dataDir: join(dir, 'data'),
      listeners: [listener],
      limits: {
        enabled: true,
        connections: { perIpMax: 1_000_000, perIpRate: UNREACHABLE_RATE },
        client: { publishRate: UNREACHABLE_RATE, bandwidth: UNREACHABLE_RATE },
        flapping: { maxConnects: 1_000_000_000 },
        slowClient: { maxWriteBufferBytes: 1024 * 1024 * 1024, maxCongestedSeconds: 3600 },
      },
      mqtt: { maxInflight: 100, maxQueued: 10_000 },
      log: { level: 'silent' },
      persistence: { enabled: false },
      authz: { policy: 'allow-all-INSECURE' },
    },
    dir,
  );
  const server = await startServer({ config, baseDir, enhancedAuth: [] });
  return server.listeners[0]!.port;
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) throw new Error('run with --expose-gc');
  g();
}

async function settle(): Promise<void> {
  // Two full collections with a turn of the loop between (weak callbacks, finalizers).
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  await new Promise((r) => setImmediate(r));
}

function readSmaps(): { anon: number; rss: number | null; brk: number; anonMmap: number } {
  try {
    const s = parseSmapsRollup(readFileSync('/proc/self/smaps_rollup', 'utf8'));
    const m = smapsByMapping(readFileSync('/proc/self/smaps', 'utf8'));
    return { anon: s['Anonymous'] ?? 0, rss: s['Rss'] ?? null, brk: m.brk, anonMmap: m.anonMmap };
  } catch {
    return { anon: 0, rss: null, brk: 0, anonMmap: 0 };
  }
}

async function measure(): Promise<Reading> {
  await settle();
  const m = process.memoryUsage();
  const s = readSmaps();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, anon: s.anon, smapsRss: s.rss, brk: s.brk, anonMmap: s.anonMmap };
}

function send(msg: FromServer): void {
  process.send?.(msg);
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as ServerSpec;
  const port = spec.kind === 'bare-net' || spec.kind === 'bare-tls' ? await startBare(spec) : await startBastion(spec);
  process.on('message', (raw: unknown) => {
    const msg = raw as ToServer;
    void (async () => {
      try {
        if (msg.cmd === 'measure') send({ type: 'reading', reading: await measure() });
        else if (msg.cmd === 'snapshot') {
          await settle();
          send({ type: 'snapshot', path: v8.writeHeapSnapshot(msg.path) });
        } else process.exit(0);
      } catch (e) {
        send({ type: 'error', message: e instanceof Error ? e.message : String(e) });
      }
    })();
  });
  // The parent going away ends this process too (no orphan holding sockets).
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', port, node: process.version, openssl: process.versions.openssl ?? '' });
}

main().catch((e: unknown) => {
  send({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  process.exit(1);
});
