/**
 * The syslog audit export: RFC 5424 messages to a collector over UDP (RFC 5426), TCP
 * (RFC 6587 octet counting) or TLS (RFC 5425). Owns: the socket, reconnection with
 * backoff, and a bounded buffer while the collector is away or slow. Must not: block or
 * throw into the broker, or hold unbounded memory: past `maxBuffered` messages new ones
 * are dropped, counted and logged.
 *
 * What is lost, said plainly: TCP gives no application acknowledgement, so messages
 * written into a connection the collector has already dropped (before we see the FIN or
 * RST) are lost; UDP loses what the network loses. The audit log in SQLite is the record
 * of truth; the SEQ in every message's structured data lets a SIEM see the gaps.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { AuditConfig } from '../../core/audit-config.js';
import { ConfigError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { CLIENT_TLS_GROUPS } from '../../core/tls-config.js';
import type { AuditRecord } from '../../security/audit/record.js';
import { formatSyslog, octetCounted, UDP_MAX_BYTES, type SyslogHeader } from './syslog-format.js';

export type SyslogConfig = NonNullable<AuditConfig['syslog']>;

export interface SyslogSinkOptions {
  /** RFC 5424 HOSTNAME (the broker's host name). */
  hostname: string;
  /** Messages held while disconnected or while the socket pushes back. Default 10,000. */
  maxBuffered?: number;
  /** First reconnect delay; doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface SyslogSink {
  write(record: AuditRecord, severity: number, json: string): void;
  /** Flushes what it can within `timeoutMs`, then closes the socket. */
  close(timeoutMs?: number): Promise<void>;
}

