/**
 * The campaign engine in the broker (issue 14): its own connections to
 * `<dataDir>/ota-campaigns.db` and `<dataDir>/ota-jobs.db`, and a `tick()` the OTA side
 * calls from its timer. A tick steps the active campaigns when either file changed (a
 * device's update, the sweep, the CLI) or a step of its own wrote something, and turns
 * what the engine did into `campaign` security events (the audit log). Owns: when to step
 * and the events. Must not: decide anything (src/ota/campaigns/ does) or push to devices.
 *
 * Its writes go through a jobs connection of its own on purpose: SQLite's data_version
 * then changes for the OTA side's connection, whose tick already pushes notify-next to the
 * devices of new or canceled executions (JobsMqttService.storeChanged).
 *
 * SECURITY: a failed step is logged and retried at the next tick; it never stops the
 * broker, and it never queues anything for a campaign that ended.
 */
import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import type { SecurityEvents } from '../core/security-events.js';
import { CampaignEngine, type CampaignHappening } from '../ota/campaigns/campaign-engine.js';
import { CAMPAIGNS_DB_FILE, SqliteCampaignStore } from '../ota/campaigns/sqlite-campaign-store.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../ota/jobs/sqlite-job-store.js';

/** Step anyway this often (ms) when nothing changed: cheap, and a safety net. */
const IDLE_STEP_MS = 5000;

export interface OtaCampaignSide {
  /** Steps the campaigns if something changed; the happenings (already emitted). */
  tick(): CampaignHappening[];
  stop(): void;
}

export function openOtaCampaignSide(dataDir: string, events: SecurityEvents, logger: Logger, now: () => number = Date.now): OtaCampaignSide {
  const campaigns = SqliteCampaignStore.open(join(dataDir, CAMPAIGNS_DB_FILE));
  const jobs = SqliteJobStore.open(join(dataDir, JOBS_DB_FILE));
  const engine = new CampaignEngine({ campaigns, jobs, now });
  let seen: [number, number] | null = null;
  let dirty = true;
  let lastStep = 0;
  let repairDue = true;
  return {
    tick() {
      try {
        const v: [number, number] = [campaigns.dataVersion(), jobs.dataVersion()];
        const changed = seen === null || v[0] !== seen[0] || v[1] !== seen[1];
        if (seen === null || v[0] !== seen[0]) repairDue = true;
        seen = v;
        if (!changed && !dirty && now() - lastStep < IDLE_STEP_MS) return [];
        lastStep = now();
        if (repairDue) {
          repairDue = false;
          engine.repairAborted();
        }
        const happened = engine.stepAll();
        // Our own writes do not move our data_version: step again next tick to see them settle.
        dirty = happened.length > 0;
        for (const h of happened) {
          events.emit({ type: 'campaign', action: h.action, campaignId: h.campaignId, jobId: h.jobId, stage: h.stage, devices: h.devices, ...(h.reason !== undefined ? { reason: h.reason } : {}) });
          logger.info({ campaignId: h.campaignId, action: h.action, stage: h.stage, devices: h.devices, reason: h.reason }, 'ota campaign');
        }
        return happened;
      } catch (err) {
        dirty = true;
        logger.error({ err: err instanceof Error ? err.message : String(err) }, 'ota campaigns: the step failed');
        return [];
      }
    },
    stop() {
      campaigns.close();
      jobs.close();
    },
  };
}
