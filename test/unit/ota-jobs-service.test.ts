/**
 * The jobs rules on the real SQLite store with a test clock: who may move what, the step
 * timer bounded by the in-progress timer, retries up to the job's maximum (REJECTED never
 * retried), cancel, and the version check between two writers.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canTransition } from '../../src/ota/jobs/ports.js';
import { JobRefusal, JobsService } from '../../src/ota/jobs/jobs-service.js';
import { SqliteJobStore } from '../../src/ota/jobs/sqlite-job-store.js';
import { jobRequestOf, jobsIdentityOf } from '../../src/ota/jobs/topics.js';

const dir = mkdtempSync(join(tmpdir(), 'bastion-jobs-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function setUp(job: { maxRetries?: number; step?: number | null; inProgress?: number | null } = {}): { store: SqliteJobStore; svc: JobsService; clock: { t: number } } {
  const store = SqliteJobStore.open(join(dir, `jobs-${n++}.db`));
  const clock = { t: 1_000_000 };
  const svc = new JobsService({ store, now: () => clock.t });
  store.createJob({ id: 'j1', document: { releaseId: 'r' }, maxRetries: job.maxRetries ?? 0, defaultStepTimeoutMs: job.step ?? null, inProgressTimeoutMs: job.inProgress ?? null, createdAt: clock.t }, ['d1', 'd2']);
  return { store, svc, clock };
}

const refusedWith = (code: string) => (err: unknown): boolean => err instanceof JobRefusal && err.errorCode === code;

test('transitions: the device moves forward, the service times out and cancels, terminal is final', async () => {
  assert.equal(canTransition('device', 'QUEUED', 'IN_PROGRESS'), true);
  assert.equal(canTransition('device', 'QUEUED', 'SUCCEEDED'), false);
  assert.equal(canTransition('device', 'IN_PROGRESS', 'TIMED_OUT'), false);
  assert.equal(canTransition('device', 'IN_PROGRESS', 'CANCELED'), false);
  assert.equal(canTransition('service', 'QUEUED', 'TIMED_OUT'), false);
  assert.equal(canTransition('service', 'IN_PROGRESS', 'TIMED_OUT'), true);
  assert.equal(canTransition('service', 'QUEUED', 'CANCELED'), true);
  for (const end of ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'CANCELED'] as const) {
    assert.equal(canTransition('device', end, 'IN_PROGRESS'), false);
    assert.equal(canTransition('service', end, 'CANCELED'), false);
  }
});

test('topics: requests parse; wildcards and extra levels are not requests', async () => {
  assert.deepEqual(jobRequestOf('$bastion/jobs/d1/get'), { kind: 'get', identity: 'd1' });
  assert.deepEqual(jobRequestOf('$bastion/jobs/d1/$next/get'), { kind: 'describe', identity: 'd1', jobId: '$next' });
  assert.deepEqual(jobRequestOf('$bastion/jobs/d1/j-1/update'), { kind: 'update', identity: 'd1', jobId: 'j-1' });
  assert.equal(jobRequestOf('$bastion/jobs/d1/$next/update'), null);
  assert.equal(jobRequestOf('$bastion/jobs/d1/j1/update/accepted'), null);
  assert.equal(jobRequestOf('$bastion/jobs/d1/notify-next'), null);
  assert.equal(jobsIdentityOf('$bastion/jobs/+/notify-next'), null);
  assert.equal(jobsIdentityOf('$bastion/jobs/#'), null);
  assert.equal(jobsIdentityOf('$bastion/jobs/d1/#'), 'd1');
});

test('the step timer never passes the in-progress timer; both time out', async () => {
  const { store, svc, clock } = setUp({ inProgress: 60_000, step: 10_000 });
  const e = (await svc.startNext('d1', { stepTimeoutInMinutes: 5 }))!;
  assert.equal(e.status, 'IN_PROGRESS');
  assert.equal(store.execution('j1', 'd1')!.stepTimeoutAt, 1_060_000);
  // The job's default step timer when the device names none.
  await svc.startNext('d2', {});
  assert.equal(store.execution('j1', 'd2')!.stepTimeoutAt, 1_010_000);
  clock.t = 1_010_000;
  assert.equal(await svc.sweep(), 1);
  assert.equal(store.execution('j1', 'd2')!.status, 'TIMED_OUT');
  clock.t = 1_060_000;
  assert.equal(await svc.sweep(), 1);
  assert.equal(store.execution('j1', 'd1')!.status, 'TIMED_OUT');
  store.close();
});

test('retries: FAILED and TIMED_OUT up to the maximum, REJECTED never', async () => {
  const { store, svc } = setUp({ maxRetries: 1 });
  await svc.startNext('d1', {});
  await svc.update('d1', 'j1', { status: 'FAILED' });
  const retry = store.execution('j1', 'd1')!;
  assert.deepEqual([retry.executionNumber, retry.status, retry.retryCount], [2, 'QUEUED', 1]);
  await svc.startNext('d1', {});
  await svc.update('d1', 'j1', { status: 'FAILED' });
  assert.equal(store.execution('j1', 'd1')!.executionNumber, 2, 'no third try');
  await svc.update('d2', 'j1', { status: 'REJECTED' });
  assert.equal(store.execution('j1', 'd2')!.executionNumber, 1);
  assert.equal(svc.next('d2'), null);
  store.close();
});

test('versions: a stale expectedVersion and a writer that lost the race are refused', async () => {
  const { store, svc } = setUp();
  const e = (await svc.startNext('d1', {}))!;
  await assert.rejects(() => svc.update('d1', 'j1', { status: 'SUCCEEDED', expectedVersion: e.versionNumber + 1 }), refusedWith('VersionMismatch'));
  const before = store.execution('j1', 'd1')!;
  assert.notEqual(store.apply(before, { lastUpdatedAt: 1 }, false), null);
  assert.equal(store.apply(before, { status: 'SUCCEEDED', lastUpdatedAt: 2 }, false), null, 'the second writer on the same version loses');
  await assert.rejects(() => svc.update('d1', 'j1', { status: 'SUCCEEDED', statusDetails: { n: 1 } }), refusedWith('InvalidRequest'));
  await assert.rejects(() => svc.update('d1', 'nope', { status: 'SUCCEEDED' }), refusedWith('NotFound'));
  store.close();
});

test('cancel: pending executions become CANCELED, terminal ones stay', async () => {
  const { store, svc } = setUp({ maxRetries: 3 });
  await svc.startNext('d1', {});
  await svc.update('d1', 'j1', { status: 'SUCCEEDED' });
  assert.deepEqual(store.cancelJob('j1', 5), ['d2']);
  assert.equal(store.execution('j1', 'd1')!.status, 'SUCCEEDED');
  assert.equal(store.execution('j1', 'd2')!.status, 'CANCELED');
  await assert.rejects(() => svc.update('d2', 'j1', { status: 'IN_PROGRESS' }), refusedWith('InvalidStateTransition'));
  assert.equal(store.cancelJob('nope', 5), null);
  assert.equal(store.createJob({ id: 'j1', document: {}, maxRetries: 0, defaultStepTimeoutMs: null, inProgressTimeoutMs: null, createdAt: 1 }, ['d3']), false);
  store.close();
});
