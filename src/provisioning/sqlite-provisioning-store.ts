/**
 * The records of provisioning in `<dataDir>/provisioning.db` (SQLite, WAL): claim
 * certificates, one-time tokens, step-1 ownership tokens, provisioned devices and
 * renewals. The CLI (`bastion provision …`, `cert issue --profile claim`) and a running
 * broker share the file across processes. Owns: the schema and the rows (the
 * ProvisioningStore port of ports.ts). Must not: make or check secrets, decide policy, or
 * talk to the CA (the provisioning service does).
 *
 * SECURITY: every "once" is a single conditional UPDATE whose `changes === 1` says who won
 * (takeClaimSlot, spendToken, spendOwnership): SQLite serialises writers, so two callers,
 * even in two processes, can never both win. Secrets are stored only as their SHA-256.
 * The file is created 0600 (SQLite gives its -wal and -shm files the same mode).
 *
 * Serial numbers are stored in the PKI inventory's canonical form (upper-case hex, no
 * separators), so a serial from a TLS peer certificate and one from `cert list` match.
 */
import { applySchemaMigrations, type SchemaMigration } from '../store/sqlite/schema-migrations.js';
import { chmodSync, closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { BastionError } from '../core/errors.js';
import type { ClaimRecord, ClaimRef, DeviceRecord, OwnershipRecord, ProvisioningStore, RenewalRecord, TokenRecord } from './ports.js';
import type { ProvisioningRow, ProvisioningTable } from './provisioning-rows.js';

/** The provisioning database's file name inside the data directory. */
export const PROVISIONING_DB_FILE = 'provisioning.db';

const ERR = 'ERR_PROVISIONING_STORE';

/** Ordered migrations tracked in `PRAGMA user_version`; append, never edit one that shipped. Times are ms since the epoch. */
const MIGRATIONS: readonly SchemaMigration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE claims (
        serial       TEXT    NOT NULL PRIMARY KEY,
        template     TEXT    NOT NULL,
        max_devices  INTEGER NOT NULL CHECK (max_devices >= 0),
        devices      INTEGER NOT NULL DEFAULT 0 CHECK (devices >= 0),
        expires_at   INTEGER NOT NULL,
        revoked_at   INTEGER,
        created_at   INTEGER NOT NULL
      );
      CREATE TABLE tokens (
        id           TEXT    NOT NULL PRIMARY KEY,
        hash         TEXT    NOT NULL UNIQUE,
        template     TEXT    NOT NULL,
        expires_at   INTEGER NOT NULL,
        used_at      INTEGER,
        used_by      TEXT,
        revoked_at   INTEGER,
        created_at   INTEGER NOT NULL
      );
      CREATE TABLE ownerships (
        hash         TEXT    NOT NULL PRIMARY KEY,
        cert_serial  TEXT    NOT NULL,
        csr_pem      TEXT    NOT NULL,
        claim_kind   TEXT    NOT NULL CHECK (claim_kind IN ('claim', 'token')),
        claim_ref    TEXT    NOT NULL,
        expires_at   INTEGER NOT NULL,
        used_at      INTEGER
      );
      CREATE INDEX ownerships_unused_by_expiry ON ownerships (expires_at) WHERE used_at IS NULL;
      CREATE TABLE devices (
        identity     TEXT    NOT NULL PRIMARY KEY,
        template     TEXT    NOT NULL,
        cert_serial  TEXT    NOT NULL,
        not_after    INTEGER NOT NULL,
        claim_kind   TEXT    NOT NULL CHECK (claim_kind IN ('claim', 'token')),
        claim_ref    TEXT    NOT NULL,
        created_at   INTEGER NOT NULL
      );
      CREATE INDEX devices_by_serial ON devices (cert_serial);
      CREATE TABLE renewals (
        new_serial    TEXT    NOT NULL PRIMARY KEY,
        identity      TEXT    NOT NULL,
        old_serial    TEXT    NOT NULL,
        created_at    INTEGER NOT NULL,
        supersede_at  INTEGER NOT NULL,
        superseded_at INTEGER
      );
      CREATE INDEX renewals_by_identity ON renewals (identity, created_at);
      CREATE INDEX renewals_due ON renewals (supersede_at) WHERE superseded_at IS NULL;
    `,
  },
  {
    // When a device record was last written: of two versions of one device in a cluster,
    // the later wins (a renewal within the same second keeps notAfter's second).
    version: 2,
    sql: `ALTER TABLE devices ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;`,
  },
];

/** A token as stored: the port's record plus when it was revoked (a revoked token also has its expiry cut to then). */
export interface StoredTokenRecord extends TokenRecord {
  revokedAt: number | null;
}

interface ClaimRow {
  serial: string;
  template: string;
  max_devices: number;
  devices: number;
  expires_at: number;
  revoked_at: number | null;
  created_at: number;
}
interface TokenRow {
  id: string;
  template: string;
  expires_at: number;
  used_at: number | null;
  used_by: string | null;
  revoked_at: number | null;
  created_at: number;
}
interface OwnershipRow {
  hash: string;
  cert_serial: string;
  csr_pem: string;
  claim_kind: ClaimRef['kind'];
  claim_ref: string;
  expires_at: number;
  used_at: number | null;
}
interface DeviceRow {
  identity: string;
  template: string;
  cert_serial: string;
  not_after: number;
  claim_kind: ClaimRef['kind'];
  claim_ref: string;
  created_at: number;
}
interface RenewalRow {
  new_serial: string;
  identity: string;
  old_serial: string;
  created_at: number;
  supersede_at: number;
  superseded_at: number | null;
}

/** Each table's primary key column (the tables of the rows a cluster shares). */
const PRIMARY: Record<ProvisioningTable, string> = { claims: 'serial', tokens: 'id', ownerships: 'hash', devices: 'identity', renewals: 'new_serial' };
const TABLES = Object.keys(PRIMARY) as ProvisioningTable[];

/** The PKI inventory's canonical serial: upper-case hex, no colons or spaces. */
function serialKey(serial: string): string {
  return serial.replace(/[:\s]/g, '').toUpperCase();
}

function refColumns(ref: ClaimRef): [ClaimRef['kind'], string] {
  return ref.kind === 'claim' ? ['claim', serialKey(ref.serialNumber)] : ['token', ref.id];
}

function refOf(kind: ClaimRef['kind'], value: string): ClaimRef {
  return kind === 'claim' ? { kind: 'claim', serialNumber: value } : { kind: 'token', id: value };
}

const toClaim = (r: ClaimRow): ClaimRecord => ({ serialNumber: r.serial, template: r.template, maxDevices: r.max_devices, devices: r.devices, expiresAt: r.expires_at, revokedAt: r.revoked_at, createdAt: r.created_at });
const toToken = (r: TokenRow): StoredTokenRecord => ({ id: r.id, template: r.template, expiresAt: r.expires_at, usedAt: r.used_at, usedBy: r.used_by, revokedAt: r.revoked_at, createdAt: r.created_at });
const toOwnership = (r: OwnershipRow): OwnershipRecord => ({ certSerial: r.cert_serial, csrPem: r.csr_pem, claim: refOf(r.claim_kind, r.claim_ref), expiresAt: r.expires_at, usedAt: r.used_at });
const toDevice = (r: DeviceRow): DeviceRecord => ({ identity: r.identity, template: r.template, certSerial: r.cert_serial, notAfter: r.not_after, claim: refOf(r.claim_kind, r.claim_ref), createdAt: r.created_at });
const toRenewal = (r: RenewalRow): RenewalRecord => ({ identity: r.identity, oldSerial: r.old_serial, newSerial: r.new_serial, createdAt: r.created_at, supersedeAt: r.supersede_at, supersededAt: r.superseded_at });

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** SECURITY: only a SHA-256 (64 lower-case hex) is ever written where a secret's hash goes, never a secret by mistake. */
function checkHash(hash: string): string {
  if (!SHA256_HEX.test(hash)) throw new BastionError(ERR, 'a secret hash must be a SHA-256 in lower-case hex');
  return hash;
}

/** Brings the file to the last migration (the runner every Bastion database uses). */
function migrate(db: Database.Database): void {
  applySchemaMigrations(db, MIGRATIONS, ERR, 'the provisioning store');
}

/** A UNIQUE or PRIMARY KEY conflict, as a BastionError the CLI prints in one line. */
function insertOrConflict(what: string, run: () => void): void {
  try {
    run();
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_CONSTRAINT')) throw new BastionError('ERR_PROVISIONING_EXISTS', `${what} exists already`);
    throw err;
  }
}

export class SqliteProvisioningStore implements ProvisioningStore {
  private closed = false;

  private constructor(private readonly db: Database.Database) {}

  /** Opens (creating when missing, mode 0600) the provisioning database at `file`. */
  static open(file: string): SqliteProvisioningStore {
    let db: Database.Database | undefined;
    try {
      // SECURITY: the file is created 0600 before SQLite opens it.
      closeSync(openSync(file, 'a', 0o600));
      chmodSync(file, 0o600);
      db = new Database(file);
      db.pragma('journal_mode = WAL');
      // The CLI and the broker write the same file: wait out the other's short transaction.
      db.pragma('busy_timeout = 5000');
      // A spent token or a counted device survives a power loss.
      db.pragma('synchronous = FULL');
      migrate(db);
      return new SqliteProvisioningStore(db);
    } catch (err) {
      db?.close();
      if (err instanceof BastionError) throw err;
      throw new BastionError(ERR, `cannot open the provisioning store ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  // --- claims ---

  addClaim(claim: Omit<ClaimRecord, 'devices' | 'revokedAt'>): void {
    if (!Number.isInteger(claim.maxDevices) || claim.maxDevices < 0) throw new BastionError(ERR, 'maxDevices must be a whole number from 0 (0: no limit)');
    insertOrConflict(`a claim with serial ${claim.serialNumber}`, () =>
      this.db
        .prepare('INSERT INTO claims (serial, template, max_devices, devices, expires_at, revoked_at, created_at) VALUES (?, ?, ?, 0, ?, NULL, ?)')
        .run(serialKey(claim.serialNumber), claim.template, claim.maxDevices, claim.expiresAt, claim.createdAt),
    );
  }

  claim(serialNumber: string): ClaimRecord | null {
    const row = this.db.prepare('SELECT * FROM claims WHERE serial = ?').get(serialKey(serialNumber)) as ClaimRow | undefined;
    return row === undefined ? null : toClaim(row);
  }

  listClaims(): ClaimRecord[] {
    return (this.db.prepare('SELECT * FROM claims ORDER BY created_at, rowid').all() as ClaimRow[]).map(toClaim);
  }

  /** False when there is no such claim or it was revoked already (the first date stays). */
  revokeClaim(serialNumber: string, at: number): boolean {
    return this.db.prepare('UPDATE claims SET revoked_at = ? WHERE serial = ? AND revoked_at IS NULL').run(at, serialKey(serialNumber)).changes === 1;
  }

  /** SECURITY: one UPDATE: never counts past maxDevices, whoever races; a revoked claim takes no slot. */
  takeClaimSlot(serialNumber: string): boolean {
    return (
      this.db
        .prepare('UPDATE claims SET devices = devices + 1 WHERE serial = ? AND revoked_at IS NULL AND (max_devices = 0 OR devices < max_devices)')
        .run(serialKey(serialNumber)).changes === 1
    );
  }

  // --- one-time tokens ---

  addToken(token: Omit<TokenRecord, 'usedAt' | 'usedBy'>, secretHash: string): void {
    const hash = checkHash(secretHash);
    insertOrConflict(`a token with id ${token.id} (or the same secret)`, () =>
      this.db
        .prepare('INSERT INTO tokens (id, hash, template, expires_at, used_at, used_by, revoked_at, created_at) VALUES (?, ?, ?, ?, NULL, NULL, NULL, ?)')
        .run(token.id, hash, token.template, token.expiresAt, token.createdAt),
    );
  }

  /** Several at once, all or none (`provision token create --count N`). */
  addTokens(tokens: ReadonlyArray<{ token: Omit<TokenRecord, 'usedAt' | 'usedBy'>; secretHash: string }>): void {
    this.db.transaction(() => {
      for (const t of tokens) this.addToken(t.token, t.secretHash);
    }).immediate();
  }

  tokenByHash(secretHash: string): StoredTokenRecord | null {
    const row = this.db.prepare('SELECT * FROM tokens WHERE hash = ?').get(secretHash) as TokenRow | undefined;
    return row === undefined ? null : toToken(row);
  }

  token(id: string): StoredTokenRecord | null {
    const row = this.db.prepare('SELECT * FROM tokens WHERE id = ?').get(id) as TokenRow | undefined;
    return row === undefined ? null : toToken(row);
  }

  listTokens(): StoredTokenRecord[] {
    return (this.db.prepare('SELECT * FROM tokens ORDER BY created_at, rowid').all() as TokenRow[]).map(toToken);
  }

  /**
   * SECURITY: one UPDATE: a token works once. It is refused too when revoked or expired at
   * `at`, so a caller that skipped those checks still cannot spend it.
   */
  spendToken(id: string, identity: string, at: number): boolean {
    return (
      this.db
        .prepare('UPDATE tokens SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?')
        .run(at, identity, id, at).changes === 1
    );
  }

  /**
   * Revokes an unused token: marks it and cuts its expiry to `at` (so a reader that only
   * checks expiresAt refuses it too). False when unknown, used or revoked already.
   */
  revokeToken(id: string, at: number): boolean {
    return (
      this.db
        .prepare('UPDATE tokens SET revoked_at = ?, expires_at = MIN(expires_at, ?) WHERE id = ? AND revoked_at IS NULL AND used_at IS NULL')
        .run(at, at, id).changes === 1
    );
  }

  // --- step-1 ownership tokens ---

  addOwnership(secretHash: string, record: Omit<OwnershipRecord, 'usedAt'>): void {
    const hash = checkHash(secretHash);
    const [kind, ref] = refColumns(record.claim);
    insertOrConflict('an ownership token with this secret', () =>
      this.db
        .prepare('INSERT INTO ownerships (hash, cert_serial, csr_pem, claim_kind, claim_ref, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?, NULL)')
        .run(hash, serialKey(record.certSerial), record.csrPem, kind, ref, record.expiresAt),
    );
  }

  ownership(secretHash: string): OwnershipRecord | null {
    const row = this.db.prepare('SELECT * FROM ownerships WHERE hash = ?').get(secretHash) as OwnershipRow | undefined;
    return row === undefined ? null : toOwnership(row);
  }

  /** SECURITY: one UPDATE: an ownership token works once, and not after its expiry. */
  spendOwnership(secretHash: string, at: number): boolean {
    return this.db.prepare('UPDATE ownerships SET used_at = ? WHERE hash = ? AND used_at IS NULL AND expires_at > ?').run(at, secretHash, at).changes === 1;
  }

  expiredOwnerships(now: number): Array<OwnershipRecord & { secretHash: string }> {
    const rows = this.db.prepare('SELECT * FROM ownerships WHERE used_at IS NULL AND expires_at <= ? ORDER BY expires_at, rowid').all(now) as OwnershipRow[];
    return rows.map((r) => ({ ...toOwnership(r), secretHash: r.hash }));
  }

  forgetOwnership(secretHash: string): void {
    this.db.prepare('DELETE FROM ownerships WHERE hash = ?').run(secretHash);
  }

  // --- devices ---

  /** Inserts, or replaces the record of the same identity (a renewal's new certificate). */
  putDevice(device: DeviceRecord): void {
    const [kind, ref] = refColumns(device.claim);
    this.db
      .prepare(
        `INSERT INTO devices (identity, template, cert_serial, not_after, claim_kind, claim_ref, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(identity) DO UPDATE SET template = excluded.template, cert_serial = excluded.cert_serial, not_after = excluded.not_after,
           claim_kind = excluded.claim_kind, claim_ref = excluded.claim_ref, created_at = excluded.created_at,
           updated_at = MAX(excluded.updated_at, devices.updated_at + 1)`,
      )
      .run(device.identity, device.template, serialKey(device.certSerial), device.notAfter, kind, ref, device.createdAt, Date.now());
  }

  device(identity: string): DeviceRecord | null {
    const row = this.db.prepare('SELECT * FROM devices WHERE identity = ?').get(identity) as DeviceRow | undefined;
    return row === undefined ? null : toDevice(row);
  }

  deviceBySerial(serialNumber: string): DeviceRecord | null {
    const row = this.db.prepare('SELECT * FROM devices WHERE cert_serial = ? LIMIT 1').get(serialKey(serialNumber)) as DeviceRow | undefined;
    return row === undefined ? null : toDevice(row);
  }

  listDevices(): DeviceRecord[] {
    return (this.db.prepare('SELECT * FROM devices ORDER BY created_at, rowid').all() as DeviceRow[]).map(toDevice);
  }

  // --- renewals ---

  addRenewal(renewal: Omit<RenewalRecord, 'supersededAt'>): void {
    insertOrConflict(`a renewal to serial ${renewal.newSerial}`, () =>
      this.db
        .prepare('INSERT INTO renewals (new_serial, identity, old_serial, created_at, supersede_at, superseded_at) VALUES (?, ?, ?, ?, ?, NULL)')
        .run(serialKey(renewal.newSerial), renewal.identity, serialKey(renewal.oldSerial), renewal.createdAt, renewal.supersedeAt),
    );
  }

  renewalByNewSerial(newSerial: string): RenewalRecord | null {
    const row = this.db.prepare('SELECT * FROM renewals WHERE new_serial = ?').get(serialKey(newSerial)) as RenewalRow | undefined;
    return row === undefined ? null : toRenewal(row);
  }

  dueRenewals(now: number): RenewalRecord[] {
    return (this.db.prepare('SELECT * FROM renewals WHERE superseded_at IS NULL AND supersede_at <= ? ORDER BY supersede_at, rowid').all(now) as RenewalRow[]).map(toRenewal);
  }

  /** The first date stays: marking twice changes nothing. */
  markSuperseded(newSerial: string, at: number): void {
    this.db.prepare('UPDATE renewals SET superseded_at = ? WHERE new_serial = ? AND superseded_at IS NULL').run(at, serialKey(newSerial));
  }

  renewalsSince(identity: string, since: number): number {
    const row = this.db.prepare('SELECT COUNT(*) AS n FROM renewals WHERE identity = ? AND created_at >= ?').get(identity, since) as { n: number };
    return row.n;
  }

  // --- raw rows, for a cluster's replica (server/cluster-provisioning.ts) ---

  /** Changes when any connection (another process) committed to the file: poll it. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  /** Every row of every table. */
  allRows(): ProvisioningRow[] {
    return TABLES.flatMap((table) => (this.db.prepare(`SELECT * FROM ${table}`).all() as ProvisioningRow['row'][]).map((row) => ({ table, row }) as ProvisioningRow));
  }

  row(table: ProvisioningTable, id: string): ProvisioningRow | null {
    const row = this.db.prepare(`SELECT * FROM ${table} WHERE ${PRIMARY[table]} = ?`).get(id) as ProvisioningRow['row'] | undefined;
    return row === undefined ? null : ({ table, row } as ProvisioningRow);
  }

  /** Inserts or replaces a row as it is (the caller merged it with what was here). */
  putRow(r: ProvisioningRow): void {
    const columns = Object.keys(r.row);
    const values = columns.map((c) => (r.row as Record<string, unknown>)[c]);
    this.db.prepare(`INSERT OR REPLACE INTO ${r.table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`).run(...values);
  }

  deleteRow(table: ProvisioningTable, id: string): void {
    this.db.prepare(`DELETE FROM ${table} WHERE ${PRIMARY[table]} = ?`).run(id);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
