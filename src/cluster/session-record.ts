/**
 * The value of a client id's key in the sessions bucket: who owns the client id (node and
 * epoch), the durable part of its persistent session, and its pending will. Owns: the
 * layout and its strict decoding. Must not: do I/O or decide anything.
 *
 * The session part is small and bounded: subscriptions, identity, the stream position up
 * to which every message for it is done (`cursor`: a new owner replays the stream after
 * it), the QoS 2 packet ids received and not released, and the outbound QoS 2 exchanges in
 * progress (stream sequence → packet id and state), so a new owner resends a PUBLISH with
 * the same packet id or only the PUBREL, and the client delivers it once.
 *
 * SECURITY: a value that does not decode exactly is refused (null): a claim over it starts
 * a fresh session rather than resume one it cannot read; the identity is read the way the
 * SQLite store reads it (unknown unless it has the expected shape).
 */
import type { KvEntry } from '@nats-io/kv';
import type { Message } from '../broker/message.js';
import type { ClientIdentity, OutboundState, StoredSubscription } from '../broker/ports.js';
import type { ProtocolVersion } from '../protocol/packets.js';
import { decodeState, decodeSubscriptions, encodeState, encodeSubscriptions, identityField, toProtocolVersion } from '../store/sqlite/encoding.js';
import { decodeEnvelope, encodeEnvelope } from './message-envelope.js';

/** An outbound QoS 2 exchange in progress: its stream sequence, packet id and state. */
export interface DurableQos2 {
  streamSeq: number;
  packetId: number;
  state: OutboundState;
}

/** The durable part of a persistent session, as a new owner needs it. */
export interface DurableSession {
  protocolVersion: ProtocolVersion;
  expiryInterval: number;
  /** ms since the epoch when the client disconnected; 0 while connected. */
  disconnectedAt: number;
  subscriptions: StoredSubscription[];
  identity?: ClientIdentity;
  /** Every message of the stream up to this sequence is done for this session. */
  cursor: number;
  incomingQos2: number[];
  outboundQos2: DurableQos2[];
}

/** A will as survivors need it to publish it when its node dies. */
export interface DurableWill {
  message: Message;
  /** Will Delay Interval, seconds. */
  delay: number;
  /** Message Expiry Interval, seconds from publication; 0 for none. */
  expiryInterval: number;
  /** Who the client was, so a survivor authorizes the will as the client when it publishes it. */
  identity?: ClientIdentity;
}

export interface OwnerRecord {
  node: string;
  epoch: number;
  /** When the owner claimed the client id (ms since the epoch). */
  claimedAt: number;
  session?: DurableSession;
  will?: DurableWill;
}

interface WireRecord {
  n: string;
  e: number;
  t: number;
  s?: {
    v: number;
    x: number;
    d: number;
    subs: string;
    id?: string;
    c: number;
    q2: number[];
    o: Array<[number, number, number]>;
  };
  w?: { t: string; m: string; d: number; x: number; id?: string };
}

export function encodeOwnerRecord(r: OwnerRecord): string {
  const w: WireRecord = { n: r.node, e: r.epoch, t: r.claimedAt };
  const s = r.session;
  if (s !== undefined) {
    w.s = {
      v: s.protocolVersion,
      x: s.expiryInterval,
      d: s.disconnectedAt,
      subs: encodeSubscriptions(s.subscriptions),
      ...(s.identity !== undefined ? { id: JSON.stringify(s.identity) } : {}),
      c: s.cursor,
      q2: s.incomingQos2,
      o: s.outboundQos2.map((q) => [q.streamSeq, q.packetId, encodeState(q.state)]),
    };
  }
  if (r.will !== undefined) {
    w.w = {
      t: r.will.message.topic,
      m: encodeEnvelope('will', r.will.message).toString('base64'),
      d: r.will.delay,
      x: r.will.expiryInterval,
      ...(r.will.identity !== undefined ? { id: JSON.stringify(r.will.identity) } : {}),
    };
  }
  return JSON.stringify(w);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function decodeSession(s: unknown): DurableSession | null {
  if (typeof s !== 'object' || s === null) return null;
  const o = s as Record<string, unknown>;
  if (!isCount(o.v) || !isCount(o.x) || !isCount(o.d) || typeof o.subs !== 'string' || !isCount(o.c)) return null;
  if (!Array.isArray(o.q2) || !o.q2.every((id) => isCount(id) && id > 0 && id <= 65535)) return null;
  if (!Array.isArray(o.o)) return null;
  if (o.id !== undefined && typeof o.id !== 'string') return null;
  try {
    const outboundQos2 = o.o.map((e: unknown): DurableQos2 => {
      if (!Array.isArray(e) || e.length !== 3 || !e.every(isCount)) throw new Error('outbound');
      return { streamSeq: e[0] as number, packetId: e[1] as number, state: decodeState(e[2] as number) };
    });
    return {
      protocolVersion: toProtocolVersion(o.v),
      expiryInterval: o.x,
      disconnectedAt: o.d,
      subscriptions: decodeSubscriptions(o.subs),
      ...identityField(typeof o.id === 'string' ? o.id : null),
      cursor: o.c,
      incomingQos2: o.q2 as number[],
      outboundQos2,
    };
  } catch {
    return null;
  }
}

function decodeWill(w: unknown): DurableWill | null {
  if (typeof w !== 'object' || w === null) return null;
  const o = w as Record<string, unknown>;
  if (typeof o.t !== 'string' || o.t === '' || typeof o.m !== 'string' || !isCount(o.d) || !isCount(o.x)) return null;
  if (o.id !== undefined && typeof o.id !== 'string') return null;
  const env = decodeEnvelope(Buffer.from(o.m, 'base64'), o.t);
  return env === null ? null : { message: env.message, delay: o.d, expiryInterval: o.x, ...identityField(typeof o.id === 'string' ? o.id : null) };
}

/** The record in `value`, or null when it is not one `encodeOwnerRecord` wrote. */
export function decodeOwnerRecord(value: Uint8Array): OwnerRecord | null {
  let j: unknown;
  try {
    j = JSON.parse(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8'));
  } catch {
    return null;
  }
  if (typeof j !== 'object' || j === null) return null;
  const o = j as Record<string, unknown>;
  if (typeof o.n !== 'string' || !isCount(o.e) || !isCount(o.t)) return null;
  const record: OwnerRecord = { node: o.n, epoch: o.e, claimedAt: o.t };
  if (o.s !== undefined) {
    const session = decodeSession(o.s);
    if (session === null) return null;
    record.session = session;
  }
  if (o.w !== undefined) {
    const will = decodeWill(o.w);
    if (will === null) return null;
    record.will = will;
  }
  return record;
}

/** The record of a sessions-bucket entry: null when absent, deleted, or not one `encodeOwnerRecord` wrote. */
export function ownerRecordOf(entry: KvEntry | null): OwnerRecord | null {
  return entry !== null && entry.operation === 'PUT' ? decodeOwnerRecord(entry.value) : null;
}
