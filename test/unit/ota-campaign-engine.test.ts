/**
 * The campaign engine on the real SQLite stores (a temp directory, a test clock): stage by
 * stage only when the previous stage is all terminal, retries hold a stage, the abort rule
 * (the campaign ABORTED, the job canceled, later stages never queued), pause and resume,
 * a job canceled elsewhere, repair after a crash between two writes, a pause written between
 * the engine's read and its claim; and JobStore.addExecutions.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CampaignEngine } from '../../src/ota/campaigns/campaign-engine.js';
import { parseAbortRule, rolloutOrder, stagePlan } from '../../src/ota/campaigns/plan.js';
import { stageTargets, type AbortRule, type CampaignRecord } from '../../src/ota/campaigns/ports.js';
import { progressOf } from '../../src/ota/campaigns/progress.js';
import { SqliteCampaignStore } from '../../src/ota/campaigns/sqlite-campaign-store.js';
import { JobsService } from '../../src/ota/jobs/jobs-service.js';
import type { ExecutionStatus } from '../../src/ota/jobs/ports.js';
import { SqliteJobStore } from '../../src/ota/jobs/sqlite-job-store.js';

const dir = mkdtempSync(join(tmpdir(), 'bastion-campaigns-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

interface Rig {
  campaigns: SqliteCampaignStore;
  jobs: SqliteJobStore;
  engine: CampaignEngine;
  svc: JobsService;
  clock: { t: number };
  c: () => CampaignRecord;
  /** The device moves its latest execution: start, then `to`. */
  report: (id: string, to: ExecutionStatus) => void;
}

function rig(devices: number, opts: { percents?: number[]; rule?: AbortRule | null; retries?: number } = {}): Rig {
  const k = n++;
  const campaigns = SqliteCampaignStore.open(join(dir, `c-${k}.db`));
  const jobs = SqliteJobStore.open(join(dir, `j-${k}.db`));
  const clock = { t: 1_000_000 };
  const engine = new CampaignEngine({ campaigns, jobs, now: () => clock.t });
  const svc = new JobsService({ store: jobs, now: () => clock.t });
  const ids = Array.from({ length: devices }, (_, i) => `d${i}`);
  const plan = stagePlan(opts.percents ?? [10, 50, 100], devices);
  assert.equal(
    campaigns.create({
      id: 'cmp',
      releaseId: 'r1',
      jobId: 'cmp',
      jobDocument: { releaseId: 'r1' },
      target: 'clients:…',
      stagePercents: plan.percents,
      stageCounts: plan.counts,
      abortRule: opts.rule ?? null,
      timeoutMs: 60_000,
      maxRetries: opts.retries ?? 0,
      targets: rolloutOrder(ids, 'cmp'),
      createdAt: clock.t,
    }),
    true,
  );
  const c = (): CampaignRecord => campaigns.get('cmp')!;
  engine.ensureQueued(c());
  const report = async (id: string, to: ExecutionStatus): Promise<void> => {
    const started = await svc.startNext(id, {});
    assert.ok(started !== null, `${id} has a pending execution`);
    await svc.update(id, started.jobId, { status: to });
  };
  return { campaigns, jobs, engine, svc, clock, c, report };
}

const pendingIds = (r: Rig): string[] => r.jobs.executionsOf('cmp').filter((e) => e.status === 'QUEUED').map((e) => e.identity);

test('JobStore.addExecutions: one QUEUED execution for identities without one; none for a canceled or unknown job', async () => {
  const jobs = SqliteJobStore.open(join(dir, 'add.db'));
  jobs.createJob({ id: 'j', document: {}, maxRetries: 0, defaultStepTimeoutMs: null, inProgressTimeoutMs: null, createdAt: 1 }, ['a']);
  const before = jobs.dataVersion();
  assert.deepEqual(jobs.addExecutions('j', ['a', 'b', 'c', 'b'], 5), ['b', 'c']);
  assert.deepEqual(jobs.addExecutions('j', ['a', 'b'], 6), []);
  const b = jobs.execution('j', 'b')!;
  assert.equal(b.status, 'QUEUED');
  assert.equal(b.executionNumber, 1);
  assert.equal(b.queuedAt, 5);
  assert.deepEqual(jobs.pending('c').map((e) => e.jobId), ['j']);
  assert.equal(jobs.addExecutions('nope', ['a'], 7), null);
  jobs.cancelJob('j', 8);
  assert.equal(jobs.addExecutions('j', ['z'], 9), null);
  assert.equal(jobs.execution('j', 'z'), null);
  // Another connection sees the change through data_version (how the broker notices it).
  const other = SqliteJobStore.open(join(dir, 'add.db'));
  other.createJob({ id: 'k', document: {}, maxRetries: 0, defaultStepTimeoutMs: null, inProgressTimeoutMs: null, createdAt: 1 }, []);
  other.addExecutions('k', ['q'], 10);
  assert.notEqual(jobs.dataVersion(), before);
  other.close();
  jobs.close();
});

