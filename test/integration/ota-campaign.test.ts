/**
 * OTA campaigns (issue 14) against the real broker with the built-in PKI: simulated devices
 * with real certificates (MQTT.js over mqtts) that follow notify-next with start-next and
 * an update, no download. (a) 50 devices through 10%,50%,100% to COMPLETED, no device of a
 * stage hearing of the job before the previous stage is done; (b) an abort rule stops a
 * campaign whose devices fail: ABORTED, queued executions CANCELED, later stages never
 * reached; (c) pause holds the next stage, resume continues; (d) `bastion ota campaign …`
 * and `bastion ota status` as real processes, with their refusals and audit records.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import type { SecurityEvent } from '../../src/core/security-events.js';
import { parseRollout, rolloutOrder, stagePlan } from '../../src/ota/campaigns/plan.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../../src/ota/jobs/sqlite-job-store.js';
import { PkiService } from '../../src/server/pki-service.js';
import { ACL_STORE_FILE, SqliteAclStore } from '../../src/store/sqlite/acl-store.js';
import { failedWithOneLine } from '../helpers/audit-files.js';
import { EventRecorder } from '../helpers/event-recorder.js';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { BASTION_MAIN, run, type ProcResult } from './support.js';

type Json = Record<string, unknown>;
type Behaviour = 'SUCCEEDED' | 'FAILED' | 'hold';
const WAIT_MS = 20_000;

/** One order for everything the devices and the test observe. */
let seq = 0;

/** A device that takes every job it is notified of: start-next, then its behaviour as the update ('hold': waits for go()). */
class SimDevice {
  /** jobId → the order of the first notify-next naming it. */
  readonly firstNotice = new Map<string, number>();
  /** jobId → the order of the accepted final update. */
  readonly doneAt = new Map<string, number>();
  readonly notices: Json[] = [];
  private pendingQueued = false;
  private listeners: (() => void)[] = [];

  constructor(
    readonly id: string,
    readonly client: MqttClient,
    public behaviour: Behaviour,
  ) {
    const base = `$bastion/jobs/${id}`;
    client.on('message', (topic, payload) => {
      const body = JSON.parse(payload.toString('utf8')) as Json;
      const ex = body.execution as { jobId: string; status: string } | undefined;
      if (topic === `${base}/notify-next`) {
        this.notices.push(body);
        if (ex !== undefined && !this.firstNotice.has(ex.jobId)) this.firstNotice.set(ex.jobId, ++seq);
        this.pendingQueued = ex?.status === 'QUEUED';
        if (this.pendingQueued && this.behaviour !== 'hold') this.act();
      } else if (topic === `${base}/start-next/accepted` && ex !== undefined) {
        void client.publishAsync(`${base}/${ex.jobId}/update`, JSON.stringify({ status: this.behaviour, expectedVersion: (body.execution as { versionNumber: number }).versionNumber }), { qos: 1 });
      } else if (topic.endsWith('/update/accepted')) {
        this.doneAt.set(topic.slice(base.length + 1).split('/')[0]!, ++seq);
      }
      for (const l of this.listeners) l();
    });
  }

  private act(): void {
    this.pendingQueued = false;
    void this.client.publishAsync(`$bastion/jobs/${this.id}/start-next`, '{}', { qos: 1 });
  }

  /** A held device now finishes with `outcome`. */
  go(outcome: 'SUCCEEDED' | 'FAILED'): void {
    this.behaviour = outcome;
    if (this.pendingQueued) this.act();
  }

