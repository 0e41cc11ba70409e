/**
 * Reading and printing for `bastion audit`: the event types a query may name, `--since`
 * / `--until` times, and the one-line and JSON forms of a record. Owns: the wording.
 * Must not: open the database (audit.ts does).
 */
import { BastionError } from '../core/errors.js';
import type { SecurityEventType } from '../core/security-events.js';
import type { AuditRow } from '../store/sqlite/audit-store.js';

/** Every event type (a Record, so a new type in the union fails the build until listed here). */
const EVENT_TYPES: Record<SecurityEventType, true> = {
  'connection.accepted': true,
  'connection.refused': true,
  'auth.failure': true,
  'authz.denied': true,
  'limit.hit': true,
  'client.disconnected': true,
  'ban.added': true,
  'ban.removed': true,
  'revocation.applied': true,
  'admin.change': true,
  provisioning: true,
  job: true,
  campaign: true,
  'defender.alarm': true,
  'defender.action': true,
  'defender.audit': true,
  'tls.handshake': true,
};

export function usage(message: string): BastionError {
  return new BastionError('ERR_USAGE', message);
}

export function parseEventType(raw: string): SecurityEventType {
  if (!Object.hasOwn(EVENT_TYPES, raw)) throw usage(`--type ${raw}: not an audit event type; one of ${Object.keys(EVENT_TYPES).join(', ')}`);
  return raw as SecurityEventType;
}

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `30m`, `1h`, `7d`, `90s` (before now) or an ISO 8601 time → ms since the epoch. */
export function parseTime(flag: string, raw: string, now: number = Date.now()): number {
  const rel = /^([1-9][0-9]{0,8})([smhd])$/.exec(raw);
  if (rel !== null) return now - Number(rel[1]) * UNIT_MS[rel[2] as keyof typeof UNIT_MS];
  // Only things that look like dates: Date.parse accepts odd strings ("1") otherwise.
  const ms = /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : Number.NaN;
  if (Number.isNaN(ms)) throw usage(`${flag} ${raw}: expected an ISO time (2026-11-26T12:00:00Z) or a duration before now (90s, 30m, 1h, 7d)`);
  return ms;
}

export function parseCount(flag: string, raw: string, max: number): number {
  const n = /^[0-9]{1,9}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > max) throw usage(`${flag} ${raw}: expected a whole number from 1 to ${max}`);
  return n;
}

/** The record as its JSON line: the AuditRecord shape (seq, ts, time, event, prevHash, hash). */
export function jsonLine(r: AuditRow): string {
  let event: unknown;
  try {
    event = JSON.parse(r.eventJson) as unknown;
  } catch {
    event = { unreadable: r.eventJson };
  }
  return JSON.stringify({ seq: r.seq, ts: r.ts, time: new Date(r.ts).toISOString(), event, prevHash: r.prevHash, hash: r.hash });
}

/** Fields printed first, when present: who and where. */
const FIRST = ['clientId', 'remoteAddress', 'listener', 'principal', 'username', 'actor'];

function show(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]*$/.test(v) && v !== '' ? v : JSON.stringify(v);
  return JSON.stringify(v);
}

/** `42 2026-11-26T12:00:00.000Z auth.failure clientId=x remoteAddress=… reason="…"`. */
export function humanLine(r: AuditRow): string {
  let fields: Record<string, unknown>;
  try {
    fields = JSON.parse(r.eventJson) as Record<string, unknown>;
  } catch {
    return `${r.seq} ${new Date(r.ts).toISOString()} ${r.type} (unreadable event)`;
  }
  const keys = Object.keys(fields).filter((k) => k !== 'type');
  const ordered = [...FIRST.filter((k) => keys.includes(k)), ...keys.filter((k) => !FIRST.includes(k))];
  return `${r.seq} ${new Date(r.ts).toISOString()} ${r.type} ${ordered.map((k) => `${k}=${show(fields[k])}`).join(' ')}`.trimEnd();
}
