/**
 * The jobs store of a cluster node (issue 14 item 6) against a real nats-server and the
 * real shared state bucket: an execution's change is a compare-and-set in the cluster, so
 * of two changes made at one version exactly one wins; a change never lands on a state
 * the service did not decide on (a cancel merged in at the same version stays); the
 * winner's retry is one row in the bucket and in the file; a CLI write to the file is
 * published by the poll.
 *
 * Waits are polled conditions with a timeout; never a fixed delay.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kvm, type KV } from '@nats-io/kv';
import { connectNats, type ClusterNatsConnection } from '../../src/cluster/nats-connection.js';
import { SharedState } from '../../src/cluster/shared-state.js';
import { silentLogger } from '../../src/core/logger.js';
import { executionKey, jobKey } from '../../src/ota/jobs/job-rows.js';
import type { ExecutionRecord } from '../../src/ota/jobs/ports.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../../src/ota/jobs/sqlite-job-store.js';
import { ClusterJobStore, OtaCluster } from '../../src/server/cluster-ota.js';
import { parseConfig } from '../../src/server/load-config.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { until } from './support.js';

let dir: string;
let nats: SingleNats;
let conn: ClusterNatsConnection;
let state: SharedState;
let cluster: OtaCluster;
let local: SqliteJobStore;
let store: ClusterJobStore;
let kv: KV;

async function entry(key: string): Promise<Record<string, unknown> | null> {
  const e = await kv.get(key);
  return e === null || e.operation !== 'PUT' ? null : (JSON.parse(Buffer.from(e.value).toString('utf8')) as Record<string, unknown>);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-ota-store-'));
  nats = await startNatsServer();
  const listeners = [{ name: 'plain', protocol: 'mqtt', port: 0, insecure: true, allowAnonymous: true }];
  const config = parseConfig({ listeners, cluster: { nats: { servers: [nats.url] }, nodeId: 'store-1' } }, dir).config.cluster!;
  conn = await connectNats({ cluster: config, nodeId: 'store-1', baseDir: dir });
  state = await SharedState.open({ conn, replicas: 1, logger: silentLogger });
  cluster = OtaCluster.open(dir, conn, 1, silentLogger);
  cluster.register(state);
  await state.start();
  cluster.attach();
  local = SqliteJobStore.open(join(dir, JOBS_DB_FILE));
  store = new ClusterJobStore(local, () => cluster.jobs);
  kv = await new Kvm(conn.nc).open('bmq_state');
});

after(async () => {
  cluster?.stop();
  state?.stop();
  local?.close();
  await conn?.close();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A job written to the file as the CLI writes it, once the poll has published its execution. */
async function job(id: string, identity: string, maxRetries = 0): Promise<ExecutionRecord> {
  assert.ok(local.createJob({ id, document: { releaseId: 'r1' }, maxRetries, defaultStepTimeoutMs: null, inProgressTimeoutMs: null, createdAt: Date.now() }, [identity]));
  await until(async () => (await entry(jobKey(id))) !== null && (await entry(executionKey(id, identity, 1))) !== null, 5000, `the poll to publish ${id}`);
  return local.execution(id, identity)!;
}

test('of two changes made at one version, exactly one wins in the cluster', async () => {
  const e = await job('race', 'd1');
  const now = Date.now();
  const outcomes = await Promise.all([
    store.apply(e, { status: 'IN_PROGRESS', startedAt: now, lastUpdatedAt: now }, false),
    store.apply(e, { status: 'REJECTED', lastUpdatedAt: now + 1 }, false),
  ]);
  const won = outcomes.filter((o) => o !== null);
  assert.equal(won.length, 1, JSON.stringify(outcomes));
  const inBucket = await entry(executionKey('race', 'd1', 1));
  assert.deepEqual([inBucket!.version, inBucket!.status], [2, won[0]!.status]);
  assert.equal(local.execution('race', 'd1')!.status, won[0]!.status, 'the file has the winner');
});

test('a change never lands on a state the service did not decide on: a cancel merged in at the same version stays', async () => {
  const e = await job('guard', 'd2');
  const now = Date.now();
  const started = await store.apply(e, { status: 'IN_PROGRESS', startedAt: now, lastUpdatedAt: now }, false);
  assert.equal(started!.versionNumber, 2);
  // Another node's cancel at version 2, merged into the bucket (as its publication would).
  const key = executionKey('guard', 'd2', 1);
  const canceled = { ...(await entry(key))!, status: 'CANCELED', last_updated_at: now + 5 };
  await kv.put(key, JSON.stringify(canceled));
  // The device reports on the state it saw (version 2, IN_PROGRESS): refused, whatever the file shows yet.
  assert.equal(await store.apply(started!, { status: 'SUCCEEDED', lastUpdatedAt: now + 10 }, false), null);
  assert.equal((await entry(key))!.status, 'CANCELED');
  await until(() => local.execution('guard', 'd2')!.status === 'CANCELED', 5000, 'the file to show the cancel');
});

test("the winner's retry is one row, in the bucket and in the file", async () => {
  const e = await job('retry', 'd3', 2);
  const now = Date.now();
  const started = (await store.apply(e, { status: 'IN_PROGRESS', startedAt: now, lastUpdatedAt: now }, false))!;
  const failed = await store.apply(started, { status: 'FAILED', lastUpdatedAt: now + 1 }, true);
  assert.equal(failed!.status, 'FAILED');
  // The retry is published right after the winning write.
  await until(async () => (await entry(executionKey('retry', 'd3', 2))) !== null, 5000, 'the retry in the bucket');
  const retry = await entry(executionKey('retry', 'd3', 2));
  assert.deepEqual([retry!.status, retry!.version, retry!.retry_count, retry!.queued_at], ['QUEUED', 1, 1, now + 1]);
  assert.equal(local.execution('retry', 'd3')!.executionNumber, 2);
  // A second change at the old version loses and queues nothing.
  assert.equal(await store.apply(started, { status: 'FAILED', lastUpdatedAt: now + 2 }, true), null);
  assert.equal(await entry(executionKey('retry', 'd3', 3)), null);
});
