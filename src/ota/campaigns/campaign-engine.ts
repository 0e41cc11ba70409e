/**
 * The campaign rules (issue 14): given the campaign store and the JobStore, what happens
 * next. Each step, for a RUNNING or PAUSED campaign: (re)create its job and the executions
 * of the stages already queued if they are missing (a crash between two writes is repaired
 * here); trip the abort rule (the campaign ABORTED with its reason, then the job canceled,
 * so no queued execution is ever started); when every device queued so far is terminal,
 * queue the next stage (RUNNING only) or finish (COMPLETED after the last stage); a job
 * canceled by other means ends the campaign CANCELED. Owns: those decisions and their
 * order. Must not: talk MQTT (the jobs service pushes notify-next when the store changes),
 * emit events (the caller turns the returned happenings into audit records), or resolve
 * targets.
 *
 * SECURITY: a stage is claimed by a conditional update of the campaign (stage + 1 at the
 * version read) before its executions are added, so a pause or abort written meanwhile by
 * the CLI wins or loses as a whole; the abort rule is checked before a stage advances, and
 * also while PAUSED; a campaign that ended never queues anything again.
 */
import type { JobStore } from '../jobs/ports.js';
import { abortReason } from './plan.js';
import { ENDED, queuedTargets, stageTargets, type CampaignRecord, type CampaignStore } from './ports.js';
import { progressOf } from './progress.js';

export type CampaignAction = 'stage' | 'completed' | 'aborted' | 'canceled';

/** What a step did, for the audit log. */
export interface CampaignHappening {
  campaignId: string;
  jobId: string;
  action: CampaignAction;
  /** The stage reached (queued, or current when it ended). */
  stage: number;
  /** Devices that stage added (stage), or the devices touched (aborted: executions canceled). */
  devices: number;
  reason?: string;
}

export interface CampaignEngineOptions {
  campaigns: CampaignStore;
  jobs: JobStore;
  now?: () => number;
}

export class CampaignEngine {
  private readonly campaigns: CampaignStore;
  private readonly jobs: JobStore;
  private readonly now: () => number;

  constructor(opts: CampaignEngineOptions) {
    this.campaigns = opts.campaigns;
    this.jobs = opts.jobs;
    this.now = opts.now ?? Date.now;
  }

  /** One step for every active campaign, oldest first. */
  stepAll(): CampaignHappening[] {
    const out: CampaignHappening[] = [];
    for (const c of this.campaigns.active()) out.push(...this.step(c));
    return out;
  }

  /** Cancels the job of every ABORTED campaign whose job still runs (a crash between the two writes). */
  repairAborted(): number {
    let n = 0;
    for (const c of this.campaigns.list()) {
      if (c.state !== 'ABORTED') continue;
      const job = this.jobs.job(c.jobId);
      if (job !== null && job.status !== 'CANCELED') (this.jobs.cancelJob(c.jobId, this.now()), n++);
    }
    return n;
  }

  /** Queues the executions stage 1 needs (creating the job): what `campaign create` does right after recording the campaign. */
  ensureQueued(c: CampaignRecord): string[] {
    const now = this.now();
    const ids = queuedTargets(c, c.stage);
    if (this.jobs.job(c.jobId) === null) {
      this.jobs.createJob({ id: c.jobId, document: c.jobDocument, maxRetries: c.maxRetries, defaultStepTimeoutMs: null, inProgressTimeoutMs: c.timeoutMs, createdAt: now }, ids);
      return ids;
    }
    return this.jobs.addExecutions(c.jobId, ids, now) ?? [];
  }

  step(read: CampaignRecord): CampaignHappening[] {
    let c = read;
    if (ENDED.has(c.state)) return [];
    const job = this.jobs.job(c.jobId);
    if (job === null) {
      this.ensureQueued(c);
      return [];
    }
    const base = { campaignId: c.id, jobId: c.jobId };
    if (job.status === 'CANCELED') {
      const reason = `its job ${c.jobId} was canceled`;
      const ended = this.end(c, 'CANCELED', reason);
      return ended === null ? [] : [{ ...base, action: 'canceled', stage: c.stage, devices: 0, reason }];
    }
    let p = progressOf(c, this.jobs.executionsOf(c.jobId));
    if (p.missing.length > 0) {
      this.jobs.addExecutions(c.jobId, p.missing, this.now());
      p = progressOf(c, this.jobs.executionsOf(c.jobId));
    }
    const reason = c.abortRule === null ? null : abortReason(c.abortRule, p.failed, p.terminal);
    if (reason !== null) {
      const r = this.abort(c, reason);
      return r === null ? [] : [{ ...base, action: 'aborted', stage: c.stage, devices: r.canceled, reason }];
    }
    if (!p.queuedDone) return [];
    if (c.stage >= c.stageCounts.length) {
      const ended = this.end(c, 'COMPLETED', null);
      return ended === null ? [] : [{ ...base, action: 'completed', stage: c.stage, devices: 0 }];
    }
    if (c.state !== 'RUNNING') return [];
    const claimed = this.campaigns.update(c.id, c.version, { stage: c.stage + 1, updatedAt: this.now() });
    if (claimed === null) return []; // the CLI paused or aborted it meanwhile: next step sees that
    c = claimed;
    const added = this.jobs.addExecutions(c.jobId, stageTargets(c, c.stage), this.now());
    return [{ ...base, action: 'stage', stage: c.stage, devices: added?.length ?? 0 }];
  }

  /**
   * ABORTED with `reason`, then the job canceled (its QUEUED and IN_PROGRESS executions
   * CANCELED). Null when the campaign moved meanwhile or already ended. Used by the engine
   * (the rule tripped) and by `campaign abort`.
   */
  abort(c: CampaignRecord, reason: string): { campaign: CampaignRecord; canceled: number } | null {
    const ended = this.end(c, 'ABORTED', reason);
    if (ended === null) return null;
    const touched = this.jobs.cancelJob(c.jobId, this.now());
    return { campaign: ended, canceled: touched?.length ?? 0 };
  }

  private end(c: CampaignRecord, state: 'ABORTED' | 'COMPLETED' | 'CANCELED', reason: string | null): CampaignRecord | null {
    if (ENDED.has(c.state)) return null;
    const now = this.now();
    return this.campaigns.update(c.id, c.version, { state, endedAt: now, reason, updatedAt: now });
  }
}
