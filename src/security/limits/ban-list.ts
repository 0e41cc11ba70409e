/**
 * The ban list: deny entries (bans) and allow entries by client id, user name, certificate
 * serial or fingerprint, IP address and CIDR range, each with a reason and an optional
 * expiry. Owns: the in-memory index the checks use, expiry (entries past their end stop
 * matching, are pruned and announced), the history of automatic bans (for growing
 * durations), the `ban.added`/`ban.removed` events, and the two guards built on it: the
 * address check at accept and the admission guard at CONNECT. Must not: do I/O (a BanStore
 * port keeps the rows; server/ picks the adapter) or disconnect clients (callers apply a new
 * entry to live sessions through the broker facade).
 *
 * Cost per check: values are canonicalised once when an entry is added or loaded; a CONNECT
 * canonicalises the client's few values once and looks each up in a Map (ranges: one Map
 * lookup per distinct prefix length, address-match.ts). Expiry costs one comparison until
 * the earliest entry ends.
 *
 * SECURITY: deny beats allow. An allow list, once it has an entry in force for a dimension
 * (client id, user name, certificate, address), admits only clients matching one of its
 * entries there; a client without that fact (no certificate, an unparseable address) does
 * not match, so it is refused (fail closed).
 */
import type { AdmissionGuard } from '../../broker/broker.js';
import type { AuthorizedClient } from '../../broker/ports.js';
import { BastionError } from '../../core/errors.js';
import type { SecurityEvents } from '../../core/security-events.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import { BAN_KINDS, canonicalBanValue, clientFingerprint, clientSerial, dimensionOf, type BanDimension, type BanKind, type BanListName } from './ban-values.js';
import { parseClientAddress, RangeIndex, type ClientAddress } from './address-match.js';
import { cidrContains, parseCidr } from './ip-cidr.js';

export { BAN_KINDS, BAN_LISTS, canonicalBanValue, type BanKind, type BanListName } from './ban-values.js';

/** How long an expired automatic ban is remembered, so the next ban of the same key is longer. */
export const AUTO_BAN_HISTORY_MS = 24 * 3600_000;
/** `createdBy` of automatic entries starts with this. */
export const AUTO_PREFIX = 'auto:';

export interface BanFields {
  kind: BanKind;
  value: string;
  list: BanListName;
  reason: string;
  /** Who added it: `certificate:op1`, `token:ci`, or `auto:brute-force` / `auto:flapping`. */
  createdBy: string;
  createdAt: number;
  /** ms since epoch; null never expires. */
  expiresAt: number | null;
}

/** An entry to add; `list` defaults to deny. */
export type NewBan = Omit<BanFields, 'list'> & { list?: BanListName };

export interface Ban extends BanFields {
  id: number;
}

/** Durable storage of entries (SQLite in the server). */
export interface BanStore {
  listBans(): Ban[];
  addBan(ban: BanFields): Ban;
  removeBan(id: number): boolean;
  /** Deletes rows that ended at or before `before` (automatic ones: at or before `autoBefore`); returns how many. */
  pruneBans(before: number, autoBefore: number): number;
}

/** Why a client (or an address) is refused: the deny entry that matched, or the allow list it is not on. */
export interface BanRefusal {
  reason: string;
  ban: Ban | null;
}

export interface BanListOptions {
  now?: () => number;
  /** Where `ban.added` / `ban.removed` go. */
  events?: SecurityEvents;
}

type ExactKind = Exclude<BanKind, 'cidr'>;

/** One list's entries in force, indexed for lookups. */
class ListIndex {
  readonly exact: Record<ExactKind, Map<string, Ban>> = { clientId: new Map(), username: new Map(), certSerial: new Map(), certFingerprint: new Map(), ip: new Map() };
  readonly ranges = new RangeIndex<Ban>();
  readonly perDimension: Record<BanDimension, number> = { clientId: 0, username: 0, certificate: 0, address: 0 };
  size = 0;

