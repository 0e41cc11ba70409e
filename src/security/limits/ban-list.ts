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
 *
 * SECURITY: automatic bans (brute force, flapping) are earned by whoever triggers them, and
 * anybody can type a client id, a user name or sit behind a shared NAT address. So at
 * CONNECT an automatic entry never refuses a client that proved itself with a verified
 * certificate or a TLS-PSK key issued to it (`provenByTransport`): an attacker cannot aim
 * one at a device whose key it does not hold. Operator entries (manual bans, allow lists)
 * apply to everyone, and so does an automatic ban of a certificate itself (flapping keys a
 * certificate client on its fingerprint: only the key's holder can earn that). The accept
 * check (`addressRefusal`) applies automatic address bans before TLS on listeners where a
 * client may get in without a certificate or PSK: there it has proved nothing yet, and
 * letting a banned address handshake and authenticate would hand its flood the broker's
 * CPU. On a listener that requires a client certificate every client will prove itself, so
 * only operator address entries apply there: a device behind the attacker's NAT address
 * keeps connecting, and the attacker's handshakes stay bounded by the per-address rate.
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

const DIMENSION_NAMES: Record<BanDimension, string> = { clientId: 'client id', username: 'user name', certificate: 'certificate', address: 'address' };

/**
 * Whether `client` proved its identity with a credential bound to it by the transport: a
 * certificate that verified against the listener's CA, or a TLS-PSK key. Automatic bans do
 * not refuse such a client (see the header).
 */
export function provenByTransport(client: AuthorizedClient): boolean {
  return client.identity.certificate !== undefined || client.identity.pskIdentity !== undefined;
}

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
  /** Entries in force (until a sweep moves out the ones that ended). */
  private active: Ban[] = [];
  /** Ended automatic bans, remembered for AUTO_BAN_HISTORY_MS, oldest end first. */
  private history: Ban[] = [];
  /** Remembered automatic bans (in force or ended) per key: what makes the next ban longer. */
  private readonly autoCounts = new Map<string, number>();
  private deny = new ListIndex();
  /**
   * The deny entries that may refuse a client proven by its transport: the operator's, and
   * automatic bans of a certificate itself (only that certificate's holder can earn one).
   */
  private denyProven = new ListIndex();
  private allow = new ListIndex();
  /** The earliest end of an indexed entry (Infinity: none ends). */
  private nextExpiry = Infinity;
  /** When the oldest remembered automatic ban may be forgotten. */
  private nextForget = Infinity;
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
    // by them meanwhile), only pruned; ended automatic ones stay as history.
    store.pruneBans(now, now - AUTO_BAN_HISTORY_MS);
    this.load(now);
  }

  /**
   * Reads the store's entries again after they changed underneath this list (in a cluster:
   * another node added or removed one); nothing is announced (the node that made the
   * change did), except the ends of entries that expired here first (as a sweep would).
   * The caller disconnects the live clients the list now refuses.
   */
  reload(): void {
    const now = this.now();
    this.sweep(now);
    this.load(now);
  }

  private load(now: number): void {
    this.active = [];
    this.history = [];
    this.autoCounts.clear();
    const ended: Ban[] = [];
    for (const b of this.store.listBans().map(canonicalRow)) {
      if (inForce(b, now)) this.active.push(b);
      else if (isAuto(b)) ended.push(b);
      else continue;
      if (isAuto(b)) this.count(b, 1);
    }
    this.remember(ended);
    this.rebuild();
  }

  /** Entries in force (expired ones are left out), optionally of one list and one kind. */
  list(filter: { list?: BanListName; kind?: BanKind } = {}): Ban[] {
    const now = this.now();
    return this.active.filter((b) => inForce(b, now) && (filter.list === undefined || b.list === filter.list) && (filter.kind === undefined || b.kind === filter.kind));
  }

  /** Adds an entry (its value canonicalised; an invalid value throws ERR_BAN_VALUE) and announces it. */
  add(entry: NewBan): Ban {
    const canonical = canonicalBanValue(entry.kind, entry.value);
    if (!canonical.ok) throw new BastionError('ERR_BAN_VALUE', `${entry.kind} "${entry.value}" ${canonical.error}`);
    const now = this.now();
    this.sweep(now);
    const stored = this.store.addBan({ ...entry, list: entry.list ?? 'deny', value: canonical.value });
    if (isAuto(stored)) this.count(stored, 1);
    if (inForce(stored, now)) {
      this.active.push(stored);
      this.index(stored);
      if (stored.expiresAt !== null && stored.expiresAt < this.nextExpiry) this.nextExpiry = stored.expiresAt;
    }
    this.events?.emit({ type: 'ban.added', kind: stored.kind, value: stored.value, list: stored.list, reason: stored.reason, createdBy: stored.createdBy, expiresAt: stored.expiresAt, auto: isAuto(stored) });
    return stored;
  }

  /** Removes an entry in force by id and announces it; null when there is none. */
  remove(id: number, removedBy = 'operator'): Ban | null {
    // First announce what ended on its own.
    this.sweep();
    const found = this.active.find((b) => b.id === id) ?? null;
    if (found === null || !this.store.removeBan(id)) return null;
    this.active = this.active.filter((b) => b.id !== id);
    // An operator who lifts an automatic ban also forgives it: the row and its history are gone.
    if (isAuto(found)) this.count(found, -1);
    this.rebuild();
    this.events?.emit({ type: 'ban.removed', kind: found.kind, value: found.value, list: found.list, removedBy });
    return found;
  }

  /**
   * Drops entries that have ended (announcing each as removed by `expiry`) and forgets
   * automatic-ban history older than AUTO_BAN_HISTORY_MS. Cheap when nothing ended: the
   * checks call it; the server also calls it on a timer so expiry is announced on time.
   * Only entries in force are re-indexed, never the (possibly long) history.
   */
  sweep(now = this.now()): void {
    if (now < this.nextExpiry && now < this.nextForget) return;
    const ended: Ban[] = [];
    if (now >= this.nextExpiry) {
      const still: Ban[] = [];
      for (const b of this.active) (inForce(b, now) ? still : ended).push(b);
      this.active = still;
      this.rebuild();
    }
    this.remember(ended.filter(isAuto));
    let forgotten = 0;
    while (forgotten < this.history.length && this.history[forgotten]!.expiresAt! + AUTO_BAN_HISTORY_MS <= now) this.count(this.history[forgotten++]!, -1);
    if (forgotten > 0) this.remember([], forgotten);
    if (ended.length > 0 || forgotten > 0) this.store.pruneBans(now, now - AUTO_BAN_HISTORY_MS);
    for (const b of ended) this.events?.emit({ type: 'ban.removed', kind: b.kind, value: b.value, list: b.list, removedBy: 'expiry' });
  }

  /** How many automatic bans by `createdBy` this key had within the remembered history (including any in force). */
  autoBanCount(kind: BanKind, value: string, createdBy: string): number {
    return this.autoCounts.get(autoKey(kind, value, createdBy)) ?? 0;
  }

  /** A deny entry in force for exactly this kind and canonical value, or null. */
  denied(kind: BanKind, value: string): Ban | null {
    this.sweep();
    if (kind === 'cidr') return this.active.find((b) => b.kind === 'cidr' && b.value === value && b.list === 'deny') ?? null;
    return this.deny.exact[kind].get(value) ?? null;
  }

  /**
   * The address check at accept (before TLS): ip and cidr entries only. Returns the deny
   * entry that matched, or a refusal naming the address allow list, or null. Takes the
   * address already parsed by the connection guard (an accept parses it once) or its text.
   */
  addressRefusal(address: string | ClientAddress, proofRequired = false): BanRefusal | null {
    this.sweep();
    const deny = proofRequired ? this.denyProven : this.deny;
    if (deny.perDimension.address === 0 && this.allow.perDimension.address === 0) return null;
    const addr = typeof address === 'string' ? parseClientAddress(address) : address;
    const ban = deny.address(addr);
    if (ban !== null) return { reason: `banned (${ban.kind} ${ban.value})`, ban };
    if (this.allow.perDimension.address > 0 && this.allow.address(addr) === null) return { reason: 'address not on the allow list', ban: null };
    return null;
  }

  /**
   * The full check at CONNECT (after authentication): every kind, deny then allow. A client
   * proven by its transport is checked against operator deny entries only (see the header).
   */
  refusal(client: AuthorizedClient): BanRefusal | null {
    this.sweep();
    if (this.deny.size === 0 && this.allow.size === 0) return null;
    const facts = factsOf(client);
    const ban = matchAll(this.denyFor(client), facts);
    if (ban !== null) return { reason: `banned (${ban.kind})`, ban };
    if (this.allow.size === 0) return null;
    const missing = allowMiss(this.allow, facts);
    return missing === null ? null : { reason: `${DIMENSION_NAMES[missing]} not on the allow list`, ban: null };
  }

  /** The first deny entry in force that applies to `client` (as `refusal` judges it), or null. */
  matches(client: AuthorizedClient): Ban | null {
    this.sweep();
    return this.deny.size === 0 ? null : matchAll(this.denyFor(client), factsOf(client));
  }

  /** Refuses a banned (or not allowed) client's CONNECT (v5 CONNACK 0x8A Banned; v3 "not authorized"). */
  admissionGuard(): AdmissionGuard {
    return (client) => {
      const refusal = this.refusal(client);
      return refusal === null ? null : { reasonCode: ReasonCode.Banned, reason: refusal.reason };
    };
  }

  private denyFor(client: AuthorizedClient): ListIndex {
    return provenByTransport(client) ? this.denyProven : this.deny;
  }

  private index(b: Ban): void {
    if (b.list === 'allow') {
      this.allow.add(b);
      return;
    }
    this.deny.add(b);
    if (!isAuto(b) || b.kind === 'certFingerprint' || b.kind === 'certSerial') this.denyProven.add(b);
  }

  /** Re-indexes the entries in force. */
  private rebuild(): void {
    this.deny = new ListIndex();
    this.denyProven = new ListIndex();
    this.allow = new ListIndex();
    this.nextExpiry = Infinity;
    for (const b of this.active) {
      this.index(b);
      if (b.expiresAt !== null && b.expiresAt < this.nextExpiry) this.nextExpiry = b.expiresAt;
    }
  }

  /** Appends ended automatic bans to the history (kept in order of their end), after dropping the `forget` oldest. */
  private remember(ended: Ban[], forget = 0): void {
    if (forget > 0) this.history = this.history.slice(forget);
    if (ended.length > 0) {
      ended.sort((a, b) => a.expiresAt! - b.expiresAt!);
      this.history = this.history.concat(ended);
    }
    const oldest = this.history[0];
    this.nextForget = oldest === undefined ? Infinity : oldest.expiresAt! + AUTO_BAN_HISTORY_MS;
  }

  private count(b: Ban, delta: 1 | -1): void {
    const key = autoKey(b.kind, b.value, b.createdBy);
    const n = (this.autoCounts.get(key) ?? 0) + delta;
    if (n > 0) this.autoCounts.set(key, n);
    else this.autoCounts.delete(key);
  }
}

function isAuto(b: Ban): boolean {
  return b.list === 'deny' && b.createdBy.startsWith(AUTO_PREFIX) && b.expiresAt !== null;
}

function autoKey(kind: BanKind, value: string, createdBy: string): string {
  return `${kind}\u0000${createdBy}\u0000${value}`;
}

function inForce(b: Ban, now: number): boolean {
  return b.expiresAt === null || b.expiresAt > now;
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
