/**
 * The connection guard: one per broker, shared by every listener, asked once per accepted
 * socket before anything else (TLS, HTTP, MQTT) spends a byte of memory or a cycle on it.
 * Owns: the address lists (`limits.ipDeny`, `limits.ipAllow`), the runtime address bans
 * (through the `addressCheck` hook), and the connection counts and rates (global, per
 * listener, per source address). Must not: touch sockets or emit events (the transport
 * does both with the verdict), or read the clock (callers pass `now` to admit; a release
 * judges at the latest `now` seen, so tests drive time and a close costs no clock read).
 *
 * Checks, in order (the first that refuses decides):
 *   1. deny list and bans   → 'ip-deny' / 'banned'   (SECURITY: deny beats allow)
 *   2. allow list           → 'ip-not-allowed'        (empty list: every address)
 *   3. connections.maxTotal → 'connections-total'
 *   4. listener maxConnections → 'connections-listener'
 *   5. connections.perIpMax → 'ip-concurrent'
 *   6. connections.perIpRate (token bucket) → 'ip-rate'
 * (5 and 6 with a `connections.gateways` entry's values for an address in its ranges).
 *
 * SECURITY: a refused attempt costs no rate token. The rate is checked last, so a token is
 * taken only by a connection that is admitted: the bucket counts the connections we pay
 * for (a TLS handshake each), not the attempts. A refused attempt costs the broker one
 * accept and one reset (microseconds), and charging it would let a flood keep an address
 * locked out long after the flood ends, including the real devices behind the same NAT.
 * Punishing persistent offenders is the automatic bans' job (they watch the limit.hit
 * events), not the bucket's.
 */
import type { LimitsConfig } from '../../core/limits-config.js';
import type { LimitName } from '../../core/security-events.js';
import { ConfigError } from '../../core/errors.js';
import { parseClientAddress, RangeIndex, type ClientAddress } from './address-match.js';
import { formatCidr, parseCidr, type CidrRange } from './ip-cidr.js';
import { TokenBucket } from './token-bucket.js';

/** The limits this guard enforces (a subset of LimitName). */
export type ConnectionLimitName = Extract<LimitName, 'connections-total' | 'connections-listener' | 'ip-concurrent' | 'ip-rate'>;
/** Refusals by address rather than by count: not limits, but access decisions. */
export type AddressRefusalName = 'ip-deny' | 'ip-not-allowed' | 'banned';

export interface Admitted {
  ok: true;
  /** The canonical source address (`::ffff:1.2.3.4` → `1.2.3.4`). */
  address: string;
  /** Gives the slot back; call when the socket closes. Safe to call more than once. */
  release(): void;
}

export type Refused =
  | { ok: false; kind: 'limit'; limit: ConnectionLimitName; address: string; reason: string }
  | { ok: false; kind: 'address'; limit: AddressRefusalName; address: string; reason: string };

export type AdmitVerdict = Admitted | Refused;

export interface ConnectionGuardOptions {
  /**
   * Runtime address bans (IP and CIDR) decided elsewhere (the ban list): a reason to
   * refuse, or null. Asked after the deny list with the address this guard parsed, so an
   * accept parses its address once (`addr.text` is the canonical form).
   */
  addressCheck?: (addr: ClientAddress, listener: string) => { reason: string } | null;
  /**
   * Most per-address entries kept for addresses with no open connection (their rate
   * buckets still refilling). Entries of addresses with open connections are never
   * dropped; their number is bounded by maxTotal.
   */
  maxIdleAddresses?: number;
}

/** Default bound on remembered idle addresses: ~200 bytes each, so ~13 MB at most. */
export const DEFAULT_MAX_IDLE_ADDRESSES = 65_536;

/** The per-address limits of one address: the defaults, or a gateway entry's. */
interface AddressLimits {
  perIpMax: number;
  ratePerSecond: number;
  rateBurst: number;
  /** Where the values come from, for the refusal's reason. */
  source: string;
}

interface AddressState {
  /** Open connections from this address. */
  open: number;
  /** The connection-rate bucket; null when perIpRate is off. */
  bucket: TokenBucket | null;
}

const NOOP_RELEASE = (): void => {};

/**
 * Parses a list of CIDR ranges from the config into a range index (one Map lookup per
 * distinct prefix length at accept, address-match.ts); a bad entry names its place (the
 * schema checks first, this is the backstop).
 */
function rangesOf(list: readonly string[], key: string): RangeIndex<CidrRange> {
  const index = new RangeIndex<CidrRange>();
  for (const range of parseRanges(list, key)) index.add(range, range);
  return index;
}

/** Parses `list` (the config's `limits.<key>`); throws ConfigError naming the first bad entry. */
function parseRanges(list: readonly string[], key: string): CidrRange[] {
  return list.map((text, i) => {
    const range = parseCidr(text);
    if (range === null) throw new ConfigError(`config error at limits.${key}[${i}]: ${JSON.stringify(text)} is not an IPv4 or IPv6 address or CIDR range`);
    return range;
  });
}

