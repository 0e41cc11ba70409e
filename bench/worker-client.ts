/**
 * One connection of a load-generating worker. Owns: opening plain or TLS sockets to the
 * broker under test, reading them without an allocation per read, the setup handshake
 * (CONNECT, SUBSCRIBE and their acknowledgements, each with a timeout), and handing later
 * frames to a role. Must not: wait without a timeout.
 */
import net from 'node:net';
import tls from 'node:tls';
import { FrameScanner, PacketType, type FrameVisitor } from './frames.js';
import { Counter, type Target } from './worker-api.js';
import { C, note, stopped } from './worker-context.js';

const SETUP_TIMEOUT_MS = 10_000;

/** One client context per group list (`ecdhCurve` is a context setting, ignored next to `secureContext`). */
const secureContexts = new Map<string, tls.SecureContext>();
function contextFor(target: Target): tls.SecureContext | null {
  if (target.tls === null) return null;
  const groups = target.tls.groups;
  let ctx = secureContexts.get(groups ?? '');
  if (ctx === undefined) {
    ctx = tls.createSecureContext({ ca: target.tls.ca, cert: target.tls.cert, key: target.tls.key, ...(groups !== undefined ? { ecdhCurve: groups } : {}) });
    secureContexts.set(groups ?? '', ctx);
  }
  return ctx;
}

/** Plain-TCP reads go into one reused buffer of this size (no allocation per read). */
const READ_BUFFER_BYTES = 128 * 1024;
/**
 * A coalescing reader pauses this long after a read that did not fill half its buffer,
 * so the next read takes whatever arrived meanwhile in one syscall instead of one per
 * message. Only for QoS 0 throughput subscribers and QoS 1 publishers (never where a
 * broker's 100-message inflight window would cap the rate): it adds up to this much latency.
 */
const COALESCE_MS = 1;

type RawRead = (nread: number, buf: Buffer) => boolean;

/** A TLS session to offer (undefined: none yet) and where new session tickets go. */
export interface TlsResume {
  session: Buffer | undefined;
  onSession(session: Buffer): void;
}

/**
 * The TCP socket under a TLS connection, for counting its bytes (`bytesWritten`/`bytesRead`
 * see TLS records, not plaintext), and its counts when the handshake completed.
 */
export interface Wire {
  raw: net.Socket;
  /** Written at 'secureConnect': the ClientHello(s); the client's last flight is flushed just after. */
  helloOut: number;
  /** Read at 'secureConnect': HelloRetryRequest (if any) and the server's flight up to Finished. */
  flightIn: number;
}

/**
 * A full TLS handshake with the chain verified by OpenSSL against the bench CA, as usual.
 * The host check uses the peer's X509Certificate instead of Node's default, which first
 * converts the whole chain to JS objects (getPeerCertificate(true), ~0.4 ms per
 * handshake measured here): the generator's own cost is what limits connect rates.
 */
function connectTls(target: Target, ctx: tls.SecureContext, resume: TlsResume | null, raw: net.Socket | null): tls.TLSSocket {
  const socket: tls.TLSSocket = tls.connect({
    host: target.host,
    port: target.port,
    ...(raw !== null ? { socket: raw } : {}),
    secureContext: ctx,
    ...(resume?.session !== undefined ? { session: resume.session } : {}),
    rejectUnauthorized: true,
    checkServerIdentity: (host: string): Error | undefined => {
      const cert = socket.getPeerX509Certificate();
      const ok = cert !== undefined && (net.isIP(host) !== 0 ? cert.checkIP(host) : cert.checkHost(host)) !== undefined;
      return ok ? undefined : new Error(`server certificate does not name ${host}`);
    },
  });
  // Only Node's handshake completion reads this, to pass it to checkServerIdentity above.
  Object.defineProperty(socket, 'getPeerCertificate', { value: () => ({}) });
  if (resume !== null) socket.on('session', resume.onSession);
  return socket;
}

/**
 * One read buffer for every socket of this worker: Node reads into it and calls the
 * callback synchronously, and the scanner copies only an incomplete frame's bytes, so
 * nothing refers to it after the callback returns.
 */
const sharedReadBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);