test('stages advance only when every device of the stage is terminal, then COMPLETED', async () => {
  const r = rig(20);
  const c0 = r.c();
  assert.deepEqual(c0.stageCounts, [2, 10, 20]);
  assert.equal((statSync(join(dir, `c-${n - 1}.db`)).mode & 0o777).toString(8), '600');
  assert.equal(r.jobs.job('cmp')!.inProgressTimeoutMs, 60_000, 'the timeout is the job’s in-progress timeout');
  assert.deepEqual(pendingIds(r).sort(), stageTargets(c0, 1).sort());
  const [first, second] = stageTargets(c0, 1);
  await r.report(first!, 'SUCCEEDED');
  assert.deepEqual(r.engine.stepAll(), [], 'one device of stage 1 still pending');
  await r.svc.startNext(second!, {});
  assert.deepEqual(r.engine.stepAll(), [], 'IN_PROGRESS is not terminal');
  await r.svc.update(second!, 'cmp', { status: 'FAILED' });
  const h = r.engine.stepAll();
  assert.deepEqual(h, [{ campaignId: 'cmp', jobId: 'cmp', action: 'stage', stage: 2, devices: 8 }]);
  assert.deepEqual(pendingIds(r).sort(), stageTargets(r.c(), 2).sort());
  for (const id of stageTargets(r.c(), 2)) await r.report(id, 'SUCCEEDED');
  assert.equal(r.engine.stepAll()[0]?.stage, 3);
  for (const id of stageTargets(r.c(), 3)) await r.report(id, 'REJECTED');
  assert.deepEqual(r.engine.stepAll(), [{ campaignId: 'cmp', jobId: 'cmp', action: 'completed', stage: 3, devices: 0 }]);
  const done = r.c();
  assert.equal(done.state, 'COMPLETED');
  assert.equal(done.endedAt, r.clock.t);
  assert.deepEqual(r.engine.stepAll(), [], 'an ended campaign does nothing');
  const p = progressOf(done, r.jobs.executionsOf('cmp'));
  assert.deepEqual(p.stages.map((s) => [s.devices, s.succeeded, s.failed, s.rejected]), [[2, 1, 1, 0], [8, 8, 0, 0], [10, 0, 0, 10]]);
});

test('a retry pending holds the stage; the failed count uses each device’s latest execution', async () => {
  const r = rig(10, { retries: 1, percents: [20, 100] });
  const [a, b] = stageTargets(r.c(), 1);
  await r.report(a!, 'SUCCEEDED');
  await r.report(b!, 'FAILED');
  assert.deepEqual(r.engine.stepAll(), [], 'b’s retry is QUEUED');
  assert.equal(r.jobs.execution('cmp', b!)!.executionNumber, 2);
  await r.report(b!, 'SUCCEEDED');
  assert.equal(r.engine.stepAll()[0]?.action, 'stage');
  assert.equal(progressOf(r.c(), r.jobs.executionsOf('cmp')).failed, 0, 'the retry succeeded');
});

test('the abort rule trips: ABORTED with its reason, the job canceled, queued executions CANCELED, no later stage', async () => {
  const r = rig(20, { rule: parseAbortRule('failed>20% after 5'), percents: [50, 100] });
  const stage1 = stageTargets(r.c(), 1);
  for (const id of stage1.slice(0, 4)) await r.report(id, 'SUCCEEDED');
  assert.deepEqual(r.engine.stepAll(), []);
  await r.report(stage1[4]!, 'FAILED');
  assert.deepEqual(r.engine.stepAll(), [], '1 of 5 is 20%, not above');
  await r.report(stage1[5]!, 'FAILED');
  await r.svc.startNext(stage1[6]!, {});
  const h = r.engine.stepAll();
  assert.equal(h.length, 1);
  assert.equal(h[0]!.action, 'aborted');
  assert.equal(h[0]!.devices, 4, 'one IN_PROGRESS and three QUEUED executions canceled');
  assert.match(h[0]!.reason!, /failed>20% after 5: 2 of 6 terminal/);
  const c = r.c();
  assert.equal(c.state, 'ABORTED');
  assert.match(c.reason!, /failed>20%/);
  assert.equal(r.jobs.job('cmp')!.status, 'CANCELED');
  assert.equal(r.jobs.execution('cmp', stage1[6]!)!.status, 'CANCELED');
  assert.equal(r.jobs.execution('cmp', stage1[9]!)!.status, 'CANCELED');
  for (const id of stageTargets(c, 2)) assert.equal(r.jobs.execution('cmp', id), null, 'stage 2 never queued');
  assert.deepEqual(r.engine.stepAll(), []);
});

