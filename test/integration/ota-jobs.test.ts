/**
 * Jobs over MQTT (issue 14): a real broker with the built-in PKI, devices with real
 * certificates (MQTT.js over mqtts), jobs made in `<dataDir>/ota-jobs.db` as the CLI makes
 * them (another process's writes, which the broker notices). notify-next on subscribe and
 * on a new job; start-next; update with expectedVersion; terminal states final; the step
 * timeout and a retry; cancel; the fence between devices; the state across a restart; and
 * `bastion ota job create|list|show|cancel` (real CLI processes) against the running broker.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { JOBS_DB_FILE, SqliteJobStore } from '../../src/ota/jobs/sqlite-job-store.js';
import { failedWithOneLine } from '../helpers/audit-files.js';
import { EventRecorder } from '../helpers/event-recorder.js';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { BASTION_MAIN, run, type ProcResult } from './support.js';

type Json = Record<string, unknown>;

/** Every message a client received, and waiting for the next one that matches. */
class Inbox {
  private readonly seen: { topic: string; body: Json }[] = [];
  private waiters: { match: (topic: string, body: Json) => boolean; resolve: (b: { topic: string; body: Json }) => void }[] = [];

  constructor(client: MqttClient) {
    client.on('message', (topic, payload) => {
      const m = { topic, body: JSON.parse(payload.toString('utf8')) as Json };
      const w = this.waiters.find((x) => x.match(m.topic, m.body));
      if (w !== undefined) {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(m);
      } else this.seen.push(m);
    });
  }