  add(ban: Ban): void {
    this.size++;
    this.perDimension[dimensionOf(ban.kind)]++;
    if (ban.kind !== 'cidr') {
      const map = this.exact[ban.kind];
      if (!map.has(ban.value)) map.set(ban.value, ban);
      return;
    }
    const range = parseCidr(ban.value);
    // Canonical values always parse; a damaged row matches nothing.
    if (range !== null) this.ranges.add(range, ban);
  }

  address(addr: ClientAddress | null): Ban | null {
    if (addr === null) return null;
    if (this.exact.ip.size > 0) {
      const hit = this.exact.ip.get(addr.text);
      if (hit !== undefined) return hit;
    }
    return this.ranges.size === 0 ? null : this.ranges.find(addr);
  }
}

/** The facts of one client, canonicalised once per check. */
interface ClientFacts {
  clientId: string;
  username: string | undefined;
  serial: string | undefined;
  fingerprint: string | undefined;
  addr: ClientAddress | null;
}

export class BanList {
  /** Every stored row: entries in force, and expired automatic ones kept as history. */
  private rows: Ban[];
  private deny = new ListIndex();
  private allow = new ListIndex();
  /** The earliest end of an indexed entry (Infinity: none ends). */
  private nextExpiry = Infinity;
  /** When the oldest expired row kept as history may be forgotten. */
  private nextForget = Infinity;
  /** When the index was last rebuilt: entries that ended after it are announced by the next sweep. */
  private lastSweep = -Infinity;
  private readonly now: () => number;
  private readonly events: SecurityEvents | null;

  constructor(
    private readonly store: BanStore,
    opts: BanListOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.events = opts.events ?? null;
    const now = this.now();
    // Entries that ended while the broker was down are not announced (nobody was refused
    // by them meanwhile), only pruned.
    store.pruneBans(now, now - AUTO_BAN_HISTORY_MS);
    this.rows = store.listBans().map(canonicalRow).filter((b) => keep(b, now));
    this.rebuild(now);
  }

  /** Entries in force (expired ones are left out), optionally of one list and one kind. */
  list(filter: { list?: BanListName; kind?: BanKind } = {}): Ban[] {
    const now = this.now();
    return this.rows.filter((b) => inForce(b, now) && (filter.list === undefined || b.list === filter.list) && (filter.kind === undefined || b.kind === filter.kind));
  }

  /** Adds an entry (its value canonicalised; an invalid value throws ERR_BAN_VALUE) and announces it. */
  add(entry: NewBan): Ban {
    const canonical = canonicalBanValue(entry.kind, entry.value);
    if (!canonical.ok) throw new BastionError('ERR_BAN_VALUE', `${entry.kind} "${entry.value}" ${canonical.error}`);
    const now = this.now();
    this.sweep(now);
    const stored = this.store.addBan({ ...entry, list: entry.list ?? 'deny', value: canonical.value });
    this.rows.push(stored);
    if (inForce(stored, now)) {
      this.indexOf(stored.list).add(stored);
      if (stored.expiresAt !== null && stored.expiresAt < this.nextExpiry) this.nextExpiry = stored.expiresAt;
    }
    const auto = stored.createdBy.startsWith(AUTO_PREFIX);
    this.events?.emit({ type: 'ban.added', kind: stored.kind, value: stored.value, list: stored.list, reason: stored.reason, createdBy: stored.createdBy, expiresAt: stored.expiresAt, auto });
    return stored;
  }

  /** Removes an entry by id and announces it; null when there is none. */
  remove(id: number, removedBy = 'operator'): Ban | null {
    const now = this.now();
    // First announce what ended on its own: the rebuild below would otherwise swallow it.
    this.sweep(now);
    const found = this.rows.find((b) => b.id === id) ?? null;
    if (found === null || !inForce(found, now) || !this.store.removeBan(id)) return null;
    this.rows = this.rows.filter((b) => b.id !== id);
    this.rebuild(now);
    this.events?.emit({ type: 'ban.removed', kind: found.kind, value: found.value, list: found.list, removedBy });
    return found;
  }

