/**
 * The jobs a device asks about and reports on (issue 14, after AWS IoT Jobs): its pending
 * executions, start-next, describe, update with an expected version; the sweep that times
 * out executions; the cancel of a job. Owns: the rules (which transitions, timers,
 * retries) and telling its listener whose next execution changed. Must not: talk MQTT
 * (mqtt-service.ts), authorize (jobs-guard.ts ran before) or touch SQLite (the JobStore).
 *
 * SECURITY: the identity is always the authenticated requester's, never one read from a
 * payload; every change goes through canTransition and the store's version check.
 */
import { canTransition, EXECUTION_STATUSES, isRetryable, type ExecutionRecord, type ExecutionStatus, type JobStore } from './ports.js';

export type JobErrorCode = 'InvalidRequest' | 'InvalidJson' | 'NotFound' | 'VersionMismatch' | 'InvalidStateTransition' | 'Throttled' | 'InternalError';

export class JobRefusal extends Error {
  constructor(
    readonly statusCode: number,
    readonly errorCode: JobErrorCode,
    message: string,
    /** VersionMismatch and InvalidStateTransition carry the current state. */
    readonly executionState?: ExecutionState,
  ) {
    super(message);
  }
}

/** What a device sees of an execution (AWS JobExecution; times in seconds since the epoch). */
export interface ExecutionView {
  jobId: string;
  thingName: string;
  status: ExecutionStatus;
  statusDetails: Record<string, string>;
  queuedAt: number;
  startedAt?: number;
  lastUpdatedAt: number;
  versionNumber: number;
  executionNumber: number;
  jobDocument?: Record<string, unknown>;
}
export interface ExecutionState {
  status: ExecutionStatus;
  statusDetails: Record<string, string>;
  versionNumber: number;
}

/** A step timer is 1 s to 7 days (fractions of a minute are allowed; AWS takes whole minutes from 1). */
const MIN_STEP_MS = 1000;
const MAX_STEP_MS = 7 * 24 * 60 * 60_000;
const MAX_DETAILS = 10;
const MAX_DETAIL_CHARS = 1024;

const secs = (ms: number): number => Math.floor(ms / 1000);

export interface JobOutcome {
  jobId: string;
  identity: string;
  executionNumber: number;
  status: ExecutionStatus;
  actor: 'device' | 'service';
  retried: boolean;
}

export interface JobsServiceOptions {
  store: JobStore;
  now?: () => number;
  /** Each change of an execution's state (for the audit log). */
  onChange?: (o: JobOutcome) => void;
}

export class JobsService {
  private readonly store: JobStore;
  private readonly now: () => number;
  private readonly onChange: (o: JobOutcome) => void;
  /** Told when an identity's next execution may have changed. */
  nextMayHaveChanged: (identity: string) => void = () => undefined;

  constructor(opts: JobsServiceOptions) {
    this.store = opts.store;
    this.now = opts.now ?? Date.now;
    this.onChange = opts.onChange ?? (() => undefined);
  }

  view(e: ExecutionRecord, withDocument: boolean): ExecutionView {
    const v: ExecutionView = {
      jobId: e.jobId,
      thingName: e.identity,
      status: e.status,
      statusDetails: e.statusDetails,
      queuedAt: secs(e.queuedAt),
      lastUpdatedAt: secs(e.lastUpdatedAt),
      versionNumber: e.versionNumber,
      executionNumber: e.executionNumber,
    };
    if (e.startedAt !== null) v.startedAt = secs(e.startedAt);
    if (withDocument) {
      const job = this.store.job(e.jobId);
      if (job !== null) v.jobDocument = job.document;
    }
    return v;
  }

  /** The next execution: the oldest IN_PROGRESS one, else the oldest QUEUED one. */
  next(identity: string): ExecutionRecord | null {
    const pending = this.store.pending(identity);
    return pending.find((e) => e.status === 'IN_PROGRESS') ?? pending[0] ?? null;
  }

