/**
 * The PKI inventory: every certificate the CA issued (root, intermediates, leaves) with
 * its identity, validity, revocation status and PEM, plus a few PKI settings (the OCSP URL,
 * CRL numbers, the last root-signed CRL). Lives in its own SQLite file
 * (`<dataDir>/pki/inventory.db`, WAL) so the CLI, the broker's CRL timer and the OCSP
 * responder can share it across processes. Owns: the schema and the rows.
 * Must not: parse or sign certificates (server/pki-service does), or decide policy.
 */
import Database from 'better-sqlite3';
import { PKI_MIGRATIONS } from './pki-migrations.js';
import { openSharedDatabase } from './schema-migrations.js';

/** What a certificate is for. CA kinds come from `ca init` / `ca intermediate`. */
export type CertificateKind = 'root' | 'intermediate' | 'server' | 'client';
export type CertificateStatus = 'valid' | 'revoked';

/** A certificate as recorded at issuance. Serial numbers are upper-case hex. */
export interface NewInventoryRecord {
  readonly serialNumber: string;
  readonly kind: CertificateKind;
  /** Serial of the CA certificate that signed it; null for the self-signed root. */
  readonly issuerSerial: string | null;
  readonly subject: string;
  readonly commonName: string;
  /** Subject alternative names as `DNS:x`, `IP:x`, `URI:x`, `email:x`. */
  readonly sans: readonly string[];
  readonly fingerprint256: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly certPem: string;
  readonly issuedAt: Date;
}

export interface InventoryRecord extends NewInventoryRecord {
  readonly status: CertificateStatus;
  readonly revokedAt: Date | null;
  readonly reason: string | null;
}

export interface InventoryFilter {
  readonly status?: CertificateStatus;
  /** Only certificates whose notAfter is before this instant. */
  readonly expiringBefore?: Date;
  readonly issuerSerial?: string;
  readonly kinds?: readonly CertificateKind[];
}

/** The outcome of `revoke`: expected cases are values, not exceptions. */
export type RevokeOutcome =
  | { readonly result: 'revoked'; readonly record: InventoryRecord }
  | { readonly result: 'already-revoked'; readonly record: InventoryRecord }
  | { readonly result: 'unknown' };

export interface RevokedEntry {
  readonly serialNumber: string;
  readonly revokedAt: Date;
  readonly reason: string | null;
}

interface Row {
  serial: string;
  kind: CertificateKind;
  issuer_serial: string | null;
  subject: string;
  common_name: string;
  sans: string;
  fingerprint256: string;
  not_before: number;
  not_after: number;
  status: CertificateStatus;
  revoked_at: number | null;
  reason: string | null;
  pem: string;
  issued_at: number;
}

function toRecord(row: Row): InventoryRecord {
  return {
    serialNumber: row.serial,
    kind: row.kind,
    issuerSerial: row.issuer_serial,
    subject: row.subject,
    commonName: row.common_name,
    sans: JSON.parse(row.sans) as string[],
    fingerprint256: row.fingerprint256,
    notBefore: new Date(row.not_before),
    notAfter: new Date(row.not_after),
    status: row.status,
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
    reason: row.reason,
    certPem: row.pem,
    issuedAt: new Date(row.issued_at),
  };
}

/** Serial numbers are compared in the canonical upper-case hex form, no separators. */
export function normalizeSerial(serial: string): string {
  return serial.replace(/[:\s]/g, '').toUpperCase();
}

export class PkiInventory {
  private readonly db: Database.Database;
  private closed = false;

  private constructor(db: Database.Database) {
    this.db = db;
  }

  /** Opens (creating when missing) the inventory database at `path`. */
  static open(path: string): PkiInventory {
    // WAL and a busy timeout: the CLI and a running broker (CRL timer, OCSP responder) write
    // the same file. FULL sync: a recorded certificate or revocation survives a power loss.
    const db = openSharedDatabase(path, { migrations: PKI_MIGRATIONS, code: 'ERR_PKI_INVENTORY', what: 'the PKI inventory', pragmas: ['synchronous = FULL'] });
    return new PkiInventory(db);
  }

  add(record: NewInventoryRecord): void {
    this.insert('INSERT', record, { status: 'valid', revokedAt: null, reason: null });
  }

  /**
   * Records a certificate with the status another node of a cluster holds for it (the
   * cluster's PKI inventory, server/cluster-pki.ts). False when the serial is recorded
   * already: the caller merges into that row instead.
   */
  insertRecord(record: InventoryRecord): boolean {
    const revoked = record.status === 'revoked';
    return this.insert('INSERT OR IGNORE', record, { status: record.status, revokedAt: revoked ? (record.revokedAt ?? new Date(0)) : null, reason: revoked ? record.reason : null }) === 1;
  }

