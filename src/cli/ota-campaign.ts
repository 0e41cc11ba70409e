/**
 * `bastion ota campaign create|list|status|pause|resume|abort` (issue 14): a release rolled
 * out in cumulative stages to a target resolved once (role, certificate OU or a list),
 * through one job, with an abort rule; the running broker's engine queues each next stage
 * and trips the rule (src/server/ota-campaign-side.ts). Works on `<data-dir>/ota-campaigns.db`
 * and `<data-dir>/ota-jobs.db` directly; each change is recorded for the audit log
 * (cli-change.ts) as `ota.campaign.create|pause|resume|abort`. Owns: the commands' options,
 * reading the target sources, and output. Must not: decide stages (src/ota/campaigns/).
 *
 * SECURITY: `create` refuses a release the release index does not hold, an empty target
 * and malformed rules before anything is written; the target list is fixed at creation.
 */
import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BastionError } from '../core/errors.js';
import { CampaignEngine } from '../ota/campaigns/campaign-engine.js';
import { parseAbortRule, parseRollout, rolloutOrder, stagePlan } from '../ota/campaigns/plan.js';
import { ENDED, type CampaignState } from '../ota/campaigns/ports.js';
import { campaignJson, progressOf } from '../ota/campaigns/progress.js';
import { CAMPAIGNS_DB_FILE, SqliteCampaignStore } from '../ota/campaigns/sqlite-campaign-store.js';
import { resolveTarget, type TargetCertificate, type TargetSources } from '../ota/campaigns/target-resolver.js';
import { MAX_RETRIES } from '../ota/jobs/ports.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../ota/jobs/sqlite-job-store.js';
import { JOB_ID } from '../ota/jobs/topics.js';
import { otaDirOf } from '../ota/ota-files.js';
import { readReleaseIndex } from '../ota/releases.js';
import { describeCertificate } from '../pki/describe.js';
import { pkiLayout } from '../server/pki-layout.js';
import { PkiInventory } from '../store/sqlite/pki-inventory.js';
import { effectivePolicy } from './acl-policy-source.js';
import { auditedChange, localUserName } from './cli-change.js';
import { campaignLines, fmtMs, parseDuration, registerOtaStatusCommand, withCampaignStores } from './ota-status.js';
import { addProvisionSourceOptions, iso, printTable, provisionSource, usage, type ProvisionSourceOptions } from './provision-context.js';

type CreateOptions = ProvisionSourceOptions & { release?: string; target?: string; rollout?: string; abort?: string; timeout?: string; retries?: string; id?: string };
type JsonOptions = ProvisionSourceOptions & { json?: boolean };

/** The ACL's bindings and the PKI's client certificates, read only when the target needs them. */
function targetSources(opts: ProvisionSourceOptions, dataDir: string, pkiDir: string): TargetSources {
  return {
    bindings: () => effectivePolicy({ ...(opts.config !== undefined ? { config: opts.config } : {}), dataDir }).bindings,
    clientCertificates: () => {
      const path = pkiLayout(pkiDir).inventory;
      if (!existsSync(path)) return [];
      const inventory = PkiInventory.open(path);
      try {
        const out: TargetCertificate[] = [];
        for (const r of inventory.list({ kinds: ['client'] })) {
          let ous: string[];
          try {
            ous = describeCertificate(r.certPem).organizationalUnits;
          } catch {
            continue; // an unreadable record names nobody
          }
          out.push({ commonName: r.commonName, organizationalUnits: ous, revoked: r.status === 'revoked', notAfter: r.notAfter.getTime() });
        }
        return out;
      } finally {
        inventory.close();
      }
    },
  };
}

/** Both stores, created when missing (a changing command). */
function withStoresForChange<T>(dataDir: string, fn: (s: { campaigns: SqliteCampaignStore; jobs: SqliteJobStore; engine: CampaignEngine }) => T): T {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const campaigns = SqliteCampaignStore.open(join(dataDir, CAMPAIGNS_DB_FILE));
  let jobs: SqliteJobStore | null = null;
  try {
    jobs = SqliteJobStore.open(join(dataDir, JOBS_DB_FILE));
    return fn({ campaigns, jobs, engine: new CampaignEngine({ campaigns, jobs }) });
  } finally {
    jobs?.close();
    campaigns.close();
  }
}