  next(match: (topic: string, body: Json) => boolean, what: string, timeoutMs = 5000): Promise<{ topic: string; body: Json }> {
    const i = this.seen.findIndex((m) => match(m.topic, m.body));
    if (i >= 0) return Promise.resolve(this.seen.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      this.waiters.push({ match, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  }
}

interface Device {
  id: string;
  client: MqttClient;
  inbox: Inbox;
}

const base = (id: string): string => `$bastion/jobs/${id}`;
type Execution = { jobId: string; status: string; versionNumber: number; executionNumber: number; jobDocument?: Json };

describe('jobs over MQTT', () => {
  let broker: ProvisioningBroker;
  const certs = new Map<string, { cert: string; key: string }>();

  async function issue(id: string): Promise<void> {
    certs.set(id, await broker.clientCert(id));
  }

  async function device(id: string, subscribe = true): Promise<Device> {
    const c = certs.get(id)!;
    const client = await broker.connect({ clientId: id, cert: c.cert, key: c.key });
    const inbox = new Inbox(client);
    if (subscribe) await client.subscribeAsync(`${base(id)}/#`, { qos: 1 });
    return { id, client, inbox };
  }

  async function request(d: Device, path: string, body: Json): Promise<{ ok: boolean; body: Json }> {
    const topic = `${base(d.id)}/${path}`;
    const clientToken = `t-${Math.random().toString(36).slice(2)}`;
    const answer = d.inbox.next((t, b) => (t === `${topic}/accepted` || t === `${topic}/rejected`) && b.clientToken === clientToken, `an answer on ${topic}`);
    await d.client.publishAsync(topic, JSON.stringify({ ...body, clientToken }), { qos: 1 });
    const m = await answer;
    return { ok: m.topic.endsWith('/accepted'), body: m.body };
  }

  const nextNotice = (d: Device, match: (b: Json) => boolean, what: string): Promise<Json> =>
    d.inbox.next((t, b) => t === `${base(d.id)}/notify-next` && match(b), `notify-next ${what}`).then((m) => m.body);

  function withStore<T>(fn: (s: SqliteJobStore) => T): T {
    const s = SqliteJobStore.open(join(broker.dataDir, JOBS_DB_FILE));
    try {
      return fn(s);
    } finally {
      s.close();
    }
  }

  const createJob = (id: string, devices: string[], opts: { maxRetries?: number } = {}): void =>
    assert.equal(
      withStore((s) => s.createJob({ id, document: { releaseId: 'r-1', manifest: { sequence: 7 } }, maxRetries: opts.maxRetries ?? 0, defaultStepTimeoutMs: null, inProgressTimeoutMs: null, createdAt: Date.now() }, devices)),
      true,
    );

  before(async () => {
    broker = await startProvisioningBroker();
    await issue('dev-a');
    await issue('dev-b');
  });
  after(async () => {
    await broker.stop();
  });

  test('notify-next, start-next, update with expectedVersion, terminal states, retry after a step timeout, cancel, the fence, a restart', async () => {
    const events = new EventRecorder(broker.server.broker.events);
    const a = await device('dev-a', false);
    const empty = nextNotice(a, (b) => b.execution === undefined, 'empty on subscribe');
    await a.client.subscribeAsync(`${base('dev-a')}/#`, { qos: 1 });
    assert.equal((await empty).execution, undefined);

    // A job made by another process (the CLI's way): the broker notices and pushes it.
    const queued = nextNotice(a, (b) => (b.execution as Execution | undefined)?.jobId === 'job-1', 'job-1 queued');
    createJob('job-1', ['dev-a', 'dev-b']);
    const q = (await queued).execution as Execution;
    assert.equal(q.status, 'QUEUED');
    assert.deepEqual(q.jobDocument, { releaseId: 'r-1', manifest: { sequence: 7 } });

    const got = await request(a, 'get', {});
    assert.equal(got.ok, true);
    assert.equal((got.body.queuedJobs as Execution[]).length, 1);
    assert.equal((got.body.inProgressJobs as Execution[]).length, 0);

    const started = await request(a, 'start-next', { statusDetails: { step: 'download' } });
    assert.equal(started.ok, true);
    const ex = started.body.execution as Execution & { statusDetails: Json };
    assert.equal(ex.jobId, 'job-1');
    assert.equal(ex.status, 'IN_PROGRESS');
    assert.deepEqual(ex.statusDetails, { step: 'download' });
    assert.deepEqual(ex.jobDocument, { releaseId: 'r-1', manifest: { sequence: 7 } });

    // Optimistic concurrency: a stale version is refused with the current state.
    const stale = await request(a, 'job-1/update', { status: 'SUCCEEDED', expectedVersion: ex.versionNumber - 1 });
    assert.equal(stale.ok, false);
    assert.equal(stale.body.errorCode, 'VersionMismatch');
    assert.equal((stale.body.executionState as Execution).status, 'IN_PROGRESS');
    assert.equal((stale.body.executionState as Execution).versionNumber, ex.versionNumber);
    assert.ok(typeof stale.body.clientToken === 'string');

    const emptied = nextNotice(a, (b) => b.execution === undefined, 'empty after success');
    const done = await request(a, 'job-1/update', { status: 'SUCCEEDED', expectedVersion: ex.versionNumber, statusDetails: { installed: '7' } });
    assert.equal(done.ok, true, JSON.stringify(done.body));
    assert.equal((done.body.executionState as Execution).status, 'SUCCEEDED');
    await emptied;
    const again = await request(a, 'job-1/update', { status: 'IN_PROGRESS' });
    assert.equal(again.body.errorCode, 'InvalidStateTransition');
    assert.equal((again.body.executionState as Execution).status, 'SUCCEEDED');

    // Malformed requests are refused with their code.
    const bad = await request(a, 'job-1/update', { status: 'DONE' });
    assert.equal(bad.body.errorCode, 'InvalidRequest');
    const missing = await request(a, 'nope/get', {});
    assert.equal(missing.body.errorCode, 'NotFound');
    const notJson = a.inbox.next((t) => t === `${base('dev-a')}/get/rejected`, 'InvalidJson');
    await a.client.publishAsync(`${base('dev-a')}/get`, '{not json', { qos: 1 });
    assert.equal((await notJson).body.errorCode, 'InvalidJson');

    // A step timeout: TIMED_OUT, and (one retry allowed) execution 2 queued, pushed.
    const job2 = nextNotice(a, (b) => (b.execution as Execution | undefined)?.jobId === 'job-2', 'job-2 queued');
    createJob('job-2', ['dev-a'], { maxRetries: 1 });
    await job2;
    const s2 = await request(a, 'start-next', { stepTimeoutInMinutes: 1 / 60 });
    assert.equal((s2.body.execution as Execution).status, 'IN_PROGRESS');
    const retry = await nextNotice(a, (b) => (b.execution as Execution | undefined)?.executionNumber === 2, 'the retry of job-2');
    assert.equal((retry.execution as Execution).status, 'QUEUED');
    // Audited: the device's moves and the service's timeout (with its retry).
    await events.waitFor('job', (e) => e.jobId === 'job-1' && e.action === 'SUCCEEDED' && e.actor === 'device' && e.identity === 'dev-a');
    await events.waitFor('job', (e) => e.jobId === 'job-2' && e.action === 'TIMED_OUT' && e.actor === 'service' && e.retried);
    events.stop();
    withStore((s) => {
      assert.equal(s.execution('job-2', 'dev-a', 1)?.status, 'TIMED_OUT');
      assert.equal(s.execution('job-2', 'dev-a', 2)?.retryCount, 1);
    });
    const first = await request(a, 'job-2/get', { executionNumber: 1 });
    assert.equal((first.body.execution as Execution).status, 'TIMED_OUT');

    // Cancel (as `bastion ota job cancel` does): the queued retry goes, notify-next empties.
    const canceled = nextNotice(a, (b) => b.execution === undefined, 'empty after cancel');
    assert.deepEqual(withStore((s) => s.cancelJob('job-2', Date.now())), ['dev-a']);
    await canceled;
    assert.equal(withStore((s) => s.execution('job-2', 'dev-a', 2)?.status), 'CANCELED');

    // The fence: dev-b can neither follow nor ask about dev-a's jobs.
    const b = await device('dev-b', false);
    const refusedSub = (err: Error & { packet?: { granted?: number[] } }): boolean => err.packet?.granted?.[0] === 0x87;
    await assert.rejects(b.client.subscribeAsync(`${base('dev-a')}/#`, { qos: 1 }), refusedSub);
    await assert.rejects(b.client.subscribeAsync('$bastion/jobs/+/notify-next', { qos: 1 }), refusedSub);
    await assert.rejects(b.client.publishAsync(`${base('dev-a')}/job-1/update`, JSON.stringify({ status: 'FAILED' }), { qos: 1 }), (err: Error & { code?: number }) => err.code === 0x87);
    assert.equal(withStore((s) => s.execution('job-1', 'dev-a')?.status), 'SUCCEEDED');
    await b.client.subscribeAsync(`${base('dev-b')}/#`, { qos: 1 });
    const bGet = await request({ id: 'dev-b', client: b.client, inbox: b.inbox }, 'get', {});
    assert.equal((bGet.body.queuedJobs as Execution[])[0]?.jobId, 'job-1');

    a.client.end(true);
    b.client.end(true);

    // A restart keeps every state.
    broker = await broker.restart();
    const b2 = await device('dev-b');
    const after = await request(b2, 'job-1/get', {});
    assert.equal((after.body.execution as Execution).status, 'QUEUED');
    const a2 = await device('dev-a');
    const aAfter = await request(a2, 'job-1/get', { includeJobDocument: false });
    assert.equal((aAfter.body.execution as Execution).status, 'SUCCEEDED');
    assert.equal((aAfter.body.execution as Execution).jobDocument, undefined);
    b2.client.end(true);
    a2.client.end(true);
  });

  test('bastion ota job create|list|show|cancel: a running broker notifies the device; an unknown release is refused', async () => {
    const ota = (...args: string[]): Promise<ProcResult> => run(process.execPath, [BASTION_MAIN, 'ota', ...args, '--data-dir', broker.dataDir]);
    const ok = (r: ProcResult): ProcResult => (assert.equal(r.code, 0, `exit ${String(r.code)}; stdout: ${r.stdout} stderr: ${r.stderr}`), r);
    const image = join(broker.dir, 'fw.bin');
    writeFileSync(image, Buffer.alloc(4096, 7));
    ok(await ota('key', 'init'));
    ok(await ota('sign', image, '--class', 'thermo', '--vendor', 'acme', '--fw-version', '2.0.0', '--out', join(broker.dir, 'fw.manifest.json')));
    ok(await ota('release', 'create', image, '--manifest', join(broker.dir, 'fw.manifest.json')));
    const release = (JSON.parse(ok(await ota('release', 'list', '--json')).stdout.trim().split('\n')[0]!) as { id: string }).id;

    assert.match(failedWithOneLine(await ota('job', 'create', '--release', 'nope', '--clients', 'dev-a')), /unknown release "nope"/);
    assert.match(failedWithOneLine(await ota('job', 'create', '--release', release, '--clients', 'dev-a/x')), /cannot be a device identity/);
    assert.match(failedWithOneLine(await ota('job', 'create', '--release', release, '--clients', 'dev-a', '--retries', '11')), /--retries/);

    const a = await device('dev-a');
    await nextNotice(a, () => true, 'on subscribe');
    const pushed = nextNotice(a, (b) => (b.execution as Execution | undefined)?.jobDocument?.releaseId === release, 'the CLI-made job');
    const created = ok(await ota('job', 'create', '--release', release, '--clients', 'dev-a,dev-b', '--step-timeout', '10m', '--retries', '2'));
    const jobId = /job (job-[0-9a-f]+)/.exec(created.stdout)![1]!;
    const doc = ((await pushed).execution as Execution).jobDocument!;
    assert.equal(doc.classId, 'thermo');
    assert.equal(typeof doc.manifest, 'object');

    const listed = ok(await ota('job', 'list', '--json')).stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; maxRetries: number; defaultStepTimeoutMs: number; executions: unknown[] });
    const mine = listed.find((j) => j.id === jobId)!;
    assert.equal(mine.maxRetries, 2);
    assert.equal(mine.defaultStepTimeoutMs, 600_000);
    assert.equal(mine.executions.length, 2);
    assert.match(ok(await ota('job', 'show', jobId)).stdout, /dev-b\s+1\s+QUEUED/);

    // start-next takes the job's step timer when the device names none.
    const started = await request(a, 'start-next', {});
    assert.equal((started.body.execution as Execution).jobId, jobId);
    const stepAt = withStore((s) => s.execution(jobId, 'dev-a')!.stepTimeoutAt!);
    assert.ok(stepAt > Date.now() + 500_000 && stepAt <= Date.now() + 600_000);

    const emptied = nextNotice(a, (b) => b.execution === undefined, 'empty after the CLI cancel');
    assert.match(ok(await ota('job', 'cancel', jobId)).stdout, /2 pending execution/);
    await emptied;
    assert.match(ok(await ota('job', 'show', jobId)).stdout, /CANCELED/);
    assert.match(failedWithOneLine(await ota('job', 'cancel', 'job-none')), /no job job-none/);
    a.client.end(true);
  });
});
