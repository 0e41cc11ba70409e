/**
 * The `audit` section: the tamper-evident audit log (always on: SQLite in the data
 * directory) and its SIEM exports. Owns: what a valid audit setting is and its defaults.
 * Must not: read files or open sockets (server/ does).
 *
 * Field names in exports follow the Elastic Common Schema (ECS 8.x).
 */
import { z } from 'zod';

const syslogSchema = z
  .object({
    transport: z.enum(['udp', 'tcp', 'tls']),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    /** tls: trust anchors for the collector's certificate (PEM file); absent: the system store. */
    ca: z.string().min(1).optional(),
    /** RFC 5424 APP-NAME. */
    appName: z.string().min(1).max(48).default('bastion'),
    /** RFC 5424 facility number (default 13, log audit). */
    facility: z.number().int().min(0).max(23).default(13),
  })
  .strict();

const jsonlSchema = z
  .object({
    /** File path (relative to the config file); rotated to `<path>.1`, `<path>.2`, ... */
    path: z.string().min(1),
    maxBytes: z.number().int().min(1024).default(64 * 1024 * 1024),
    /** Rotated files kept. */
    keep: z.number().int().min(1).max(1000).default(10),
  })
  .strict();

/**
 * Retention of `audit.db`. On by default, like journald's and logrotate's defaults: a log
 * that grows without end fills the disk the broker's sessions and retained messages live
 * on (80,000 connect/disconnect cycles made 33 MB; a fleet reconnecting hourly makes
 * gigabytes), and a full disk stops the broker, its audit log included. The bounds keep a
 * year of history (PCI DSS asks for one, three months at hand) within 1 GiB, whichever
 * comes first. The long-term record is the SIEM export (jsonl, syslog), which retention
 * never touches.
 *
 * SECURITY: pruning removes the oldest records behind a signed pruning checkpoint, so
 * `bastion audit verify` still proves everything kept and says what was pruned and when;
 * records deleted any other way still read as missing.
 */
const retentionSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Records older than this many days are pruned. */
    maxAgeDays: z.number().int().min(1).max(36_500).default(365),
    /** The rows' size in audit.db (bytes in use); pruning brings it back to 90% of this. */
    maxBytes: z
      .number()
      .int()
      .min(1024 * 1024)
      .default(1024 * 1024 * 1024),
    /** Optional: at most this many records are kept. */
    maxRecords: z.number().int().min(10).optional(),
    /** Seconds between two retention checks (each prunes in batches of 1000 records, yielding between them); a check with nothing to do reads one row. */
    intervalSeconds: z.number().int().min(1).max(86_400).default(60),
  })
  .strict();

export const auditSchema = z
  .object({
    /** Records between two signed checkpoints (also one at every clean shutdown). */
    checkpointEvery: z.number().int().min(1).default(1000),
    /** Seconds between checkpoints when records trickle in. */
    checkpointSeconds: z.number().int().min(1).default(300),
    /** Seconds over which repeated events (limit hits, authorization denials, refusals at accept, failed TLS handshakes) are summed into one record per source. */
    aggregateSeconds: z.number().int().min(1).default(10),
    jsonl: jsonlSchema.optional(),
    syslog: syslogSchema.optional(),
    retention: retentionSchema.prefault({}),
  })
  .strict();

export type AuditConfig = z.infer<typeof auditSchema>;
export type AuditRetentionConfig = AuditConfig['retention'];