  until(pred: () => boolean, what: string): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.id}: timed out waiting for ${what}`)), WAIT_MS);
      const l = (): void => {
        if (!pred()) return;
        clearTimeout(timer);
        this.listeners = this.listeners.filter((x) => x !== l);
        resolve();
      };
      this.listeners.push(l);
    });
  }
}

interface CampaignJson {
  id: string;
  state: string;
  stage: number;
  targets: string[];
  stageCounts: number[];
  reason: string | null;
  progress: { stages: { devices: number; waiting: number; queued: number; succeeded: number; failed: number; canceled: number }[]; failed: number; terminal: number };
}

describe('ota campaigns', () => {
  let broker: ProvisioningBroker;
  let events: EventRecorder;
  let release = '';
  const certs = new Map<string, { cert: string; key: string }>();
  const devices: SimDevice[] = [];
  const ota = (...args: string[]): Promise<ProcResult> => run(process.execPath, [BASTION_MAIN, 'ota', ...args, '--data-dir', broker.dataDir]);
  const ok = (r: ProcResult): ProcResult => (assert.equal(r.code, 0, `exit ${String(r.code)}; stdout: ${r.stdout} stderr: ${r.stderr}`), r);
  const status = async (id: string): Promise<CampaignJson> => JSON.parse(ok(await ota('campaign', 'status', id, '--json')).stdout) as CampaignJson;
  const names = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`);
  const campaignEvent = (id: string, action: string, stage?: number): Promise<unknown> =>
    events.inbox.waitFor((all) => all.some((e: SecurityEvent) => e.type === 'campaign' && e.campaignId === id && e.action === action && (stage === undefined || e.stage === stage)), WAIT_MS, `campaign ${id} ${action}`);
  const stagesOf = (id: string, ids: string[], rollout: string): string[][] => {
    const order = rolloutOrder(ids, id);
    const { counts } = stagePlan(parseRollout(rollout), order.length);
    return counts.map((c, i) => order.slice(i === 0 ? 0 : counts[i - 1]!, c));
  };

  async function connect(ids: string[], behaviour: (id: string) => Behaviour): Promise<SimDevice[]> {
    return Promise.all(
      ids.map(async (id) => {
        const c = certs.get(id)!;
        const client = await broker.connect({ clientId: id, cert: c.cert, key: c.key });
        const d = new SimDevice(id, client, behaviour(id));
        await client.subscribeAsync(`$bastion/jobs/${id}/#`, { qos: 1 });
        devices.push(d);
        return d;
      }),
    );
  }

  before(async () => {
    broker = await startProvisioningBroker();
    events = new EventRecorder(broker.server.broker.events);
    const pki = await PkiService.open(broker.pkiDir);
    try {
      const issue = async (cn: string, ou: string): Promise<void> => {
        const f = await pki.issue({ profile: 'client', commonName: cn, organizationalUnit: ou, days: 2, fileStem: cn });
        certs.set(cn, { cert: readFileSync(f.certPath, 'utf8'), key: readFileSync(f.keyPath, 'utf8') });
      };
      for (const cn of names('fleet', 50)) await issue(cn, 'fleet');
      for (const cn of names('ab', 20)) await issue(cn, 'abort');
      for (const cn of names('pz', 10)) await issue(cn, 'pause');
      await issue('probe-0', 'probe');
      for (const cn of names('cli', 3)) await issue(cn, 'cli');
      const gone = await pki.issue({ profile: 'client', commonName: 'cli-revoked', organizationalUnit: 'cli', days: 2, fileStem: 'cli-revoked' });
      await pki.revoke(gone.serialNumber, undefined);
    } finally {
      pki.close();
    }
    const image = join(broker.dir, 'fw.bin');
    writeFileSync(image, Buffer.alloc(4096, 3));
    ok(await ota('key', 'init'));
    ok(await ota('sign', image, '--class', 'thermo', '--vendor', 'acme', '--fw-version', '3.0.0', '--out', join(broker.dir, 'fw.manifest.json')));
    ok(await ota('release', 'create', image, '--manifest', join(broker.dir, 'fw.manifest.json')));
    release = (JSON.parse(ok(await ota('release', 'list', '--json')).stdout.trim().split('\n')[0]!) as { id: string }).id;
  });
  after(async () => {
    events.stop();
    for (const d of devices) d.client.end(true);
    await broker.stop();
  });

  test('(a) 50 devices, 10%,50%,100%: each stage only after the previous one is done, then COMPLETED', async () => {
    const ids = names('fleet', 50);
    const fleet = await connect(ids, () => 'SUCCEEDED');
    const created = ok(await ota('campaign', 'create', '--release', release, '--target', 'cert.ou:fleet', '--rollout', '10%,50%,100%', '--abort', 'failed>5% after 20', '--timeout', '30m', '--id', 'cmp-fleet'));
    assert.match(created.stdout, /campaign cmp-fleet: .* to 50 device\(s\) of cert\.ou:fleet; stages 10%=5, 50%=25, 100%=50; stage 1 queued \(5 device\(s\)\)/);
    await campaignEvent('cmp-fleet', 'completed');
    const s = await status('cmp-fleet');
    assert.equal(s.state, 'COMPLETED');
    assert.deepEqual(s.stageCounts, [5, 25, 50]);
    assert.deepEqual(s.progress.stages.map((x) => [x.devices, x.succeeded]), [[5, 5], [20, 20], [25, 25]]);
    const stages = stagesOf('cmp-fleet', ids, '10%,50%,100%');
    assert.deepEqual(stages, [s.targets.slice(0, 5), s.targets.slice(5, 25), s.targets.slice(25)], 'the CLI fixed the order the plan gives');
    assert.notDeepEqual([...stages[0]!].sort(), ids.slice(0, 5), 'stage 1 is not the first devices alphabetically');
    const byId = new Map(fleet.map((d) => [d.id, d]));
    for (let k = 1; k < stages.length; k++) {
      const prevDone = Math.max(...stages[k - 1]!.map((id) => byId.get(id)!.doneAt.get('cmp-fleet')!));
      const firstHeard = Math.min(...stages[k]!.map((id) => byId.get(id)!.firstNotice.get('cmp-fleet')!));
      assert.ok(firstHeard > prevDone, `stage ${k + 1} heard of the job (${firstHeard}) only after stage ${k} was done (${prevDone})`);
    }
    const stageEvents = events.of('campaign', (e) => e.campaignId === 'cmp-fleet');
    assert.deepEqual(stageEvents.map((e) => [e.action, e.stage, e.devices]), [['stage', 2, 20], ['stage', 3, 25], ['completed', 3, 0]]);
    const store = SqliteJobStore.open(join(broker.dataDir, JOBS_DB_FILE));
    try {
      assert.equal(store.job('cmp-fleet')!.inProgressTimeoutMs, 1_800_000, '--timeout is the job’s in-progress timeout');
    } finally {
      store.close();
    }
  });

  test('(b) the abort rule stops a failing campaign: ABORTED, queued executions CANCELED, later stage never notified', async () => {
    const ids = names('ab', 20);
    const [stage1, stage2] = stagesOf('cmp-abort', ids, '50%,100%');
    // Stage 1 (10 devices): 3 fail, 3 succeed, 4 never start.
    const plan = new Map<string, Behaviour>(stage1!.map((id, i) => [id, i < 3 ? 'FAILED' : i < 6 ? 'SUCCEEDED' : 'hold']));
    const all = await connect(ids, (id) => plan.get(id) ?? 'SUCCEEDED');
    const held = all.filter((d) => plan.get(d.id) === 'hold');
    ok(await ota('campaign', 'create', '--release', release, '--target', 'cert.ou:abort', '--rollout', '50%,100%', '--abort', 'failed>20% after 5', '--id', 'cmp-abort'));
    await campaignEvent('cmp-abort', 'aborted');
    const s = await status('cmp-abort');
    assert.equal(s.state, 'ABORTED');
    assert.match(s.reason ?? '', /abort rule failed>20% after 5: \d of \d terminal device\(s\) failed/);
    assert.equal(s.stage, 1);
    // The held devices' QUEUED executions were canceled, and each was told it has nothing next.
    await Promise.all(held.map((d) => d.until(() => d.firstNotice.has('cmp-abort') && d.notices[d.notices.length - 1]!.execution === undefined, 'an empty notify-next after the job')));
    const store = SqliteJobStore.open(join(broker.dataDir, JOBS_DB_FILE));
    try {
      assert.equal(store.job('cmp-abort')!.status, 'CANCELED');
      for (const d of held) assert.equal(store.execution('cmp-abort', d.id)!.status, 'CANCELED');
      for (const id of stage2!) assert.equal(store.execution('cmp-abort', id), null, `${id} (stage 2) has no execution`);
    } finally {
      store.close();
    }
    for (const d of all.filter((x) => stage2!.includes(x.id))) assert.equal(d.firstNotice.has('cmp-abort'), false, `${d.id} never heard of the job`);
    assert.equal(s.progress.stages[0]!.canceled, 4);
    assert.equal(s.progress.stages[1]!.waiting, 10);
  });

  test('(c) pause holds the next stage, resume continues', async () => {
    const ids = names('pz', 10);
    const [stage1, stage2] = stagesOf('cmp-pause', ids, '20%,100%');
    const all = await connect(ids, (id) => (stage1!.includes(id) ? 'hold' : 'SUCCEEDED'));
    const [probe] = await connect(['probe-0'], () => 'SUCCEEDED');
    ok(await ota('campaign', 'create', '--release', release, '--target', 'cert.ou:pause', '--rollout', '20%,100%', '--id', 'cmp-pause'));
    const first = all.filter((d) => stage1!.includes(d.id));
    await Promise.all(first.map((d) => d.until(() => d.firstNotice.has('cmp-pause'), 'stage 1 notified')));
    assert.match(ok(await ota('campaign', 'pause', 'cmp-pause')).stdout, /campaign cmp-pause PAUSED/);
    for (const d of first) d.go('SUCCEEDED');
    await Promise.all(first.map((d) => d.until(() => d.doneAt.has('cmp-pause'), 'stage 1 done')));
    // A probe campaign completing proves the engine stepped every campaign after stage 1 was done.
    ok(await ota('campaign', 'create', '--release', release, '--target', 'clients:probe-0', '--rollout', '100%', '--id', 'cmp-probe'));
    await campaignEvent('cmp-probe', 'completed');
    assert.equal(probe!.doneAt.has('cmp-probe'), true);
    const paused = await status('cmp-pause');
    assert.equal(paused.state, 'PAUSED');
    assert.equal(paused.stage, 1);
    assert.equal(paused.progress.stages[1]!.waiting, 8);
    for (const d of all.filter((x) => stage2!.includes(x.id))) assert.equal(d.firstNotice.has('cmp-pause'), false);
    assert.match(ok(await ota('campaign', 'resume', 'cmp-pause')).stdout, /campaign cmp-pause RUNNING/);
    await campaignEvent('cmp-pause', 'completed');
    const done = await status('cmp-pause');
    assert.equal(done.state, 'COMPLETED');
    assert.equal(done.progress.stages[1]!.succeeded, 8);
  });

  test('(d) bastion ota campaign create|list|status|pause|resume|abort and ota status: output, refusals, audit records', async () => {
    const acl = SqliteAclStore.open(join(broker.dataDir, ACL_STORE_FILE));
    try {
      acl.putRole('fw-canary', []);
      acl.putBinding({ role: 'fw-canary', attribute: 'cert.cn', value: 'cli-00' });
      acl.putBinding({ role: 'fw-canary', attribute: 'cert.ou', value: 'cl*' });
      acl.putBinding({ role: 'fw-canary', attribute: 'username', value: 'ops' });
      acl.putRole('empty-role', []);
    } finally {
      acl.close();
    }
    assert.match(failedWithOneLine(await ota('campaign', 'create', '--release', 'nope', '--target', 'clients:a')), /unknown release "nope"/);
    assert.match(failedWithOneLine(await ota('campaign', 'create', '--release', release, '--target', 'role:empty-role')), /--target role:empty-role names no device/);
    assert.match(failedWithOneLine(await ota('campaign', 'create', '--release', release, '--target', 'cert.ou:nobody')), /names no device/);
    assert.match(failedWithOneLine(await ota('campaign', 'create', '--release', release, '--target', 'clients:a', '--rollout', '50%,10%,100%')), /must increase/);
    assert.match(failedWithOneLine(await ota('campaign', 'create', '--release', release, '--target', 'clients:a', '--rollout', '10%,50%')), /must end at 100%/);
    assert.match(failedWithOneLine(await ota('campaign', 'create', '--release', release, '--target', 'clients:a', '--abort', 'failures>5')), /--abort takes a rule/);
    assert.match(failedWithOneLine(await ota('campaign', 'create', '--release', release, '--target', 'clients:a', '--timeout', 'soon')), /--timeout takes a number/);
    assert.match(failedWithOneLine(await ota('campaign', 'create', '--release', release, '--target', 'clients:a', '--id', 'cmp-fleet')), /exists/);

    const created = ok(await ota('campaign', 'create', '--release', release, '--target', 'role:fw-canary', '--rollout', 'exponential', '--abort', 'failed>=3', '--timeout', '30m', '--retries', '2', '--id', 'cmp-cli'));
    assert.match(created.stdout, /to 3 device\(s\) of role:fw-canary/, 'cli-00 (bound), cli-01 and cli-02 (OU cl*); not the revoked certificate');
    assert.match(created.stderr, /skipped binding username=ops/);
    const s = await status('cmp-cli');
    assert.deepEqual([...s.targets].sort(), ['cli-00', 'cli-01', 'cli-02']);
    assert.equal(s.stageCounts.length, 3);
    const jobs = SqliteJobStore.open(join(broker.dataDir, JOBS_DB_FILE));
    try {
      const job = jobs.job('cmp-cli')!;
      assert.equal(job.inProgressTimeoutMs, 1_800_000);
      assert.equal(job.maxRetries, 2);
      assert.equal(job.document.releaseId, release);
    } finally {
      jobs.close();
    }
    const text = ok(await ota('campaign', 'status', 'cmp-cli')).stdout;
    assert.match(text, /campaign cmp-cli: RUNNING, stage 1\/3, release/);
    assert.match(text, /STAGE\s+UPTO\s+DEVICES\s+WAITING\s+QUEUED\s+IN_PROGRESS\s+SUCCEEDED\s+FAILED\s+TIMED_OUT\s+REJECTED\s+CANCELED/);
    assert.match(text, /\n\s+1\*\s+\d+%\s+1\s+0\s+1\s+0/);
    const listed = ok(await ota('campaign', 'list', '--json')).stdout.trim().split('\n').map((l) => JSON.parse(l) as CampaignJson & { jobDocument: Json });
    assert.deepEqual(listed.map((c) => c.id), ['cmp-fleet', 'cmp-abort', 'cmp-pause', 'cmp-probe', 'cmp-cli']);
    assert.equal(listed[4]!.jobDocument.manifest, undefined, 'list leaves the manifest out');
    assert.match(ok(await ota('campaign', 'list')).stdout, /cmp-abort\s+\S+\s+ABORTED/);

    assert.match(ok(await ota('status')).stdout, /campaign cmp-cli: RUNNING/);
    const watched = ok(await ota('status', '--watch', '--count', '2', '--interval', '100ms')).stdout;
    assert.equal(watched.match(/^--- \d{4}-/gm)?.length, 2, 'two appended snapshots without a terminal');
    assert.match(failedWithOneLine(await ota('status', '--interval', 'fast')), /--interval takes a number/);

    assert.match(ok(await ota('campaign', 'pause', 'cmp-cli')).stdout, /PAUSED/);
    assert.match(failedWithOneLine(await ota('campaign', 'pause', 'cmp-cli')), /is PAUSED; pause needs RUNNING/);
    assert.match(ok(await ota('campaign', 'resume', 'cmp-cli')).stdout, /RUNNING/);
    assert.match(ok(await ota('campaign', 'abort', 'cmp-cli')).stdout, /campaign cmp-cli ABORTED \(1 device\(s\) with a pending execution canceled\)/);
    const aborted = await status('cmp-cli');
    assert.equal(aborted.state, 'ABORTED');
    assert.match(aborted.reason ?? '', /aborted by local:/);
    assert.match(failedWithOneLine(await ota('campaign', 'abort', 'cmp-cli')), /is ABORTED \(ended\)/);
    assert.match(failedWithOneLine(await ota('campaign', 'status', 'cmp-none')), /no campaign cmp-none/);
    assert.match(failedWithOneLine(await ota('campaign', 'resume', 'cmp-none')), /no campaign cmp-none/);

    for (const action of ['create', 'pause', 'resume', 'abort']) {
      await events.inbox.waitFor((all) => all.some((e) => e.type === 'admin.change' && e.action === `ota.campaign.${action}` && e.target === 'cmp-cli' && e.outcome === 'ok'), WAIT_MS, `ota.campaign.${action} in the audit stream`);
    }
    await events.inbox.waitFor((all) => all.some((e) => e.type === 'admin.change' && e.action === 'ota.campaign.create' && e.target === 'cmp-fleet' && e.outcome === 'conflict'), WAIT_MS, 'a refused create recorded');
  });
});