  /**
   * Drops entries that have ended (announcing each as removed by `expiry`) and forgets
   * automatic-ban history older than AUTO_BAN_HISTORY_MS. Cheap when nothing ended: the
   * checks call it; the server also calls it on a timer so expiry is announced on time.
   */
  sweep(now = this.now()): void {
    if (now < this.nextExpiry && now < this.nextForget) return;
    const ended = this.rows.filter((b) => b.expiresAt !== null && b.expiresAt <= now && b.expiresAt > this.lastSweep);
    this.store.pruneBans(now, now - AUTO_BAN_HISTORY_MS);
    this.rows = this.rows.filter((b) => keep(b, now));
    this.rebuild(now);
    for (const b of ended) this.events?.emit({ type: 'ban.removed', kind: b.kind, value: b.value, list: b.list, removedBy: 'expiry' });
  }

  /** How many automatic bans by `createdBy` this key had within the remembered history (including any in force). */
  autoBanCount(kind: BanKind, value: string, createdBy: string): number {
    let n = 0;
    for (const b of this.rows) if (b.kind === kind && b.value === value && b.createdBy === createdBy && b.list === 'deny') n++;
    return n;
  }

  /** A deny entry in force for exactly this kind and canonical value, or null. */
  denied(kind: BanKind, value: string): Ban | null {
    this.sweep();
    if (kind === 'cidr') return this.rows.find((b) => b.kind === 'cidr' && b.value === value && b.list === 'deny' && inForce(b, this.now())) ?? null;
    return this.deny.exact[kind].get(value) ?? null;
  }

  /**
   * The address check at accept (before TLS): ip and cidr entries only. Returns the deny
   * entry that matched, or a refusal naming the address allow list, or null.
   */
  addressRefusal(address: string): BanRefusal | null {
    this.sweep();
    if (this.deny.perDimension.address === 0 && this.allow.perDimension.address === 0) return null;
    const addr = parseClientAddress(address);
    const ban = this.deny.address(addr);
    if (ban !== null) return { reason: `banned (${ban.kind} ${ban.value})`, ban };
    if (this.allow.perDimension.address > 0 && this.allow.address(addr) === null) return { reason: 'address not on the allow list', ban: null };
    return null;
  }

  /** The full check at CONNECT (after authentication): every kind, deny then allow. */
  refusal(client: AuthorizedClient): BanRefusal | null {
    this.sweep();
    if (this.deny.size === 0 && this.allow.size === 0) return null;
    const facts = factsOf(client);
    const ban = matchAll(this.deny, facts);
    if (ban !== null) return { reason: `banned (${ban.kind})`, ban };
    if (this.allow.size === 0) return null;
    const missing = allowMiss(this.allow, facts);
    return missing === null ? null : { reason: `${missing === 'address' ? 'address' : missing === 'certificate' ? 'certificate' : missing === 'clientId' ? 'client id' : 'user name'} not on the allow list`, ban: null };
  }

  /** The first deny entry in force that applies to `client`, or null. */
  matches(client: AuthorizedClient): Ban | null {
    this.sweep();
    return this.deny.size === 0 ? null : matchAll(this.deny, factsOf(client));
  }

  /** Refuses a banned (or not allowed) client's CONNECT (v5 CONNACK 0x8A Banned; v3 "not authorized"). */
  admissionGuard(): AdmissionGuard {
    return (client) => {
      const refusal = this.refusal(client);
      return refusal === null ? null : { reasonCode: ReasonCode.Banned, reason: refusal.reason };
    };
  }

  private indexOf(list: BanListName): ListIndex {
    return list === 'allow' ? this.allow : this.deny;
  }

