/**
 * One client socket: reads bytes, frames and decodes them, hands packets to the channel,
 * and writes what the channel sends, batched per event-loop turn with backpressure.
 * Owns: the socket. Must not: make protocol decisions (the channel does).
 */
import type { Broker } from '../broker/broker.js';
import { Channel } from '../broker/channel/channel.js';
import type { ConnectionPort, TlsPeer } from '../broker/channel/connection-port.js';
import type { TlsSummary } from '../core/security-events.js';
import { PacketDecoder } from '../protocol/codec.js';
import { FrameReader } from '../protocol/framing.js';
import { scheduleFlush, type Flushable } from './write-scheduler.js';

const EMPTY = Buffer.alloc(0);
const kConnection = Symbol('bastion.connection');

/**
 * The part of a byte duplex a Connection uses. A net/tls socket is one; the WebSocket
 * listener adapts a WebSocket to it (transport/ws-byte-stream.ts).
 */
export interface ByteStream {
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'drain' | 'close', listener: () => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  /** Bytes accepted by write() but not yet handed to the kernel. */
  readonly writableLength: number;
  readonly destroyed: boolean;
  /** False when the caller should wait for 'drain'. */
  write(bytes: Buffer): boolean;
  end(): void;
  destroy(): void;
  pause(): void;
  resume(): void;
}
type OwnedSocket = ByteStream & { [kConnection]: Connection };

function onSocketData(this: OwnedSocket, chunk: Buffer): void {
  this[kConnection].onData(chunk);
}
function onSocketDrain(this: OwnedSocket): void {
  this[kConnection].fireDrain();
}
function onSocketError(): void {
  /* 'close' follows; the channel treats it as an abnormal close. */
}
function onSocketClose(this: OwnedSocket): void {
  this[kConnection].handleClose();
}
/** Write buffer size above which a connection counts as congested. */
const HIGH_WATER_MARK = 512 * 1024;
/** How long a closing socket may linger waiting for the peer before it is destroyed. */
const CLOSE_LINGER_MS = 2000;

export interface ListenerInfo {
  name: string;
  allowAnonymous: boolean;
  /** The listener's maximum packet size (its own, or mqtt.maxPacketSize). */
  maxPacketSize: number;
}

/** What the listener learned about the peer before MQTT starts. */
export interface PeerInfo {
  remoteAddress: string;
  /** The verified client certificate (or PSK identity), or null. */
  peer: TlsPeer | null;
  /** The negotiated TLS parameters (tls-identity.ts tlsSummaryOf); absent on plaintext. */
  tls?: TlsSummary;
}

export class Connection implements ConnectionPort, Flushable {
  readonly channel: Channel;
  readonly remoteAddress: string;
  readonly listenerName: string;
  readonly allowAnonymous: boolean;
  readonly maxPacketSize: number;
  readonly peer: TlsPeer | null;
  readonly tls: TlsSummary | null;
  private readonly framer: FrameReader;
  private readonly decoder = new PacketDecoder();
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private closing = false;
  private drainWaiters: Array<() => void> | null = null;
  private paused = 0;
  /** limits.slowClient.maxWriteBufferBytes, at least mqtt.maxPacketSize (Infinity with limits off). */
  private readonly maxWriteBuffer: number;
  /** Set when the write buffer went over `maxWriteBuffer`: nothing more is buffered until the cut. */
  private overflowing = false;
  /** True while the channel's slow-consumer clock runs for this socket. */
  private watched = false;

  constructor(
    /** A TCP or TLS socket, or a WebSocket adapted to bytes. */
    private readonly socket: ByteStream,
    info: PeerInfo,
    broker: Broker,
    listener: ListenerInfo,
    private readonly onClosed: (c: Connection) => void,
  ) {
    this.remoteAddress = info.remoteAddress;
    this.listenerName = listener.name;
    this.allowAnonymous = listener.allowAnonymous;
    this.peer = info.peer;
    this.tls = info.tls ?? null;
    this.maxPacketSize = listener.maxPacketSize;
    this.framer = new FrameReader(listener.maxPacketSize);
    // Never below one packet of the largest size: a healthy client receiving one large
    // message must not look like a slow one.
    this.maxWriteBuffer = broker.limits.enabled ? Math.max(broker.limits.slowClient.maxWriteBufferBytes, broker.config.maxPacketSize) : Infinity;
    this.channel = new Channel(this, broker);
    // Shared listeners (no closures per connection): idle connections are most of a fleet.
    (socket as OwnedSocket)[kConnection] = this;
    socket.on('data', onSocketData);
    socket.on('drain', onSocketDrain);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
  }