  pending(identity: string): { inProgressJobs: Omit<ExecutionView, 'thingName' | 'statusDetails' | 'status'>[]; queuedJobs: Omit<ExecutionView, 'thingName' | 'statusDetails' | 'status'>[] } {
    const summary = (e: ExecutionRecord): Omit<ExecutionView, 'thingName' | 'statusDetails' | 'status'> => ({
      jobId: e.jobId,
      queuedAt: secs(e.queuedAt),
      ...(e.startedAt !== null ? { startedAt: secs(e.startedAt) } : {}),
      lastUpdatedAt: secs(e.lastUpdatedAt),
      versionNumber: e.versionNumber,
      executionNumber: e.executionNumber,
    });
    const pending = this.store.pending(identity);
    return { inProgressJobs: pending.filter((e) => e.status === 'IN_PROGRESS').map(summary), queuedJobs: pending.filter((e) => e.status === 'QUEUED').map(summary) };
  }

  /** The next QUEUED execution (or the one IN_PROGRESS) becomes IN_PROGRESS; null when none is pending. */
  async startNext(identity: string, req: Record<string, unknown>): Promise<ExecutionView | null> {
    const details = detailsOf(req.statusDetails);
    const stepMs = stepOf(req.stepTimeoutInMinutes);
    const e = this.next(identity);
    if (e === null) return null;
    if (e.status === 'IN_PROGRESS') return this.view(e, true);
    return this.view(await this.move(e, 'IN_PROGRESS', details, stepMs, 'device'), true);
  }

  describe(identity: string, jobId: string, req: Record<string, unknown>): ExecutionView {
    const n = req.executionNumber;
    if (n !== undefined && (typeof n !== 'number' || !Number.isInteger(n) || n < 1)) throw new JobRefusal(400, 'InvalidRequest', 'executionNumber must be a whole number from 1');
    const e = jobId === '$next' ? this.next(identity) : this.store.execution(jobId, identity, n);
    if (e === null) throw new JobRefusal(404, 'NotFound', jobId === '$next' ? 'no pending execution' : `no execution of job ${jobId} for this device`);
    return this.view(e, req.includeJobDocument !== false);
  }

  async update(identity: string, jobId: string, req: Record<string, unknown>): Promise<{ executionState: ExecutionState; jobDocument?: Record<string, unknown> }> {
    const status = req.status;
    if (typeof status !== 'string' || !(EXECUTION_STATUSES as readonly string[]).includes(status)) throw new JobRefusal(400, 'InvalidRequest', 'status must be IN_PROGRESS, SUCCEEDED, FAILED or REJECTED');
    const details = detailsOf(req.statusDetails);
    const stepMs = stepOf(req.stepTimeoutInMinutes);
    const expected = req.expectedVersion;
    if (expected !== undefined && (typeof expected !== 'number' || !Number.isInteger(expected))) throw new JobRefusal(400, 'InvalidRequest', 'expectedVersion must be a whole number');
    const n = req.executionNumber;
    if (n !== undefined && (typeof n !== 'number' || !Number.isInteger(n) || n < 1)) throw new JobRefusal(400, 'InvalidRequest', 'executionNumber must be a whole number from 1');
    const e = this.store.execution(jobId, identity, n);
    if (e === null) throw new JobRefusal(404, 'NotFound', `no execution of job ${jobId} for this device`);
    if (expected !== undefined && expected !== e.versionNumber) throw new JobRefusal(409, 'VersionMismatch', `the execution is at version ${e.versionNumber}, not ${expected}`, stateOf(e));
    if (!canTransition('device', e.status, status as ExecutionStatus)) throw new JobRefusal(409, 'InvalidStateTransition', `a device cannot move an execution from ${e.status} to ${status}`, stateOf(e));
    const moved = await this.move(e, status as ExecutionStatus, details, stepMs, 'device');
    return { executionState: stateOf(moved), ...(req.includeJobDocument === true ? { jobDocument: this.store.job(jobId)?.document ?? {} } : {}) };
  }

