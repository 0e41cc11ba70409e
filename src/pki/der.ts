/**
 * A small DER reader and writer. Owns: splitting bytes into tag-length-value elements with
 * bounds checks, reading the primitive types OCSP, CSRs and CRLs need (INTEGER, OID, OCTET
 * and BIT STRING, GeneralizedTime, ENUMERATED), and encoding them back.
 * Must not: recurse on its own (callers descend one level at a time, so hostile nesting
 * cannot exhaust the stack) or accept BER-only forms (indefinite lengths, long-form tags).
 */

/** Thrown on malformed DER; callers turn it into a PkiError with their own code. */
export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

/** Universal and context tags this module reads or writes (the whole identifier byte). */
export const Tag = {
  Boolean: 0x01,
  Integer: 0x02,
  BitString: 0x03,
  OctetString: 0x04,
  Null: 0x05,
  Oid: 0x06,
  Enumerated: 0x0a,
  Utf8String: 0x0c,
  PrintableString: 0x13,
  Ia5String: 0x16,
  UtcTime: 0x17,
  GeneralizedTime: 0x18,
  Sequence: 0x30,
  Set: 0x31,
} as const;

/** Identifier byte of a context-specific tag: `[n]`, constructed (EXPLICIT) or primitive. */
export function contextTag(n: number, constructed: boolean): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

/** One element: its identifier byte, its content and its whole encoding. */
export interface DerElement {
  readonly tag: number;
  readonly content: Uint8Array;
  /** Tag, length and content: the exact bytes to hash or verify a signature over. */
  readonly raw: Uint8Array;
}

/** Reads the element starting at `offset`; returns it and the offset just after it. */
function readAt(buf: Uint8Array, offset: number): { element: DerElement; end: number } {
  if (offset + 2 > buf.length) throw new DerError('truncated element header');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
  let lengthByte = buf[offset + 1]!;
  let pos = offset + 2;
  let length: number;
  if (lengthByte < 0x80) {
    length = lengthByte;
  } else {
    lengthByte &= 0x7f;
    // 0x80 alone is BER's indefinite length; DER forbids it. Four bytes is far beyond any input we accept.
    if (lengthByte === 0 || lengthByte > 4) throw new DerError('unsupported length encoding');
    if (pos + lengthByte > buf.length) throw new DerError('truncated length');
    length = 0;
    for (let i = 0; i < lengthByte; i++) length = length * 256 + buf[pos + i]!;
    pos += lengthByte;
  }
  const end = pos + length;
  if (end > buf.length) throw new DerError('element is longer than the input');
  return { element: { tag, content: buf.subarray(pos, end), raw: buf.subarray(offset, end) }, end };
}

/** Parses bytes holding exactly one element (trailing bytes are an error). */
export function parseDer(buf: Uint8Array): DerElement {
  const { element, end } = readAt(buf, 0);
  if (end !== buf.length) throw new DerError('trailing bytes after the element');
  return element;
}

/** The elements inside a constructed element's content. */
export function childrenOf(element: DerElement): DerElement[] {
  if ((element.tag & 0x20) === 0) throw new DerError(`tag 0x${element.tag.toString(16)} is not constructed`);
  const out: DerElement[] = [];
  let offset = 0;
  while (offset < element.content.length) {
    const next = readAt(element.content, offset);
    out.push(next.element);
    offset = next.end;
  }
  return out;
}