/** Builds the sink for `cfg`; reads the `ca` file now, so a bad path fails at startup. */
export function createSyslogSink(cfg: SyslogConfig, resolvePath: (p: string) => string, logger: Logger, opts: SyslogSinkOptions): SyslogSink {
  const header: SyslogHeader = { facility: cfg.facility, hostname: opts.hostname, appName: cfg.appName, procId: String(process.pid) };
  if (cfg.transport === 'udp') return new UdpSyslogSink(cfg, header, logger, opts.maxBuffered ?? 10_000);
  let ca: string | undefined;
  if (cfg.transport === 'tls' && cfg.ca !== undefined) {
    const path = resolvePath(cfg.ca);
    try {
      ca = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`audit.syslog.ca: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return new StreamSyslogSink(cfg, header, logger, opts, ca);
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'EUNKNOWN';
}

/**
 * One datagram per message; a send error is logged once per kind. Sends waiting on a
 * host-name lookup are bounded like the stream buffer (a hung resolver must not grow memory).
 */
class UdpSyslogSink implements SyslogSink {
  private readonly socket: UdpSocket;
  private pending = 0;
  private dropped = 0;
  private idle: (() => void) | null = null;
  private readonly failing = new Set<string>();
  private closed = false;

  constructor(
    private readonly cfg: SyslogConfig,
    private readonly header: SyslogHeader,
    private readonly logger: Logger,
    private readonly maxPending: number,
  ) {
    this.socket = createSocket(isIP(cfg.host) === 6 ? 'udp6' : 'udp4');
    this.socket.on('error', (err) => this.fail(err));
    this.socket.unref();
  }

  write(record: AuditRecord, severity: number, json: string): void {
    if (this.closed) return;
    if (this.pending >= this.maxPending) {
      if (this.dropped++ === 0) this.logger.error({ host: this.cfg.host, port: this.cfg.port, pending: this.pending }, 'audit syslog (udp): too many sends pending, dropping messages');
      return;
    }
    const msg = formatSyslog(this.header, severity, record, json, UDP_MAX_BYTES);
    this.pending++;
    this.socket.send(msg, this.cfg.port, this.cfg.host, (err) => {
      if (err) this.fail(err);
      else if (this.failing.size > 0 || this.dropped > 0) {
        this.logger.info({ host: this.cfg.host, port: this.cfg.port, dropped: this.dropped }, 'audit syslog (udp): sending again');
        this.failing.clear();
        this.dropped = 0;
      }
      if (--this.pending === 0 && this.idle !== null) this.idle();
    });
  }

  private fail(err: Error): void {
    const code = errorCode(err);
    if (this.failing.has(code)) return;
    this.failing.add(code);
    this.logger.error({ host: this.cfg.host, port: this.cfg.port, code, err: err.message }, 'audit syslog (udp): send failed');
  }

  async close(timeoutMs = 2000): Promise<void> {
    this.closed = true;
    if (this.pending > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}

/**
 * TCP or TLS with octet-counting framing. Frames go straight to the socket while it takes
 * them; otherwise into a bounded FIFO that is flushed on connect and on drain.
 */
class StreamSyslogSink implements SyslogSink {
  private socket: Socket | null = null;
  private connected = false;
  private queue: Buffer[] = [];
  private head = 0;
  private readonly maxBuffered: number;
  private readonly minBackoff: number;
  private readonly maxBackoff: number;
  private backoff: number;
  private timer: NodeJS.Timeout | null = null;
  private closing = false;
  private readonly failing = new Set<string>();
  /** Dropped since the last time the sink was healthy (logged when it is again). */
  private dropped = 0;
  private everConnected = false;
  private onFlushed: (() => void) | null = null;

  constructor(
    private readonly cfg: SyslogConfig,
    private readonly header: SyslogHeader,
    private readonly logger: Logger,
    opts: SyslogSinkOptions,
    private readonly ca: string | undefined,
  ) {
    this.maxBuffered = opts.maxBuffered ?? 10_000;
    this.minBackoff = opts.minBackoffMs ?? 200;
    this.maxBackoff = opts.maxBackoffMs ?? 30_000;
    this.backoff = this.minBackoff;
    this.connect();
  }

  private get buffered(): number {
    return this.queue.length - this.head;
  }

  write(record: AuditRecord, severity: number, json: string): void {
    if (this.closing) return;
    const frame = octetCounted(formatSyslog(this.header, severity, record, json));
    const socket = this.socket;
    if (this.connected && socket !== null && this.buffered === 0 && !socket.writableNeedDrain) {
      socket.write(frame);
      return;
    }
    if (this.buffered >= this.maxBuffered) {
      if (this.dropped++ === 0) {
        this.logger.error({ host: this.cfg.host, port: this.cfg.port, buffered: this.buffered }, `audit syslog (${this.cfg.transport}): buffer full, dropping messages`);
      }
      return;
    }
    this.queue.push(frame);
  }

  private connect(): void {
    this.timer = null;
    if (this.closing) return;
    const { host, port } = this.cfg;
    const socket =
      this.cfg.transport === 'tls'
        ? tlsConnect({
            host,
            port,
            // SECURITY: the collector must prove its name with a certificate we trust
            // (the `ca` file, else the system store); no TLS below 1.2.
            ca: this.ca,
            servername: isIP(host) === 0 ? host : undefined,
            minVersion: 'TLSv1.2',
            ecdhCurve: CLIENT_TLS_GROUPS,
            rejectUnauthorized: true,
          })
        : netConnect({ host, port });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on(this.cfg.transport === 'tls' ? 'secureConnect' : 'connect', () => this.onConnect(socket));
    socket.on('drain', () => this.flush());
    socket.on('error', (err) => this.onError(err));
    // A collector never speaks to us; its FIN means it is going away.
    socket.on('data', () => {});
    socket.on('end', () => socket.destroy());
    socket.on('close', () => this.onClose(socket));
  }

  private onConnect(socket: Socket): void {
    if (socket !== this.socket) return;
    this.connected = true;
    this.backoff = this.minBackoff;
    if (this.everConnected || this.failing.size > 0 || this.dropped > 0) {
      this.logger.info({ host: this.cfg.host, port: this.cfg.port, buffered: this.buffered, dropped: this.dropped }, `audit syslog (${this.cfg.transport}): connected`);
    }
    this.everConnected = true;
    this.failing.clear();
    this.dropped = 0;
    this.flush();
  }

  private onError(err: Error): void {
    const code = errorCode(err);
    if (this.failing.has(code)) return;
    this.failing.add(code);
    this.logger.error({ host: this.cfg.host, port: this.cfg.port, code, err: err.message }, `audit syslog (${this.cfg.transport}): connection failed, retrying`);
  }

  private onClose(socket: Socket): void {
    if (socket !== this.socket) return;
    const wasConnected = this.connected;
    this.socket = null;
    this.connected = false;
    if (wasConnected) this.logger.warn({ host: this.cfg.host, port: this.cfg.port }, `audit syslog (${this.cfg.transport}): connection lost, buffering`);
    if (this.closing) return;
    // Backoff with jitter, so many brokers do not reconnect to one collector in lockstep.
    const delay = Math.round(this.backoff * (0.5 + Math.random() * 0.5));
    this.backoff = Math.min(this.backoff * 2, this.maxBackoff);
    this.timer = setTimeout(() => this.connect(), delay);
    this.timer.unref();
  }

  /** Writes buffered frames until the socket pushes back; batches them in one write per flush. */
  private flush(): void {
    const socket = this.socket;
    if (!this.connected || socket === null) return;
    if (this.buffered > 0) {
      socket.cork();
      while (this.head < this.queue.length) {
        const frame = this.queue[this.head]!;
        this.head++;
        if (!socket.write(frame)) break;
      }
      socket.uncork();
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
        // Compact now and then instead of shifting per message.
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
    }
    if (this.buffered === 0 && !socket.writableNeedDrain) {
      if (this.dropped > 0) {
        // A slow collector caught up: say how much it cost, once.
        this.logger.warn({ host: this.cfg.host, port: this.cfg.port, dropped: this.dropped }, `audit syslog (${this.cfg.transport}): caught up after dropping messages`);
        this.dropped = 0;
      }
      this.onFlushed?.();
    }
  }

  async close(timeoutMs = 2000): Promise<void> {
    this.closing = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const socket = this.socket;
    if (socket === null) {
      this.discardBuffered();
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        socket.destroy();
        resolve();
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      socket.once('close', done);
      if (!this.connected) {
        // Not up (connecting or retrying): nothing to flush into.
        socket.destroy();
        return;
      }
      this.onFlushed = () => {
        this.onFlushed = null;
        socket.end();
      };
      this.flush();
    });
    this.discardBuffered();
  }

  private discardBuffered(): void {
    if (this.buffered > 0) this.logger.warn({ host: this.cfg.host, port: this.cfg.port, lost: this.buffered }, `audit syslog (${this.cfg.transport}): closed with messages unsent`);
    this.queue = [];
    this.head = 0;
  }
}
