/**
 * OTA campaigns (issue 14): a release rolled out to a fixed, ordered list of devices in
 * cumulative stages (e.g. 10%, 50%, 100%) through one job, with an abort rule. Owns: the
 * records, the states and the store port. Must not: touch SQLite
 * (sqlite-campaign-store.ts), decide a stage (campaign-engine.ts) or resolve targets
 * (target-resolver.ts).
 *
 * SECURITY: the target list is fixed when the campaign is created (resolved once, then
 * stored), so a later ACL or PKI change never widens a running rollout; every state change
 * is a conditional update on the record's version, so the CLI (pause, abort) and the broker's
 * engine (advance, abort) cannot both win.
 */

/**
 * RUNNING: stages are queued as the previous one finishes. PAUSED: nothing new is queued
 * (executions already queued go on). ABORTED: the abort rule tripped or an operator ran
 * `campaign abort`; the job is canceled. CANCELED: the campaign's job was canceled by
 * other means (`bastion ota job cancel`). COMPLETED: the last stage is all terminal.
 */
export type CampaignState = 'RUNNING' | 'PAUSED' | 'ABORTED' | 'COMPLETED' | 'CANCELED';
export const CAMPAIGN_STATES: readonly CampaignState[] = ['RUNNING', 'PAUSED', 'ABORTED', 'COMPLETED', 'CANCELED'];
export const ENDED: ReadonlySet<CampaignState> = new Set(['ABORTED', 'COMPLETED', 'CANCELED']);

/** `failed>5% after 20` / `failed>=3`: see plan.ts parseAbortRule. */
export interface AbortRule {
  /** The rule as written (normalised), for display and the audit log. */
  text: string;
  op: '>' | '>=';
  /** A percentage of the terminal devices (`percent`) or a device count (`count`). */
  kind: 'percent' | 'count';
  value: number;
  /** Evaluated only once at least this many devices are terminal. */
  after: number;
}

export interface CampaignRecord {
  id: string;
  releaseId: string;
  /** The one job carrying the release; its executions are added stage by stage. */
  jobId: string;
  /** The job's document ({releaseId, classId, version, sequence, manifest}), kept so the engine can (re)create the job. */
  jobDocument: Record<string, unknown>;
  /** The target as given (`role:NAME`, `cert.ou:NAME`, `clients:a,b`). */
  target: string;
  /** Cumulative percentages as given, e.g. [10, 50, 100]. */
  stagePercents: number[];
  /** Cumulative device counts per stage, fixed at creation (strictly increasing, last = targets.length). */
  stageCounts: number[];
  abortRule: AbortRule | null;
  /** The job's in-progress timeout (null: none). */
  timeoutMs: number | null;
  maxRetries: number;
  state: CampaignState;
  /** How many stages are queued (1..stageCounts.length); stage N's devices are targets[stageCounts[N-2] ?? 0 .. stageCounts[N-1]). */
  stage: number;
  /** Every target identity in rollout order, fixed at creation. */
  targets: string[];
  createdAt: number;
  updatedAt: number;
  endedAt: number | null;
  /** Why it ended or paused (abort rule, operator, job canceled). */
  reason: string | null;
  /** Optimistic concurrency: +1 on every change. */
  version: number;
}

export type NewCampaign = Omit<CampaignRecord, 'state' | 'stage' | 'updatedAt' | 'endedAt' | 'reason' | 'version'>;

/** What an update changes; absent keys stay. */
export interface CampaignPatch {
  state?: CampaignState;
  stage?: number;
  endedAt?: number | null;
  reason?: string | null;
  updatedAt: number;
}

export interface CampaignStore {
  /** False when the id exists. Starts RUNNING with stage 1 (its executions are queued by the engine's first step). */
  create(c: NewCampaign): boolean;
  get(id: string): CampaignRecord | null;
  /** Oldest first. */
  list(): CampaignRecord[];
  /** The campaigns not ended (RUNNING and PAUSED), oldest first. */
  active(): CampaignRecord[];
  /** Applies `patch` if the record is still at `expectedVersion`; null when it moved (or is gone). */
  update(id: string, expectedVersion: number, patch: CampaignPatch): CampaignRecord | null;
  /** Changes when another process committed to the file. */
  dataVersion(): number;
  close(): void;
}

/** The devices of stage `n` (1-based) of `c`, in rollout order. */
export function stageTargets(c: Pick<CampaignRecord, 'stageCounts' | 'targets'>, n: number): string[] {
  return c.targets.slice(n <= 1 ? 0 : c.stageCounts[n - 2]!, c.stageCounts[n - 1]!);
}

/** The devices of stages 1..n. */
export function queuedTargets(c: Pick<CampaignRecord, 'stageCounts' | 'targets'>, n: number): string[] {
  return c.targets.slice(0, n <= 0 ? 0 : c.stageCounts[n - 1]!);
}