/** Asserts the element's tag; `what` names it in the error. */
export function expectTag(element: DerElement | undefined, tag: number, what: string): DerElement {
  if (element === undefined) throw new DerError(`${what} is missing`);
  if (element.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got 0x${element.tag.toString(16)}`);
  return element;
}

/** Children of a SEQUENCE, checking the tag first. */
export function sequenceOf(element: DerElement | undefined, what: string): DerElement[] {
  return childrenOf(expectTag(element, Tag.Sequence, what));
}

/** The single element inside an EXPLICIT context tag. */
export function explicitInner(element: DerElement, what: string): DerElement {
  const inner = childrenOf(element);
  if (inner.length !== 1) throw new DerError(`${what}: expected one element inside the tag`);
  return inner[0]!;
}

/**
 * An INTEGER as upper-case hex without leading zero bytes: the form Node's
 * X509Certificate.serialNumber uses (OpenSSL's BN_bn2hex), so serials compare as strings.
 */
export function readIntegerHex(element: DerElement | undefined, what: string): string {
  const { content } = expectTag(element, Tag.Integer, what);
  if (content.length === 0) throw new DerError(`${what}: empty INTEGER`);
  let start = 0;
  while (start < content.length - 1 && content[start] === 0) start++;
  return Buffer.from(content.subarray(start)).toString('hex').toUpperCase();
}

/** A non-negative INTEGER (or ENUMERATED, with `tag`) as a bigint. */
export function readUnsigned(element: DerElement | undefined, what: string, tag: number = Tag.Integer): bigint {
  const { content } = expectTag(element, tag, what);
  if (content.length === 0 || content.length > 64) throw new DerError(`${what}: bad integer length`);
  if ((content[0]! & 0x80) !== 0) throw new DerError(`${what}: negative integer`);
  return BigInt(`0x${Buffer.from(content).toString('hex')}`);
}

export function readOid(element: DerElement | undefined, what: string): string {
  const { content } = expectTag(element, Tag.Oid, what);
  if (content.length === 0 || content.length > 64) throw new DerError(`${what}: bad OID length`);
  const arcs: number[] = [];
  let value = 0;
  for (let i = 0; i < content.length; i++) {
    const byte = content[i]!;
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError(`${what}: OID arc too large`);
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0;
    } else if (i === content.length - 1) {
      throw new DerError(`${what}: truncated OID`);
    }
  }
  const first = arcs[0]!;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

export function readOctetString(element: DerElement | undefined, what: string): Buffer {
  return Buffer.from(expectTag(element, Tag.OctetString, what).content);
}

/** The bits of a BIT STRING with no unused bits (keys and signatures always are whole bytes). */
export function readBitString(element: DerElement | undefined, what: string): Buffer {
  const { content } = expectTag(element, Tag.BitString, what);
  if (content.length === 0 || content[0] !== 0) throw new DerError(`${what}: BIT STRING with unused bits`);
  return Buffer.from(content.subarray(1));
}

const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?Z$/;

export function readGeneralizedTime(element: DerElement | undefined, what: string): Date {
  const text = Buffer.from(expectTag(element, Tag.GeneralizedTime, what).content).toString('latin1');
  const m = GENERALIZED_TIME.exec(text);
  if (m === null) throw new DerError(`${what}: bad GeneralizedTime ${JSON.stringify(text.slice(0, 32))}`);
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  if (Number.isNaN(date.getTime())) throw new DerError(`${what}: invalid date`);
  return date;
}

const UTC_TIME = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/** An X.509 Time: UTCTime (years 1950–2049, RFC 5280 §4.1.2.5.1) or GeneralizedTime. */
export function readTime(element: DerElement | undefined, what: string): Date {
  if (element?.tag === Tag.GeneralizedTime) return readGeneralizedTime(element, what);
  const text = Buffer.from(expectTag(element, Tag.UtcTime, what).content).toString('latin1');
  const m = UTC_TIME.exec(text);
  if (m === null) throw new DerError(`${what}: bad UTCTime ${JSON.stringify(text.slice(0, 32))}`);
  const [yy, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const date = new Date(Date.UTC(yy < 50 ? 2000 + yy : 1900 + yy, mo - 1, d, h, mi, s));
  if (Number.isNaN(date.getTime())) throw new DerError(`${what}: invalid date`);
  return date;
}

// ---- writing ----

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One element from its identifier byte and content. */
export function tlv(tag: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content]);
}

export function sequence(...items: Uint8Array[]): Buffer {
  return tlv(Tag.Sequence, Buffer.concat(items));
}

/** `[n] EXPLICIT`: the inner element wrapped in a constructed context tag. */
export function explicit(n: number, inner: Uint8Array): Buffer {
  return tlv(contextTag(n, true), inner);
}

/** A non-negative INTEGER from hex (a serial) or a bigint, minimal and positive. */
export function integer(value: string | bigint): Buffer {
  let hex = typeof value === 'bigint' ? value.toString(16) : value;
  if (!/^[0-9a-fA-F]+$/.test(hex) || (typeof value === 'bigint' && value < 0n)) throw new DerError('integer must be non-negative hex');
  if (hex.length % 2 === 1) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0 && (bytes[start + 1]! & 0x80) === 0) start++;
  bytes = bytes.subarray(start);
  // A set top bit would read as negative: pad with a zero byte.
  if ((bytes[0]! & 0x80) !== 0) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(Tag.Integer, bytes);
}

export function enumerated(value: number): Buffer {
  return tlv(Tag.Enumerated, Buffer.from([value]));
}

export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) throw new DerError(`bad OID ${dotted}`);
  const values = [arcs[0]! * 40 + arcs[1]!, ...arcs.slice(2)];
  const bytes: number[] = [];
  for (const value of values) {
    const groups: number[] = [];
    for (let n = value; ; n = Math.floor(n / 128)) {
      groups.unshift(n % 128);
      if (n < 128) break;
    }
    groups.forEach((g, i) => bytes.push(i < groups.length - 1 ? g | 0x80 : g));
  }
  return tlv(Tag.Oid, Buffer.from(bytes));
}

export function octetString(bytes: Uint8Array): Buffer {
  return tlv(Tag.OctetString, bytes);
}

export function bitString(bytes: Uint8Array): Buffer {
  return tlv(Tag.BitString, Buffer.concat([Buffer.from([0]), bytes]));
}

export function nullValue(): Buffer {
  return Buffer.from([Tag.Null, 0]);
}

/** GeneralizedTime in whole seconds, `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5.2). */
export function generalizedTime(date: Date): Buffer {
  const iso = date.toISOString();
  const text = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return tlv(Tag.GeneralizedTime, Buffer.from(text, 'latin1'));
}

/**
 * An X.509 Time: UTCTime for 1950–2049 and GeneralizedTime otherwise, as RFC 5280
 * §4.1.2.5 requires for certificates and CRLs.
 */
export function x509Time(date: Date): Buffer {
  const year = date.getUTCFullYear();
  if (year < 1950 || year > 2049) return generalizedTime(date);
  return tlv(Tag.UtcTime, Buffer.from(generalizedTime(date).subarray(4).toString('latin1'), 'latin1'));
}

export function boolean(value: boolean): Buffer {
  return Buffer.from([Tag.Boolean, 1, value ? 0xff : 0]);
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }. */
export function extension(extnId: string, value: Uint8Array, critical = false): Buffer {
  return critical ? sequence(oid(extnId), boolean(true), octetString(value)) : sequence(oid(extnId), octetString(value));
}
