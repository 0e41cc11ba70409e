/**
 * `bastion ota job create|list|show|cancel` (issue 14): jobs for a release, one QUEUED
 * execution per listed device identity, in `<data-dir>/ota-jobs.db`, which a running broker
 * polls (it pushes notify-next to the devices). Each change is recorded for the broker's
 * audit log (cli-change.ts). Owns: the commands' options and output. Must not: decide
 * transitions (src/ota/jobs/) or talk to devices.
 *
 * SECURITY: `create` refuses a release the release index does not hold (a job never
 * carries a manifest that was not verified when it was released), and identities that
 * could not name a jobs topic.
 */
import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_RETRIES, type ExecutionRecord, type JobRecord } from '../ota/jobs/ports.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../ota/jobs/sqlite-job-store.js';
import { isJobIdentity } from '../ota/jobs/topics.js';
import { otaDirOf } from '../ota/ota-files.js';
import { readReleaseIndex } from '../ota/releases.js';
import { auditedChange } from './cli-change.js';
import { addProvisionSourceOptions, iso, printTable, provisionSource, usage, type ProvisionSourceOptions } from './provision-context.js';

const UNITS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const MAX_STEP_MS = 7 * 86_400_000;
const MAX_CLIENTS = 10_000;

/** `--step-timeout`: `30s`, `10m`, `2h`, `1d`; 1 second to 7 days → ms. */
export function parseStepTimeout(value: string): number {
  const m = /^(\d{1,7})([smhd])$/.exec(value);
  if (m === null) throw usage(`--step-timeout takes a number and a unit s, m, h or d (e.g. 10m), got "${value}"`);
  const ms = Number(m[1]) * UNITS[m[2]!]!;
  if (ms < 1000 || ms > MAX_STEP_MS) throw usage(`--step-timeout is 1s to 7d, got "${value}"`);
  return ms;
}

function parseRetries(value: string | undefined): number {
  if (value === undefined) return 0;
  if (!/^\d{1,2}$/.test(value) || Number(value) > MAX_RETRIES) throw usage(`--retries is a whole number from 0 to ${MAX_RETRIES}, got "${value}"`);
  return Number(value);
}

function parseClients(value: string | undefined): string[] {
  if (value === undefined || value.trim() === '') throw usage('--clients id1,id2,… is required (the devices’ certificate identities)');
  const ids = [...new Set(value.split(',').map((s) => s.trim()).filter((s) => s.length > 0))];
  if (ids.length > MAX_CLIENTS) throw usage(`--clients names at most ${MAX_CLIENTS} devices`);
  for (const id of ids) if (!isJobIdentity(id)) throw usage(`--clients: "${id}" cannot be a device identity (no /, + or #, at most 128 characters)`);
  return ids;
}

