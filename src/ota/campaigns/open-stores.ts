/**
 * Opening a data directory's campaign and job stores together for one read (the CLI's
 * `bastion ota campaign|status` and the admin API). Owns: their paths and closing both.
 * Must not: change a campaign.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CAMPAIGNS_DB_FILE, SqliteCampaignStore } from './sqlite-campaign-store.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../jobs/sqlite-job-store.js';

/** Runs `fn` with both stores open, or with null when no campaign was ever created here. */
export function withCampaignStores<T>(dataDir: string, fn: (s: { campaigns: SqliteCampaignStore; jobs: SqliteJobStore } | null) => T): T {
  const cPath = join(dataDir, CAMPAIGNS_DB_FILE);
  if (!existsSync(cPath)) return fn(null);
  const campaigns = SqliteCampaignStore.open(cPath);
  let jobs: SqliteJobStore | null = null;
  try {
    jobs = SqliteJobStore.open(join(dataDir, JOBS_DB_FILE));
    return fn({ campaigns, jobs });
  } finally {
    jobs?.close();
    campaigns.close();
  }
}
