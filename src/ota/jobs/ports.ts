/**
 * Jobs over MQTT (issue 14, after AWS IoT Jobs): the records and the store port. A job is
 * a document (e.g. {releaseId, manifest}) and a retry/timeout policy; each device it
 * targets has executions (one per try, numbered from 1). A campaign creates a job and adds
 * its stages' executions through this same port (addExecutions). Owns: the types, the states
 * and which transitions are legal. Must not: touch SQLite (sqlite-job-store.ts) or MQTT.
 *
 * SECURITY: terminal states are final; only the device moves an execution forward from
 * QUEUED, only the service times one out or cancels it (canTransition).
 */

export type ExecutionStatus = 'QUEUED' | 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'REJECTED' | 'CANCELED';
export const EXECUTION_STATUSES: readonly ExecutionStatus[] = ['QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'CANCELED'];
export const TERMINAL: ReadonlySet<ExecutionStatus> = new Set(['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'CANCELED']);
/** At most this many retries per device and job (AWS: 10 for FAILED and TIMED_OUT together). */
export const MAX_RETRIES = 10;

export type JobStatus = 'IN_PROGRESS' | 'CANCELED';

export interface JobRecord {
  id: string;
  document: Record<string, unknown>;
  status: JobStatus;
  /** New executions after FAILED or TIMED_OUT, per device (0..MAX_RETRIES). */
  maxRetries: number;
  /** The step timer a start-next without stepTimeoutInMinutes gets (null: none). */
  defaultStepTimeoutMs: number | null;
  /** From start: IN_PROGRESS longer than this is TIMED_OUT (null: none). */
  inProgressTimeoutMs: number | null;
  createdAt: number;
  canceledAt: number | null;
}

export interface ExecutionRecord {
  jobId: string;
  identity: string;
  executionNumber: number;
  status: ExecutionStatus;
  /** Optimistic concurrency: +1 on every change. */
  versionNumber: number;
  statusDetails: Record<string, string>;
  queuedAt: number;
  startedAt: number | null;
  lastUpdatedAt: number;
  stepTimeoutAt: number | null;
  inProgressTimeoutAt: number | null;
  retryCount: number;
}

export interface NewJob {
  id: string;
  document: Record<string, unknown>;
  maxRetries: number;
  defaultStepTimeoutMs: number | null;
  inProgressTimeoutMs: number | null;
  createdAt: number;
}

/** What an apply changes; absent keys stay. */
export interface ExecutionPatch {
  status?: ExecutionStatus;
  statusDetails?: Record<string, string>;
  startedAt?: number;
  stepTimeoutAt?: number | null;
  inProgressTimeoutAt?: number | null;
  lastUpdatedAt: number;
}

export interface JobStore {
  /** The job and one QUEUED execution (number 1) per identity, at once; false when the id exists. */
  createJob(job: NewJob, identities: readonly string[]): boolean;
  /**
   * One QUEUED execution (number 1) for each identity that has none of this job yet (a
   * campaign's next stage); the identities added, in order. Null: no such job, or it is
   * CANCELED (nothing is added to a canceled job).
   */
  addExecutions(jobId: string, identities: readonly string[], at: number): string[] | null;
  job(id: string): JobRecord | null;
  jobs(): JobRecord[];
  /** Every execution of a job (all tries), by identity then number. */
  executionsOf(jobId: string): ExecutionRecord[];
  /** The latest execution of `jobId` for `identity` (or a given number). */
  execution(jobId: string, identity: string, executionNumber?: number): ExecutionRecord | null;
  /** The device's QUEUED and IN_PROGRESS executions, oldest queued first. */
  pending(identity: string): ExecutionRecord[];
  /**
   * Applies `patch` if the execution is still at `expectedVersion` (+1 to its version), and
   * with `retry` queues execution number+1 in the same transaction. Null: the version moved.
   * A promise in a cluster, where the change is a compare-and-set in the cluster's shared
   * state (server/cluster-ota.ts); it rejects when the cluster cannot be reached.
   */
  apply(e: ExecutionRecord, patch: ExecutionPatch, retry: boolean): ExecutionRecord | null | Promise<ExecutionRecord | null>;
  /** Marks the job CANCELED and its QUEUED and IN_PROGRESS executions CANCELED; the identities touched. Null: no such job. */
  cancelJob(id: string, at: number): string[] | null;
  /** IN_PROGRESS executions whose step or in-progress timer ran out by `now`. */
  overdue(now: number): ExecutionRecord[];
  /** Changes when another process (the CLI) committed to the file: poll it. */
  dataVersion(): number;
  close(): void;
}

export type Actor = 'device' | 'service';

/** Whether `actor` may move an execution from `from` to `to`. */
export function canTransition(actor: Actor, from: ExecutionStatus, to: ExecutionStatus): boolean {
  if (TERMINAL.has(from)) return false;
  if (actor === 'service') return to === 'TIMED_OUT' ? from === 'IN_PROGRESS' : to === 'CANCELED';
  if (from === 'QUEUED') return to === 'IN_PROGRESS' || to === 'REJECTED';
  // IN_PROGRESS → IN_PROGRESS reports progress (statusDetails, a new step timer).
  return to === 'IN_PROGRESS' || to === 'SUCCEEDED' || to === 'FAILED' || to === 'REJECTED';
}

/** Whether the end state `to` is retried (FAILED and TIMED_OUT; REJECTED and CANCELED are not). */
export function isRetryable(to: ExecutionStatus): boolean {
  return to === 'FAILED' || to === 'TIMED_OUT';
}
