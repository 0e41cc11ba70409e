/**
 * The bytes a message travels as between nodes (NATS message body, JetStream stream entry,
 * retained KV value). Owns: the layout and its strict decoding. Must not: do I/O, choose
 * subjects (subject-codec.ts), or decide who receives a message.
 *
 * Layout: `BMQ1` (4 bytes), the length of the meta JSON (u32 big-endian), the meta JSON
 * (UTF-8), then the payload as the publisher sent it. The meta carries what the topic
 * subject does not: the message id (for duplicate drops on receipt), the publisher's client
 * id (no-local [MQTT-3.8.3-3]), the retain flag, the absolute expiry and the v5 properties.
 * Metadata sits in the body rather than in NATS headers because v5 user properties are
 * arbitrary UTF-8, which header values (HTTP-like, line-oriented) do not carry safely.
 *
 * SECURITY: anything that does not decode exactly (wrong magic, a length past the end, a
 * meta that is not the expected shape) is refused as a whole (null): a message from
 * something that is not a Bastion node is dropped and counted, never half-delivered.
 */
import type { Message, MessageProperties } from '../broker/message.js';
import { decodeProperties, encodeProperties } from '../store/sqlite/encoding.js';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const MAGIC = Buffer.from('BMQ1', 'latin1');
const HEAD_BYTES = MAGIC.length + 4;

/** A message as it came off the cluster: the message, and the id its ingress node gave it. */
export interface ClusterEnvelope {
  id: string;
  message: Message;
}

interface WireMeta {
  /** Message id. */
  i: string;
  /** Publisher's client id ('' for the broker). */
  o: string;
  /** QoS as published (the subject says it too; a retained value has only this). */
  q: 0 | 1 | 2;
  /** Retain flag. */
  r: 0 | 1;
  /** Absolute expiry, ms since the epoch (0: never). */
  e: number;
  /** v5 properties, when the publisher sent any: the SQLite store's JSON form (store/sqlite/encoding.ts). */
  p?: string;
}

/** The body of `message` with id `id`. */
export function encodeEnvelope(id: string, message: Message): Buffer {
  const meta: WireMeta = { i: id, o: message.origin, q: message.qos, r: message.retain ? 1 : 0, e: message.expiresAt };
  const props = encodeProperties(message.properties);
  if (props !== null) meta.p = props;
  const json = Buffer.from(JSON.stringify(meta), 'utf8');
  const out = Buffer.allocUnsafe(HEAD_BYTES + json.length + message.payload.length);
  MAGIC.copy(out, 0);
  out.writeUInt32BE(json.length, MAGIC.length);
  json.copy(out, HEAD_BYTES);
  message.payload.copy(out, HEAD_BYTES + json.length);
  return out;
}

/** Bytes an envelope adds to a payload of this message (for the max_payload check). */
export function envelopeOverhead(id: string, message: Message): number {
  return encodeEnvelope(id, { ...message, payload: Buffer.alloc(0) }).length;
}

/**
 * The message in `body`, published on `topic`, or null when the body is not an envelope
 * this module wrote, or (`qos` given: the subject's QoS token) says another QoS. The
 * payload is a copy (the NATS buffer is reused).
 */
export function decodeEnvelope(body: Uint8Array, topic: string, qos?: 0 | 1 | 2): ClusterEnvelope | null {
  if (body.length < HEAD_BYTES) return null;
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  const metaLen = buf.readUInt32BE(MAGIC.length);
  if (metaLen > buf.length - HEAD_BYTES) return null;
  let meta: unknown;
  try {
    meta = JSON.parse(buf.toString('utf8', HEAD_BYTES, HEAD_BYTES + metaLen));
  } catch {
    return null;
  }
  if (!isRecord(meta)) return null;
  const { i, o, q, r, e, p } = meta;
  if (typeof i !== 'string' || i === '' || typeof o !== 'string' || (r !== 0 && r !== 1) || typeof e !== 'number' || !Number.isSafeInteger(e) || e < 0) return null;
  if ((q !== 0 && q !== 1 && q !== 2) || (qos !== undefined && q !== qos)) return null;
  let properties: MessageProperties | undefined;
  if (p !== undefined) {
    if (typeof p !== 'string') return null;
    try {
      properties = decodeProperties(p);
    } catch {
      return null;
    }
  }
  const payload = Buffer.from(buf.subarray(HEAD_BYTES + metaLen));
  return { id: i, message: { topic, payload, qos: q, retain: r === 1, properties, expiresAt: e, origin: o } };
}
