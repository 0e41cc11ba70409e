/**
 * A generator process of `--fleet` (fleet-scale*.ts): a slice of the device fleet, each
 * device one mTLS connection from its own loopback source address that CONNECTs and then
 * sits idle. Owns: those sockets, each device's last TLS session ticket, and answering the
 * coordinator's commands (worker-fleet-api.ts) over the IPC channel. Must not: wait without
 * a bound (every handshake has a timeout, every retry a deadline) or speak MQTT beyond
 * CONNECT/CONNACK/DISCONNECT (the devices are idle on purpose).
 *
 * A process, not a worker thread: 50,000 sockets need the fd table and the event loop of
 * several processes, each started under `prlimit --nofile` by the coordinator.
 */
import net from 'node:net';
import tls from 'node:tls';
import { sourceAddress } from './fleet-scale-options.js';
import { encodeConnect } from './packets.js';
import type { FleetCommand, FleetConnectCommand, FleetConnectResult, FleetReport, FleetWorkerInit } from './worker-fleet-api.js';

const DISCONNECT = Buffer.from([0xe0, 0x00]);
const PROGRESS_MS = 200;
const DISCONNECT_WAIT_MS = 10_000;
const MAX_ERRORS = 5;

interface Device {
  socket: tls.TLSSocket | null;
  /** The newest session ticket the broker gave this device (Node's 'session' event). */
  session: Buffer | undefined;
  /** Set while the bench itself closes the connection: that close is not a loss. */
  closing: boolean;
}

let init: FleetWorkerInit | null = null;
let devices: Device[] = [];
let contexts: tls.SecureContext[] = [];
let lost = 0;

function send(m: FleetReport): void {
  process.send?.(m);
}

/**
 * SECURITY: the chain is verified by OpenSSL against the bench CA (rejectUnauthorized);
 * the host check reads the peer's X509Certificate instead of Node's default, which first
 * converts the whole chain to JS objects and would make the generator, not the broker, the
 * bottleneck.
 */
function checkIdentity(socket: tls.TLSSocket, host: string): Error | undefined {
  const cert = socket.getPeerX509Certificate();
  const ok = cert !== undefined && (net.isIP(host) !== 0 ? cert.checkIP(host) : cert.checkHost(host)) !== undefined;
  return ok ? undefined : new Error(`server certificate does not name ${host}`);
}

