/**
 * SIEM exports of the audit log: the configured JSON-lines file and RFC 5424 syslog sinks
 * behind one `write`/`close`. Owns: building the sinks from the `audit` config and fanning
 * each record out to them. Must not: chain, store or decide anything about records (the
 * audit log does), nor block or throw into the broker (sinks buffer and log their errors).
 */
import type { AuditConfig } from '../../core/audit-config.js';
import type { Logger } from '../../core/logger.js';
import type { AuditRecord } from '../../security/audit/record.js';

export interface AuditExports {
  /** Hands one chained record to every configured sink. Never throws, never blocks. */
  write(record: AuditRecord): void;
  /** Flushes what can be flushed within a bounded wait, then closes files and sockets. */
  close(): Promise<void>;
}

/** Null when neither `audit.jsonl` nor `audit.syslog` is configured. */
export function createAuditExports(cfg: AuditConfig, resolvePath: (p: string) => string, logger: Logger): AuditExports | null {
  if (cfg.jsonl === undefined && cfg.syslog === undefined) return null;
  // Placeholder until the sinks land: the contract is fixed, the sinks are wired next.
  void resolvePath;
  void logger;
  return { write() {}, async close() {} };
}
