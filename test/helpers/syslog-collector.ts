/**
 * Syslog collectors for the audit export tests: a strict RFC 5424 parser (tests assert on
 * header fields, structured data and MSG rather than on substrings), an RFC 6587
 * octet-counting de-framer, TCP/TLS collectors feeding an Inbox, and a chain of hand-built
 * audit records. Must not: be imported by src/.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { chainRecord, type AuditRecord } from '../../src/security/audit/record.js';
import { Inbox } from '../integration/support.js';

export interface ParsedSyslog {
  pri: number;
  facility: number;
  severity: number;
  version: number;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  /** SD-ID → params (values unescaped). */
  sd: Map<string, Record<string, string>>;
  msg: string;
}

export function parseSyslog(message: Buffer | string): ParsedSyslog {
  const text = typeof message === 'string' ? message : message.toString('utf8');
  const m = /^<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) /.exec(text);
  if (m === null) throw new Error(`not an RFC 5424 header: ${text.slice(0, 120)}`);
  const pri = Number(m[1]);
  for (const [name, value, max] of [['HOSTNAME', m[4]!, 255], ['APP-NAME', m[5]!, 48], ['PROCID', m[6]!, 128], ['MSGID', m[7]!, 32]] as const) {
    if (value.length > max || !/^[\x21-\x7e]+$/.test(value)) throw new Error(`bad ${name}: ${value}`);
  }
  let i = m[0].length;
  const sd = new Map<string, Record<string, string>>();
  if (text[i] === '-') i++;
  else {
    while (text[i] === '[') {
      i++;
      const idEnd = text.slice(i).search(/[ \]]/);
      if (idEnd < 0) throw new Error('unterminated SD-ELEMENT');
      const id = text.slice(i, i + idEnd);
      i += idEnd;
      const params: Record<string, string> = {};
      while (text[i] === ' ') {
        i++;
        const eq = text.indexOf('="', i);
        if (eq < 0) throw new Error('bad SD-PARAM');
        const name = text.slice(i, eq);
        if (!/^[\x21-\x7e]{1,32}$/.test(name) || /[= \]"]/.test(name)) throw new Error(`bad PARAM-NAME ${name}`);
        i = eq + 2;
        let value = '';
        for (;;) {
          const c = text[i];
          if (c === undefined) throw new Error('unterminated PARAM-VALUE');
          if (c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\' || text[i + 1] === ']')) {
            value += text[i + 1];
            i += 2;
            continue;
          }
          if (c === '"') break;
          if (c === ']') throw new Error('unescaped ] in PARAM-VALUE');
          value += c;
          i++;
        }
        i++;
        params[name] = value;
      }
      if (text[i] !== ']') throw new Error(`SD-ELEMENT not closed at ${i}`);
      i++;
      sd.set(id, params);
    }
  }
  let msg = '';
  if (i < text.length) {
    if (text[i] !== ' ') throw new Error(`expected SP before MSG at ${i}`);
    msg = text.slice(i + 1);
  }
  return { pri, facility: pri >> 3, severity: pri & 7, version: Number(m[2]), timestamp: m[3]!, hostname: m[4]!, appName: m[5]!, procId: m[6]!, msgId: m[7]!, sd, msg };
}

/** Splits an octet-counted stream (`LEN SP MSG`...) into messages; returns them and the unread rest. */
export function deframeOctetCounted(buf: Buffer): { messages: Buffer[]; rest: Buffer } {
  const messages: Buffer[] = [];
  let off = 0;
  for (;;) {
    const sp = buf.indexOf(0x20, off);
    if (sp < 0) break;
    const lenText = buf.subarray(off, sp).toString('ascii');
    if (!/^[1-9][0-9]*$/.test(lenText)) throw new Error(`bad MSG-LEN ${JSON.stringify(lenText)}`);
    const len = Number(lenText);
    if (sp + 1 + len > buf.length) break;
    messages.push(buf.subarray(sp + 1, sp + 1 + len));
    off = sp + 1 + len;
  }
  return { messages, rest: buf.subarray(off) };
}

/** A value at a dotted path of a nested object (`event.outcome`). */
export function at(doc: unknown, path: string): unknown {
  let node = doc;
  for (const key of path.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/** A chain of `n` records cycling through a few event types. */
export function auditRecords(n: number, first: { seq: number; hash: string } | null = null): AuditRecord[] {
  const out: AuditRecord[] = [];
  let prev = first;
  for (let i = 0; i < n; i++) {
    const events: SecurityEvent[] = [
      { type: 'auth.failure', listener: 'mqtt', remoteAddress: '127.0.0.2', clientId: `c${i}`, username: 'alice', provider: 'password', reasonCode: 0x86, reason: 'bad "user" name\\password]' },
      {
        type: 'connection.accepted',
        listener: 'mqtts',
        remoteAddress: '::ffff:127.0.0.3',
        clientId: `dev-${i}`,
        principal: `dev-${i}`,
        method: 'certificate',
        protocolVersion: 5,
        tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', group: 'X25519MLKEM768', resumed: false },
        certificate: { serialNumber: '1f:2e', fingerprint256: 'aa:bb', commonName: `dev-${i}`, issuer: 'CN=CA', subject: `CN=dev-${i}`, sans: { dns: [], uri: [`urn:dev:${i}`], ip: [], email: [] } },
      },
      { type: 'limit.hit', limit: 'publish-rate', clientId: `c${i}`, action: 'dropped', count: i + 1 },
    ];
    const r = chainRecord(prev, Date.UTC(2026, 10, 26, 13, 0, i), events[i % events.length]!);
    out.push(r);
    prev = r;
  }
  return out;
}

/** A TCP (or TLS) collector that de-frames octet-counted messages into an Inbox. */
export interface Collector {
  port: number;
  messages: Inbox<ParsedSyslog>;
  close(): Promise<void>;
}

export function collect(server: Server, messages: Inbox<ParsedSyslog>, event: 'connection' | 'secureConnection' = 'connection'): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on(event, (socket: Socket) => {
    sockets.add(socket);
    let buf: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      const { messages: frames, rest } = deframeOctetCounted(Buffer.concat([buf, chunk]));
      buf = rest;
      for (const f of frames) messages.push(parseSyslog(f));
    });
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  return sockets;
}

export async function listenOn(server: Server, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

export async function tcpCollector(port = 0, messages = new Inbox<ParsedSyslog>()): Promise<Collector> {
  const server = createServer();
  const sockets = collect(server, messages);
  const bound = await listenOn(server, port);
  return {
    port: bound,
    messages,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