  /** The socket is gone: an abnormal close unless the channel already closed. */
  handleClose(): void {
    this.closing = true;
    this.channel.handleSocketClosed();
    this.fireDrain();
    this.onClosed(this);
  }

  get congested(): boolean {
    return this.writeBufferedBytes > HIGH_WATER_MARK;
  }

  /** Bytes written to this connection and not yet handed to the kernel (memory accounting). */
  get writeBufferedBytes(): number {
    return this.socket.writableLength + this.pendingBytes;
  }

  // ---- FrameTarget ----

  frame(bytes: Buffer, start: number, end: number): void {
    if (this.closing) return;
    const packet = this.decoder.decodeAt(bytes, start, end);
    this.channel.handlePacket(packet, this.decoder.frameNeeded ? bytes.subarray(start, end) : null);
  }

  readingStopped(): boolean {
    return this.paused > 0;
  }

  /** Bytes from the socket (also called with an empty chunk to resume held frames). */
  onData(chunk: Buffer): void {
    if (this.closing) return;
    try {
      this.framer.push(chunk, this);
    } catch (err) {
      this.channel.fail(err);
    }
  }

  write(bytes: Buffer): void {
    if ((this.closing && this.socket.destroyed) || this.overflowing) return;
    if (this.pending.length === 0) scheduleFlush(this);
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
  }

  private cutOverflowing(): void {
    const buffered = this.writeBufferedBytes;
    // What never reached the socket will never be read: drop it before the DISCONNECT.
    this.pending = [];
    this.pendingBytes = 0;
    this.overflowing = false;
    this.channel.limits.cutSlowConsumer(`write buffer of ${buffered} bytes over the limit of ${this.maxWriteBuffer}`);
  }

  flush(): void {
    const pending = this.pending;
    if (pending.length === 0 || this.socket.destroyed) {
      this.pending = [];
      this.pendingBytes = 0;
      return;
    }
    const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    // 'drain' is emitted only after a write that returned false; when the kernel took
    // everything at once, waiters (paused publishers) must be released here.
    if (this.socket.write(data)) {
      this.fireDrain();
      return;
    }
    // What the kernel did not take is what this client holds in broker memory. Measured
    // here, after the kernel had its chance, not per write: one turn's batch for a reader
    // that keeps up is no sign of a slow one.
    const held = this.socket.writableLength;
    if (held > this.maxWriteBuffer) {
      // SECURITY: memory held for one client is bounded (limits.slowClient): over the bound
      // it is cut at once. In a microtask: the cut closes a session (wills, deliveries to
      // other connections), which must not run inside the flush of every connection.
      if (!this.overflowing) {
        this.overflowing = true;
        queueMicrotask(() => this.cutOverflowing());
      }
    } else if (!this.watched && held > HIGH_WATER_MARK) {
      // Congested: the slow-consumer clock starts (one check per flush, none when healthy).
      this.watched = true;
      this.channel.limits.congested('socket');
    }
  }

  end(): void {
    if (this.closing) return;
    this.closing = true;
    this.flush();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS).unref();
    // Publishers paused behind this connection resume now, not when the socket finally closes.
    this.fireDrain();
  }

  pauseReading(): void {
    if (this.paused++ === 0) this.socket.pause();
  }

  resumeReading(): void {
    if (this.paused > 0 && --this.paused === 0 && !this.closing) {
      // Frames left in the framer when reading paused are handled before new bytes.
      if (this.framer.bufferedBytes > 0) setImmediate(() => this.onData(EMPTY));
      this.socket.resume();
    }
  }

  onDrain(cb: () => void): void {
    if (this.socket.destroyed) {
      cb();
      return;
    }
    (this.drainWaiters ??= []).push(cb);
  }

  fireDrain(): void {
    if (this.watched) {
      this.watched = false;
      this.channel.socketEased();
    }
    const waiters = this.drainWaiters;
    if (waiters === null) return;
    this.drainWaiters = null;
    for (const cb of waiters) cb();
  }

  /** Closes the socket at once (shutdown). */
  destroy(): void {
    this.socket.destroy();
  }
}
