/**
 * The one canonical JSON form of signed OTA documents (manifests, key sets). Owns: the
 * encoder (objects as ordered entries, strings, non-negative safe integers, arrays; no
 * whitespace), strict UTF-8 and base64 decoding, the field checks the decoders share, and
 * the ISO time form. Must not: do I/O, or decide trust (verify.ts does).
 *
 * SECURITY: a document is accepted only if its bytes are exactly `encode(parse(bytes))`
 * (decoders re-encode and compare). That refuses, with no list of special cases:
 * duplicate keys, reordered or extra keys, whitespace, `\u0041`-style escapes of
 * characters that need none, `1.0`/`1e3`, a BOM, and overlong or invalid UTF-8. So each
 * document has exactly one accepted encoding, as with deterministic CBOR.
 */

/** A value of the canonical form: no floats, no booleans, no null. */
export type CanonicalValue = string | number | CanonicalObject | readonly CanonicalValue[];
/** An object is its entries, in the one order the document type fixes. */
export interface CanonicalObject {
  readonly entries: ReadonlyArray<readonly [string, CanonicalValue]>;
}

export function obj(entries: ReadonlyArray<readonly [string, CanonicalValue]>): CanonicalObject {
  return { entries };
}

function encodeValue(v: CanonicalValue): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`not a non-negative safe integer: ${v}`);
    return String(v);
  }
  if (Array.isArray(v)) return `[${(v as readonly CanonicalValue[]).map(encodeValue).join(',')}]`;
  return `{${(v as CanonicalObject).entries.map(([k, x]) => `${JSON.stringify(k)}:${encodeValue(x)}`).join(',')}}`;
}

/** The canonical UTF-8 bytes of a document. */
export function encodeCanonical(doc: CanonicalObject): Buffer {
  return Buffer.from(encodeValue(doc), 'utf8');
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Thrown by the field readers below; decoders turn it into a `Malformed` result. */
export class FieldError extends Error {}

/** Parses bytes as strict UTF-8 JSON (an object); throws FieldError otherwise. */
export function parseJsonObject(bytes: Uint8Array, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new FieldError(`${what} is not valid UTF-8`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new FieldError(`${what} is not JSON`);
  }
  return asObject(value, what);
}

export function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FieldError(`${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

/** Refuses any key not in `known` (own keys only: `__proto__` and friends are data here). */
export function onlyKeys(o: Record<string, unknown>, known: readonly string[], what: string): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new FieldError(`${what} has an unknown field ${JSON.stringify(k.slice(0, 40))}`);
}

function own(o: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(o, key) ? o[key] : undefined;
}

export function str(o: Record<string, unknown>, key: string, what: string, pattern: RegExp, max: number): string {
  const v = own(o, key);
  if (typeof v !== 'string') throw new FieldError(`${what}.${key} must be a string`);
  if (v.length === 0 || v.length > max || !pattern.test(v)) throw new FieldError(`${what}.${key} is not a valid value`);
  return v;
}

export function int(o: Record<string, unknown>, key: string, what: string, min: number): number {
  const v = own(o, key);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new FieldError(`${what}.${key} must be a whole number >= ${min}`);
  return v;
}

export function arr(o: Record<string, unknown>, key: string, what: string, max: number): unknown[] {
  const v = own(o, key);
  if (!Array.isArray(v)) throw new FieldError(`${what}.${key} must be an array`);
  if (v.length > max) throw new FieldError(`${what}.${key} has more than ${max} entries`);
  return v;
}

/** `2026-07-01T00:00:00Z`: whole seconds, UTC, the one form times take. */
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

export function isoSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** A time field → ms; refuses anything that is not its own `isoSeconds` form (e.g. 2026-02-30). */
export function time(o: Record<string, unknown>, key: string, what: string): number {
  const v = str(o, key, what, ISO_RE, 20);
  const ms = Date.parse(v);
  if (!Number.isFinite(ms) || isoSeconds(ms) !== v) throw new FieldError(`${what}.${key} is not a valid time`);
  return ms;
}

/** Identifiers (vendor, class, key ids): printable ASCII without spaces or quotes. */
export const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:@/+-]*$/;
export const HEX64_RE = /^[0-9a-f]{64}$/;
/** Printable ASCII (URIs, versions). */
export const PRINTABLE_RE = /^[\x21-\x7e]+$/;

const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Strict base64: the input must be the canonical encoding of what it decodes to. */
export function strictBase64(value: unknown, what: string, maxBytes: number): Buffer {
  if (typeof value !== 'string' || value.length % 4 !== 0 || !B64_RE.test(value)) throw new FieldError(`${what} is not base64`);
  if ((value.length / 4) * 3 > maxBytes + 2) throw new FieldError(`${what} is larger than ${maxBytes} bytes`);
  const bytes = Buffer.from(value, 'base64');
  if (bytes.toString('base64') !== value) throw new FieldError(`${what} is not canonical base64`);
  return bytes;
}

/** True when `bytes` are exactly the canonical encoding of `doc`. */
export function isCanonical(bytes: Uint8Array, doc: CanonicalObject): boolean {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(encodeCanonical(doc));
}
