/**
 * The device's side of jobs over MQTT (docs/OTA.md "Jobs"): `start-next` and
 * `<jobId>/update` on `$bastion/jobs/<identity>/…`, and reading `notify-next`. Owns: those
 * topic names, the JSON of the requests, reading executions out of answers field by field,
 * and keeping the execution's version for `expectedVersion`. Must not: decide what to do
 * with a job (ota-agent.ts) or subscribe (the agent does, before it asks).
 */
import { jsonObjectOf, type JsonObject } from './protocol.js';
import type { TokenRequests } from './ota-requests.js';

export const JOB_REQUEST_TIMEOUT_MS = 10_000;
/** The jobs service keeps at most this many statusDetails entries of at most this many characters. */
const MAX_DETAIL_CHARS = 1024;

export type TerminalStatus = 'SUCCEEDED' | 'FAILED' | 'REJECTED';

export interface JobExecution {
  jobId: string;
  executionNumber: number;
  versionNumber: number;
  status: string;
  jobDocument: JsonObject | null;
}

export interface JobRejection {
  statusCode: number;
  errorCode: string;
  errorMessage: string;
  /** VersionMismatch and InvalidStateTransition carry the current state. */
  versionNumber?: number;
  status?: string;
}

export function jobsFilter(identity: string): string {
  return `$bastion/jobs/${identity}/#`;
}

export function notifyNextTopicOf(identity: string): string {
  return `$bastion/jobs/${identity}/notify-next`;
}

/** An execution object of an answer or a notice, or null when it is not one. */
export function executionOf(v: unknown): JobExecution | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const o = v as JsonObject;
  if (typeof o.jobId !== 'string' || typeof o.executionNumber !== 'number' || typeof o.versionNumber !== 'number' || typeof o.status !== 'string') return null;
  const doc = o.jobDocument;
  return {
    jobId: o.jobId,
    executionNumber: o.executionNumber,
    versionNumber: o.versionNumber,
    status: o.status,
    jobDocument: typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as JsonObject) : null,
  };
}

/** A notify-next payload: the next execution, null for "nothing pending", undefined when unreadable. */
export function parseNotifyNext(payload: Buffer): JobExecution | null | undefined {
  const o = jsonObjectOf(payload);
  if (o === null) return undefined;
  if (o.execution === undefined) return null;
  return executionOf(o.execution) ?? undefined;
}

function rejectionOf(body: JsonObject): JobRejection {
  const state = typeof body.executionState === 'object' && body.executionState !== null ? (body.executionState as JsonObject) : null;
  return {
    statusCode: typeof body.statusCode === 'number' ? body.statusCode : 0,
    errorCode: typeof body.errorCode === 'string' ? body.errorCode : 'Unknown',
    errorMessage: typeof body.errorMessage === 'string' ? body.errorMessage : '',
    ...(typeof state?.versionNumber === 'number' ? { versionNumber: state.versionNumber } : {}),
    ...(typeof state?.status === 'string' ? { status: state.status } : {}),
  };
}

/** statusDetails the service takes: strings, each at most 1024 characters. */
export function details(d: Record<string, string | number>): Record<string, string> {
  return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, String(v).slice(0, MAX_DETAIL_CHARS)]));
}

export class JobsClient {
  constructor(
    private readonly requests: TokenRequests,
    private readonly identity: string,
    private readonly timeoutMs = JOB_REQUEST_TIMEOUT_MS,
  ) {}

  private base(): string {
    return `$bastion/jobs/${this.identity}`;
  }

  /** Starts (or returns the already started) next execution; null when none is pending. Throws on a rejection. */
  async startNext(): Promise<JobExecution | null> {
    const topic = `${this.base()}/start-next`;
    const a = await this.requests.ask(topic, {}, [`${topic}/accepted`, `${topic}/rejected`], this.timeoutMs);
    if (a.topic.endsWith('/rejected')) {
      const r = rejectionOf(a.body);
      throw new Error(`start-next rejected: ${r.errorCode} (${r.statusCode}): ${r.errorMessage}`);
    }
    if (a.body.execution === undefined) return null;
    const e = executionOf(a.body.execution);
    if (e === null) throw new Error('start-next answered with an unreadable execution');
    return e;
  }

  /**
   * Updates `execution` (its versionNumber is the expectedVersion, and is advanced from the
   * answer). A VersionMismatch is tried once more at the version the broker returned.
   */
  async update(execution: JobExecution, status: 'IN_PROGRESS' | TerminalStatus, statusDetails: Record<string, string>): Promise<{ ok: true } | { ok: false; rejection: JobRejection }> {
    const topic = `${this.base()}/${execution.jobId}/update`;
    for (let attempt = 0; ; attempt++) {
      const body = { status, statusDetails, expectedVersion: execution.versionNumber, executionNumber: execution.executionNumber };
      const a = await this.requests.ask(topic, body, [`${topic}/accepted`, `${topic}/rejected`], this.timeoutMs);
      if (a.topic.endsWith('/accepted')) {
        const state = typeof a.body.executionState === 'object' && a.body.executionState !== null ? (a.body.executionState as JsonObject) : {};
        if (typeof state.versionNumber === 'number') execution.versionNumber = state.versionNumber;
        if (typeof state.status === 'string') execution.status = state.status;
        return { ok: true };
      }
      const r = rejectionOf(a.body);
      if (r.versionNumber !== undefined) execution.versionNumber = r.versionNumber;
      if (r.errorCode === 'VersionMismatch' && attempt === 0 && r.status === 'IN_PROGRESS') continue;
      return { ok: false, rejection: r };
    }
  }
}
