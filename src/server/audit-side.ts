/**
 * The audit side of a running broker: subscribes to `broker.events`, turns each security
 * event into an audit record (limit hits, authorization denials, TLS handshake failures
 * and refusals at accept summed per window, successful handshakes left to the metrics:
 * aggregate.ts), stores the chain in `<dataDir>/audit.db`,
 * signs checkpoints (every `checkpointEvery` records, every `checkpointSeconds` when
 * something new was written, and at shutdown), hands stored records to the SIEM
 * exports and runs retention (audit-pruner.ts, every `retention.intervalSeconds` and once
 * at start). On a cluster node every record names the node (audit-writer.ts). Owns:
 * wiring and timers. Must not: emit events or decide anything for the broker.
 *
 * Started before the listeners (nothing happens unaudited) and stopped last, after the
 * broker and the listeners, so the shutdown's own events are recorded and signed.
 */
import { join, resolve } from 'node:path';
import type { AuditConfig } from '../core/audit-config.js';
import type { Logger } from '../core/logger.js';
import type { SecurityEvents } from '../core/security-events.js';
import { AuditAggregator } from '../security/audit/aggregate.js';
import { AUDIT_DB_FILE, SqliteAuditStore } from '../store/sqlite/audit-store.js';
import { createAuditExports, type AuditExports } from './audit/exports.js';
import { ensureAuditSigner } from './audit-signer.js';
import { AuditPruner, type PruneReport } from './audit-pruner.js';
import { AuditWriter } from './audit-writer.js';

export interface AuditSideOptions {
  audit: AuditConfig;
  /** Relative export paths resolve against this directory (the config file's). */
  baseDir: string;
  dataDir: string;
  events: SecurityEvents;
  logger: Logger;
  /** On a cluster node: its node id, which every record names (one chain per node). */
  nodeId?: string;
}

export interface AuditSide {
  /** The audit database's path. */
  readonly path: string;
  /** The signer's certificate fingerprint. */
  readonly signerFingerprint: string;
  /** Records written since start. */
  readonly written: number;
  /** Sums the aggregation window into records and writes everything pending now (tests, shutdown). */
  flush(): void;
  /** Writes what is pending, then runs a retention pass now; null when retention is off. */
  prune(): Promise<PruneReport | null>;
  /**
   * Logs what the operator should know (the log opened, a self-signed signer, a tail left
   * unsigned by a crash), once the server started: a start that fails prints only its error.
   */
  announce(): void;
  /** Final aggregation, flush and checkpoint; closes the exports and the database. */
  stop(): Promise<void>;
}

export function auditDbPath(dataDir: string): string {
  return join(dataDir, AUDIT_DB_FILE);
}

export async function startAuditSide(opts: AuditSideOptions): Promise<AuditSide> {
  const { audit, logger } = opts;
  const path = auditDbPath(opts.dataDir);
  const signerFiles = await ensureAuditSigner(opts.dataDir, logger);
  const store = SqliteAuditStore.open(path, { create: true });
  let exports: AuditExports | null = null;
  try {
    // The certificate travels with the log, so `bastion audit verify` needs only audit.db
    // (and, with a built-in PKI, the root it must chain to).
    store.addSigner(signerFiles.signer.fingerprint, signerFiles.signer.certPem, Date.now());
    exports = createAuditExports(audit, (p) => resolve(opts.baseDir, p), logger);
  } catch (err) {
    store.close();
    throw err;
  }
  const writer = new AuditWriter({ store, signer: signerFiles.signer, checkpointEvery: audit.checkpointEvery, exports, logger, ...(opts.nodeId !== undefined ? { nodeId: opts.nodeId } : {}) });
  const aggregator = new AuditAggregator();
  const head = writer.head;
  const signedAtStart = writer.signedSeq;

  const drainAggregates = (): void => {
    for (const { ts, event } of aggregator.drain()) writer.append(ts, event);
  };
  const off = opts.events.on((event, at) => {
    if (aggregator.offer(event, at) === 'record') writer.append(at, event);
  });
  const aggregateTimer = setInterval(drainAggregates, audit.aggregateSeconds * 1000);
  aggregateTimer.unref();
  const checkpointTimer = setInterval(() => writer.checkpointNow(), audit.checkpointSeconds * 1000);
  checkpointTimer.unref();
  const retention = audit.retention;
  const pruner = retention.enabled ? new AuditPruner({ store, signer: signerFiles.signer, retention, logger }) : null;
  const runPrune = (): void => {
    void pruner?.run();
  };
  // A first pass soon after start (a log that grew past its bounds while the broker was
  // down, or under older settings), then one per interval.
  const firstPrune = pruner === null ? null : setTimeout(runPrune, 1000);
  firstPrune?.unref();
  const pruneTimer = pruner === null ? null : setInterval(runPrune, retention.intervalSeconds * 1000);
  pruneTimer?.unref();

  let stopping: Promise<void> | null = null;
  return {
    path,
    signerFingerprint: signerFiles.signer.fingerprint,
    get written() {
      return writer.written;
    },
    flush() {
      drainAggregates();
      writer.flush();
    },
    async prune() {
      if (pruner === null) return null;
      drainAggregates();
      writer.flush();
      return pruner.run();
    },
    announce() {
      logger.info({ path, seq: head?.seq ?? 0, signer: signerFiles.signer.fingerprint, selfSigned: signerFiles.selfSigned }, 'audit log open');
      signerFiles.announce();
      if (head !== null && head.seq > signedAtStart) {
        // A clean stop signs the last record, so this tail is from a crash (or checkpoints
        // were removed). The next checkpoint covers it: it is signed as found now.
        logger.warn({ from: signedAtStart + 1, to: head.seq }, 'audit records from the last run are not covered by a checkpoint (the broker did not stop cleanly?); the next checkpoint covers them');
      }
      if (!retention.enabled) logger.info({}, 'audit retention is off: audit.db grows without bound');
      else if (audit.jsonl === undefined && audit.syslog === undefined) {
        // Retention deletes history; with no export nothing else keeps it.
        logger.warn({ maxAgeDays: retention.maxAgeDays, maxBytes: retention.maxBytes, maxRecords: retention.maxRecords ?? null }, 'audit retention prunes the oldest records and no export (audit.jsonl, audit.syslog) keeps a long-term copy');
      }
    },
    stop() {
      stopping ??= (async () => {
        off();
        clearInterval(aggregateTimer);
        clearInterval(checkpointTimer);
        if (firstPrune !== null) clearTimeout(firstPrune);
        if (pruneTimer !== null) clearInterval(pruneTimer);
        // The pass under way stops after its batch: its marker and deletions are one transaction.
        await pruner?.close();
        drainAggregates();
        writer.close();
        try {
          await exports?.close();
        } catch (err) {
          logger.error({ err: err instanceof Error ? err.message : String(err) }, 'closing the audit exports failed');
        }
        store.close();
      })();
      return stopping;
    },
  };
}
