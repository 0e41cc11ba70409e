/**
 * Device provisioning and OTA campaigns for the admin API (and so the console), read from
 * the data directory's stores through connections opened per request (WAL: the running
 * services' writes are never blocked). Owns: which records are shown and in what order.
 * Must not: change a record, or show a token's secret (the views never carry one).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FleetFacade } from '../admin/api/services.js';
import type { BastionConfig } from '../core/config.js';
import { withCampaignStores } from '../ota/campaigns/open-stores.js';
import { campaignJson } from '../ota/campaigns/progress.js';
import { claimJson, deviceJson, tokenJson } from '../provisioning/provisioning-views.js';
import { PROVISIONING_DB_FILE, SqliteProvisioningStore } from '../provisioning/sqlite-provisioning-store.js';

export class ConsoleFleet implements FleetFacade {
  constructor(
    private readonly config: BastionConfig,
    private readonly dataDir: string,
    private readonly now: () => number = Date.now,
  ) {}

  provisioning(): { templates: object[]; claims: object[]; tokens: object[]; devices: object[] } | null {
    const section = this.config.provisioning;
    // Provisioning is on exactly when a template exists (provisioning-side.ts).
    if (Object.keys(section.templates).length === 0) return null;
    const templates = Object.entries(section.templates).map(([name, t]) => ({ name, ...t }));
    const path = join(this.dataDir, PROVISIONING_DB_FILE);
    if (!existsSync(path)) return { templates, claims: [], tokens: [], devices: [] };
    const store = SqliteProvisioningStore.open(path);
    try {
      const now = this.now();
      return {
        templates,
        claims: store.listClaims().map((c) => claimJson(c, now)),
        tokens: store.listTokens().map((t) => tokenJson(t, now)),
        devices: store.listDevices().map(deviceJson),
      };
    } finally {
      store.close();
    }
  }

  campaigns(): object[] {
    return withCampaignStores(this.dataDir, (s) => {
      if (s === null) return [];
      const all = s.campaigns.list().map((c) => campaignJson(c, s.jobs.executionsOf(c.jobId)));
      return all.reverse();
    });
  }
}