async function withJobStore<T>(dataDir: string, create: boolean, fn: (store: SqliteJobStore | null) => T): Promise<T> {
  const path = join(dataDir, JOBS_DB_FILE);
  if (!create && !existsSync(path)) return fn(null);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const store = SqliteJobStore.open(path);
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

type CreateOptions = ProvisionSourceOptions & { release?: string; clients?: string; stepTimeout?: string; retries?: string };

async function create(opts: CreateOptions): Promise<void> {
  if (opts.release === undefined) throw usage('--release R is required (see `bastion ota release list`)');
  const clients = parseClients(opts.clients);
  const retries = parseRetries(opts.retries);
  const step = opts.stepTimeout !== undefined ? parseStepTimeout(opts.stepTimeout) : null;
  const { dataDir } = await provisionSource(opts);
  const release = (await readReleaseIndex(otaDirOf(dataDir))).releases.find((r) => r.id === opts.release);
  if (release === undefined) throw usage(`unknown release "${opts.release}" (see \`bastion ota release list\`)`);
  const id = `job-${randomBytes(6).toString('hex')}`;
  await auditedChange(
    dataDir,
    'ota.job.create',
    id,
    () =>
      withJobStore(dataDir, true, (store) => {
        const document = { releaseId: release.id, classId: release.classId, version: release.version, sequence: release.sequence, manifest: release.manifest };
        if (!store!.createJob({ id, document, maxRetries: retries, defaultStepTimeoutMs: step, inProgressTimeoutMs: null, createdAt: Date.now() }, clients)) throw usage(`job ${id} exists`);
      }),
    () => ({ releaseId: release.id, devices: clients.length, retries, stepTimeoutMs: step }),
  );
  process.stdout.write(`job ${id}: release ${release.id} (${release.classId} ${release.version}) queued for ${clients.length} device(s)\n`);
}

function counts(executions: ExecutionRecord[]): string {
  const latest = new Map<string, ExecutionRecord>();
  for (const e of executions) latest.set(e.identity, e);
  const by = new Map<string, number>();
  for (const e of latest.values()) by.set(e.status, (by.get(e.status) ?? 0) + 1);
  return [...by].map(([s, n]) => `${s} ${n}`).join(', ') || '-';
}

function jobJson(job: JobRecord, executions: ExecutionRecord[]): Record<string, unknown> {
  return { ...job, document: { ...job.document, manifest: undefined }, executions };
}

async function list(opts: ProvisionSourceOptions & { json?: boolean }): Promise<void> {
  const { dataDir } = await provisionSource(opts);
  await withJobStore(dataDir, false, (store) => {
    const rows = store === null ? [] : store.jobs().map((j) => ({ job: j, executions: store.executionsOf(j.id) }));
    if (opts.json === true) {
      for (const r of rows) process.stdout.write(`${JSON.stringify(jobJson(r.job, r.executions))}\n`);
      return;
    }
    if (rows.length === 0) return void process.stdout.write('no jobs\n');
    printTable(
      ['ID', 'RELEASE', 'STATUS', 'CREATED', 'DEVICES'],
      rows.map((r) => [r.job.id, String(r.job.document.releaseId ?? '-'), r.job.status, iso(r.job.createdAt), counts(r.executions)]),
    );
  });
}

async function show(id: string, opts: ProvisionSourceOptions & { json?: boolean }): Promise<void> {
  const { dataDir } = await provisionSource(opts);
  await withJobStore(dataDir, false, (store) => {
    const job = store?.job(id) ?? null;
    if (store === null || job === null) throw usage(`no job ${id}`);
    const executions = store.executionsOf(id);
    if (opts.json === true) return void process.stdout.write(`${JSON.stringify(jobJson(job, executions))}\n`);
    process.stdout.write(`job ${job.id}: release ${String(job.document.releaseId ?? '-')}, ${job.status}, created ${iso(job.createdAt)}, retries ${job.maxRetries}, step timeout ${job.defaultStepTimeoutMs === null ? '-' : `${job.defaultStepTimeoutMs / 1000}s`}\n`);
    printTable(
      ['DEVICE', 'EXEC', 'STATUS', 'VERSION', 'UPDATED', 'DETAILS'],
      executions.map((e) => [e.identity, String(e.executionNumber), e.status, String(e.versionNumber), iso(e.lastUpdatedAt), JSON.stringify(e.statusDetails)]),
    );
  });
}

async function cancel(id: string, opts: ProvisionSourceOptions): Promise<void> {
  const { dataDir } = await provisionSource(opts);
  const touched = await auditedChange(
    dataDir,
    'ota.job.cancel',
    id,
    () =>
      withJobStore(dataDir, false, (store) => {
        const t = store?.cancelJob(id, Date.now()) ?? null;
        if (t === null) throw usage(`no job ${id}`);
        return t;
      }),
    (t) => ({ devices: t.length }),
  );
  process.stdout.write(`job ${id} canceled (${touched.length} pending execution(s) canceled)\n`);
}

export function registerOtaJobCommands(ota: Command): void {
  const job = ota.command('job').description('jobs over MQTT: a release queued for devices ($bastion/jobs/<identity>/…; <data-dir>/ota-jobs.db)');
  addProvisionSourceOptions(
    job
      .command('create')
      .description('queue a release for the listed devices (one execution each); a running broker notifies them')
      .option('--release <id>', 'the release (see `bastion ota release list`)')
      .option('--clients <ids>', 'comma-separated device identities (certificate CNs)')
      .option('--step-timeout <duration>', 'a started execution not updated within this is TIMED_OUT (e.g. 10m)')
      .option('--retries <n>', `new executions after FAILED or TIMED_OUT, per device (0-${MAX_RETRIES})`, '0'),
  ).action((opts: CreateOptions) => create(opts));
  addProvisionSourceOptions(job.command('list').description('the jobs and their devices by status').option('--json', 'one JSON object per line')).action((opts: ProvisionSourceOptions & { json?: boolean }) => list(opts));
  addProvisionSourceOptions(job.command('show <id>').description('a job and every execution').option('--json', 'one JSON object')).action((id: string, opts: ProvisionSourceOptions & { json?: boolean }) => show(id, opts));
  addProvisionSourceOptions(job.command('cancel <id>').description('cancel the job: its QUEUED and IN_PROGRESS executions become CANCELED')).action((id: string, opts: ProvisionSourceOptions) => cancel(id, opts));
}
