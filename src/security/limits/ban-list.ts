/**
 * The ban list: client ids, user names, certificate serials and IP addresses that may not
 * connect, each with a reason and an optional expiry. Owns: normalising ban values,
 * matching a client against the list, and the admission guard built on it. Must not: do
 * I/O (a BanStore port keeps the rows; server/ picks the adapter) or disconnect clients
 * (the caller applies a new ban to live sessions through the broker facade).
 *
 * Issue 5 grows this (CIDR ranges, flapping, brute force): add kinds here and keep
 * `matches` the single place that decides.
 */
import type { AdmissionGuard } from '../../broker/broker.js';
import type { AuthorizedClient } from '../../broker/ports.js';
import { ReasonCode } from '../../protocol/reason-codes.js';

export const BAN_KINDS = ['clientId', 'username', 'certSerial', 'ip'] as const;
export type BanKind = (typeof BAN_KINDS)[number];

export interface NewBan {
  kind: BanKind;
  value: string;
  reason: string;
  /** Who banned (operator certificate CN or token name). */
  createdBy: string;
  createdAt: number;
  /** ms since epoch; null never expires. */
  expiresAt: number | null;
}

export interface Ban extends NewBan {
  id: number;
}

/** Durable storage of bans (SQLite in the server). */
export interface BanStore {
  listBans(): Ban[];
  addBan(ban: NewBan): Ban;
  removeBan(id: number): boolean;
}

/** The canonical form of a ban value, so `::ffff:10.0.0.1` and `10.0.0.1`, `0a:1b` and `0A1B` are one ban. */
export function normalizeBanValue(kind: BanKind, value: string): string {
  const v = value.trim();
  switch (kind) {
    case 'certSerial':
      return v.replace(/[:\s]/g, '').toUpperCase().replace(/^0+(?=.)/, '');
    case 'ip':
      return normalizeIp(v);
    case 'clientId':
    case 'username':
      return v;
  }
}

function normalizeIp(ip: string): string {
  const lower = ip.toLowerCase();
  // An IPv4 client on a dual-stack socket shows up as an IPv4-mapped IPv6 address.
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower;
}

export class BanList {
  private bans: Ban[];

  constructor(
    private readonly store: BanStore,
    private readonly now: () => number = Date.now,
  ) {
    this.bans = store.listBans();
  }

  /** Bans in force (expired ones are left out). */
  list(): Ban[] {
    const now = this.now();
    return this.bans.filter((b) => b.expiresAt === null || b.expiresAt > now);
  }

  add(ban: NewBan): Ban {
    const stored = this.store.addBan({ ...ban, value: normalizeBanValue(ban.kind, ban.value) });
    this.bans = [...this.bans, stored];
    return stored;
  }

  /** Removes a ban by id; false when there is none. */
  remove(id: number): Ban | null {
    const found = this.bans.find((b) => b.id === id) ?? null;
    if (found === null || !this.store.removeBan(id)) return null;
    this.bans = this.bans.filter((b) => b.id !== id);
    return found;
  }

  /** The first ban in force that applies to `client`, or null. */
  matches(client: AuthorizedClient): Ban | null {
    const now = this.now();
    for (const ban of this.bans) {
      if (ban.expiresAt !== null && ban.expiresAt <= now) continue;
      if (banApplies(ban, client)) return ban;
    }
    return null;
  }

  /** Refuses a banned client's CONNECT (v5 CONNACK 0x8A Banned; v3 "not authorized"). */
  admissionGuard(): AdmissionGuard {
    return (client) => {
      const ban = this.matches(client);
      return ban === null ? null : { reasonCode: ReasonCode.Banned, reason: `banned (${ban.kind})` };
    };
  }
}

/** Whether `ban` selects `client` (also for applying a new ban to live sessions). */
export function banApplies(ban: Ban, client: AuthorizedClient): boolean {
  switch (ban.kind) {
    case 'clientId':
      return client.clientId === ban.value;
    case 'username':
      // The authenticated user name (password, JWT, SCRAM); a certificate's CN is not one.
      return client.identity.username === ban.value;
    case 'certSerial': {
      const serial = client.identity.certificate?.serialNumber;
      return serial !== undefined && normalizeBanValue('certSerial', serial) === ban.value;
    }
    case 'ip':
      return normalizeIp(client.identity.remoteAddress) === ban.value;
  }
}
