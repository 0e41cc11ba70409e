/**
 * The records of provisioning as rows that can travel between the nodes of a cluster
 * (issue 13): one row of provisioning.db as a keyed, canonical JSON entry, its validation,
 * and the JOIN of two versions of one row. Owns: those three. Must not: touch SQLite
 * (sqlite-provisioning-store.ts reads and writes the rows) or NATS (server/ does).
 *
 * Why a join and not "the last write wins": every state a record moves through only ever
 * moves one way. A token goes from unused to used, never back; a claim's device count only
 * grows; a revocation, a spend and a supersession keep their first date; a device record
 * is replaced only by one with a later certificate. So two versions of a row merge into
 * the one that has seen both (a join: commutative, associative, idempotent), whatever order
 * the nodes see them in. A write that merges with what it replaces can never make a spent
 * token unspent again, even when its author had not yet seen the spend.
 *
 * SECURITY: a row from another node is operator-grade input: strictly typed, its key must
 * be the one its own fields give, and a secret appears only as its SHA-256.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

export type ProvisioningTable = 'claims' | 'tokens' | 'ownerships' | 'devices' | 'renewals';

const time = z.number().int().nonnegative();
const maybeTime = time.nullable();
const serial = z.string().regex(/^[0-9A-F]{1,64}$/);
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const text = (max: number): z.ZodString => z.string().min(1).max(max);
const refKind = z.enum(['claim', 'token']);

// The column order of each schema is the canonical order of an entry's keys.
const claimRow = z.object({ serial, template: text(128), max_devices: z.number().int().nonnegative(), devices: z.number().int().nonnegative(), expires_at: time, revoked_at: maybeTime, created_at: time }).strict();
const tokenRow = z.object({ id: z.string().regex(/^[0-9a-f]{12}$/), hash: sha256, template: text(128), expires_at: time, used_at: maybeTime, used_by: text(256).nullable(), revoked_at: maybeTime, created_at: time }).strict();
const ownershipRow = z.object({ hash: sha256, cert_serial: serial, csr_pem: text(16_384), claim_kind: refKind, claim_ref: text(128), expires_at: time, used_at: maybeTime }).strict();
const deviceRow = z.object({ identity: text(256), template: text(128), cert_serial: serial, not_after: time, claim_kind: refKind, claim_ref: text(128), created_at: time, updated_at: time }).strict();
const renewalRow = z.object({ new_serial: serial, identity: text(256), old_serial: serial, created_at: time, supersede_at: time, superseded_at: maybeTime }).strict();

export type ClaimRow = z.infer<typeof claimRow>;
export type TokenRow = z.infer<typeof tokenRow>;
export type OwnershipRow = z.infer<typeof ownershipRow>;
export type DeviceRow = z.infer<typeof deviceRow>;
export type RenewalRow = z.infer<typeof renewalRow>;

export type ProvisioningRow =
  | { table: 'claims'; row: ClaimRow }
  | { table: 'tokens'; row: TokenRow }
  | { table: 'ownerships'; row: OwnershipRow }
  | { table: 'devices'; row: DeviceRow }
  | { table: 'renewals'; row: RenewalRow };

/** The prefix of every provisioning entry in the cluster's shared state bucket. */
export const PROVISIONING_ROW_PREFIX = 'prov';

const SCHEMAS = { claims: claimRow, tokens: tokenRow, ownerships: ownershipRow, devices: deviceRow, renewals: renewalRow } as const;
const LETTER: Record<ProvisioningTable, string> = { claims: 'c', tokens: 't', ownerships: 'o', devices: 'd', renewals: 'r' };
const TABLE_OF: Record<string, ProvisioningTable> = { c: 'claims', t: 'tokens', o: 'ownerships', d: 'devices', r: 'renewals' };

/** The primary key of a row: what its entry's key is made from. */
export function primaryKey(r: ProvisioningRow): string {
  switch (r.table) {
    case 'claims':
      return r.row.serial;
    case 'tokens':
      return r.row.id;
    case 'ownerships':
      return r.row.hash;
    case 'devices':
      return r.row.identity;
    case 'renewals':
      return r.row.new_serial;
  }
}