async function create(opts: CreateOptions): Promise<void> {
  if (opts.release === undefined) throw usage('--release R is required (see `bastion ota release list`)');
  if (opts.target === undefined) throw usage('--target is required: role:NAME, cert.ou:NAME or clients:id1,id2,…');
  const percents = parseRollout(opts.rollout ?? '10%,50%,100%');
  const rule = opts.abort !== undefined ? parseAbortRule(opts.abort) : null;
  const timeoutMs = opts.timeout !== undefined ? parseDuration('--timeout', opts.timeout, 1000, 30 * 86_400_000) : null;
  const retries = opts.retries ?? '0';
  if (!/^\d{1,2}$/.test(retries) || Number(retries) > MAX_RETRIES) throw usage(`--retries is a whole number from 0 to ${MAX_RETRIES}, got "${retries}"`);
  const id = opts.id ?? `cmp-${randomBytes(6).toString('hex')}`;
  if (!JOB_ID.test(id)) throw usage(`--id "${id}": letters, digits, - and _, at most 64 characters`);
  const { dataDir, pkiDir } = await provisionSource(opts);
  const release = (await readReleaseIndex(otaDirOf(dataDir))).releases.find((r) => r.id === opts.release);
  if (release === undefined) throw usage(`unknown release "${opts.release}" (see \`bastion ota release list\`)`);
  const resolved = resolveTarget(opts.target, targetSources(opts, dataDir, pkiDir), Date.now());
  const targets = rolloutOrder(resolved.identities, id);
  const plan = stagePlan(percents, targets.length);
  const record = await auditedChange(
    dataDir,
    'ota.campaign.create',
    id,
    () =>
      withStoresForChange(dataDir, ({ campaigns, jobs, engine }) => {
        // The campaign's job carries its id; an existing job of that name is someone else's.
        if (jobs.job(id) !== null || campaigns.get(id) !== null) throw new BastionError('ERR_OTA_CAMPAIGN_EXISTS', `a campaign or job "${id}" exists`);
        const jobDocument = { releaseId: release.id, classId: release.classId, version: release.version, sequence: release.sequence, manifest: release.manifest };
        const now = Date.now();
        const fresh = { id, releaseId: release.id, jobId: id, jobDocument, target: resolved.spec, stagePercents: plan.percents, stageCounts: plan.counts, abortRule: rule, timeoutMs, maxRetries: Number(retries), targets, createdAt: now };
        if (!campaigns.create(fresh)) throw new BastionError('ERR_OTA_CAMPAIGN_EXISTS', `campaign "${id}" exists`);
        const c = campaigns.get(id)!;
        engine.ensureQueued(c);
        return c;
      }),
    (c) => ({ releaseId: c.releaseId, target: c.target, devices: c.targets.length, stages: c.stagePercents, stageCounts: c.stageCounts, abort: c.abortRule?.text ?? null, timeoutMs, retries: c.maxRetries }),
  );
  for (const n of resolved.notes) process.stderr.write(`note: ${n}\n`);
  const stages = record.stageCounts.map((n, i) => `${record.stagePercents[i]!}%=${n}`).join(', ');
  process.stdout.write(
    `campaign ${record.id}: release ${release.id} (${release.classId} ${release.version}) to ${record.targets.length} device(s) of ${record.target}; stages ${stages}; stage 1 queued (${record.stageCounts[0]!} device(s)); abort ${rule?.text ?? 'none'}\n`,
  );
}


async function list(opts: JsonOptions): Promise<void> {
  const { dataDir } = await provisionSource(opts);
  withCampaignStores(dataDir, (s) => {
    const all = s?.campaigns.list() ?? [];
    if (opts.json === true) {
      for (const c of all) process.stdout.write(`${JSON.stringify(campaignJson(c, s!.jobs.executionsOf(c.jobId)))}\n`);
      return;
    }
    if (all.length === 0) return void process.stdout.write('no campaigns\n');
    printTable(
      ['ID', 'RELEASE', 'STATE', 'STAGE', 'TARGET', 'DEVICES', 'DONE', 'FAILED', 'CREATED'],
      all.map((c) => {
        const p = progressOf(c, s!.jobs.executionsOf(c.jobId));
        return [c.id, c.releaseId, c.state, `${c.stage}/${c.stageCounts.length}`, c.target, String(c.targets.length), String(p.terminal), String(p.failed), iso(c.createdAt)];
      }),
    );
  });
}

async function status(id: string, opts: JsonOptions): Promise<void> {
  const { dataDir } = await provisionSource(opts);
  withCampaignStores(dataDir, (s) => {
    const c = s?.campaigns.get(id) ?? null;
    if (s === null || c === null) throw new BastionError('ERR_OTA_CAMPAIGN_UNKNOWN', `no campaign ${id}`);
    if (opts.json === true) return void process.stdout.write(`${JSON.stringify(campaignJson(c, s.jobs.executionsOf(c.jobId)))}\n`);
    process.stdout.write(`${campaignLines(c, progressOf(c, s.jobs.executionsOf(c.jobId))).join('\n')}\n`);
  });
}