/** One CONNECT→CONNACK over a fresh TLS connection; resolves with whether the session was resumed. */
function connectDevice(i: number, resume: boolean, timeoutMs: number): Promise<boolean> {
  const o = init!;
  const dev = devices[i]!;
  const g = o.first + i;
  return new Promise((resolve, reject) => {
    // localAddress is a socket.connect() option, which tls.connect() passes on (its type omits it).
    const options: tls.ConnectionOptions & { localAddress: string } = {
      host: o.host,
      port: o.port,
      localAddress: sourceAddress(g),
      secureContext: contexts[g % contexts.length]!,
      ...(resume && dev.session !== undefined ? { session: dev.session } : {}),
      rejectUnauthorized: true,
      checkServerIdentity: (host: string) => checkIdentity(socket, host),
    };
    const socket: tls.TLSSocket = tls.connect(options);
    // Only Node's handshake completion reads it, to pass it to checkServerIdentity above.
    Object.defineProperty(socket, 'getPeerCertificate', { value: () => ({}) });
    socket.on('session', (s: Buffer) => {
      dev.session = s;
    });
    let got: Buffer = Buffer.alloc(0);
    let settled = false;
    const timer = setTimeout(() => fail(new Error(`no CONNACK within ${timeoutMs} ms`)), timeoutMs);
    const fail = (e: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    socket.once('error', fail);
    socket.once('close', () => {
      if (!settled) return fail(new Error('closed before CONNACK'));
      if (dev.socket === socket) {
        dev.socket = null;
        if (!dev.closing) lost++;
      }
    });
    socket.once('secureConnect', () => {
      socket.setNoDelay(true);
      socket.write(encodeConnect({ clientId: `${o.clientIdPrefix}${g}`, version: 4, clean: true, keepalive: o.keepaliveS }));
    });
    const onData = (chunk: Buffer): void => {
      got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
      if (got.length < 4) return;
      socket.off('data', onData);
      // The devices are idle: whatever comes later (a DISCONNECT at shutdown) is read and dropped.
      socket.on('data', () => undefined);
      if (got[0] !== 0x20 || got[3] !== 0) return fail(new Error(`CONNACK refused (${got.subarray(0, 4).toString('hex')})`));
      settled = true;
      clearTimeout(timer);
      socket.off('error', fail);
      socket.on('error', () => undefined);
      dev.socket = socket;
      dev.closing = false;
      resolve(socket.isSessionReused());
    };
    socket.on('data', onData);
  });
}

async function connectAll(c: FleetConnectCommand): Promise<FleetConnectResult> {
  const startedAt = performance.timeOrigin + performance.now();
  const r: FleetConnectResult = { backAt: [], resumed: 0, full: 0, failedAttempts: 0, notBack: 0, errors: [], startedAt };
  const todo = devices.flatMap((d, i) => (d.socket === null ? [i] : []));
  const note = (e: Error): void => {
    r.failedAttempts++;
    // Per-device numbers would make every message distinct.
    const msg = e.message.replace(/\d+\.\d+\.\d+\.\d+:\d+/g, '<addr>');
    if (r.errors.length < MAX_ERRORS && !r.errors.includes(msg)) r.errors.push(msg);
  };
  const progress = setInterval(() => send({ type: 'progress', back: r.backAt.length }), PROGRESS_MS);
  const attempt = async (i: number): Promise<boolean> => {
    try {
      const resumed = await connectDevice(i, c.resume, c.timeoutMs);
      r.backAt.push(performance.timeOrigin + performance.now());
      if (resumed) r.resumed++;
      else r.full++;
      return true;
    } catch (e) {
      note(e as Error);
      return false;
    }
  };
  try {
    if (c.concurrency > 0) {
      // Bounded lanes: a fleet coming up at the pace the broker takes it (scenario A).
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < todo.length) {
          const i = todo[next++]!;
          if (!(await attempt(i))) r.notBack++;
        }
      };
      await Promise.all(Array.from({ length: Math.min(c.concurrency, todo.length) }, lane));
    } else {
      // All at once, each after its own random backoff, retrying until the deadline (scenario B).
      const pause = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));
      await Promise.all(
        todo.map(async (i) => {
          await pause(Math.random() * c.backoffMs);
          for (;;) {
            if (await attempt(i)) return;
            if (Date.now() >= c.retryUntil) {
              r.notBack++;
              return;
            }
            await pause(500 + Math.random() * 1000);
          }
        }),
      );
    }
  } finally {
    clearInterval(progress);
  }
  return r;
}

async function disconnectAll(): Promise<number> {
  const open = devices.filter((d) => d.socket !== null);
  await Promise.all(
    open.map(
      (d) =>
        new Promise<void>((resolve) => {
          const s = d.socket!;
          d.closing = true;
          const timer = setTimeout(() => {
            s.destroy();
            resolve();
          }, DISCONNECT_WAIT_MS);
          s.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
          // DISCONNECT, then our FIN: the device leaves as a well-behaved one does.
          s.end(DISCONNECT);
        }),
    ),
  );
  return open.length;
}

function stats(): FleetReport {
  const cpu = process.cpuUsage();
  return {
    type: 'stats',
    held: devices.filter((d) => d.socket !== null).length,
    withTicket: devices.filter((d) => d.session !== undefined).length,
    lost,
    rssKb: Math.round(process.memoryUsage.rss() / 1024),
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
  };
}

process.on('message', (m: FleetCommand) => {
  const run = async (): Promise<void> => {
    switch (m.type) {
      case 'init':
        init = m;
        contexts = m.certs.map((c) => tls.createSecureContext({ ca: m.ca, cert: c.cert, key: c.key }));
        devices = Array.from({ length: m.count }, () => ({ socket: null, session: undefined, closing: false }));
        send({ type: 'ready' });
        return;
      case 'connect':
        send({ type: 'connected', ...(await connectAll(m)) });
        return;
      case 'disconnect':
        send({ type: 'disconnected', closed: await disconnectAll() });
        return;
      case 'stats':
        send(stats());
        return;
      case 'exit':
        for (const d of devices) d.socket?.destroy();
        process.exit(0);
    }
  };
  run().catch((e: unknown) => send({ type: 'fatal', message: (e as Error).stack ?? String(e) }));
});
// The coordinator gone (killed, crashed): nothing of this generator may outlive it.
process.on('disconnect', () => process.exit(0));