/**
 * The bucket key of a table's row: `prov.<letter>.<id>`. A device identity may hold any
 * character, and a bucket key only a few, so a device's key is a hash of its identity.
 */
export function rowKey(table: ProvisioningTable, id: string): string {
  const part = table === 'devices' ? createHash('sha256').update(id).digest('hex').slice(0, 40) : id;
  return `${PROVISIONING_ROW_PREFIX}.${LETTER[table]}.${part}`;
}

export function keyOfRow(r: ProvisioningRow): string {
  return rowKey(r.table, primaryKey(r));
}

/** The table a bucket key belongs to, or null. */
export function tableOfKey(key: string): ProvisioningTable | null {
  const [prefix, letter] = key.split('.');
  return prefix === PROVISIONING_ROW_PREFIX && letter !== undefined ? (TABLE_OF[letter] ?? null) : null;
}

/** The canonical text of a row: its columns in the schema's order, nothing else. */
export function canonicalText(r: ProvisioningRow): string {
  const shape = SCHEMAS[r.table].shape as Record<string, unknown>;
  const ordered: Record<string, unknown> = {};
  for (const column of Object.keys(shape)) ordered[column] = (r.row as Record<string, unknown>)[column];
  return JSON.stringify(ordered);
}

/** A row from the bucket, checked: the row, or why it is refused. */
export function decodeRow(key: string, bytes: Uint8Array): ProvisioningRow | { why: string } {
  const table = tableOfKey(key);
  if (table === null) return { why: 'not a provisioning key' };
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return { why: 'not JSON' };
  }
  const parsed = SCHEMAS[table].safeParse(raw);
  if (!parsed.success) return { why: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
  const row = { table, row: parsed.data } as ProvisioningRow;
  if (keyOfRow(row) !== key) return { why: 'a row under another row\'s key' };
  return row;
}

function earliest(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}

/**
 * The version of one row that has seen both `a` and `b` (same table and key). Fields that
 * never change after creation come from `a`.
 */
export function joinRows(a: ProvisioningRow, b: ProvisioningRow): ProvisioningRow {
  if (a.table !== b.table || primaryKey(a) !== primaryKey(b)) throw new Error('joinRows: two different rows');
  switch (a.table) {
    case 'claims': {
      const o = b.row as ClaimRow;
      return { table: 'claims', row: { ...a.row, devices: Math.max(a.row.devices, o.devices), revoked_at: earliest(a.row.revoked_at, o.revoked_at) } };
    }
    case 'tokens': {
      const o = b.row as TokenRow;
      // Spent once is spent: the first spend (by time) names the device.
      const spend = a.row.used_at !== null && (o.used_at === null || a.row.used_at <= o.used_at) ? a.row : o.used_at !== null ? o : a.row;
      return {
        table: 'tokens',
        row: { ...a.row, expires_at: Math.min(a.row.expires_at, o.expires_at), used_at: spend.used_at, used_by: spend.used_by, revoked_at: earliest(a.row.revoked_at, o.revoked_at) },
      };
    }
    case 'ownerships': {
      const o = b.row as OwnershipRow;
      return { table: 'ownerships', row: { ...a.row, used_at: earliest(a.row.used_at, o.used_at) } };
    }
    case 'devices': {
      // A renewal replaces the record with its later certificate; never the other way. Two
      // certificates issued in one second share notAfter: the later write wins.
      const o = b.row as DeviceRow;
      const later = o.not_after !== a.row.not_after ? o.not_after > a.row.not_after : o.updated_at > a.row.updated_at;
      return later ? { table: 'devices', row: o } : a;
    }
    case 'renewals': {
      const o = b.row as RenewalRow;
      return { table: 'renewals', row: { ...a.row, superseded_at: earliest(a.row.superseded_at, o.superseded_at) } };
    }
  }
}
