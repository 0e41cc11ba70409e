/**
 * The jobs and executions of ota-jobs.db as rows that travel between the nodes of a cluster
 * (issue 14 item 6): one row as a keyed, canonical JSON entry, its validation, the JOIN of
 * two versions of one row, and the pure changes a node makes to a row (an update, a retry).
 * Owns: those. Must not: touch SQLite (sqlite-job-store.ts reads and writes the rows) or
 * NATS (server/cluster-ota.ts does).
 *
 * Why a join: a job only ever goes IN_PROGRESS → CANCELED, and an execution's version only
 * grows (+1 on every change, terminal states final). So two versions of a row merge into
 * the one that has seen both whatever order the nodes see them in:
 * - a job: the fields fixed at creation come from the earlier creation (then the smaller
 *   canonical text: two nodes' engines may both create a campaign's job); CANCELED wins,
 *   with the earliest canceledAt.
 * - an execution: the higher version wins; at equal versions a terminal status wins over a
 *   non-terminal one; then the earlier lastUpdatedAt (the first decision in time); then the
 *   smaller canonical text. Two nodes' sweeps timing out one execution, or queuing the same
 *   retry number, make rows equal but for their times: the earlier one wins everywhere.
 *
 * SECURITY: a row from another node is operator-grade input: strictly typed, bounded, and
 * its key must be the one its own fields give.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { EXECUTION_STATUSES, TERMINAL, type ExecutionPatch, type ExecutionRecord } from './ports.js';

const time = z.number().int().nonnegative();
const maybeTime = time.nullable();
const jobId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
const jsonObjectText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => {
      try {
        const v: unknown = JSON.parse(s);
        return typeof v === 'object' && v !== null && !Array.isArray(v);
      } catch {
        return false;
      }
    }, 'not a JSON object');

// The column order of each schema is the canonical order of an entry's keys (and the table's).
const jobRow = z
  .object({
    id: jobId,
    document: jsonObjectText(256 * 1024),
    status: z.enum(['IN_PROGRESS', 'CANCELED']),
    max_retries: z.number().int().min(0).max(10),
    step_timeout_ms: time.nullable(),
    in_progress_timeout_ms: time.nullable(),
    created_at: time,
    canceled_at: maybeTime,
  })
  .strict();
const executionRow = z
  .object({
    job_id: jobId,
    identity: z.string().min(1).max(256),
    execution_number: z.number().int().min(1).max(11),
    status: z.enum(EXECUTION_STATUSES as [string, ...string[]]),
    version: z.number().int().min(1),
    status_details: jsonObjectText(16 * 1024),
    queued_at: time,
    started_at: maybeTime,
    last_updated_at: time,
    step_timeout_at: maybeTime,
    in_progress_timeout_at: maybeTime,
    retry_count: z.number().int().min(0).max(10),
  })
  .strict();

export type JobRowData = z.infer<typeof jobRow> & { status: 'IN_PROGRESS' | 'CANCELED' };
export type ExecutionRowData = Omit<z.infer<typeof executionRow>, 'status'> & { status: ExecutionRecord['status'] };

export type JobStoreRow = { table: 'jobs'; row: JobRowData } | { table: 'executions'; row: ExecutionRowData };

/** The prefix of every jobs entry in the cluster's shared state bucket. */
export const JOB_ROW_PREFIX = 'otaj';

export function jobKey(id: string): string {
  return `${JOB_ROW_PREFIX}.j.${id}`;
}

/** Execution keys computed lately (a poll of many rows would otherwise hash each one every time). */
const keyMemo = new Map<string, string>();
const MAX_MEMO = 200_000;

/** An identity may hold any character and a bucket key only a few: an execution's key is a hash. */
export function executionKey(job: string, identity: string, executionNumber: number): string {
  const id = `${job}\n${identity}\n${executionNumber}`;
  const known = keyMemo.get(id);
  if (known !== undefined) return known;
  const key = `${JOB_ROW_PREFIX}.e.${createHash('sha256').update(id).digest('hex').slice(0, 40)}`;
  if (keyMemo.size >= MAX_MEMO) keyMemo.clear();
  keyMemo.set(id, key);
  return key;
}

export function keyOfJobRow(r: JobStoreRow): string {
  return r.table === 'jobs' ? jobKey(r.row.id) : executionKey(r.row.job_id, r.row.identity, r.row.execution_number);
}

/** The canonical text of a row: its columns in the schema's order, nothing else. */
export function jobRowText(r: JobStoreRow): string {
  const shape = (r.table === 'jobs' ? jobRow.shape : executionRow.shape) as Record<string, unknown>;
  const ordered: Record<string, unknown> = {};
  for (const column of Object.keys(shape)) ordered[column] = (r.row as Record<string, unknown>)[column];
  return JSON.stringify(ordered);
}

