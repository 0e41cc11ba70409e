/**
 * Where a campaign stands (issue 14): per stage, how many devices are waiting (stage not
 * queued yet), queued, in progress, succeeded, failed, timed out, rejected or canceled,
 * each device counted once by its latest execution (a retry pending counts as queued).
 * Owns: that count, shared by the engine and `bastion ota campaign status`. Must not:
 * change anything.
 */
import { TERMINAL, type ExecutionRecord, type ExecutionStatus } from '../jobs/ports.js';
import { stageTargets, type CampaignRecord } from './ports.js';

export interface StageProgress {
  stage: number;
  /** Cumulative percentage of this stage. */
  percent: number;
  devices: number;
  waiting: number;
  queued: number;
  inProgress: number;
  succeeded: number;
  failed: number;
  timedOut: number;
  rejected: number;
  canceled: number;
}

export interface CampaignProgress {
  stages: StageProgress[];
  /** Among the queued stages' devices: latest execution terminal. */
  terminal: number;
  /** FAILED, TIMED_OUT or REJECTED as the latest execution. */
  failed: number;
  /** Devices of the queued stages that have no execution yet (to be repaired). */
  missing: string[];
  /** Whether every device of the queued stages is terminal. */
  queuedDone: boolean;
}

const FIELD: Readonly<Record<ExecutionStatus, keyof StageProgress>> = {
  QUEUED: 'queued',
  IN_PROGRESS: 'inProgress',
  SUCCEEDED: 'succeeded',
  FAILED: 'failed',
  TIMED_OUT: 'timedOut',
  REJECTED: 'rejected',
  CANCELED: 'canceled',
};

/** The latest execution per identity (executionsOf lists by identity, then number). */
export function latestByIdentity(executions: readonly ExecutionRecord[]): Map<string, ExecutionRecord> {
  const latest = new Map<string, ExecutionRecord>();
  for (const e of executions) {
    const prev = latest.get(e.identity);
    if (prev === undefined || prev.executionNumber < e.executionNumber) latest.set(e.identity, e);
  }
  return latest;
}

export function progressOf(c: CampaignRecord, executions: readonly ExecutionRecord[]): CampaignProgress {
  const latest = latestByIdentity(executions);
  const stages: StageProgress[] = [];
  let terminal = 0;
  let failed = 0;
  const missing: string[] = [];
  let queuedDevices = 0;
  for (let n = 1; n <= c.stageCounts.length; n++) {
    const s: StageProgress = { stage: n, percent: c.stagePercents[n - 1] ?? 100, devices: 0, waiting: 0, queued: 0, inProgress: 0, succeeded: 0, failed: 0, timedOut: 0, rejected: 0, canceled: 0 };
    for (const id of stageTargets(c, n)) {
      s.devices++;
      const e = latest.get(id);
      if (n <= c.stage) queuedDevices++;
      if (e === undefined) {
        s.waiting++;
        if (n <= c.stage) missing.push(id);
        continue;
      }
      s[FIELD[e.status] as 'queued']++;
      if (TERMINAL.has(e.status)) terminal++;
      if (e.status === 'FAILED' || e.status === 'TIMED_OUT' || e.status === 'REJECTED') failed++;
    }
    stages.push(s);
  }
  return { stages, terminal, failed, missing, queuedDone: missing.length === 0 && terminal === queuedDevices };
}

/** A campaign with its progress, as `bastion ota campaign list --json` and the admin API show it (the signed manifest left out: it is the release's). */
export function campaignJson(c: CampaignRecord, executions: readonly ExecutionRecord[]): Record<string, unknown> {
  const p = progressOf(c, executions);
  return { ...c, jobDocument: { ...c.jobDocument, manifest: undefined }, progress: { stages: p.stages, terminal: p.terminal, failed: p.failed } };
}
