/**
 * Audit retention: removes the oldest records of `audit.db` once they pass the age, size
 * or count bound (`audit.retention`), behind a signed pruning checkpoint, and gives the
 * space back. Owns: deciding how far to prune, the batches and the vacuum steps.
 * Must not: chain or export records (audit-writer.ts), or say how a marker is signed
 * (security/audit/prune.ts).
 *
 * Runs on the broker's event loop, so it never does a long delete: one pass is a series
 * of batches of at most `batchRecords` records, each one transaction (delete the prefix,
 * replace the marker) plus one bounded incremental-vacuum step, with a turn of the event
 * loop between batches (setImmediate: pending I/O and the writer's group commit run first).
 *
 * SECURITY: the newest record is never pruned, so the log always shows where the chain
 * stands, and every batch signs a fresh marker over the last record it deletes: at any
 * moment the kept log starts at the marker's seq + 1 and links to its signed hash.
 */
import type { AuditRetentionConfig } from '../core/audit-config.js';
import type { Logger } from '../core/logger.js';
import type { AuditSigner } from '../security/audit/checkpoint.js';
import { signPruneMarker } from '../security/audit/prune.js';
import type { SqliteAuditStore } from '../store/sqlite/audit-store.js';

const DAY_MS = 86_400_000;
/**
 * Records per batch. Measured on Node 26 (README): 1000 records took 1.4-3.3 ms to delete,
 * 0.8-1.4 ms to sign the marker (ECDSA + ML-DSA) and 0.6-0.8 ms to vacuum; a whole batch
 * ~7 ms on average under churn, 18 ms at most. 2000 doubled the delete and its outliers.
 */
const DEFAULT_BATCH = 1000;
/** Free pages given back per batch (4 MiB at 4 KiB pages): bounds each vacuum step too. */
const VACUUM_PAGES = 1024;
/** Over maxBytes, prune down to this share of it, so a full log is not pruned at every check. */
const LOW_WATER = 0.9;

export interface AuditPrunerOptions {
  store: SqliteAuditStore;
  signer: AuditSigner;
  retention: AuditRetentionConfig;
  logger: Logger;
  now?: () => number;
  batchRecords?: number;
}

/** What one pass did. */
export interface PruneReport {
  deleted: number;
  batches: number;
  /** The pruning point after the pass (0: nothing ever pruned). */
  throughSeq: number;
  /** The longest single batch (delete + sign + vacuum step), ms: how long the event loop was held. */
  maxBatchMs: number;
  totalMs: number;
  /** Pages returned to the file system. */
  vacuumedPages: number;
  usedBytesBefore: number;
  usedBytesAfter: number;
}

export class AuditPruner {
  private pass: Promise<PruneReport> | null = null;
  private closed = false;
  private warnedNoVacuum = false;
  private readonly now: () => number;
  private readonly batch: number;

  constructor(private readonly opts: AuditPrunerOptions) {
    this.now = opts.now ?? Date.now;
    this.batch = opts.batchRecords ?? DEFAULT_BATCH;
  }

  /** Runs a pass (after the one under way, if any, so records written since are considered). */
  run(): Promise<PruneReport> {
    const previous = this.pass;
    const next = (async () => {
      if (previous !== null) await previous.catch(() => undefined);
      return this.onePass();
    })();
    this.pass = next;
    void next.finally(() => {
      if (this.pass === next) this.pass = null;
    });
    return next;
  }

  /** Stops after the batch under way; resolves when the pass has stopped. */
  async close(): Promise<void> {
    this.closed = true;
    await this.pass?.catch(() => undefined);
  }

  private async onePass(): Promise<PruneReport> {
    const { store, retention } = this.opts;
    const started = performance.now();
    const before = store.space();
    const report: PruneReport = { deleted: 0, batches: 0, throughSeq: store.latestPruned()?.seq ?? 0, maxBatchMs: 0, totalMs: 0, vacuumedPages: 0, usedBytesBefore: before.usedBytes, usedBytesAfter: before.usedBytes };
    // Decided once per pass: over the bound, go down to the low-water mark.
    const bytesGoal = before.usedBytes > retention.maxBytes ? Math.floor(retention.maxBytes * LOW_WATER) : null;
    try {
      while (!this.closed) {
        const t0 = performance.now();
        const n = this.oneBatch(bytesGoal, report);
        const ms = performance.now() - t0;
        if (n === 0) break;
        report.maxBatchMs = Math.max(report.maxBatchMs, ms);
        // One turn of the event loop between batches: clients and the writer go first.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      this.opts.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'audit retention failed; the records stay and the next check retries');
    }
    report.totalMs = performance.now() - started;
    report.usedBytesAfter = store.space().usedBytes;
    if (report.deleted > 0) {
      const marker = store.latestPruned();
      this.opts.logger.info({ deleted: report.deleted, throughSeq: report.throughSeq, newestPrunedAt: marker === null ? null : new Date(marker.headTs).toISOString(), batches: report.batches, maxBatchMs: Math.round(report.maxBatchMs * 10) / 10, usedBytes: report.usedBytesAfter }, 'audit retention pruned the oldest records (behind a signed pruning checkpoint)');
    }
    return report;
  }

  /** Prunes one batch; the records deleted (0: within bounds). */
  private oneBatch(bytesGoal: number | null, report: PruneReport): number {
    const { store, retention, signer } = this.opts;
    const bounds = store.bounds();
    if (bounds === null || bounds.first >= bounds.last) return 0;
    const kept = bounds.last - bounds.first + 1;
    const cutoff = this.now() - retention.maxAgeDays * DAY_MS;
    const space = store.space();
    // Cheap checks first: a check with nothing to prune reads one row, not a batch.
    const overAge = (store.oldest(1)[0]?.ts ?? cutoff) < cutoff;
    const overCount = retention.maxRecords !== undefined ? kept - retention.maxRecords : 0;
    const overBytes = bytesGoal !== null && space.usedBytes > bytesGoal ? Math.ceil((space.usedBytes - bytesGoal) / (space.usedBytes / kept)) : 0;
    if (!overAge && overCount <= 0 && overBytes <= 0) return 0;
    // Never the newest record: it shows where the chain stands.
    const candidates = store.oldest(Math.min(this.batch, kept - 1));
    let n = 0;
    while (n < candidates.length && candidates[n]!.ts < cutoff) n++;
    n = Math.max(n, Math.min(candidates.length, Math.max(overCount, overBytes)));
    if (n === 0) return 0;
    const last = candidates[n - 1]!;
    const marker = signPruneMarker(signer, last.seq, last.hash, last.ts, this.now());
    const pqPublicKeyPem = marker.pqKeyFingerprint !== null && marker.pqKeyFingerprint !== undefined && signer.pq?.fingerprint === marker.pqKeyFingerprint ? signer.pq.publicKeyPem : null;
    const deleted = store.pruneThrough({ ...marker, pqPublicKeyPem });
    report.deleted += deleted;
    report.batches++;
    report.throughSeq = last.seq;
    const after = store.space();
    if (after.incremental) {
      const pages = Math.min(after.freePages, VACUUM_PAGES);
      if (pages > 0) {
        store.vacuumStep(pages);
        report.vacuumedPages += pages;
      }
    } else if (!this.warnedNoVacuum) {
      this.warnedNoVacuum = true;
      this.opts.logger.warn({}, 'audit.db was created without incremental vacuum: pruned space is reused for new records but the file does not shrink (to change that, once, with the broker stopped: sqlite3 audit.db \'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;\')');
    }
    return n;
  }
}