/**
 * Checks `limits.ipDeny` and `limits.ipAllow` (the config loader calls this, so a bad
 * range fails the start with one line naming the entry). Throws ConfigError (ERR_CONFIG).
 */
export function validateAddressLists(limits: Pick<LimitsConfig, 'ipDeny' | 'ipAllow' | 'connections'>): void {
  rangesOf(limits.ipDeny, 'ipDeny');
  rangesOf(limits.ipAllow, 'ipAllow');
  gatewaysOf(limits.connections.gateways);
}

/**
 * The `connections.gateways` entries as a range index of their limits: the most specific
 * range holding an address applies (a range listed twice keeps its first entry).
 */
function gatewaysOf(gateways: LimitsConfig['connections']['gateways']): RangeIndex<AddressLimits> {
  const index = new RangeIndex<AddressLimits>();
  gateways.forEach((g, i) => {
    const limits: AddressLimits = { perIpMax: g.perIpMax, ratePerSecond: g.perIpRate.perSecond, rateBurst: g.perIpRate.burst, source: `limits.connections.gateways[${i}]` };
    for (const range of parseRanges(g.ranges, `connections.gateways[${i}].ranges`)) index.add(range, limits);
  });
  return index;
}

export class ConnectionGuard {
  private readonly enabled: boolean;
  private readonly deny: RangeIndex<CidrRange>;
  private readonly allow: RangeIndex<CidrRange>;
  private readonly maxTotal: number;
  /** perIpMax and perIpRate, for every address outside the gateways' ranges. */
  private readonly perAddress: AddressLimits;
  private readonly gateways: RangeIndex<AddressLimits>;
  private readonly maxIdle: number;
  private readonly addressCheck: ((addr: ClientAddress, listener: string) => { reason: string } | null) | null;
  /** The latest `now` passed to admit: the time a release judges a bucket by. */
  private lastNow = 0;
  private readonly addresses = new Map<string, AddressState>();
  private readonly perListener = new Map<string, number>();
  private open = 0;
  /** Entries in `addresses` with no open connection. */
  private idle = 0;

  constructor(limits: LimitsConfig, options: ConnectionGuardOptions = {}) {
    this.enabled = limits.enabled;
    this.deny = rangesOf(limits.ipDeny, 'ipDeny');
    this.allow = rangesOf(limits.ipAllow, 'ipAllow');
    const c = limits.connections;
    this.maxTotal = c.maxTotal;
    this.perAddress = { perIpMax: c.perIpMax, ratePerSecond: c.perIpRate.perSecond, rateBurst: c.perIpRate.burst, source: 'limits.connections' };
    this.gateways = gatewaysOf(c.gateways);
    this.maxIdle = Math.max(1, options.maxIdleAddresses ?? DEFAULT_MAX_IDLE_ADDRESSES);
    this.addressCheck = options.addressCheck ?? null;
  }

  /** Open connections admitted by this guard (all listeners). */
  get openConnections(): number {
    return this.open;
  }

  /** Addresses with per-address state kept (open connections or a refilling bucket). */
  get trackedAddresses(): number {
    return this.addresses.size;
  }

  /** Open connections admitted on `listener`. */
  openOn(listener: string): number {
    return this.perListener.get(listener) ?? 0;
  }