function openSocket(target: Target, timeoutMs: number, onRead: RawRead | null, resume: TlsResume | null, wire: Wire | null): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const ctx = contextFor(target);
    let socket: net.Socket;
    if (ctx !== null) socket = connectTls(target, ctx, resume, wire?.raw ?? null);
    else if (onRead !== null) socket = net.connect({ host: target.host, port: target.port, onread: { buffer: sharedReadBuffer, callback: onRead } });
    else socket = net.connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => fail(new Error(`connect timed out after ${timeoutMs} ms`)), timeoutMs);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    socket.once('error', fail);
    socket.once(ctx === null ? 'connect' : 'secureConnect', () => {
      clearTimeout(timer);
      if (wire !== null) {
        wire.helloOut = wire.raw.bytesWritten;
        wire.flightIn = wire.raw.bytesRead;
      }
      socket.off('error', fail);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

interface Waiter {
  type: number;
  resolve: (body: Buffer) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * One connection: the socket, its frame scanner, and the setup handshake. After setup the
 * scanner's visitor is the role's hot-path visitor; the client itself only sees frames
 * that arrived during setup.
 */
export class Client implements FrameVisitor {
  readonly scanner: FrameScanner;
  private waiter: Waiter | null = null;
  private role: FrameVisitor | null = null;
  closed = false;
  /** The whole CONNACK frame's length (fixed header included), once it arrived. */
  connackBytes = 0;

  constructor(
    readonly socket: net.Socket,
    rawReads: boolean,
    private readonly coalesce: boolean,
    /** TLS with byte counting: the TCP socket under `socket`. */
    readonly wire: Wire | null = null,
  ) {
    this.scanner = new FrameScanner(this);
    if (!rawReads) {
      // TLS: one push per record (Mosquitto writes one record per message); in paused mode
      // Node emits 'readable' once per turn and read() returns every buffered record as one
      // chunk, so the scanner and the ack flush run once per batch, not once per record.
      socket.on('readable', () => {
        for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) this.scanner.push(chunk);
      });
    }
    socket.on('error', (e: Error) => {
      if (!stopped()) note(`socket error: ${e.message}`);
    });
    socket.on('close', () => {
      this.closed = true;
      if (this.waiter !== null) this.failWaiter(new Error('connection closed by the broker'));
      else if (this.role !== null && !stopped()) Atomics.add(C, Counter.SocketErrors, 1);
    });
  }

  /**
   * Connects, sends CONNECT (and SUBSCRIBE) and waits for the acknowledgements. Plain TCP
   * reads use a reused buffer; `coalesce` also batches reads (see COALESCE_MS). TLS with
   * `countBytes`: the TLS socket runs over a TCP socket of our own, whose byte counts
   * `Client.wire` keeps.
   */
  static async open(target: Target, connect: Uint8Array, subscribe: Uint8Array | null, coalesce = false, resume: TlsResume | null = null, countBytes = false): Promise<Client> {
    const rawReads = target.tls === null;
    let client: Client | null = null;
    const wire: Wire | null = countBytes && !rawReads ? { raw: net.connect({ host: target.host, port: target.port }), helloOut: 0, flightIn: 0 } : null;
    const socket = await openSocket(target, SETUP_TIMEOUT_MS, rawReads ? (n, buf) => client?.onRead(n, buf) ?? true : null, resume, wire);
    client = new Client(socket, rawReads, coalesce, wire);
    try {
      client.socket.write(connect);
      const connack = await client.expect(PacketType.Connack);
      client.connackBytes = frameBytes(connack.length);
      if (connack.length < 2 || connack[1] !== 0) throw new Error(`CONNACK refused with code 0x${(connack[1] ?? 255).toString(16)}`);
      if (subscribe !== null) {
        client.socket.write(subscribe);
        const suback = await client.expect(PacketType.Suback);
        const granted = suback[suback.length - 1] ?? 0x80;
        if (granted >= 0x80) throw new Error(`SUBACK refused with code 0x${granted.toString(16)}`);
      }
    } catch (e) {
      client.socket.destroy();
      throw e;
    }
    return client;
  }

  private readonly resume = (): void => {
    if (!this.closed) this.socket.resume();
  };

  /** Raw read callback (plain TCP): `buf` is reused after this returns; false pauses reading. */
  onRead(nread: number, buf: Buffer): boolean {
    this.scanner.push(buf.subarray(0, nread));
    if (this.coalesce && this.role !== null && nread < buf.length / 2 && !stopped()) {
      setTimeout(this.resume, COALESCE_MS);
      return false;
    }
    return true;
  }

  /** Hands every later frame straight to `role` (no per-frame indirection). */
  attach(role: FrameVisitor): void {
    this.role = role;
    this.scanner.visitor = role;
  }

  expect(type: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error('connection closed by the broker'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.failWaiter(new Error(`no packet of type ${type} within ${SETUP_TIMEOUT_MS} ms`)), SETUP_TIMEOUT_MS);
      this.waiter = { type, resolve, reject, timer };
    });
  }

  private failWaiter(e: Error): void {
    const w = this.waiter;
    if (w === null) return;
    this.waiter = null;
    clearTimeout(w.timer);
    w.reject(e);
  }

  onFrame(first: number, buf: Buffer, bodyStart: number, end: number): void {
    const type = first >> 4;
    const w = this.waiter;
    if (w !== null && type === w.type) {
      this.waiter = null;
      clearTimeout(w.timer);
      w.resolve(Buffer.from(buf.subarray(bodyStart, end)));
    } else if (type === PacketType.Disconnect) {
      this.failWaiter(new Error(`DISCONNECT from the broker (reason 0x${(buf[bodyStart] ?? 0).toString(16)})`));
    } else if (this.role !== null) {
      this.role.onFrame(first, buf, bodyStart, end);
    }
  }

  onChunkEnd(): void {
    this.role?.onChunkEnd();
  }
}

/** Opens `count` clients with at most `concurrency` handshakes in flight. */
export async function openMany(count: number, concurrency: number, make: (i: number) => Promise<Client>): Promise<{ clients: Client[]; failed: number }> {
  const clients: Client[] = [];
  let next = 0;
  let failed = 0;
  const lane = async (): Promise<void> => {
    while (next < count && !stopped()) {
      const i = next++;
      try {
        clients.push(await make(i));
      } catch (e) {
        failed++;
        note(`open: ${(e as Error).message}`);
        if (failed > Math.max(10, count / 10)) return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, lane));
  return { clients, failed };
}

/** The length of an MQTT frame whose body is `body` bytes: type byte, remaining-length varint, body. */
export function frameBytes(body: number): number {
  let varint = 1;
  for (let n = body; n >= 128; n = Math.floor(n / 128)) varint++;
  return 1 + varint + body;
}

export function withClientId(template: Uint8Array, offset: number, id: number): Buffer {
  const out = Buffer.from(template);
  const digits = String(id).padStart(10, '0');
  out.write(digits.slice(-10), offset, 'latin1');
  return out;
}