  /** One certificate row with its standing; the number of rows inserted. */
  private insert(verb: 'INSERT' | 'INSERT OR IGNORE', record: NewInventoryRecord, standing: { status: CertificateStatus; revokedAt: Date | null; reason: string | null }): number {
    return this.db
      .prepare(
        `${verb} INTO certificates (serial, kind, issuer_serial, subject, common_name, sans, fingerprint256,
           not_before, not_after, status, revoked_at, reason, pem, issued_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        normalizeSerial(record.serialNumber),
        record.kind,
        record.issuerSerial === null ? null : normalizeSerial(record.issuerSerial),
        record.subject,
        record.commonName,
        JSON.stringify(record.sans),
        record.fingerprint256,
        record.notBefore.getTime(),
        record.notAfter.getTime(),
        standing.status,
        standing.revokedAt?.getTime() ?? null,
        standing.reason,
        record.certPem,
        record.issuedAt.getTime(),
      ).changes;
  }

  /**
   * Revokes a certificate, or moves its revocation earlier: the earliest revocation wins
   * (at the same instant, the reason that sorts first, a reason over none), so nodes that
   * merge the same revocations in any order end with the same row. Never un-revokes.
   * Whether the row changed; 'unknown' when there is no such serial.
   */
  revokeNoLaterThan(serialNumber: string, revokedAt: Date, reason: string | null): boolean | 'unknown' {
    const serial = normalizeSerial(serialNumber);
    const at = revokedAt.getTime();
    return this.db.transaction((): boolean | 'unknown' => {
      const info = this.db
        .prepare(
          `UPDATE certificates SET status = 'revoked', revoked_at = ?, reason = ?
           WHERE serial = ? AND (status = 'valid' OR revoked_at > ? OR (revoked_at = ? AND ? IS NOT NULL AND (reason IS NULL OR reason > ?)))`,
        )
        .run(at, reason, serial, at, at, reason, reason);
      if (info.changes > 0) return true;
      return this.db.prepare('SELECT 1 FROM certificates WHERE serial = ?').get(serial) === undefined ? 'unknown' : false;
    }).immediate();
  }

  /** The status of every leaf certificate (kinds server, client), without PEMs: cheap enough to poll. */
  leafStates(): Array<{ serialNumber: string; status: CertificateStatus; revokedAt: number | null; reason: string | null }> {
    const rows = this.db.prepare("SELECT serial, status, revoked_at, reason FROM certificates WHERE kind IN ('server', 'client')").all() as Array<{ serial: string; status: CertificateStatus; revoked_at: number | null; reason: string | null }>;
    return rows.map((r) => ({ serialNumber: r.serial, status: r.status, revokedAt: r.revoked_at, reason: r.reason }));
  }

  /** SQLite's `PRAGMA data_version` of this connection: it changes when another connection (process) committed a write. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  get(serialNumber: string): InventoryRecord | undefined {
    const row = this.db.prepare('SELECT * FROM certificates WHERE serial = ?').get(normalizeSerial(serialNumber)) as Row | undefined;
    return row === undefined ? undefined : toRecord(row);
  }

  /** Certificates matching every given condition, oldest issuance first. */
  list(filter: InventoryFilter = {}): InventoryRecord[] {
    const where: string[] = [];
    const args: Array<string | number> = [];
    if (filter.status !== undefined) {
      where.push('status = ?');
      args.push(filter.status);
    }
    if (filter.expiringBefore !== undefined) {
      where.push('not_after < ?');
      args.push(filter.expiringBefore.getTime());
    }
    if (filter.issuerSerial !== undefined) {
      where.push('issuer_serial = ?');
      args.push(normalizeSerial(filter.issuerSerial));
    }
    if (filter.kinds !== undefined && filter.kinds.length > 0) {
      where.push(`kind IN (${filter.kinds.map(() => '?').join(', ')})`);
      args.push(...filter.kinds);
    }
    const sql = `SELECT * FROM certificates${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY issued_at, rowid`;
    return (this.db.prepare(sql).all(...args) as Row[]).map(toRecord);
  }

  /** Marks a certificate revoked. A second revocation keeps the first date and reason. */
  revoke(serialNumber: string, revokedAt: Date, reason: string | null): RevokeOutcome {
    const serial = normalizeSerial(serialNumber);
    return this.db.transaction((): RevokeOutcome => {
      const before = this.get(serial);
      if (before === undefined) return { result: 'unknown' };
      if (before.status === 'revoked') return { result: 'already-revoked', record: before };
      this.db.prepare("UPDATE certificates SET status = 'revoked', revoked_at = ?, reason = ? WHERE serial = ?").run(revokedAt.getTime(), reason, serial);
      return { result: 'revoked', record: this.get(serial)! };
    }).immediate();
  }

  /** The revoked certificates a CA issued: the entries of that CA's CRL. */
  /** Revoked certificates of an issuer; with `expiredBefore`, not those whose notAfter is earlier (RFC 5280 §3.3 lets them leave the CRL). */
  revokedIssuedBy(issuerSerial: string, expiredBefore?: Date): RevokedEntry[] {
    const rows = this.db
      .prepare("SELECT serial, revoked_at, reason FROM certificates WHERE issuer_serial = ? AND status = 'revoked' AND not_after >= ? ORDER BY revoked_at, serial")
      .all(normalizeSerial(issuerSerial), expiredBefore?.getTime() ?? 0) as Array<{ serial: string; revoked_at: number; reason: string | null }>;
    return rows.map((r) => ({ serialNumber: r.serial, revokedAt: new Date(r.revoked_at), reason: r.reason }));
  }

  getSetting(key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }

  setSetting(key: string, value: string | null): void {
    if (value === null) this.db.prepare('DELETE FROM settings WHERE key = ?').run(key);
    else this.db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  /**
   * Takes the next number of a monotonic counter (CRL numbers, RFC 5280 §5.2.3), in one
   * write transaction so two processes never hand out the same number.
   */
  nextCounter(key: string): bigint {
    return this.db.transaction((): bigint => {
      const current = this.getSetting(key);
      const next = (current === undefined ? 0n : BigInt(current)) + 1n;
      this.setSetting(key, next.toString());
      return next;
    }).immediate();
  }

  /**
   * Raises a counter to at least `atLeast` (never lowers it), so the next `nextCounter`
   * hands out more: a cluster node that applied another node's CRL number N signs its next
   * CRL above N. Whether it was raised.
   */
  raiseCounter(key: string, atLeast: bigint): boolean {
    return this.db.transaction((): boolean => {
      const current = this.getSetting(key);
      if (current !== undefined && BigInt(current) >= atLeast) return false;
      this.setSetting(key, atLeast.toString());
      return true;
    }).immediate();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
