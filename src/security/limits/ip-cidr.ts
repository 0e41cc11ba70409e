/**
 * IPv4 and IPv6 addresses and CIDR ranges. Owns: parsing (strictly: anything that is not
 * an address or a range is refused, never read as "matches nothing" or "matches all"),
 * canonical forms, and matching. Must not: do I/O (node:net is not allowed under
 * security/, so parsing is our own).
 *
 * SECURITY: an IPv4 client on a dual-stack socket shows up as `::ffff:a.b.c.d`; it is
 * treated as the IPv4 address, so an IPv4 ban or range catches it either way.
 */

export interface IpAddress {
  family: 4 | 6;
  /** The address as an unsigned integer (32 or 128 bits). */
  value: bigint;
}

export interface CidrRange {
  family: 4 | 6;
  /** The network address (host bits cleared). */
  network: bigint;
  prefix: number;
}

function parseIpv4(text: string): bigint | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let value = 0n;
  for (const part of parts) {
    // No leading zeros: `010` is octal to some parsers and decimal to others.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseIpv6(text: string): bigint | null {
  let s = text;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  // An embedded IPv4 tail (`::ffff:1.2.3.4`) becomes two hex groups.
  const lastColon = s.lastIndexOf(':');
  if (lastColon >= 0 && s.slice(lastColon + 1).includes('.')) {
    const v4 = parseIpv4(s.slice(lastColon + 1));
    if (v4 === null) return null;
    s = `${s.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groupsOf = (h: string): string[] | null => (h === '' ? [] : h.split(':'));
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  if (head === null || tail === null) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
  let value = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    value = (value << 16n) | BigInt(parseInt(g, 16));
  }
  return value;
}

const V4_MAPPED_PREFIX = 0xffffn << 32n;
const V4_MAPPED_MASK = ~0xffffffffn & ((1n << 128n) - 1n);

/** Parses an IPv4 or IPv6 address; an IPv4-mapped IPv6 address is returned as IPv4. Null when it is not one. */
export function parseIp(text: string): IpAddress | null {
  const t = text.trim();
  if (t.includes(':')) {
    const v6 = parseIpv6(t);
    if (v6 === null) return null;
    if ((v6 & V4_MAPPED_MASK) === V4_MAPPED_PREFIX) return { family: 4, value: v6 & 0xffffffffn };
    return { family: 6, value: v6 };
  }
  const v4 = parseIpv4(t);
  return v4 === null ? null : { family: 4, value: v4 };
}

function bits(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

function maskOf(family: 4 | 6, prefix: number): bigint {
  const width = BigInt(bits(family));
  const host = width - BigInt(prefix);
  return ((1n << width) - 1n) ^ ((1n << host) - 1n);
}

/**
 * Parses `a.b.c.d/n` or `x::y/n`; a bare address is a /32 or /128. Null when malformed.
 * Host bits set below the prefix (`10.1.2.3/8`) are cleared: the range is what it says.
 */
export function parseCidr(text: string): CidrRange | null {
  const t = text.trim();
  const slash = t.indexOf('/');
  const ip = parseIp(slash < 0 ? t : t.slice(0, slash));
  if (ip === null) return null;
  let prefix = bits(ip.family);
  if (slash >= 0) {
    const p = t.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    prefix = Number(p);
    // `::ffff:10.0.0.0/104` is the IPv4 range 10.0.0.0/8.
    if (ip.family === 4 && t.slice(0, slash).includes(':')) prefix -= 96;
    if (prefix < 0 || prefix > bits(ip.family)) return null;
  }
  return { family: ip.family, network: ip.value & maskOf(ip.family, prefix), prefix };
}

export function cidrContains(range: CidrRange, ip: IpAddress): boolean {
  return range.family === ip.family && (ip.value & maskOf(range.family, range.prefix)) === range.network;
}

/** The canonical text of an address: dotted IPv4, or lower-case compressed IPv6 (RFC 5952). */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) return [24n, 16n, 8n, 0n].map((s) => String((ip.value >> s) & 0xffn)).join('.');
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // The longest run of two or more zero groups becomes `::` (the first, when tied).
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** The canonical text of a range: `10.0.0.0/8`, `2001:db8::/32`. */
export function formatCidr(range: CidrRange): string {
  return `${formatIp({ family: range.family, value: range.network })}/${range.prefix}`;
}

/** A set of ranges asked once per connection: ranges by family, checked in order. */
export class CidrSet {
  private readonly v4: CidrRange[] = [];
  private readonly v6: CidrRange[] = [];

  constructor(ranges: Iterable<CidrRange> = []) {
    for (const r of ranges) this.add(r);
  }

  add(range: CidrRange): void {
    (range.family === 4 ? this.v4 : this.v6).push(range);
  }

  get size(): number {
    return this.v4.length + this.v6.length;
  }

  /** The first range holding `ip`, or null. */
  find(ip: IpAddress): CidrRange | null {
    for (const r of ip.family === 4 ? this.v4 : this.v6) if (cidrContains(r, ip)) return r;
    return null;
  }
}