  private rebuild(now: number): void {
    this.deny = new ListIndex();
    this.allow = new ListIndex();
    this.nextExpiry = Infinity;
    this.nextForget = Infinity;
    for (const b of this.rows) {
      if (inForce(b, now)) {
        this.indexOf(b.list).add(b);
        if (b.expiresAt !== null && b.expiresAt < this.nextExpiry) this.nextExpiry = b.expiresAt;
      } else if (b.expiresAt !== null) {
        const forgetAt = b.expiresAt + AUTO_BAN_HISTORY_MS;
        if (forgetAt < this.nextForget) this.nextForget = forgetAt;
      }
    }
    this.lastSweep = now;
  }
}

function inForce(b: Ban, now: number): boolean {
  return b.expiresAt === null || b.expiresAt > now;
}

/** Whether a row stays in memory at `now`: in force, or an automatic ban within its history. */
function keep(b: Ban, now: number): boolean {
  if (inForce(b, now)) return true;
  return b.createdBy.startsWith(AUTO_PREFIX) && b.expiresAt !== null && b.expiresAt + AUTO_BAN_HISTORY_MS > now;
}

/** A stored row in today's canonical form (rows written by older versions used other spellings). */
function canonicalRow(b: Ban): Ban {
  const list: BanListName = b.list === 'allow' ? 'allow' : 'deny';
  if (!(BAN_KINDS as readonly string[]).includes(b.kind)) return { ...b, list };
  const c = canonicalBanValue(b.kind, b.value);
  // An unreadable stored value keeps its text: it matches nothing, and stays listed so an operator sees and removes it.
  return { ...b, list, value: c.ok ? c.value : b.value };
}

function factsOf(client: AuthorizedClient): ClientFacts {
  const cert = client.identity.certificate;
  return {
    clientId: client.clientId,
    username: client.identity.username,
    serial: cert === undefined ? undefined : clientSerial(cert.serialNumber),
    fingerprint: cert === undefined || cert.fingerprint256 === '' ? undefined : clientFingerprint(cert.fingerprint256),
    addr: parseClientAddress(client.identity.remoteAddress),
  };
}

function matchAll(index: ListIndex, f: ClientFacts): Ban | null {
  const { exact } = index;
  return (
    exact.clientId.get(f.clientId) ??
    (f.username !== undefined ? exact.username.get(f.username) : undefined) ??
    (f.serial !== undefined ? exact.certSerial.get(f.serial) : undefined) ??
    (f.fingerprint !== undefined ? exact.certFingerprint.get(f.fingerprint) : undefined) ??
    index.address(f.addr)
  );
}

/** The first dimension whose allow list is in force and does not hold `f`, or null. */
function allowMiss(index: ListIndex, f: ClientFacts): BanDimension | null {
  const { exact, perDimension } = index;
  if (perDimension.clientId > 0 && !exact.clientId.has(f.clientId)) return 'clientId';
  if (perDimension.username > 0 && (f.username === undefined || !exact.username.has(f.username))) return 'username';
  if (perDimension.certificate > 0 && !((f.serial !== undefined && exact.certSerial.has(f.serial)) || (f.fingerprint !== undefined && exact.certFingerprint.has(f.fingerprint)))) return 'certificate';
  if (perDimension.address > 0 && index.address(f.addr) === null) return 'address';
  return null;
}

/** Whether `ban` (a deny entry) selects `client`: for applying a new ban to live sessions. */
export function banApplies(ban: Ban, client: AuthorizedClient): boolean {
  if (ban.list !== 'deny') return false;
  const f = factsOf(client);
  switch (ban.kind) {
    case 'clientId':
      return f.clientId === ban.value;
    case 'username':
      // The authenticated user name (password, JWT, SCRAM); a certificate's CN is not one.
      return f.username === ban.value;
    case 'certSerial':
      return f.serial === ban.value;
    case 'certFingerprint':
      return f.fingerprint === ban.value;
    case 'ip':
      return f.addr?.text === ban.value;
    case 'cidr': {
      const range = parseCidr(ban.value);
      const a = f.addr;
      return range !== null && a !== null && cidrContains(range, a.family === 4 ? { family: 4, value: BigInt(a.v4) } : { family: 6, value: a.v6 });
    }
  }
}
