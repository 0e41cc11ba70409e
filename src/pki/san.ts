/**
 * Subject alternative names. Owns: the SAN types we issue (dns, ip, uri, email), strict
 * validation and canonical forms, and conversion to @peculiar/x509's general names.
 * Must not: import node:net (pki stays free of socket modules), so IP parsing lives here.
 */
import { PkiError } from './pki-error.js';
import type { x509 } from './x509.js';

export type SanType = 'dns' | 'ip' | 'uri' | 'email';

export interface SubjectAltName {
  readonly type: SanType;
  readonly value: string;
}

const SAN_PREFIXES: Readonly<Record<string, SanType>> = { dns: 'dns', ip: 'ip', uri: 'uri', email: 'email' };

/** `DNS:host`, `IP:1.2.3.4`, `URI:spiffe://x/y`, `email:a@b` (prefix in any case) → a SAN; undefined when it has no known prefix. */
export function parseSanText(text: string): SubjectAltName | undefined {
  const colon = text.indexOf(':');
  const type = colon > 0 ? SAN_PREFIXES[text.slice(0, colon).toLowerCase()] : undefined;
  return type === undefined ? undefined : { type, value: text.slice(colon + 1) };
}

/** Most SANs one certificate may carry (a typo guard, not a protocol limit). */
export const MAX_SANS = 100;

const IPV4_OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4 = new RegExp(`^${IPV4_OCTET}(?:\\.${IPV4_OCTET}){3}$`);
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const ASCII_PRINTABLE_NO_SPACE = /^[\x21-\x7e]+$/;

function invalid(message: string): never {
  throw new PkiError('ERR_PKI_INVALID_INPUT', message);
}

/** True for a dotted-quad IPv4 address without leading zeros. */
export function isIPv4(value: string): boolean {
  return IPV4.test(value);
}

/**
 * Parses an IPv6 address (with `::` and an optional trailing dotted quad) into its eight
 * 16-bit groups, or returns undefined. Zone ids (`%eth0`) are not addresses and are refused.
 */
export function parseIPv6(value: string): number[] | undefined {
  if (!value.includes(':')) return undefined;
  let text = value;
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    // A trailing dotted quad (::ffff:192.0.2.1) stands for the last two groups.
    if (!isIPv4(last)) return undefined;
    const o = last.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string | undefined): number[] | undefined => {
    if (part === undefined || part === '') return [];
    const groups = part.split(':');
    if (!groups.every((g) => HEX_GROUP.test(g))) return undefined;
    return groups.map((g) => parseInt(g, 16));
  };
  const head = parse(halves[0]);
  const rest = parse(halves[1]);
  if (head === undefined || rest === undefined) return undefined;
  const explicit = head.length + rest.length;
  if (halves.length === 2) {
    if (explicit > 7) return undefined;
    return [...head, ...new Array<number>(8 - explicit).fill(0), ...rest];
  }
  return explicit === 8 ? head : undefined;
}

/** A DNS name (lower-cased); `*` is allowed only as the whole leftmost label of 3+ labels. */
function canonicalDns(value: string): string {
  const name = value.toLowerCase();
  if (name.length > 253) invalid(`DNS name is longer than 253 characters: ${JSON.stringify(value.slice(0, 64))}…`);
  const labels = name.split('.');
  labels.forEach((label, i) => {
    if (i === 0 && label === '*' && labels.length >= 3) return;
    if (!DNS_LABEL.test(label)) invalid(`invalid DNS name ${JSON.stringify(value)}`);
  });
  return name;
}

function canonicalIp(value: string): string {
  if (isIPv4(value)) return value;
  const groups = parseIPv6(value);
  if (groups === undefined) invalid(`invalid IP address ${JSON.stringify(value)}`);
  // Fully expanded form: the x509 library's own IPv6 parser handles it without guessing.
  return groups.map((g) => g.toString(16)).join(':');
}

function canonicalEmail(value: string): string {
  const at = value.lastIndexOf('@');
  if (value.length > 254 || at <= 0 || !ASCII_PRINTABLE_NO_SPACE.test(value) || value.indexOf('@') !== at) {
    invalid(`invalid email address ${JSON.stringify(value)}`);
  }
  return `${value.slice(0, at)}@${canonicalDns(value.slice(at + 1))}`;
}

function canonicalUri(value: string): string {
  // SECURITY: kept byte-for-byte as given (no URL normalisation): the URI may be an identity.
  if (value.length > 2048 || !ASCII_PRINTABLE_NO_SPACE.test(value) || !/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(value)) {
    invalid(`invalid URI ${JSON.stringify(value.slice(0, 128))}`);
  }
  try {
    new URL(value);
  } catch {
    invalid(`invalid URI ${JSON.stringify(value.slice(0, 128))}`);
  }
  return value;
}

/** Validates one SAN and returns it in canonical form; throws ERR_PKI_INVALID_INPUT. */
export function canonicalSan(san: SubjectAltName): SubjectAltName {
  const { type, value } = san;
  if (typeof value !== 'string' || value.length === 0) invalid(`SAN value for ${String(type)} must be a non-empty string`);
  switch (type) {
    case 'dns':
      return { type, value: canonicalDns(value) };
    case 'ip':
      return { type, value: canonicalIp(value) };
    case 'email':
      return { type, value: canonicalEmail(value) };
    case 'uri':
      return { type, value: canonicalUri(value) };
    default:
      return invalid(`unsupported SAN type ${JSON.stringify(type as unknown)}; expected dns, ip, uri or email`);
  }
}

/** Validates, canonicalises and de-duplicates a SAN list (order kept). */
export function canonicalSans(sans: readonly SubjectAltName[]): SubjectAltName[] {
  if (!Array.isArray(sans)) invalid('sans must be an array');
  if (sans.length > MAX_SANS) invalid(`too many SANs (${sans.length} > ${MAX_SANS})`);
  const seen = new Set<string>();
  const out: SubjectAltName[] = [];
  for (const san of sans) {
    const c = canonicalSan({ type: san.type, value: san.value });
    const key = `${c.type}:${c.value}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(c);
  }
  return out;
}

/** The SAN a server certificate gets when the caller names none: its commonName. */
export function defaultServerSans(commonName: string): SubjectAltName[] {
  const type: SanType = isIPv4(commonName) || parseIPv6(commonName) !== undefined ? 'ip' : 'dns';
  return canonicalSans([{ type, value: commonName }]);
}

/** Canonical SANs in @peculiar/x509's JSON form (its name for `uri` is `url`). */
export function toJsonGeneralNames(sans: readonly SubjectAltName[]): x509.JsonGeneralNames {
  return sans.map((s) => ({ type: s.type === 'uri' ? 'url' : s.type, value: s.value }));
}
