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
  })
  .strict();

export type AuditConfig = z.infer<typeof auditSchema>;
