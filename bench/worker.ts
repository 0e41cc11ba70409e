/**
 * A load-generating worker thread. Owns: sockets to the broker under test, speaking MQTT
 * with pre-encoded packets, and adding what it observes to the shared counters. Must not:
 * decode packets fully, write one syscall per message, or run without a bound (every
 * wait has a timeout and every loop checks Counter.Stop).
 */
import net from 'node:net';
import tls from 'node:tls';
import { parentPort, workerData } from 'node:worker_threads';
import { FrameScanner, PacketType, publishPayloadAt, encodedPacketIdOffset, encodedPayloadOffset, type FrameVisitor } from './frames.js';
import {
  Counter,
  type ConnectorRole,
  type CoordinatorMessage,
  type IdleRole,
  type LatencyPublisherRole,
  type LatencySubscriberRole,
  type LatencySummary,
  type PublisherRole,
  type SubscriberRole,
  type Target,
  type WorkerInit,
  type WorkerReport,
} from './worker-api.js';

const SETUP_TIMEOUT_MS = 10_000;
/** How long the end-to-end window waits without any delivery before presuming the rest dropped. */
const STALL_MS = 200;
const DISCONNECT = Buffer.from([0xe0, 0x00]);

const init = workerData as WorkerInit;
const C = new Int32Array(init.counters);
const port = parentPort!;
const errors: string[] = [];

function stopped(): boolean {
  return Atomics.load(C, Counter.Stop) !== 0;
}

function note(message: string): void {
  if (errors.length < 5 && !errors.includes(message)) errors.push(message);
}