/** A row from the bucket, checked: the row, or why it is refused. */
export function decodeJobRow(key: string, bytes: Uint8Array): JobStoreRow | { why: string } {
  const [prefix, letter] = key.split('.');
  if (prefix !== JOB_ROW_PREFIX || (letter !== 'j' && letter !== 'e')) return { why: 'not a jobs key' };
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return { why: 'not JSON' };
  }
  const parsed = (letter === 'j' ? jobRow : executionRow).safeParse(raw);
  if (!parsed.success) return { why: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
  const row = (letter === 'j' ? { table: 'jobs', row: parsed.data } : { table: 'executions', row: parsed.data }) as JobStoreRow;
  if (keyOfJobRow(row) !== key) return { why: "a row under another row's key" };
  if (row.table === 'jobs' && (row.row.status === 'CANCELED') !== (row.row.canceled_at !== null)) return { why: 'canceled_at is set exactly when the job is CANCELED' };
  return row;
}

function earliest(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}

/** Whether execution row `a` is ahead of `b` (a total order on distinct rows). */
function executionAhead(a: ExecutionRowData, b: ExecutionRowData): boolean {
  if (a.version !== b.version) return a.version > b.version;
  const ta = TERMINAL.has(a.status);
  if (ta !== TERMINAL.has(b.status)) return ta;
  if (a.last_updated_at !== b.last_updated_at) return a.last_updated_at < b.last_updated_at;
  return jobRowText({ table: 'executions', row: a }) <= jobRowText({ table: 'executions', row: b });
}

/** The version of one row that has seen both (same table and key). Commutative, associative, idempotent. */
export function joinJobRows(a: JobStoreRow, b: JobStoreRow): JobStoreRow {
  if (keyOfJobRow(a) !== keyOfJobRow(b)) throw new Error('joinJobRows: two different rows');
  if (a.table === 'executions') {
    const o = b.row as ExecutionRowData;
    return executionAhead(a.row, o) ? a : { table: 'executions', row: o };
  }
  const o = b.row as JobRowData;
  // Compared without the cancel, which is joined on its own (so the join stays associative).
  const fixed = (r: JobRowData): string => jobRowText({ table: 'jobs', row: { ...r, status: 'IN_PROGRESS', canceled_at: null } });
  const first = a.row.created_at !== o.created_at ? (a.row.created_at < o.created_at ? a.row : o) : fixed(a.row) <= fixed(o) ? a.row : o;
  const canceledAt = earliest(a.row.canceled_at, o.canceled_at);
  return { table: 'jobs', row: { ...first, status: canceledAt !== null ? 'CANCELED' : 'IN_PROGRESS', canceled_at: canceledAt } };
}

/** An execution row as the JobStore port shows it. */
export function executionOfRow(r: ExecutionRowData): ExecutionRecord {
  return {
    jobId: r.job_id,
    identity: r.identity,
    executionNumber: r.execution_number,
    status: r.status,
    versionNumber: r.version,
    statusDetails: JSON.parse(r.status_details) as Record<string, string>,
    queuedAt: r.queued_at,
    startedAt: r.started_at,
    lastUpdatedAt: r.last_updated_at,
    stepTimeoutAt: r.step_timeout_at,
    inProgressTimeoutAt: r.in_progress_timeout_at,
    retryCount: r.retry_count,
  };
}

/** The row after `patch` (what SqliteJobStore.apply does in SQL): version +1. */
export function patchedExecution(r: ExecutionRowData, patch: ExecutionPatch): ExecutionRowData {
  return {
    ...r,
    version: r.version + 1,
    last_updated_at: patch.lastUpdatedAt,
    ...(patch.status !== undefined ? { status: patch.status } : {}),
    ...(patch.statusDetails !== undefined ? { status_details: JSON.stringify(patch.statusDetails) } : {}),
    ...(patch.startedAt !== undefined ? { started_at: patch.startedAt } : {}),
    ...(patch.stepTimeoutAt !== undefined ? { step_timeout_at: patch.stepTimeoutAt } : {}),
    ...(patch.inProgressTimeoutAt !== undefined ? { in_progress_timeout_at: patch.inProgressTimeoutAt } : {}),
  };
}

/** The QUEUED execution a retry of `e` adds (number +1), as SqliteJobStore.apply inserts it. */
export function retryExecution(e: ExecutionRowData, at: number): ExecutionRowData {
  return {
    job_id: e.job_id,
    identity: e.identity,
    execution_number: e.execution_number + 1,
    status: 'QUEUED',
    version: 1,
    status_details: '{}',
    queued_at: at,
    started_at: null,
    last_updated_at: at,
    step_timeout_at: null,
    in_progress_timeout_at: null,
    retry_count: e.retry_count + 1,
  };
}

/** An execution as a row (what SqliteJobStore stores for it). */
export function executionRowOf(e: ExecutionRecord): ExecutionRowData {
  return {
    job_id: e.jobId,
    identity: e.identity,
    execution_number: e.executionNumber,
    status: e.status,
    version: e.versionNumber,
    status_details: JSON.stringify(e.statusDetails),
    queued_at: e.queuedAt,
    started_at: e.startedAt,
    last_updated_at: e.lastUpdatedAt,
    step_timeout_at: e.stepTimeoutAt,
    in_progress_timeout_at: e.inProgressTimeoutAt,
    retry_count: e.retryCount,
  };
}