test('pause holds the next stage (the rule still trips while paused), resume continues', async () => {
  const r = rig(10, { percents: [20, 100], rule: parseAbortRule('failed>=2') });
  const c = r.c();
  assert.ok(r.campaigns.update('cmp', c.version, { state: 'PAUSED', updatedAt: 1 }) !== null);
  for (const id of stageTargets(c, 1)) await r.report(id, 'SUCCEEDED');
  assert.deepEqual(r.engine.stepAll(), []);
  assert.equal(r.c().stage, 1);
  const paused = r.c();
  assert.ok(r.campaigns.update('cmp', paused.version, { state: 'RUNNING', updatedAt: 2 }) !== null);
  assert.equal(r.engine.stepAll()[0]?.action, 'stage');
  const c2 = r.c();
  r.campaigns.update('cmp', c2.version, { state: 'PAUSED', updatedAt: 3 });
  const s2 = stageTargets(c2, 2);
  await r.report(s2[0]!, 'FAILED');
  await r.report(s2[1]!, 'REJECTED');
  assert.equal(r.engine.stepAll()[0]?.action, 'aborted');
  assert.equal(r.c().state, 'ABORTED');
});

test('a pause written between the engine’s read and its claim wins: nothing is queued', async () => {
  const r = rig(10, { percents: [20, 100] });
  for (const id of stageTargets(r.c(), 1)) await r.report(id, 'SUCCEEDED');
  const stale = r.c();
  r.campaigns.update('cmp', stale.version, { state: 'PAUSED', updatedAt: 5 });
  assert.deepEqual(r.engine.step(stale), []);
  assert.equal(r.c().stage, 1);
  assert.equal(r.jobs.executionsOf('cmp').length, 2);
});

test('a job canceled elsewhere ends the campaign CANCELED; a missing job or stage is repaired; an ABORTED campaign’s job is canceled', async () => {
  const r = rig(10, { percents: [20, 100] });
  r.jobs.cancelJob('cmp', 9);
  assert.deepEqual(r.engine.stepAll().map((h) => h.action), ['canceled']);
  assert.equal(r.c().state, 'CANCELED');

  // A crash after the claim of stage 2 but before its executions: the next step adds them.
  const s = rig(10, { percents: [20, 100] });
  for (const id of stageTargets(s.c(), 1)) await s.report(id, 'SUCCEEDED');
  s.campaigns.update('cmp', s.c().version, { stage: 2, updatedAt: 6 });
  assert.deepEqual(s.engine.stepAll(), []);
  assert.equal(s.jobs.executionsOf('cmp').length, 10);

  // A crash before the job was created: the engine creates it with stage 1.
  const t = rig(10, { percents: [20, 100] });
  const k = n - 1;
  t.jobs.close();
  rmSync(join(dir, `j-${k}.db`));
  rmSync(join(dir, `j-${k}.db-wal`), { force: true });
  rmSync(join(dir, `j-${k}.db-shm`), { force: true });
  const jobs = SqliteJobStore.open(join(dir, `j-${k}.db`));
  const engine = new CampaignEngine({ campaigns: t.campaigns, jobs });
  engine.stepAll();
  assert.deepEqual(jobs.executionsOf('cmp').map((e) => e.identity).sort(), stageTargets(t.c(), 1).sort());

  // ABORTED recorded but the job still running (a crash between the two writes of an abort).
  const c = t.c();
  t.campaigns.update('cmp', c.version, { state: 'ABORTED', reason: 'operator', endedAt: 7, updatedAt: 7 });
  assert.equal(engine.repairAborted(), 1);
  assert.equal(jobs.job('cmp')!.status, 'CANCELED');
  assert.equal(engine.repairAborted(), 0);
});
