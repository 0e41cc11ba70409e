/**
 * Ban entries: their kinds, the two lists (deny and allow), and the one canonical form of
 * each kind's value. Owns: strict validation of a value an operator types (a value that
 * could never match is refused, never stored) and the client-side spelling of the same
 * facts, so one lookup compares like with like. Must not: keep entries or decide whether a
 * client is refused (ban-list.ts does).
 *
 * SECURITY: a ban that can never match (a typo: `10.0.0.300`, a fingerprint one digit
 * short) would look like protection and be none, and an allow entry that matches nothing
 * would lock everyone out. Both are refused at the door with a message naming the problem.
 */
import { formatCidr, formatIp, parseCidr, parseIp } from './ip-cidr.js';

export const BAN_KINDS = ['clientId', 'username', 'certSerial', 'certFingerprint', 'ip', 'cidr'] as const;
export type BanKind = (typeof BAN_KINDS)[number];

/** `deny`: a ban. `allow`: once a dimension has one allow entry, only matching clients pass it. */
export const BAN_LISTS = ['deny', 'allow'] as const;
export type BanListName = (typeof BAN_LISTS)[number];

/**
 * What an allow list constrains. The two certificate kinds are one dimension and so are the
 * two address kinds: `allow ip 10.0.0.5` plus `allow cidr 192.168.0.0/16` admits either,
 * rather than demanding an address that is in both.
 */
export type BanDimension = 'clientId' | 'username' | 'certificate' | 'address';

export function dimensionOf(kind: BanKind): BanDimension {
  switch (kind) {
    case 'clientId':
    case 'username':
      return kind;
    case 'certSerial':
    case 'certFingerprint':
      return 'certificate';
    case 'ip':
    case 'cidr':
      return 'address';
  }
}

export type CanonicalValue = { ok: true; value: string } | { ok: false; error: string };

const MAX_NAME_LENGTH = 65535;
/** Certificate serials are at most 20 octets (RFC 5280 §4.1.2.2); leave room for the odd CA. */
const MAX_SERIAL_HEX = 64;

function fail(error: string): CanonicalValue {
  return { ok: false, error };
}

/**
 * The canonical form of `raw` as a value of `kind`, or why it is not one:
 * - clientId, username: exactly as given, non-empty;
 * - certSerial: hex, optionally colon-separated pairs, any case → upper case without
 *   colons or leading zeros (`0a:1b` = `A1B`);
 * - certFingerprint: a SHA-256 (64 hex digits), any case, with or without colons →
 *   upper-case colon-separated pairs, as Node prints `fingerprint256`;
 * - ip: one IPv4 or IPv6 address → its canonical text (`::ffff:10.0.0.1` = `10.0.0.1`);
 * - cidr: `a.b.c.d/n` or `x::y/n` (host bits must be clear) → its canonical text.
 */
export function canonicalBanValue(kind: BanKind, raw: string): CanonicalValue {
  if (kind === 'clientId' || kind === 'username') {
    // Exactly as given: MQTT client ids and user names may hold spaces, and a trimmed ban
    // would miss the client it names.
    if (raw === '') return fail('is empty');
    if (raw.length > MAX_NAME_LENGTH) return fail(`is longer than ${MAX_NAME_LENGTH} characters`);
    return { ok: true, value: raw };
  }
  const v = raw.trim();
  if (v === '') return fail('is empty');
  switch (kind) {
    case 'certSerial': {
      if (!/^[0-9A-Fa-f]{1,2}(?::?[0-9A-Fa-f]{1,2})*$/.test(v)) return fail('is not a hex certificate serial (e.g. 0A:1B:2C or 0a1b2c)');
      const hex = canonicalSerial(v);
      if (hex.length > MAX_SERIAL_HEX) return fail(`has more than ${MAX_SERIAL_HEX} hex digits`);
      return { ok: true, value: hex };
    }
    case 'certFingerprint': {
      const hex = v.includes(':') ? (/^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}$/.test(v) ? v.replace(/:/g, '') : '') : v;
      if (!/^[0-9A-Fa-f]{64}$/.test(hex)) return fail('is not a SHA-256 fingerprint (64 hex digits, optionally colon-separated pairs)');
      return { ok: true, value: colonPairs(hex.toUpperCase()) };
    }
    case 'ip': {
      if (v.includes('/')) return fail('is a range: use kind cidr for it');
      const ip = parseIp(v);
      if (ip === null) return fail('is not an IPv4 or IPv6 address');
      return { ok: true, value: formatIp(ip) };
    }
    case 'cidr': {
      const slash = v.indexOf('/');
      if (slash < 0) return fail('has no prefix length (a.b.c.d/n or x::y/n; use kind ip for one address)');
      const range = parseCidr(v);
      if (range === null) return fail('is not an IPv4 or IPv6 range (a.b.c.d/n or x::y/n)');
      const base = parseIp(v.slice(0, slash));
      // A set host bit is most likely a typo for a narrower range (or a wrong prefix):
      // refuse rather than silently widen `10.1.2.3/8` to all of 10.0.0.0/8.
      if (base === null || base.value !== range.network) return fail(`has host bits set below the prefix: did you mean ${formatCidr(range)}?`);
      return { ok: true, value: formatCidr(range) };
    }
  }
}

function canonicalSerial(v: string): string {
  return v.replace(/[:\s]/g, '').toUpperCase().replace(/^0+(?=.)/, '');
}

function colonPairs(hex: string): string {
  return hex.replace(/(..)(?=.)/g, '$1:');
}

/** A certificate serial as the transport reports it → the canonical form (no validation). */
export function clientSerial(serial: string): string {
  return canonicalSerial(serial);
}

/** A certificate fingerprint as the transport reports it → the canonical form (no validation). */
export function clientFingerprint(fingerprint: string): string {
  // Node already prints upper-case colon pairs: the common case costs one test.
  return /^[0-9A-F]{2}(?::[0-9A-F]{2})*$/.test(fingerprint) ? fingerprint : colonPairs(fingerprint.replace(/:/g, '').toUpperCase());
}
