/**
 * Column encodings of the SQLite store. Owns: turning message properties, subscriptions
 * and small enums into compact column values and back, rejecting what it cannot read
 * (ERR_STORE_CORRUPT). Must not: run SQL.
 */
import type { MessageProperties } from '../../broker/message.js';
import type { ClientIdentity, OutboundState, StoredSubscription } from '../../broker/ports.js';
import type { ProtocolVersion, QoS, UserProperties } from '../../protocol/packets.js';
import { BastionError } from '../../core/errors.js';

function corrupt(what: string): BastionError {
  return new BastionError('ERR_STORE_CORRUPT', `unreadable stored ${what}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Properties as JSON with short keys; correlationData as base64. */
interface PropertiesJson {
  pfi?: boolean;
  ct?: string;
  rt?: string;
  cd?: string;
  up?: UserProperties;
}

/** NULL (the common case) when the message carries no properties. */
export function encodeProperties(p: MessageProperties | undefined): string | null {
  if (p === undefined) return null;
  const j: PropertiesJson = {};
  if (p.payloadFormatIndicator !== undefined) j.pfi = p.payloadFormatIndicator;
  if (p.contentType !== undefined) j.ct = p.contentType;
  if (p.responseTopic !== undefined) j.rt = p.responseTopic;
  if (p.correlationData !== undefined) j.cd = p.correlationData.toString('base64');
  if (p.userProperties !== undefined) j.up = p.userProperties;
  return JSON.stringify(j);
}

export function decodeProperties(text: string | null): MessageProperties | undefined {
  if (text === null) return undefined;
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw corrupt('message properties');
  }
  if (!isRecord(j)) throw corrupt('message properties');
  const p: MessageProperties = {};
  if (j.pfi !== undefined) {
    if (typeof j.pfi !== 'boolean') throw corrupt('payload format indicator');
    p.payloadFormatIndicator = j.pfi;
  }
  if (j.ct !== undefined) {
    if (typeof j.ct !== 'string') throw corrupt('content type');
    p.contentType = j.ct;
  }
  if (j.rt !== undefined) {
    if (typeof j.rt !== 'string') throw corrupt('response topic');
    p.responseTopic = j.rt;
  }
  if (j.cd !== undefined) {
    if (typeof j.cd !== 'string') throw corrupt('correlation data');
    p.correlationData = Buffer.from(j.cd, 'base64');
  }
  if (j.up !== undefined) p.userProperties = decodeUserProperties(j.up);
  return p;
}

function decodeUserProperties(v: unknown): UserProperties {
  if (!isRecord(v)) throw corrupt('user properties');
  const out: UserProperties = {};
  for (const [key, value] of Object.entries(v)) {
    if (typeof value === 'string') out[key] = value;
    else if (Array.isArray(value) && value.every((x): x is string => typeof x === 'string')) out[key] = value;
    else throw corrupt('user properties');
  }
  return out;
}

/** `[[filter, qos | noLocal<<2 | retainAsPublished<<3 | retainHandling<<4, subscriptionId], ...]` */
export function encodeSubscriptions(subs: readonly StoredSubscription[]): string {
  return JSON.stringify(
    subs.map((s) => [
      s.filter,
      s.qos | (s.noLocal ? 4 : 0) | (s.retainAsPublished ? 8 : 0) | (s.retainHandling << 4),
      s.subscriptionId,
    ]),
  );
}

export function decodeSubscriptions(text: string): StoredSubscription[] {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw corrupt('subscriptions');
  }
  if (!Array.isArray(j)) throw corrupt('subscriptions');
  return j.map((item: unknown): StoredSubscription => {
    if (!Array.isArray(item) || item.length !== 3) throw corrupt('subscription');
    const [filter, packed, subscriptionId] = item as unknown[];
    if (typeof filter !== 'string' || typeof packed !== 'number' || typeof subscriptionId !== 'number') {
      throw corrupt('subscription');
    }
    const retainHandling = (packed >> 4) & 3;
    if (retainHandling === 3) throw corrupt('retain handling');
    return {
      filter,
      qos: toQos(packed & 3),
      noLocal: (packed & 4) !== 0,
      retainAsPublished: (packed & 8) !== 0,
      retainHandling: retainHandling as 0 | 1 | 2,
      subscriptionId,
    };
  });
}

/** Comma-separated, '' when empty. */
export function encodeSubscriptionIds(ids: readonly number[]): string {
  return ids.join(',');
}

export function decodeSubscriptionIds(text: string): number[] {
  if (text === '') return [];
  return text.split(',').map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) throw corrupt('subscription ids');
    return n;
  });
}

export function toQos(n: number): QoS {
  if (n === 0 || n === 1 || n === 2) return n;
  throw corrupt('QoS');
}

export function toProtocolVersion(n: number): ProtocolVersion {
  if (n === 3 || n === 4 || n === 5) return n;
  throw corrupt('protocol version');
}

const STATES: readonly OutboundState[] = ['queued', 'publish-sent', 'pubrel-sent'];

export function encodeState(state: OutboundState): number {
  switch (state) {
    case 'queued':
      return 0;
    case 'publish-sent':
      return 1;
    case 'pubrel-sent':
      return 2;
  }
}

export function decodeState(n: number): OutboundState {
  const s = STATES[n];
  if (s === undefined) throw corrupt('outbound state');
  return s;
}

/**
 * `sessions.identity` → the record's optional identity. SECURITY: a value that does not
 * read as an identity is treated as unknown (deliveries to the session are denied until
 * its client connects again), never guessed.
 */
export function identityField(text: string | null): { identity?: ClientIdentity } {
  if (text === null) return {};
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    return {};
  }
  if (typeof j !== 'object' || j === null) return {};
  const o = j as Record<string, unknown>;
  if ((o.principal !== null && typeof o.principal !== 'string') || typeof o.method !== 'string' || typeof o.remoteAddress !== 'string' || typeof o.listener !== 'string') return {};
  return { identity: o as unknown as ClientIdentity };
}
