/**
 * The audit database (`<dataDir>/audit.db`, WAL): the hash-chained audit records, the
 * signed checkpoints, the certificates of the keys that signed them and the ML-DSA public
 * keys of hybrid checkpoints. The broker
 * appends; `bastion audit verify|tail|query` read it from another process at the same
 * time (WAL readers never block the writer). Owns: the schema, the rows and the read
 * queries; the primitives retention uses (the oldest rows, the space used, deleting a prefix
 * with its signed pruning marker, incremental vacuum). Must not: hash, sign or judge
 * records (security/audit does), nor decide what to prune (server/audit-pruner.ts), and
 * the rows are plain shapes so store/ does not depend on security/.
 */
import Database from 'better-sqlite3';
import { BastionError } from '../../core/errors.js';
import { applySchemaMigrations, type SchemaMigration } from './schema-migrations.js';

export const AUDIT_DB_FILE = 'audit.db';

const MIGRATIONS: readonly SchemaMigration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE records (
        seq        INTEGER PRIMARY KEY,
        ts         INTEGER NOT NULL,
        type       TEXT    NOT NULL,
        client_id  TEXT,
        event      TEXT    NOT NULL,
        prev_hash  TEXT    NOT NULL,
        hash       TEXT    NOT NULL
      );
      CREATE INDEX records_ts ON records (ts);
      CREATE INDEX records_client ON records (client_id) WHERE client_id IS NOT NULL;
      CREATE TABLE checkpoints (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        seq        INTEGER NOT NULL,
        hash       TEXT    NOT NULL,
        ts         INTEGER NOT NULL,
        signature  TEXT    NOT NULL,
        signer     TEXT    NOT NULL
      );
      CREATE INDEX checkpoints_seq ON checkpoints (seq);
      CREATE TABLE signers (
        fingerprint TEXT    PRIMARY KEY,
        cert_pem    TEXT    NOT NULL,
        added_at    INTEGER NOT NULL
      );
    `,
  },
  {
    // Hybrid checkpoints: the ML-DSA signature and its key's fingerprint (NULL on the
    // classic-only checkpoints written before), and the ML-DSA public keys by fingerprint.
    version: 2,
    sql: `
      ALTER TABLE checkpoints ADD COLUMN pq_signature TEXT;
      ALTER TABLE checkpoints ADD COLUMN pq_key TEXT;
      CREATE TABLE pq_keys (
        fingerprint TEXT    PRIMARY KEY,
        public_key  TEXT    NOT NULL,
        added_at    INTEGER NOT NULL
      );
    `,
  },
  {
    // Retention: the signed pruning markers ("records up to seq N are gone; record N's
    // hash was H, its time head_ts; pruned at ts"). The pruner keeps only the newest.
    version: 3,
    sql: `
      CREATE TABLE pruned (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        seq          INTEGER NOT NULL,
        hash         TEXT    NOT NULL,
        head_ts      INTEGER NOT NULL,
        ts           INTEGER NOT NULL,
        signature    TEXT    NOT NULL,
        signer       TEXT    NOT NULL,
        pq_signature TEXT,
        pq_key       TEXT
      );
    `,
  },
];

/** A record as stored: the event is its canonical JSON text (exactly what the hash covers). */
export interface AuditRow {
  seq: number;
  ts: number;
  /** The event's type, for queries. */
  type: string;
  /** The event's clientId when it has one, for queries. */
  clientId: string | null;
  eventJson: string;
  prevHash: string;
  hash: string;
}

/** The signature columns of every signed row: checkpoints and pruning markers. */
interface SignedRowFields {
  signature: string;
  signerFingerprint: string;
  /** The ML-DSA signature of a hybrid row; null on a classic-only one. */
  pqSignature?: string | null | undefined;
  /** The ML-DSA key's fingerprint (pq_keys) of a hybrid row; null on a classic-only one. */
  pqKeyFingerprint?: string | null | undefined;
  /** Written only: the ML-DSA public key (SPKI PEM), recorded under pqKeyFingerprint when new. */
  pqPublicKeyPem?: string | null | undefined;
}

export interface AuditCheckpointRow extends SignedRowFields {
  seq: number;
  hash: string;
  ts: number;
}

/** A signed pruning marker as stored (security/audit/prune.ts signs and checks it). */
export interface AuditPruneRow extends SignedRowFields {
  seq: number;
  hash: string;
  headTs: number;
  ts: number;
}

/** The file's pages: what retention's size bound measures and vacuum gives back. */
export interface AuditSpace {
  pageSize: number;
  pageCount: number;
  freePages: number;
  /** (pageCount - freePages) * pageSize: the bytes the rows take. */
  usedBytes: number;
  /** True when freed pages can be returned to the file system (auto_vacuum = INCREMENTAL). */
  incremental: boolean;
}

export interface AuditQuery {
  /** ts >= since (ms). */
  since?: number | undefined;
  /** ts < until (ms). */
  until?: number | undefined;
  type?: string | undefined;
  clientId?: string | undefined;
  /** Only records with seq > afterSeq. */
  afterSeq?: number | undefined;
  /** Only records with seq < beforeSeq (paging back from the newest). */
  beforeSeq?: number | undefined;
  /** Newest first (the console's order) instead of seq order. */
  newestFirst?: boolean | undefined;
  limit: number;
}

interface RecordRow {
  seq: number;
  ts: number;
  type: string;
  client_id: string | null;
  event: string;
  prev_hash: string;
  hash: string;
}

interface CheckpointRow {
  seq: number;
  hash: string;
  ts: number;
  signature: string;
  signer: string;
  pq_signature: string | null;
  pq_key: string | null;
}

const RECORD_COLUMNS = 'seq, ts, type, client_id, event, prev_hash, hash';
/** Rows per page when the whole log is walked (verify): bounded memory at any size. */
const PAGE = 5000;

function toRow(r: RecordRow): AuditRow {
  return { seq: r.seq, ts: r.ts, type: r.type, clientId: r.client_id, eventJson: r.event, prevHash: r.prev_hash, hash: r.hash };
}

interface PruneRow {
  seq: number;
  hash: string;
  head_ts: number;
  ts: number;
  signature: string;
  signer: string;
  pq_signature: string | null;
  pq_key: string | null;
}

function toPrune(r: PruneRow): AuditPruneRow {
  return { seq: r.seq, hash: r.hash, headTs: r.head_ts, ts: r.ts, signature: r.signature, signerFingerprint: r.signer, pqSignature: r.pq_signature, pqKeyFingerprint: r.pq_key };
}

function toCheckpoint(r: CheckpointRow): AuditCheckpointRow {
  return { seq: r.seq, hash: r.hash, ts: r.ts, signature: r.signature, signerFingerprint: r.signer, pqSignature: r.pq_signature, pqKeyFingerprint: r.pq_key };
}

export class SqliteAuditStore {
  private readonly insertRecord: Database.Statement;
  private readonly insertCheckpoint: Database.Statement;
  private readonly insertPqKey: Database.Statement;
  private readonly addCheckpointTx: (cp: AuditCheckpointRow) => void;
  private readonly appendTx: (rows: readonly AuditRow[], checkpoint: AuditCheckpointRow | null) => void;
  private readonly pruneTx: (marker: AuditPruneRow) => number;

  private constructor(private readonly db: Database.Database) {
    this.insertRecord = db.prepare(`INSERT INTO records (${RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`);
    this.insertCheckpoint = db.prepare('INSERT INTO checkpoints (seq, hash, ts, signature, signer, pq_signature, pq_key) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.insertPqKey = db.prepare('INSERT OR IGNORE INTO pq_keys (fingerprint, public_key, added_at) VALUES (?, ?, ?)');
    // Nested in appendTx it becomes a savepoint: still all or nothing.
    this.addCheckpointTx = db.transaction((cp: AuditCheckpointRow) => {
      const pqKey = cp.pqKeyFingerprint ?? null;
      if (pqKey !== null && (cp.pqPublicKeyPem ?? null) !== null) this.insertPqKey.run(pqKey, cp.pqPublicKeyPem, cp.ts);
      this.insertCheckpoint.run(cp.seq, cp.hash, cp.ts, cp.signature, cp.signerFingerprint, cp.pqSignature ?? null, pqKey);
    });
    this.appendTx = db.transaction((rows: readonly AuditRow[], checkpoint: AuditCheckpointRow | null) => {
      for (const r of rows) this.insertRecord.run(r.seq, r.ts, r.type, r.clientId, r.eventJson, r.prevHash, r.hash);
      if (checkpoint !== null) this.addCheckpoint(checkpoint);
    });
    const deleteRecords = db.prepare('DELETE FROM records WHERE seq <= ?');
    const deleteCheckpoints = db.prepare('DELETE FROM checkpoints WHERE seq <= ?');
    const deletePruned = db.prepare('DELETE FROM pruned');
    const insertPrune = db.prepare('INSERT INTO pruned (seq, hash, head_ts, ts, signature, signer, pq_signature, pq_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    // SECURITY: the records go in the same transaction as the marker that accounts for
    // them, so no reader (verify runs beside the broker) ever sees a gap without a marker.
    this.pruneTx = db.transaction((m: AuditPruneRow) => {
      const deleted = deleteRecords.run(m.seq).changes;
      deleteCheckpoints.run(m.seq);
      deletePruned.run();
      const pqKey = m.pqKeyFingerprint ?? null;
      if (pqKey !== null && (m.pqPublicKeyPem ?? null) !== null) this.insertPqKey.run(pqKey, m.pqPublicKeyPem, m.ts);
      insertPrune.run(m.seq, m.hash, m.headTs, m.ts, m.signature, m.signerFingerprint, m.pqSignature ?? null, m.pqKeyFingerprint ?? null);
      return deleted;
    });
  }

  /**
   * Opens the audit database. `create: false` (the CLI) refuses a missing file instead of
   * creating an empty log that would "verify".
   */
  static open(path: string, options: { create: boolean }): SqliteAuditStore {
    let db: Database.Database;
    try {
      db = new Database(path, { fileMustExist: !options.create });
    } catch (err) {
      const missing = !options.create && /unable to open|does not exist/i.test((err as Error).message);
      throw new BastionError('ERR_AUDIT_STORE', missing ? `no audit log at ${path} (the broker creates it at its first start)` : `cannot open the audit database ${path}: ${(err as Error).message}`);
    }
    try {
      // A new file gets incremental auto-vacuum (it can only be chosen before the first
      // table): pruned pages go back to the file system in small steps (vacuumStep) instead
      // of a full VACUUM that would block the broker. A file made before keeps reusing its
      // freed pages (it stops growing, it does not shrink).
      if (options.create && (db.pragma('user_version', { simple: true }) as number) === 0) db.pragma('auto_vacuum = INCREMENTAL');
      db.pragma('journal_mode = WAL');
      // NORMAL (WAL): a committed record survives a crash of the broker (kill -9) without
      // an fsync per commit. FULL measured one fsync per event-loop turn with events
      // (~2.7 ms each here: the broker's event loop blocked for it); a power loss can
      // lose only the last transactions, a suffix the SIEM export already carries off the
      // machine, and the chain stays verifiable (a lost checkpoint goes with its records).
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
      applySchemaMigrations(db, MIGRATIONS, 'ERR_AUDIT_STORE', 'the audit database');
    } catch (err) {
      db.close();
      if (err instanceof BastionError) throw err;
      throw new BastionError('ERR_AUDIT_STORE', `cannot prepare the audit database ${path}: ${(err as Error).message}`);
    }
    return new SqliteAuditStore(db);
  }

  /** The last record's (seq, hash), so the chain continues across restarts; the pruning point when every record was pruned. */
  last(): { seq: number; hash: string } | null {
    const row = this.db.prepare('SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
    if (row !== undefined) return row;
    const marker = this.latestPruned();
    return marker === null ? null : { seq: marker.seq, hash: marker.hash };
  }

  /** The seq the signatures cover: the last checkpoint's, or the pruning point's (also signed). */
  lastCheckpointSeq(): number {
    const row = this.db.prepare('SELECT MAX(seq) AS seq FROM checkpoints').get() as { seq: number | null };
    return Math.max(row.seq ?? 0, this.latestPruned()?.seq ?? 0);
  }

  /**
   * Runs `read` in one read transaction: in WAL it sees one snapshot, so a pruning batch or
   * a checkpoint the broker commits meanwhile cannot make the markers, checkpoints and
   * records disagree (verify reads all three).
   */
  readSnapshot<T>(read: () => T): T {
    this.db.exec('BEGIN DEFERRED');
    try {
      return read();
    } finally {
      this.db.exec('COMMIT');
    }
  }

  /** Every pruning marker (normally one: the pruner replaces it). */
  pruned(): AuditPruneRow[] {
    return (this.db.prepare('SELECT seq, hash, head_ts, ts, signature, signer, pq_signature, pq_key FROM pruned ORDER BY seq, id').all() as PruneRow[]).map(toPrune);
  }

  latestPruned(): AuditPruneRow | null {
    const row = this.db.prepare('SELECT seq, hash, head_ts, ts, signature, signer, pq_signature, pq_key FROM pruned ORDER BY seq DESC, id DESC LIMIT 1').get() as PruneRow | undefined;
    return row === undefined ? null : toPrune(row);
  }

  /** The first and last stored seq (kept seqs are consecutive, so their count is last - first + 1), or null when empty. */
  bounds(): { first: number; last: number } | null {
    const row = this.db.prepare('SELECT MIN(seq) AS first, MAX(seq) AS last FROM records').get() as { first: number | null; last: number | null };
    return row.first === null || row.last === null ? null : { first: row.first, last: row.last };
  }

  /** The `n` oldest records' (seq, ts, hash), oldest first: one pruning batch's candidates. */
  oldest(n: number): Array<{ seq: number; ts: number; hash: string }> {
    return this.db.prepare('SELECT seq, ts, hash FROM records ORDER BY seq LIMIT ?').all(n) as Array<{ seq: number; ts: number; hash: string }>;
  }

  space(): AuditSpace {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pageCount = this.db.pragma('page_count', { simple: true }) as number;
    const freePages = this.db.pragma('freelist_count', { simple: true }) as number;
    const incremental = (this.db.pragma('auto_vacuum', { simple: true }) as number) === 2;
    return { pageSize, pageCount, freePages, usedBytes: (pageCount - freePages) * pageSize, incremental };
  }

  /** Deletes the records (and checkpoints) up to `marker.seq` and stores the marker in their place, in one transaction; the records deleted. */
  pruneThrough(marker: AuditPruneRow): number {
    return this.pruneTx(marker);
  }

  /** Returns up to `pages` free pages to the file system (incremental auto-vacuum; a no-op otherwise). */
  vacuumStep(pages: number): void {
    this.db.pragma(`incremental_vacuum(${Math.max(1, Math.floor(pages))})`);
  }

  /** Writes records (and a checkpoint over them) in one transaction: all or nothing. */
  append(rows: readonly AuditRow[], checkpoint: AuditCheckpointRow | null): void {
    this.appendTx(rows, checkpoint);
  }

  /** Writes a checkpoint and, when it brings one, its ML-DSA public key, in one transaction. */
  addCheckpoint(cp: AuditCheckpointRow): void {
    this.addCheckpointTx(cp);
  }

  /** Records a signer certificate (no-op when that fingerprint is known). */
  addSigner(fingerprint: string, certPem: string, addedAt: number): void {
    this.db.prepare('INSERT OR IGNORE INTO signers (fingerprint, cert_pem, added_at) VALUES (?, ?, ?)').run(fingerprint, certPem, addedAt);
  }

  signers(): Map<string, string> {
    const rows = this.db.prepare('SELECT fingerprint, cert_pem FROM signers').all() as Array<{ fingerprint: string; cert_pem: string }>;
    return new Map(rows.map((r) => [r.fingerprint, r.cert_pem]));
  }

  /** ML-DSA public keys (SPKI PEM) by fingerprint. */
  pqKeys(): Map<string, string> {
    const rows = this.db.prepare('SELECT fingerprint, public_key FROM pq_keys').all() as Array<{ fingerprint: string; public_key: string }>;
    return new Map(rows.map((r) => [r.fingerprint, r.public_key]));
  }

  checkpoints(): AuditCheckpointRow[] {
    return (this.db.prepare('SELECT seq, hash, ts, signature, signer, pq_signature, pq_key FROM checkpoints ORDER BY seq, id').all() as CheckpointRow[]).map(toCheckpoint);
  }

  /** Every record in seq order, read a page at a time. */
  *all(): Generator<AuditRow> {
    const page = this.db.prepare(`SELECT ${RECORD_COLUMNS} FROM records WHERE seq > ? ORDER BY seq LIMIT ${PAGE}`);
    let after = Number.MIN_SAFE_INTEGER;
    for (;;) {
      const rows = page.all(after) as RecordRow[];
      for (const r of rows) yield toRow(r);
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.seq;
    }
  }

  count(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM records').get() as { n: number }).n;
  }

  withHash(hash: string): AuditRow | undefined {
    const row = this.db.prepare(`SELECT ${RECORD_COLUMNS} FROM records WHERE hash = ? LIMIT 1`).get(hash) as RecordRow | undefined;
    return row === undefined ? undefined : toRow(row);
  }

  /** The last `n` records, in seq order. */
  tail(n: number): AuditRow[] {
    const rows = this.db.prepare(`SELECT ${RECORD_COLUMNS} FROM records ORDER BY seq DESC LIMIT ?`).all(n) as RecordRow[];
    return rows.reverse().map(toRow);
  }

  /** Records matching `q`, in seq order (or newest first), at most `q.limit`. */
  query(q: AuditQuery): AuditRow[] {
    const where: string[] = [];
    const args: Array<string | number> = [];
    if (q.afterSeq !== undefined) (where.push('seq > ?'), args.push(q.afterSeq));
    if (q.beforeSeq !== undefined) (where.push('seq < ?'), args.push(q.beforeSeq));
    if (q.since !== undefined) (where.push('ts >= ?'), args.push(q.since));
    if (q.until !== undefined) (where.push('ts < ?'), args.push(q.until));
    if (q.type !== undefined) (where.push('type = ?'), args.push(q.type));
    if (q.clientId !== undefined) (where.push('client_id = ?'), args.push(q.clientId));
    const sql = `SELECT ${RECORD_COLUMNS} FROM records${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY seq${q.newestFirst === true ? ' DESC' : ''} LIMIT ?`;
    return (this.db.prepare(sql).all(...args, q.limit) as RecordRow[]).map(toRow);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