function send(report: WorkerReport): void {
  port.postMessage(report);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------- connections

let secureContext: tls.SecureContext | null = null;
function contextFor(target: Target): tls.SecureContext | null {
  if (target.tls === null) return null;
  secureContext ??= tls.createSecureContext({ ca: target.tls.ca, cert: target.tls.cert, key: target.tls.key });
  return secureContext;
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

/**
 * A full TLS handshake with the chain verified by OpenSSL against the bench CA, as usual.
 * The host check uses the peer's X509Certificate instead of Node's default, which first
 * converts the whole chain to JS objects (getPeerCertificate(true), ~0.4 ms per
 * handshake measured here): the generator's own cost is what limits connect rates.
 */
function connectTls(target: Target, ctx: tls.SecureContext): tls.TLSSocket {
  const socket: tls.TLSSocket = tls.connect({
    host: target.host,
    port: target.port,
    secureContext: ctx,
    rejectUnauthorized: true,
    checkServerIdentity: (host: string): Error | undefined => {
      const cert = socket.getPeerX509Certificate();
      const ok = cert !== undefined && (net.isIP(host) !== 0 ? cert.checkIP(host) : cert.checkHost(host)) !== undefined;
      return ok ? undefined : new Error(`server certificate does not name ${host}`);
    },
  });
  // Only Node's handshake completion reads this, to pass it to checkServerIdentity above.
  Object.defineProperty(socket, 'getPeerCertificate', { value: () => ({}) });
  return socket;
}

/**
 * One read buffer for every socket of this worker: Node reads into it and calls the
 * callback synchronously, and the scanner copies only an incomplete frame's bytes, so
 * nothing refers to it after the callback returns.
 */
const sharedReadBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);

function openSocket(target: Target, timeoutMs: number, onRead: RawRead | null): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const ctx = contextFor(target);
    let socket: net.Socket;
    if (ctx !== null) socket = connectTls(target, ctx);
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
class Client implements FrameVisitor {
  readonly scanner: FrameScanner;
  private waiter: Waiter | null = null;
  private role: FrameVisitor | null = null;
  closed = false;

  constructor(
    readonly socket: net.Socket,
    rawReads: boolean,
    private readonly coalesce: boolean,
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
   * reads use a reused buffer; `coalesce` also batches reads (see COALESCE_MS).
   */
  static async open(target: Target, connect: Uint8Array, subscribe: Uint8Array | null, coalesce = false): Promise<Client> {
    const rawReads = target.tls === null;
    let client: Client | null = null;
    const socket = await openSocket(target, SETUP_TIMEOUT_MS, rawReads ? (n, buf) => client?.onRead(n, buf) ?? true : null);
    client = new Client(socket, rawReads, coalesce);
    try {
      client.socket.write(connect);
      const connack = await client.expect(PacketType.Connack);
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
async function openMany(count: number, concurrency: number, make: (i: number) => Promise<Client>): Promise<{ clients: Client[]; failed: number }> {
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

function withClientId(template: Uint8Array, offset: number, id: number): Buffer {
  const out = Buffer.from(template);
  const digits = String(id).padStart(10, '0');
  out.write(digits.slice(-10), offset, 'latin1');
  return out;
}

// ---------------------------------------------------------------- end-to-end window

/**
 * Keeps (sent × fanout − received − forgiven) under a bound shared by all publishers, so
 * the broker is never asked to buffer more than it has to. If deliveries stop for
 * STALL_MS while the window is full, the missing ones are presumed dropped (counted in
 * Counter.Forgiven) and publishing resumes; if they arrive later, the count is taken back.
 */
class EndToEndWindow {
  private stallSince = 0;
  private stallReceived = -1;

  constructor(
    private readonly fanout: number,
    private readonly limit: number,
  ) {}

  private gap(): number {
    return Atomics.load(C, Counter.Sent) * this.fanout - Atomics.load(C, Counter.Received) - Atomics.load(C, Counter.Forgiven);
  }

  open(): boolean {
    const gap = this.gap();
    if (gap < 0) {
      // Deliveries presumed dropped arrived after all (a broker pause, not a drop): take them back.
      const forgiven = Atomics.load(C, Counter.Forgiven);
      Atomics.compareExchange(C, Counter.Forgiven, forgiven, Math.max(0, forgiven + gap));
    }
    if (gap <= this.limit) {
      this.stallSince = 0;
      return true;
    }
    const now = performance.now();
    const received = Atomics.load(C, Counter.Received);
    if (this.stallSince === 0 || received !== this.stallReceived) {
      this.stallSince = now;
      this.stallReceived = received;
      Atomics.add(C, Counter.GateWaits, 1);
      return false;
    }
    if (now - this.stallSince < STALL_MS) return false;
    const forgiven = Atomics.load(C, Counter.Forgiven);
    const target = Atomics.load(C, Counter.Sent) * this.fanout - received;
    if (target > forgiven) Atomics.compareExchange(C, Counter.Forgiven, forgiven, target);
    this.stallSince = 0;
    return true;
  }
}

// ---------------------------------------------------------------- publishers

const YIELD_EVERY_WRITES = 8;
/** Publishers stop here whatever the clock says (the shared counters are 32-bit). */
const MAX_SENT = 1_000_000_000;

class Publisher implements FrameVisitor {
  private blocked = false;
  private scheduled = false;
  private running = false;
  private readonly idOffset: number;
  private readonly inflight = new Uint8Array(65536);
  private inflightCount = 0;
  private nextId = 1;
  private acked = 0;
  private readonly qos0Batch: Buffer;

  constructor(
    private readonly client: Client,
    private readonly publish: Uint8Array,
    private readonly role: PublisherRole,
    private readonly gate: EndToEndWindow,
  ) {
    this.idOffset = role.qos === 1 ? encodedPacketIdOffset(publish) : 0;
    this.qos0Batch = Buffer.allocUnsafe(publish.length * role.batch);
    for (let i = 0; i < role.batch; i++) this.qos0Batch.set(publish, i * publish.length);
    client.socket.on('drain', () => {
      this.blocked = false;
      this.pump();
    });
    client.attach(this);
  }

  start(): void {
    this.running = true;
    this.pump();
  }

  private schedule(delayMs: number): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = (): void => {
      this.scheduled = false;
      this.pump();
    };
    if (delayMs === 0) setImmediate(run);
    else setTimeout(run, delayMs);
  }

  pump(): void {
    if (!this.running || this.blocked || this.client.closed) return;
    const socket = this.client.socket;
    for (let writes = 0; writes < YIELD_EVERY_WRITES; writes++) {
      if (stopped() || Atomics.load(C, Counter.Sent) >= MAX_SENT) return;
      if (!this.gate.open()) {
        this.schedule(1);
        return;
      }
      let ok: boolean;
      if (this.role.qos === 0) {
        ok = socket.write(this.qos0Batch);
        Atomics.add(C, Counter.Sent, this.role.batch);
      } else {
        const room = Math.min(this.role.batch, this.role.window - this.inflightCount);
        if (room <= 0) return; // PUBACKs will call pump()
        ok = socket.write(this.qos1Batch(room));
        Atomics.add(C, Counter.Sent, room);
      }
      if (!ok) {
        this.blocked = true;
        return;
      }
    }
    this.schedule(0);
  }

  private qos1Batch(count: number): Buffer {
    const len = this.publish.length;
    const out = Buffer.allocUnsafe(len * count);
    for (let i = 0; i < count; i++) {
      let id = this.nextId;
      while (this.inflight[id] === 1) id = id === 65535 ? 1 : id + 1;
      this.nextId = id === 65535 ? 1 : id + 1;
      this.inflight[id] = 1;
      const at = i * len;
      out.set(this.publish, at);
      out[at + this.idOffset] = id >> 8;
      out[at + this.idOffset + 1] = id & 0xff;
    }
    this.inflightCount += count;
    return out;
  }

  onFrame(first: number, buf: Buffer, bodyStart: number): void {
    if (first >> 4 === PacketType.Puback) {
      const id = buf.readUInt16BE(bodyStart);
      if (this.inflight[id] === 1) {
        this.inflight[id] = 0;
        this.inflightCount--;
        this.acked++;
      }
    }
  }

  onChunkEnd(): void {
    if (this.acked > 0) {
      Atomics.add(C, Counter.Puback, this.acked);
      this.acked = 0;
      if (this.inflightCount <= this.role.window - this.role.batch) this.pump();
    }
  }
}

// ---------------------------------------------------------------- subscribers

/**
 * PUBACKs are written in batches: at once when this many are pending, else after at most
 * ACK_DELAY_MS. Both brokers allow 100 unacknowledged deliveries per client, so this
 * never stalls them, and it spares a loopback write (~5-8 µs of CPU the broker would
 * otherwise compete for) per message when the broker sends one message per write.
 */
const ACK_BATCH = 32;
const ACK_DELAY_MS = 1;

class Subscriber implements FrameVisitor {
  private received = 0;
  private acks: number[] = [];
  private ackTimer: NodeJS.Timeout | null = null;

  constructor(private readonly client: Client) {
    client.attach(this);
  }

  private readonly flushAcks = (): void => {
    if (this.ackTimer !== null) {
      clearTimeout(this.ackTimer);
      this.ackTimer = null;
    }
    const n = this.acks.length;
    if (n === 0) return;
    const out = Buffer.allocUnsafe(4 * n);
    for (let i = 0; i < n; i++) {
      const id = this.acks[i]!;
      out[4 * i] = 0x40;
      out[4 * i + 1] = 2;
      out[4 * i + 2] = id >> 8;
      out[4 * i + 3] = id & 0xff;
    }
    this.acks.length = 0;
    if (!this.client.closed) this.client.socket.write(out);
  };

  onFrame(first: number, buf: Buffer, bodyStart: number): void {
    if (first >> 4 !== PacketType.Publish) return;
    this.received++;
    if ((first & 0x06) !== 0) this.acks.push(buf.readUInt16BE(bodyStart + 2 + buf.readUInt16BE(bodyStart)));
  }

  onChunkEnd(): void {
    if (this.received > 0) {
      Atomics.add(C, Counter.Received, this.received);
      this.received = 0;
    }
    const n = this.acks.length;
    if (n >= ACK_BATCH) this.flushAcks();
    else if (n > 0 && this.ackTimer === null) this.ackTimer = setTimeout(this.flushAcks, ACK_DELAY_MS);
  }
}

// ---------------------------------------------------------------- latency

class LatencySubscriber implements FrameVisitor {
  private readonly samples: Float64Array;
  private count = 0;
  private overflow = 0;
  private received = 0;
  private now = 0n;

  constructor(
    client: Client,
    capacity: number,
    private readonly v5: boolean,
  ) {
    this.samples = new Float64Array(capacity);
    client.attach(this);
  }

  onFrame(first: number, buf: Buffer, bodyStart: number): void {
    if (first >> 4 !== PacketType.Publish) return;
    this.received++;
    if (Atomics.load(C, Counter.Measuring) === 0) return;
    if (this.now === 0n) this.now = process.hrtime.bigint();
    const at = publishPayloadAt(buf, first, bodyStart, this.v5);
    const sentAt = buf.readBigUInt64LE(at);
    if (this.count < this.samples.length) this.samples[this.count++] = Number(this.now - sentAt) / 1000;
    else this.overflow++;
  }

  onChunkEnd(): void {
    this.now = 0n;
    if (this.received > 0) {
      Atomics.add(C, Counter.Received, this.received);
      this.received = 0;
    }
  }

  summary(): LatencySummary {
    const s = this.samples.slice(0, this.count).sort();
    const at = (q: number): number => (s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor(q * s.length))]!);
    let sum = 0;
    for (const v of s) sum += v;
    return { count: s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: s.length === 0 ? 0 : s[s.length - 1]!, mean: s.length === 0 ? 0 : sum / s.length, overflow: this.overflow };
  }
}

/** Sends `rate` messages per second, paced by elapsed time, each stamped at write time. */
class LatencyPublisher implements FrameVisitor {
  private readonly payloadOffset: number;
  private startedAt = 0;
  private sent = 0;
  /** Messages skipped because the timer fell behind by more than a burst. */
  behind = 0;

  constructor(
    private readonly client: Client,
    private readonly role: LatencyPublisherRole,
  ) {
    this.payloadOffset = encodedPayloadOffset(role.publish, role.version === 5);
    client.attach(this);
  }

  start(): void {
    this.startedAt = performance.now();
    this.tick();
  }

  private tick = (): void => {
    if (stopped() || this.client.closed) return;
    const maxBurst = Math.max(1, Math.ceil(this.role.rate / 100));
    let due = Math.floor(((performance.now() - this.startedAt) * this.role.rate) / 1000) - this.sent;
    if (due > maxBurst) {
      this.behind += due - maxBurst;
      this.sent += due - maxBurst;
      due = maxBurst;
    }
    if (due > 0) {
      const len = this.role.publish.length;
      const out = Buffer.allocUnsafe(len * due);
      for (let i = 0; i < due; i++) {
        out.set(this.role.publish, i * len);
        out.writeBigUInt64LE(process.hrtime.bigint(), i * len + this.payloadOffset);
      }
      this.client.socket.write(out);
      this.sent += due;
      Atomics.add(C, Counter.Sent, due);
    }
    setTimeout(this.tick, 1);
  };

  onFrame(): void {}
  onChunkEnd(): void {}
}

// ---------------------------------------------------------------- connections: rate and idle

async function runConnector(role: ConnectorRole): Promise<void> {
  let nextId = 0;
  let made = 0;
  const lane = async (): Promise<void> => {
    while (!stopped() && made < role.maxConnects) {
      made++;
      const id = init.index * 100_000_000 + nextId++;
      let client: Client | null = null;
      try {
        client = await Client.open(role.target, withClientId(role.connectTemplate, role.clientIdOffset, id), null);
        if (stopped()) {
          client.socket.destroy();
          return;
        }
        Atomics.add(C, Counter.Connects, 1);
        // DISCONNECT and let the broker close first, so TIME_WAIT lands on the listening side.
        const socket = client.socket;
        socket.write(DISCONNECT);
        setTimeout(() => socket.destroy(), 1000).unref();
      } catch (e) {
        client?.socket.destroy();
        if (stopped()) return;
        Atomics.add(C, Counter.ConnectFails, 1);
        note(`connect: ${(e as Error).message}`);
        await sleep(20);
      }
    }
  };
  await Promise.all(Array.from({ length: role.concurrency }, lane));
}

const idleVisitor: FrameVisitor = { onFrame: () => undefined, onChunkEnd: () => undefined };

// ---------------------------------------------------------------- dispatch

interface Running {
  start(): void;
  finish(): LatencySummary | null;
  behind(): number;
  close(): void;
}

async function setup(): Promise<Running> {
  const role = init.role;
  switch (role.kind) {
    case 'publisher': {
      const gate = new EndToEndWindow(role.fanout, role.e2eWindow);
      const clients: Client[] = [];
      // QoS 1: PUBACKs are read in batches (the 64-message window per connection keeps the pipe full).
      for (const connect of role.connects) clients.push(await Client.open(role.target, connect, null, role.qos === 1));
      const pubs = clients.map((c, i) => new Publisher(c, role.publishes[i % role.publishes.length]!, role, gate));
      send({ type: 'ready', opened: clients.length, failed: 0 });
      return { start: () => pubs.forEach((p) => p.start()), finish: () => null, behind: () => 0, close: () => clients.forEach((c) => c.socket.destroy()) };
    }
    case 'subscriber': {
      const r: SubscriberRole = role;
      const clients: Client[] = [];
      const { clients: opened, failed } = await openMany(r.connects.length, 8, (i) => Client.open(r.target, r.connects[i]!, r.subscribe, r.coalesceReads));
      if (failed > 0) throw new Error(`${failed} of ${r.connects.length} subscribers failed to connect: ${errors.join('; ')}`);
      for (const c of opened) {
        new Subscriber(c);
        clients.push(c);
      }
      send({ type: 'ready', opened: clients.length, failed });
      return { start: () => undefined, finish: () => null, behind: () => 0, close: () => clients.forEach((c) => c.socket.destroy()) };
    }
    case 'latency-publisher': {
      const r: LatencyPublisherRole = role;
      const client = await Client.open(r.target, r.connect, null);
      const pub = new LatencyPublisher(client, r);
      send({ type: 'ready', opened: 1, failed: 0 });
      return { start: () => pub.start(), finish: () => null, behind: () => pub.behind, close: () => client.socket.destroy() };
    }
    case 'latency-subscriber': {
      const r: LatencySubscriberRole = role;
      const client = await Client.open(r.target, r.connect, r.subscribe);
      const sub = new LatencySubscriber(client, r.capacity, r.version === 5);
      send({ type: 'ready', opened: 1, failed: 0 });
      return { start: () => undefined, finish: () => sub.summary(), behind: () => 0, close: () => client.socket.destroy() };
    }
    case 'connector': {
      const r: ConnectorRole = role;
      let done: Promise<void> = Promise.resolve();
      send({ type: 'ready', opened: 0, failed: 0 });
      return {
        start: () => {
          done = runConnector(r);
        },
        finish: () => null,
        behind: () => 0,
        close: () => void done,
      };
    }
    case 'idle': {
      const r: IdleRole = role;
      const { clients, failed } = await openMany(r.count, r.concurrency, (i) =>
        Client.open(r.target, withClientId(r.connectTemplate, r.clientIdOffset, init.index * 100_000_000 + i), null).then((c) => {
          Atomics.add(C, Counter.Connects, 1);
          return c;
        }),
      );
      Atomics.add(C, Counter.ConnectFails, failed);
      // Attached so that a connection the broker drops while idle is counted.
      for (const c of clients) c.attach(idleVisitor);
      send({ type: 'ready', opened: clients.length, failed });
      return { start: () => undefined, finish: () => null, behind: () => 0, close: () => clients.forEach((c) => c.socket.destroy()) };
    }
    default: {
      const unknown: never = role;
      throw new Error(`unknown role ${JSON.stringify(unknown)}`);
    }
  }
}

const running = setup().catch((e: unknown) => {
  send({ type: 'fatal', message: `${init.role.kind}: ${(e as Error).message}${errors.length > 0 ? ` (${errors.join('; ')})` : ''}` });
  return null;
});

port.on('message', (msg: CoordinatorMessage) => {
  void running.then((r) => {
    if (r === null) return;
    if (msg.type === 'start') r.start();
    else {
      const latency = r.finish();
      send({ type: 'done', latency, behind: r.behind(), errors });
      r.close();
    }
  });
});