  /**
   * Decides whether a socket from `remoteAddress` may be served on `listener` (whose own
   * cap is `listenerMax`, absent: none). An admitted socket holds its slots until
   * `release()` is called.
   */
  admit(remoteAddress: string, listener: string, listenerMax: number | undefined, now: number): AdmitVerdict {
    if (now > this.lastNow) this.lastNow = now;
    // Parsed once per accept (IPv4 and dual-stack IPv4 without BigInt); the ban check reuses it.
    const ip = parseClientAddress(remoteAddress);
    // SECURITY: a socket without a readable source address (reset before we looked) cannot
    // be checked against any list, so it is not served.
    if (ip === null) return { ok: false, kind: 'address', limit: 'ip-not-allowed', address: remoteAddress, reason: 'no readable source address' };
    const address = ip.text;

    if (this.enabled && this.deny.size > 0) {
      const denied = this.deny.find(ip);
      if (denied !== null) return { ok: false, kind: 'address', limit: 'ip-deny', address, reason: `source address in limits.ipDeny ${formatCidr(denied)}` };
    }
    // SECURITY: bans are the operator's (or the automatic bans') decision, not a limit of
    // this section: they hold with limits.enabled false too.
    if (this.addressCheck !== null) {
      let ban: { reason: string } | null;
      try {
        ban = this.addressCheck(ip, listener);
      } catch (err) {
        // SECURITY: fail closed: a ban list that cannot answer does not let the address in
        // (and an exception here would otherwise escape into the accept loop).
        ban = { reason: `ban check failed: ${err instanceof Error ? err.message : String(err)}` };
      }
      if (ban !== null) return { ok: false, kind: 'address', limit: 'banned', address, reason: ban.reason };
    }
    if (!this.enabled) return { ok: true, address, release: NOOP_RELEASE };
    if (this.allow.size > 0 && this.allow.find(ip) === null) {
      return { ok: false, kind: 'address', limit: 'ip-not-allowed', address, reason: 'source address not in limits.ipAllow' };
    }

    if (this.open >= this.maxTotal) {
      return { ok: false, kind: 'limit', limit: 'connections-total', address, reason: `broker at limits.connections.maxTotal (${this.maxTotal})` };
    }
    const onListener = this.perListener.get(listener) ?? 0;
    if (listenerMax !== undefined && onListener >= listenerMax) {
      return { ok: false, kind: 'limit', limit: 'connections-listener', address, reason: `listener ${listener} at maxConnections (${listenerMax})` };
    }

    let state: AddressState | null = null;
    const lim = this.gateways.size > 0 ? (this.gateways.find(ip) ?? this.perAddress) : this.perAddress;
    if (lim.perIpMax > 0 || lim.ratePerSecond > 0) {
      state = this.addresses.get(address) ?? null;
      if (state !== null && lim.perIpMax > 0 && state.open >= lim.perIpMax) {
        return { ok: false, kind: 'limit', limit: 'ip-concurrent', address, reason: `${state.open} connections open from ${address} (${lim.source}.perIpMax ${lim.perIpMax})` };
      }
      // Last check: a token is taken only when the connection is admitted (see header).
      if (state !== null && state.bucket !== null && !state.bucket.take(now)) {
        return { ok: false, kind: 'limit', limit: 'ip-rate', address, reason: `connection rate from ${address} over ${lim.source}.perIpRate (${lim.ratePerSecond}/s, burst ${lim.rateBurst})` };
      }
      if (state === null) {
        const bucket = lim.ratePerSecond > 0 ? new TokenBucket(lim.ratePerSecond, lim.rateBurst, now) : null;
        // A fresh bucket holds `burst` ≥ 1 tokens: this take cannot fail.
        bucket?.take(now);
        state = { open: 0, bucket };
        this.addresses.set(address, state);
        this.idle++;
      }
      if (state.open++ === 0) this.idle--;
      if (this.idle > this.maxIdle) this.prune(now);
    }

    this.open++;
    this.perListener.set(listener, onListener + 1);
    let released = false;
    const held = state;
    return {
      ok: true,
      address,
      release: () => {
        if (released) return;
        released = true;
        this.open--;
        const n = (this.perListener.get(listener) ?? 1) - 1;
        if (n === 0) this.perListener.delete(listener);
        else this.perListener.set(listener, n);
        if (held !== null && --held.open === 0) this.forgetIfIdle(address, held);
      },
    };
  }

  /**
   * An address whose last connection closed: dropped when its bucket has nothing left to
   * remember. Judged at the latest admission time, which is never later than now: a bucket
   * is at worst kept a little longer (until a prune), never forgotten early.
   */
  private forgetIfIdle(address: string, state: AddressState): void {
    // The entry may have been replaced after pruning dropped it; only our own entry counts.
    if (this.addresses.get(address) !== state) return;
    if (state.bucket === null || state.bucket.isFull(this.lastNow)) {
      this.addresses.delete(address);
      return;
    }
    this.idle++;
    if (this.idle > this.maxIdle) this.prune(this.lastNow);
  }

  /**
   * Bounds memory under a flood from many addresses. First drops every idle entry whose
   * bucket is full (nothing lost). If that freed less than a quarter of the bound, drops
   * the oldest idle entries until a quarter is free, so each O(n) pass pays for at least
   * maxIdle/4 inserts.
   *
   * SECURITY: an address dropped with a partly refilled bucket gets a full one on its next
   * connection: for those addresses the rate limit is forgiven early. That is the price of
   * a hard memory bound; the alternative (refusing new addresses while the table is full)
   * would let a flood from many addresses lock out every new client. Insertion order makes
   * the dropped entries the oldest, whose buckets are closest to full anyway.
   */
  private prune(now: number): void {
    const target = Math.floor((this.maxIdle * 3) / 4);
    for (const [address, state] of this.addresses) {
      if (state.open === 0 && (state.bucket === null || state.bucket.isFull(now))) {
        this.addresses.delete(address);
        this.idle--;
      }
    }
    if (this.idle <= target) return;
    for (const [address, state] of this.addresses) {
      if (this.idle <= target) break;
      if (state.open === 0) {
        this.addresses.delete(address);
        this.idle--;
      }
    }
  }
}