  /** Times out IN_PROGRESS executions past a timer; the number timed out. */
  async sweep(): Promise<number> {
    let n = 0;
    for (const e of this.store.overdue(this.now())) {
      try {
        await this.move(e, 'TIMED_OUT', undefined, undefined, 'service');
        n++;
      } catch (err) {
        if (!(err instanceof JobRefusal)) throw err; // moved meanwhile: the next sweep sees its new state
      }
    }
    return n;
  }

  private async move(e: ExecutionRecord, to: ExecutionStatus, details: Record<string, string> | undefined, stepMs: number | undefined, actor: 'device' | 'service'): Promise<ExecutionRecord> {
    const job = this.store.job(e.jobId);
    if (job === null) throw new JobRefusal(404, 'NotFound', `no job ${e.jobId}`);
    const now = this.now();
    const starting = e.status === 'QUEUED' && to === 'IN_PROGRESS';
    const inProgressAt = starting && job.inProgressTimeoutMs !== null ? now + job.inProgressTimeoutMs : e.inProgressTimeoutAt;
    let stepAt: number | null | undefined;
    if (to === 'IN_PROGRESS') {
      const step = stepMs ?? (starting ? job.defaultStepTimeoutMs ?? undefined : undefined);
      // A new step timer replaces the old one, and never goes past the in-progress bound.
      if (step !== undefined) stepAt = inProgressAt !== null ? Math.min(now + step, inProgressAt) : now + step;
    } else {
      stepAt = null;
    }
    const retry = isRetryable(to) && e.retryCount < job.maxRetries && job.status !== 'CANCELED';
    // In a cluster a compare-and-set in the cluster (cluster-ota.ts); a sweep of another node may win it.
    const moved = await this.store.apply(
      e,
      {
        status: to,
        lastUpdatedAt: now,
        ...(details !== undefined ? { statusDetails: details } : {}),
        ...(starting ? { startedAt: now, inProgressTimeoutAt: inProgressAt } : {}),
        ...(stepAt !== undefined ? { stepTimeoutAt: stepAt } : {}),
      },
      retry,
    );
    if (moved === null) {
      const current = this.store.execution(e.jobId, e.identity, e.executionNumber);
      throw new JobRefusal(409, 'VersionMismatch', 'the execution changed meanwhile', current !== null ? stateOf(current) : undefined);
    }
    if (to !== e.status) this.onChange({ jobId: e.jobId, identity: e.identity, executionNumber: e.executionNumber, status: to, actor, retried: retry });
    this.nextMayHaveChanged(e.identity);
    return moved;
  }
}

function stateOf(e: ExecutionRecord): ExecutionState {
  return { status: e.status, statusDetails: e.statusDetails, versionNumber: e.versionNumber };
}

function detailsOf(v: unknown): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new JobRefusal(400, 'InvalidRequest', 'statusDetails must be an object of strings');
  const entries = Object.entries(v);
  if (entries.length > MAX_DETAILS) throw new JobRefusal(400, 'InvalidRequest', `statusDetails has at most ${MAX_DETAILS} entries`);
  const out: Record<string, string> = {};
  for (const [k, s] of entries) {
    if (typeof s !== 'string' || k.length > 128 || s.length > MAX_DETAIL_CHARS) throw new JobRefusal(400, 'InvalidRequest', `statusDetails values are strings of at most ${MAX_DETAIL_CHARS} characters`);
    Object.defineProperty(out, k, { value: s, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function stepOf(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new JobRefusal(400, 'InvalidRequest', 'stepTimeoutInMinutes must be a number');
  const ms = Math.round(v * 60_000);
  if (ms < MIN_STEP_MS || ms > MAX_STEP_MS) throw new JobRefusal(400, 'InvalidRequest', 'stepTimeoutInMinutes is 1 second to 7 days');
  return ms;
}