type Change = 'pause' | 'resume' | 'abort';
const FROM: Readonly<Record<Change, readonly CampaignState[]>> = { pause: ['RUNNING'], resume: ['PAUSED'], abort: ['RUNNING', 'PAUSED'] };

async function change(what: Change, id: string, opts: ProvisionSourceOptions): Promise<void> {
  const { dataDir } = await provisionSource(opts);
  if (!existsSync(join(dataDir, CAMPAIGNS_DB_FILE))) throw new BastionError('ERR_OTA_CAMPAIGN_UNKNOWN', `no campaign ${id}`);
  const done = await auditedChange(
    dataDir,
    `ota.campaign.${what}`,
    id,
    () =>
      withStoresForChange(dataDir, ({ campaigns, engine }) => {
        // The engine may write between our read and our update: read again and retry.
        for (let attempt = 0; attempt < 5; attempt++) {
          const c = campaigns.get(id);
          if (c === null) throw new BastionError('ERR_OTA_CAMPAIGN_UNKNOWN', `no campaign ${id}`);
          if (!FROM[what].includes(c.state)) throw new BastionError('ERR_CONFLICT', `campaign ${id} is ${c.state}${ENDED.has(c.state) ? ' (ended)' : ''}; ${what} needs ${FROM[what].join(' or ')}`);
          const now = Date.now();
          if (what === 'abort') {
            const r = engine.abort(c, `aborted by local:${localUserName()}`);
            if (r !== null) return { state: r.campaign.state, canceled: r.canceled };
          } else {
            const r = campaigns.update(id, c.version, { state: what === 'pause' ? 'PAUSED' : 'RUNNING', reason: what === 'pause' ? `paused by local:${localUserName()}` : null, updatedAt: now });
            if (r !== null) return { state: r.state, canceled: 0 };
          }
        }
        throw new BastionError('ERR_CONFLICT', `campaign ${id} kept changing; try again`);
      }),
    (r) => ({ state: r.state, canceled: r.canceled }),
  );
  process.stdout.write(`campaign ${id} ${done.state}${what === 'abort' ? ` (${done.canceled} device(s) with a pending execution canceled)` : ''}\n`);
}

export function registerOtaCampaignCommands(ota: Command): void {
  const campaign = ota.command('campaign').description('staged rollouts of a release with an abort rule (<data-dir>/ota-campaigns.db; a running broker advances them)');
  addProvisionSourceOptions(
    campaign
      .command('create')
      .description('roll a release out to a target in cumulative stages; stage 1 is queued now, the broker queues the next when one is done')
      .option('--release <id>', 'the release (see `bastion ota release list`)')
      .option('--target <spec>', 'role:NAME (ACL bindings), cert.ou:NAME (valid client certificates of the PKI) or clients:id1,id2,…')
      .option('--rollout <stages>', 'cumulative percentages (10%,50%,100%) or exponential (1%,2%,4%,…,64%,100%)', '10%,50%,100%')
      .option('--abort <rule>', "abort when e.g. 'failed>5% after 20' or 'failed>=3' (failed: FAILED, TIMED_OUT or REJECTED)")
      .option('--timeout <duration>', `a started execution not finished within this is TIMED_OUT (e.g. 30m; up to ${fmtMs(30 * 86_400_000)})`)
      .option('--retries <n>', `new executions after FAILED or TIMED_OUT, per device (0-${MAX_RETRIES})`, '0')
      .option('--id <id>', 'the campaign id (and its job id; default cmp-<random>)'),
  ).action((opts: CreateOptions) => create(opts));
  addProvisionSourceOptions(campaign.command('list').description('the campaigns').option('--json', 'one JSON object per line')).action((opts: JsonOptions) => list(opts));
  addProvisionSourceOptions(campaign.command('status <id>').description('a campaign per stage: devices, queued, in progress, succeeded, failed, timed out, rejected, canceled').option('--json', 'one JSON object')).action(
    (id: string, opts: JsonOptions) => status(id, opts),
  );
  addProvisionSourceOptions(campaign.command('pause <id>').description('queue no further stage (executions already queued go on)')).action((id: string, opts: ProvisionSourceOptions) => change('pause', id, opts));
  addProvisionSourceOptions(campaign.command('resume <id>').description('let a paused campaign queue its next stages again')).action((id: string, opts: ProvisionSourceOptions) => change('resume', id, opts));
  addProvisionSourceOptions(campaign.command('abort <id>').description('end the campaign: its job is canceled (QUEUED and IN_PROGRESS executions CANCELED)')).action((id: string, opts: ProvisionSourceOptions) => change('abort', id, opts));
  registerOtaStatusCommand(ota);
}
