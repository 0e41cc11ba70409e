/**
 * The joins that keep OTA's rows one state in a cluster (issue 14 item 6): jobs
 * (CANCELED wins, earliest cancel), executions (higher version, then terminal, then the
 * earlier decision), campaigns (ended wins, then version); each join commutative,
 * associative and idempotent; entries from another node validated strictly; the raw row
 * API of both SQLite stores round-trips a row; release entries are checked against their
 * own manifest and added to an index once, a clash refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeJobRow,
  executionKey,
  joinJobRows,
  jobKey,
  jobRowText,
  keyOfJobRow,
  patchedExecution,
  retryExecution,
  type ExecutionRowData,
  type JobRowData,
  type JobStoreRow,
} from '../../src/ota/jobs/job-rows.js';
import { campaignKey, campaignRowText, decodeCampaignRow, joinCampaignRows, type CampaignRowData } from '../../src/ota/campaigns/campaign-rows.js';
import { SqliteJobStore } from '../../src/ota/jobs/sqlite-job-store.js';
import { SqliteCampaignStore } from '../../src/ota/campaigns/sqlite-campaign-store.js';
import { addReleases, checkRelease, decodeRelease, releaseKey, releaseText } from '../../src/ota/release-rows.js';
import { readReleaseIndex, type ReleaseRecord } from '../../src/ota/releases.js';
import { createHash } from 'node:crypto';

const job = (over: Partial<JobRowData> = {}): JobStoreRow => ({
  table: 'jobs',
  row: { id: 'j1', document: '{"releaseId":"r1"}', status: 'IN_PROGRESS', max_retries: 2, step_timeout_ms: null, in_progress_timeout_ms: 60000, created_at: 100, canceled_at: null, ...over },
});
const exec = (over: Partial<ExecutionRowData> = {}): JobStoreRow => ({
  table: 'executions',
  row: {
    job_id: 'j1',
    identity: 'dev/1 ü',
    execution_number: 1,
    status: 'QUEUED',
    version: 1,
    status_details: '{}',
    queued_at: 100,
    started_at: null,
    last_updated_at: 100,
    step_timeout_at: null,
    in_progress_timeout_at: null,
    retry_count: 0,
    ...over,
  },
});
const text = jobRowText;

function assertJoin<T>(join2: (a: T, b: T) => T, show: (r: T) => string, rows: T[]): void {
  for (const a of rows) {
    assert.equal(show(join2(a, a)), show(a), 'idempotent');
    for (const b of rows) {
      assert.equal(show(join2(a, b)), show(join2(b, a)), 'commutative');
      for (const c of rows) assert.equal(show(join2(join2(a, b), c)), show(join2(a, join2(b, c))), 'associative');
    }
  }
}

test('job join: CANCELED wins with the earliest cancel; the earlier creation gives the fixed fields', () => {
  const running = job();
  const canceledLate = job({ status: 'CANCELED', canceled_at: 900 });
  const canceledEarly = job({ status: 'CANCELED', canceled_at: 500 });
  const otherNode = job({ created_at: 90, document: '{"releaseId":"r1","n":2}' });
  const joined = joinJobRows(running, canceledLate);
  assert.equal(joined.table === 'jobs' && joined.row.status, 'CANCELED');
  const both = joinJobRows(joinJobRows(canceledLate, canceledEarly), otherNode);
  assert.deepEqual(both.table === 'jobs' && [both.row.canceled_at, both.row.created_at, both.row.document], [500, 90, '{"releaseId":"r1","n":2}']);
  // Two engines creating one campaign's job in the same millisecond: one document wins everywhere.
  const sameTime = job({ document: '{"releaseId":"r0"}' });
  const sameTimeCanceled = job({ document: '{"releaseId":"r0"}', status: 'CANCELED', canceled_at: 700 });
  assertJoin(joinJobRows, text, [running, canceledLate, canceledEarly, otherNode, sameTime, sameTimeCanceled]);
});

test('execution join: higher version, then terminal over not, then the earlier decision; two sweeps and two retries converge', () => {
  const queued = exec();
  const started = exec({ status: 'IN_PROGRESS', version: 2, started_at: 200, last_updated_at: 200 });
  const succeeded = exec({ status: 'SUCCEEDED', version: 3, last_updated_at: 300 });
  const canceledSameVersion = exec({ status: 'CANCELED', version: 2, last_updated_at: 250 });
  // Two nodes time out the same execution at versions equal but for their clocks.
  const timedOutA = exec({ status: 'TIMED_OUT', version: 3, last_updated_at: 301 });
  const timedOutB = exec({ status: 'TIMED_OUT', version: 3, last_updated_at: 305 });
  const j = (a: JobStoreRow, b: JobStoreRow): string => text(joinJobRows(a, b));
  assert.equal(j(queued, started), text(started), 'the higher version');
  assert.equal(j(started, canceledSameVersion), text(canceledSameVersion), 'terminal wins at one version');
  assert.equal(j(timedOutB, timedOutA), text(timedOutA), 'the earlier decision');
  assert.equal(j(succeeded, timedOutA), text(succeeded), 'the earlier decision, also between two terminal states');
  const retryA = { table: 'executions', row: retryExecution(timedOutA.row as ExecutionRowData, 301) } as JobStoreRow;
  const retryB = { table: 'executions', row: retryExecution(timedOutB.row as ExecutionRowData, 305) } as JobStoreRow;
  assert.equal(keyOfJobRow(retryA), keyOfJobRow(retryB), 'the same retry number is one entry');
  assert.equal(j(retryB, retryA), text(retryA));
  assertJoin(joinJobRows, text, [queued, started, succeeded, canceledSameVersion, timedOutA, timedOutB]);
  assert.throws(() => joinJobRows(queued, exec({ execution_number: 2 })), /two different rows/);
});

test('patchedExecution is what the SQLite store does: version +1, the patch, nothing else', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ota-rows-'));
  try {
    const store = SqliteJobStore.open(join(dir, 'ota-jobs.db'));
    store.createJob({ id: 'j1', document: { releaseId: 'r1' }, maxRetries: 1, defaultStepTimeoutMs: null, inProgressTimeoutMs: 60_000, createdAt: 100 }, ['dev/1 ü']);
    const e = store.execution('j1', 'dev/1 ü')!;
    const before = store.row(exec())!;
    const patch = { status: 'IN_PROGRESS' as const, startedAt: 200, inProgressTimeoutAt: 60_200, stepTimeoutAt: 10_200, statusDetails: { step: 'download' }, lastUpdatedAt: 200 };
    const mine = patchedExecution(before.row as ExecutionRowData, patch);
    store.apply(e, patch, true);
    assert.equal(text({ table: 'executions', row: mine }), text(store.row(exec())!));
    const retry = store.row(exec({ execution_number: 2 }))!;
    assert.equal(text(retry), text({ table: 'executions', row: retryExecution(mine, 200) }), 'the retry row too');
    // Raw rows round-trip through another file; an execution waits for its job.
    const other = SqliteJobStore.open(join(dir, 'other.db'));
    const rows = store.allRows();
    assert.equal(other.putRow(rows.find((r) => r.table === 'executions')!), false, 'no job yet');
    for (const r of rows) assert.equal(other.putRow(r), true);
    assert.deepEqual(other.allRows().map(text), rows.map(text));
    assert.equal(other.execution('j1', 'dev/1 ü', 2)!.retryCount, 1);
    other.close();
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('entries from another node are validated: the key matches the row, fields are typed and bounded', () => {
  const enc = (r: unknown): Uint8Array => Buffer.from(JSON.stringify(r));
  const e = exec();
  const key = executionKey('j1', 'dev/1 ü', 1);
  assert.equal(keyOfJobRow(e), key);
  assert.equal(text(decodeJobRow(key, Buffer.from(text(e))) as JobStoreRow), text(e));
  assert.match((decodeJobRow(executionKey('j1', 'dev/2', 1), Buffer.from(text(e))) as { why: string }).why, /another row/);
  assert.ok('why' in decodeJobRow(key, enc({ ...e.row, status: 'DONE' })));
  assert.ok('why' in decodeJobRow(key, enc({ ...e.row, extra: 1 })), 'no unknown fields');
  assert.ok('why' in decodeJobRow(key, enc({ ...e.row, status_details: '[1]' })), 'details are an object');
  assert.ok('why' in decodeJobRow(jobKey('j1'), enc({ ...job().row, status: 'CANCELED' })), 'a cancel has its time');
  assert.ok('why' in decodeJobRow(jobKey('j 1'), enc({ ...job().row, id: 'j 1' })), 'a job id is the CLI’s');
  assert.ok('why' in decodeJobRow(jobKey('j1'), Buffer.from('{')), 'not JSON');
  assert.ok('why' in decodeJobRow('otaj.x.j1', enc(job().row)));
});

const campaign = (over: Partial<CampaignRowData> = {}): CampaignRowData => ({
  id: 'c1',
  release_id: 'r1',
  job_id: 'c1-job',
  job_document: '{"releaseId":"r1"}',
  target: 'clients:a,b',
  stage_percents: '[50,100]',
  stage_counts: '[1,2]',
  abort_rule: null,
  timeout_ms: null,
  max_retries: 0,
  state: 'RUNNING',
  stage: 1,
  targets: '["a","b"]',
  created_at: 100,
  updated_at: 100,
  ended_at: null,
  reason: null,
  version: 1,
  ...over,
});

test('campaign join: an end wins, then the higher version, then the earlier change; two engines advancing one stage converge', () => {
  const v1 = campaign();
  const advancedA = campaign({ stage: 2, version: 2, updated_at: 200 });
  const advancedB = campaign({ stage: 2, version: 2, updated_at: 210 });
  const pausedLater = campaign({ state: 'PAUSED', version: 3, updated_at: 300 });
  const aborted = campaign({ state: 'ABORTED', version: 2, updated_at: 220, ended_at: 220, reason: 'operator' });
  assert.equal(campaignRowText(joinCampaignRows(advancedB, advancedA)), campaignRowText(advancedA));
  assert.equal(joinCampaignRows(pausedLater, aborted).state, 'ABORTED', 'an end wins over a later version');
  assert.equal(joinCampaignRows(v1, pausedLater).state, 'PAUSED');
  assertJoin(joinCampaignRows, campaignRowText, [v1, advancedA, advancedB, pausedLater, aborted]);
  const key = campaignKey('c1');
  assert.equal(campaignRowText(decodeCampaignRow(key, Buffer.from(campaignRowText(v1))) as CampaignRowData), campaignRowText(v1));
  assert.ok('why' in decodeCampaignRow(campaignKey('c2'), Buffer.from(campaignRowText(v1))));
  assert.ok('why' in decodeCampaignRow(key, Buffer.from(JSON.stringify({ ...v1, state: 'DONE' }))));
  assert.ok('why' in decodeCampaignRow(key, Buffer.from(JSON.stringify({ ...v1, targets: '{}' }))));
  const dir = mkdtempSync(join(tmpdir(), 'ota-rows-'));
  try {
    const store = SqliteCampaignStore.open(join(dir, 'ota-campaigns.db'));
    store.putRow(v1);
    store.putRow(advancedA);
    assert.equal(campaignRowText(store.row('c1')!), campaignRowText(advancedA));
    assert.equal(store.get('c1')!.stage, 2);
    assert.equal(store.allRows().length, 1);
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('release entries: checked against their own manifest; added once, a clash refused and this node’s kept', async () => {
  const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
  const make = (classId: string, sequence: number, fill: number): ReleaseRecord => {
    const digest = sha(Buffer.alloc(100, fill));
    const manifest = { manifestVersion: 1, sequence, vendorId: 'acme', classId, version: `1.0.${sequence}`, imageDigest: digest, imageSize: 100, uri: `bastion-image:sha256:${digest}` };
    const bytes = Buffer.from(JSON.stringify(manifest));
    return {
      id: sha(bytes).slice(0, 16),
      vendorId: 'acme',
      classId,
      version: manifest.version,
      sequence,
      imageDigest: digest,
      imageSize: 100,
      uri: manifest.uri,
      keyId: 'k1',
      keySetVersion: 1,
      notAfter: '2030-01-01T00:00:00.000Z',
      createdAt: '2026-01-01T00:00:00.000Z',
      manifest: { manifest: bytes.toString('base64'), keyId: 'k1', signature: { classicAlg: 'ECDSA P-256', classic: 'AA' } },
    };
  };
  const r1 = make('thermo', 1, 1);
  const enc = (r: unknown): Uint8Array => Buffer.from(JSON.stringify(r));
  assert.equal(releaseText(decodeRelease(releaseKey(r1.id), enc(r1)) as ReleaseRecord), releaseText(r1));
  // Key order in the signature does not change the canonical text.
  assert.equal(releaseText({ ...r1, manifest: { ...r1.manifest, signature: { classic: 'AA', classicAlg: 'ECDSA P-256' } } }), releaseText(r1));
  const why = (raw: unknown): string => (checkRelease(raw) as { why: string }).why;
  assert.match(why({ ...r1, imageSize: 101 }), /imageSize is not the manifest's/);
  assert.match(why({ ...r1, imageDigest: 'a'.repeat(64) }), /imageDigest is not the manifest's/);
  assert.match(why({ ...r1, id: '0'.repeat(16) }), /not the digest of its manifest/);
  assert.match(why({ ...r1, keyId: 'k2' }), /keyId/);
  assert.ok('why' in checkRelease({ ...r1, extra: true }));
  assert.match((decodeRelease(releaseKey('0'.repeat(16)), enc(r1)) as { why: string }).why, /another release's key/);

  const dir = mkdtempSync(join(tmpdir(), 'ota-releases-'));
  try {
    const first = await addReleases(dir, [r1]);
    assert.deepEqual([first.added.length, first.refused.length], [1, 0]);
    const again = await addReleases(dir, [r1]);
    assert.deepEqual([again.added.length, again.refused.length], [0, 0], 'the same release twice is one');
    const clash = make('thermo', 1, 2);
    const refused = await addReleases(dir, [clash, make('thermo', 2, 3)]);
    assert.equal(refused.added.length, 1);
    assert.match(refused.refused[0]!.why, /class thermo has release .* at sequence 1/);
    const index = await readReleaseIndex(dir);
    assert.deepEqual(index.releases.map((r) => r.sequence), [1, 2]);
    assert.equal(index.lastSequence.thermo, 2);
    assert.equal(index.releases[0]!.id, r1.id, 'this node keeps its own');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('changedRows: the rows whose own time is at or after `since` (the replica’s incremental look)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ota-rows-'));
  try {
    const store = SqliteJobStore.open(join(dir, 'ota-jobs.db'));
    store.createJob({ id: 'old', document: {}, maxRetries: 0, defaultStepTimeoutMs: null, inProgressTimeoutMs: null, createdAt: 1000 }, ['d1', 'd2']);
    store.createJob({ id: 'new', document: {}, maxRetries: 0, defaultStepTimeoutMs: null, inProgressTimeoutMs: null, createdAt: 5000 }, ['d1']);
    store.apply(store.execution('old', 'd2')!, { status: 'IN_PROGRESS', startedAt: 6000, lastUpdatedAt: 6000 }, false);
    const seen = (since: number): string[] => store.changedRows(since).map((r) => (r.table === 'jobs' ? `job ${r.row.id}` : `${r.row.job_id}/${r.row.identity}`)).sort();
    assert.deepEqual(seen(4000), ['job new', 'new/d1', 'old/d2']);
    store.cancelJob('old', 7000);
    assert.deepEqual(seen(7000), ['job old', 'old/d1', 'old/d2'], 'a cancel stamps the job and its executions');
    assert.equal(seen(0).length, store.allRows().length);
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
