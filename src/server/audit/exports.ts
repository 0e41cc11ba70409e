/**
 * SIEM exports of the audit log: the configured JSON-lines file and RFC 5424 syslog sinks
 * behind one `write`/`close`. Owns: building the sinks from the `audit` config and fanning
 * each record out to them as one ECS document (the same fields in both). Must not: chain,
 * store or decide anything about records (the audit log does), nor block or throw into the
 * broker (sinks buffer and log their own errors).
 */
import { hostname } from 'node:os';
import type { AuditConfig } from '../../core/audit-config.js';
import type { Logger } from '../../core/logger.js';
import { auditSeverity, toEcs, type EcsOrigin } from '../../security/audit/ecs.js';
import type { AuditRecord } from '../../security/audit/record.js';
import { JsonlSink } from './jsonl-sink.js';
import { createSyslogSink, type SyslogSink } from './syslog-sink.js';

export interface AuditExports {
  /** Hands one chained record to every configured sink. Never throws, never blocks. */
  write(record: AuditRecord): void;
  /** Flushes what can be flushed within a bounded wait, then closes files and sockets. */
  close(): Promise<void>;
}

/** How long close() waits for the sinks to flush. */
const CLOSE_WAIT_MS = 2000;

/**
 * Null when neither `audit.jsonl` nor `audit.syslog` is configured. Throws ConfigError
 * (ERR_CONFIG) when the syslog `ca` file cannot be read.
 */
export function createAuditExports(cfg: AuditConfig, resolvePath: (p: string) => string, logger: Logger): AuditExports | null {
  if (cfg.jsonl === undefined && cfg.syslog === undefined) return null;
  const host = hostname();
  const origin: EcsOrigin = { hostname: host };
  const jsonl = cfg.jsonl === undefined ? null : new JsonlSink({ path: resolvePath(cfg.jsonl.path), maxBytes: cfg.jsonl.maxBytes, keep: cfg.jsonl.keep }, logger);
  const syslog: SyslogSink | null = cfg.syslog === undefined ? null : createSyslogSink(cfg.syslog, resolvePath, logger, { hostname: host });
  let closed = false;
  return {
    write(record) {
      if (closed) return;
      try {
        // One document, serialized once, for every sink.
        const json = JSON.stringify(toEcs(record, origin));
        jsonl?.write(json);
        syslog?.write(record, auditSeverity(record.event), json);
      } catch (err) {
        // A mapping bug must cost one exported record, never the broker.
        logger.error({ seq: record.seq, err: err instanceof Error ? err.message : String(err) }, 'audit export: record not exported');
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([jsonl?.close(CLOSE_WAIT_MS), syslog?.close(CLOSE_WAIT_MS)]);
    },
  };
}
