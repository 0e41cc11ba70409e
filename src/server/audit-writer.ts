/**
 * The audit log's writer: chains events into records (consecutive seq, each hash linking
 * to the one before), writes them with group commit (everything chained in one
 * event-loop turn goes into one transaction), signs checkpoints, and hands each stored
 * record to the exports. Owns: the in-memory tail of the chain and the pending batch.
 * Must not: decide which events are audited (security/audit/aggregate.ts) or subscribe.
 *
 * On a cluster node every record's event names the node (`node`, covered by the hash), so
 * each node's chain says whose it is and `bastion audit verify` reports it per node id.
 *
 * Ordering: seq is assigned when an event is chained, synchronously, in emission order;
 * a failed write keeps its batch and is retried, so records reach the database in seq
 * order with no gap. Exports get a record only once it is stored.
 */
import type { Logger } from '../core/logger.js';
import type { SecurityEvent } from '../core/security-events.js';
import { signCheckpoint, type AuditCheckpoint, type AuditSigner } from '../security/audit/checkpoint.js';
import { GENESIS_HASH, canonicalJson, hashRecordJson, type AuditRecord } from '../security/audit/record.js';
import type { AuditCheckpointRow, AuditRow, SqliteAuditStore } from '../store/sqlite/audit-store.js';
import type { AuditExports } from './audit/exports.js';

/** Chained records held while the database refuses writes; past this, new events are counted as lost (never chained, so no gap). */
const MAX_PENDING = 200_000;
/** Retry delay after a failed write. */
const RETRY_MS = 1000;

export interface AuditWriterOptions {
  store: SqliteAuditStore;
  signer: AuditSigner;
  checkpointEvery: number;
  exports: AuditExports | null;
  logger: Logger;
  /** On a cluster node: its node id, written into every record's event. */
  nodeId?: string;
  now?: () => number;
}

export class AuditWriter {
  private last: { seq: number; hash: string } | null;
  private lastCheckpointSeq: number;
  private pending: AuditRow[] = [];
  private pendingEvents: SecurityEvent[] = [];
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private lostEvents = 0;
  private closed = false;
  private readonly now: () => number;
  /** Records written since start (for the measurement and tests). */
  written = 0;

  constructor(private readonly opts: AuditWriterOptions) {
    this.now = opts.now ?? Date.now;
    this.last = opts.store.last();
    this.lastCheckpointSeq = opts.store.lastCheckpointSeq();
  }

  /** The last chained (seq, hash), stored or pending. */
  get head(): { seq: number; hash: string } | null {
    return this.last;
  }

  /** The seq the last checkpoint covers (0: none). */
  get signedSeq(): number {
    return this.lastCheckpointSeq;
  }

  /** Chains `event` now and schedules the group write at the end of this event-loop turn. */
  append(ts: number, emitted: SecurityEvent): void {
    if (this.closed) return;
    if (this.pending.length >= MAX_PENDING) {
      if (this.lostEvents++ === 0) this.opts.logger.error({ pending: this.pending.length }, 'audit database is not accepting writes and the backlog is full: security events are being LOST (not chained, so the chain stays intact)');
      return;
    }
    const seq = this.last === null ? 1 : this.last.seq + 1;
    const prevHash = this.last === null ? GENESIS_HASH : this.last.hash;
    const event: SecurityEvent & { node?: string } = this.opts.nodeId === undefined ? emitted : { ...emitted, node: this.opts.nodeId };
    const eventJson = canonicalJson(event);
    const hash = hashRecordJson(seq, ts, prevHash, eventJson);
    const clientId = 'clientId' in event && typeof event.clientId === 'string' ? event.clientId : null;
    this.pending.push({ seq, ts, type: event.type, clientId, eventJson, prevHash, hash });
    if (this.opts.exports !== null) this.pendingEvents.push(event);
    this.last = { seq, hash };
    if (!this.scheduled && this.retryTimer === null) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes the pending batch in one transaction, with a checkpoint when `checkpointEvery` records passed. */
  flush(): boolean {
    this.scheduled = false;
    if (this.pending.length === 0) return true;
    const head = this.last!;
    const checkpoint = head.seq - this.lastCheckpointSeq >= this.opts.checkpointEvery ? this.sign(head) : null;
    try {
      this.opts.store.append(this.pending, checkpoint === null ? null : toRow(checkpoint, this.opts.signer));
    } catch (err) {
      this.opts.logger.error({ pending: this.pending.length, err: err instanceof Error ? err.message : String(err) }, 'audit write failed; the records are kept and retried');
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = null;
        this.flush();
      }, RETRY_MS);
      return false;
    }
    const rows = this.pending;
    const events = this.pendingEvents;
    this.pending = [];
    this.pendingEvents = [];
    this.written += rows.length;
    if (checkpoint !== null) this.lastCheckpointSeq = checkpoint.seq;
    if (this.lostEvents > 0) {
      this.opts.logger.error({ lost: this.lostEvents }, 'audit writes resumed; security events were lost while the backlog was full');
      this.lostEvents = 0;
    }
    const exports = this.opts.exports;
    if (exports !== null) {
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i]!;
        const record: AuditRecord = { seq: r.seq, ts: r.ts, event: events[i]!, prevHash: r.prevHash, hash: r.hash };
        exports.write(record);
      }
    }
    return true;
  }

  /** Writes what is pending, then signs a checkpoint over the last stored record if any record is not covered yet. */
  checkpointNow(): void {
    if (!this.flush()) return;
    const head = this.last;
    if (head === null || head.seq <= this.lastCheckpointSeq) return;
    const cp = this.sign(head);
    try {
      this.opts.store.addCheckpoint(toRow(cp, this.opts.signer));
      this.lastCheckpointSeq = cp.seq;
    } catch (err) {
      this.opts.logger.error({ seq: cp.seq, err: err instanceof Error ? err.message : String(err) }, 'audit checkpoint write failed');
    }
  }

  /** Final flush and checkpoint; later appends are ignored. */
  close(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.checkpointNow();
    if (this.pending.length > 0) this.opts.logger.error({ lost: this.pending.length }, 'audit records could not be written at shutdown');
    this.closed = true;
  }

  private sign(head: { seq: number; hash: string }): AuditCheckpoint {
    return signCheckpoint(this.opts.signer, head.seq, head.hash, this.now());
  }
}

/** The row of a checkpoint; a hybrid one brings its ML-DSA public key (the store records it once). */
function toRow(cp: AuditCheckpoint, signer: AuditSigner): AuditCheckpointRow {
  const pqKeyFingerprint = cp.pqKeyFingerprint ?? null;
  const pqPublicKeyPem = pqKeyFingerprint !== null && signer.pq?.fingerprint === pqKeyFingerprint ? signer.pq.publicKeyPem : null;
  return { seq: cp.seq, hash: cp.hash, ts: cp.ts, signature: cp.signature, signerFingerprint: cp.signerFingerprint, pqSignature: cp.pqSignature ?? null, pqKeyFingerprint, pqPublicKeyPem };
}
