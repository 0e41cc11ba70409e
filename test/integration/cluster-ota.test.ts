/**
 * OTA in a cluster (issue 14 item 6): two Bastion nodes on one real nats-server, each with
 * its own data directory and the same CA. The OTA signing key, a release and a job are
 * made with the real CLI on node a's data directory; a device (MQTT.js, a real client
 * certificate) connected to node b hears of the job (notify-next), starts it and reports
 * SUCCEEDED through b, and `bastion ota job show` on a's data directory shows SUCCEEDED. A
 * job canceled with the CLI on a empties the notify-next of a device on b, and that
 * device's late report is refused (one state in the cluster). A campaign created on a
 * advances stage by stage with its devices on b, to COMPLETED. Both nodes run the timeout
 * sweep: an execution that runs out of time is timed out by exactly one of them, and its
 * one retry is the same row on both. The release's image, stored only on a, reaches b
 * through the cluster's object store (checked against the release), and a device on b
 * (the SDK's OtaAgent) downloads and installs it through b. An object whose bytes are not
 * its release's is refused, never stored; a release entry that is not its manifest's is
 * ignored.
 *
 * Waits are on messages or a polled condition with a timeout; never a fixed delay.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { BastionDevice, MemoryIdentityStore, MemoryUpdateStateStore, OtaAgent, UpdateVerifier } from '../../src/device/index.js';
import type { FirmwarePublicKey, SignedKeySet } from '../../src/firmware/index.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../../src/ota/jobs/sqlite-job-store.js';
import { PkiService } from '../../src/server/pki-service.js';
import { EventRecorder } from '../helpers/event-recorder.js';
import { setUpPki, startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { startNatsServer, type SingleNats } from '../helpers/nats-server.js';
import { BASTION_MAIN, run, type ProcResult, until } from './support.js';
import { RecordingLogger } from './tls-support.js';
import { connect as natsConnect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { createHash } from 'node:crypto';

type Json = Record<string, unknown>;
interface Execution {
  jobId: string;
  status: string;
  versionNumber: number;
  jobDocument?: Json;
}
const WAIT_MS = 15_000;

let dir: string;
let nats: SingleNats;
let a: ProvisioningBroker;
let b: ProvisioningBroker;
let release = '';
let imageBytes: Buffer;
const logB = new RecordingLogger();
const certs = new Map<string, { cert: string; key: string }>();
const open: MqttClient[] = [];

const ota = (node: ProvisioningBroker, ...args: string[]): Promise<ProcResult> => run(process.execPath, [BASTION_MAIN, 'ota', ...args, '--data-dir', node.dataDir]);
const ok = (r: ProcResult): ProcResult => (assert.equal(r.code, 0, `exit ${String(r.code)}; stdout: ${r.stdout} stderr: ${r.stderr}`), r);


/** A device on a node: every message it received, and a wait for the next that matches. */
class Device {
  readonly seen: { topic: string; body: Json }[] = [];
  private waiters: Array<() => void> = [];
  constructor(
    readonly id: string,
    readonly client: MqttClient,
  ) {
    client.on('message', (topic, payload) => {
      this.seen.push({ topic, body: JSON.parse(payload.toString('utf8')) as Json });
      for (const w of [...this.waiters]) w();
    });
  }

  /** The first message from index `from` on whose topic `topic` accepts and whose body `pred` accepts. */
  next(topic: (t: string) => boolean, pred: (body: Json) => boolean, what: string, from = this.seen.length): Promise<{ topic: string; body: Json }> {
    return new Promise((resolve, reject) => {
      const look = (): void => {
        const hit = this.seen.slice(from).find((m) => topic(m.topic) && pred(m.body));
        if (hit === undefined) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== look);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== look);
        reject(new Error(`${this.id}: timed out waiting for ${what}; seen ${JSON.stringify(this.seen.slice(from))}`));
      }, WAIT_MS);
      this.waiters.push(look);
      look();
    });
  }

  notice(pred: (body: Json) => boolean, what: string): Promise<Json> {
    return this.next((t) => t.endsWith('/notify-next'), pred, what).then((m) => m.body);
  }

  /** Publishes a jobs request and waits for its answer (accepted or rejected). */
  async ask(sub: string, body: Json): Promise<{ accepted: boolean; body: Json }> {
    const from = this.seen.length;
    const base = `$bastion/jobs/${this.id}/${sub}`;
    await this.client.publishAsync(base, JSON.stringify(body), { qos: 1 });
    const answer = await this.next((t) => t === `${base}/accepted` || t === `${base}/rejected`, () => true, `the answer to ${sub}`, from);
    return { accepted: answer.topic.endsWith('/accepted'), body: answer.body };
  }
}

async function device(node: ProvisioningBroker, id: string): Promise<Device> {
  const c = certs.get(id)!;
  const client = await node.connect({ clientId: id, cert: c.cert, key: c.key });
  open.push(client);
  const d = new Device(id, client);
  await client.subscribeAsync(`$bastion/jobs/${id}/#`, { qos: 1 });
  // The notice pushed right after the SUBACK (may have come before subscribeAsync resolved).
  await d.next((t) => t.endsWith('/notify-next'), () => true, 'the notice on subscribe', 0);
  return d;
}

const executionOf = (body: Json): Execution | undefined => body.execution as Execution | undefined;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bastion-cluster-ota-'));
  nats = await startNatsServer();
  const pkiDir = join(dir, 'ca');
  await setUpPki(pkiDir);
  // Device certificates from the shared CA (as `bastion cert issue` on any node's copy makes them).
  const pki = await PkiService.open(pkiDir);
  try {
    for (const cn of ['dev-1', 'dev-2', 'dev-3', 'dev-img', 'fleet-1', 'fleet-2', 'fleet-3', 'fleet-4']) {
      const f = await pki.issue({ profile: 'client', commonName: cn, organizationalUnit: 'ota', days: 2, fileStem: cn });
      certs.set(cn, { cert: readFileSync(f.certPath, 'utf8'), key: readFileSync(f.keyPath, 'utf8') });
    }
  } finally {
    pki.close();
  }
  const node = (nodeId: string): Promise<ProvisioningBroker> => startProvisioningBroker({ pkiFrom: pkiDir, cluster: { nats: { servers: [nats.url] }, nodeId }, ...(nodeId === 'ota-b' ? { logger: logB } : {}) });
  a = await node('ota-a');
  b = await node('ota-b');
  // The OTA key, a signed image and its release: the real CLI, on node a's data directory only.
  const image = join(a.dir, 'fw.bin');
  imageBytes = Buffer.from(Array.from({ length: 40_000 }, (_, i) => (i * 7) % 251));
  writeFileSync(image, imageBytes);
  ok(await ota(a, 'key', 'init'));
  ok(await ota(a, 'sign', image, '--class', 'thermo', '--vendor', 'acme', '--fw-version', '4.0.0', '--out', join(a.dir, 'fw.manifest.json')));
  ok(await ota(a, 'release', 'create', image, '--manifest', join(a.dir, 'fw.manifest.json')));
  release = (JSON.parse(ok(await ota(a, 'release', 'list', '--json')).stdout.trim().split('\n')[0]!) as { id: string }).id;
});

after(async () => {
  for (const c of open) c.end(true);
  await a?.stop();
  await b?.stop();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a job made with the CLI on node a runs on a device connected to node b; a shows its SUCCEEDED', async () => {
  const dev = await device(b, 'dev-1');
  const noticed = dev.notice((m) => executionOf(m)?.jobDocument?.releaseId === release, 'notify-next of the job made on a');
  const created = ok(await ota(a, 'job', 'create', '--release', release, '--clients', 'dev-1'));
  const jobId = /job (job-[0-9a-f]+)/.exec(created.stdout)![1]!;
  assert.equal(executionOf(await noticed)!.jobId, jobId);

  const started = await dev.ask('start-next', {});
  assert.ok(started.accepted, JSON.stringify(started.body));
  const ex = executionOf(started.body)!;
  assert.deepEqual([ex.jobId, ex.status], [jobId, 'IN_PROGRESS']);
  // A stale version is refused, the right one accepted: one state, decided in the cluster.
  const stale = await dev.ask(`${jobId}/update`, { status: 'SUCCEEDED', expectedVersion: ex.versionNumber - 1 });
  assert.equal(stale.body.errorCode, 'VersionMismatch', JSON.stringify(stale.body));
  const done = await dev.ask(`${jobId}/update`, { status: 'SUCCEEDED', expectedVersion: ex.versionNumber });
  assert.ok(done.accepted, JSON.stringify(done.body));
  assert.equal((done.body.executionState as { status: string }).status, 'SUCCEEDED');

  await until(async () => /dev-1\s+1\s+SUCCEEDED/.test(ok(await ota(a, 'job', 'show', jobId)).stdout), WAIT_MS, '`ota job show` on a to show SUCCEEDED');
  // The device's report cannot be made twice, on either node.
  const again = await dev.ask(`${jobId}/update`, { status: 'SUCCEEDED', expectedVersion: ex.versionNumber });
  assert.equal(again.accepted, false);
});

test('a job canceled with the CLI on a: the device on b hears its notify-next empty, and its late report is refused', async () => {
  const dev = await device(b, 'dev-2');
  const noticed = dev.notice((m) => executionOf(m)?.jobDocument?.releaseId === release, 'notify-next of the job made on a');
  const jobId = /job (job-[0-9a-f]+)/.exec(ok(await ota(a, 'job', 'create', '--release', release, '--clients', 'dev-2')).stdout)![1]!;
  await noticed;
  const started = await dev.ask('start-next', {});
  const ex = executionOf(started.body)!;
  assert.equal(ex.jobId, jobId);
  // a must know of the start before its cancel (else its cancel is of a QUEUED execution: the same outcome).
  await until(async () => /dev-2\s+1\s+IN_PROGRESS/.test(ok(await ota(a, 'job', 'show', jobId)).stdout), WAIT_MS, 'the start to reach a');
  const emptied = dev.notice((m) => m.execution === undefined, 'notify-next empty after the cancel on a');
  assert.match(ok(await ota(a, 'job', 'cancel', jobId)).stdout, /1 pending execution/);
  await emptied;
  const late = await dev.ask(`${jobId}/update`, { status: 'SUCCEEDED', expectedVersion: ex.versionNumber });
  assert.equal(late.accepted, false, JSON.stringify(late.body));
  assert.ok(['VersionMismatch', 'InvalidStateTransition'].includes(String(late.body.errorCode)), JSON.stringify(late.body));
  assert.match(ok(await ota(a, 'job', 'show', jobId)).stdout, /dev-2\s+1\s+CANCELED/);
});

test('a campaign created on a advances stage by stage with its devices on b, to COMPLETED', async () => {
  const ids = ['fleet-1', 'fleet-2', 'fleet-3', 'fleet-4'];
  const fleet = await Promise.all(ids.map((id) => device(b, id)));
  // Each device takes whatever it is notified of and succeeds.
  for (const d of fleet) {
    d.client.on('message', (topic, payload) => {
      const body = JSON.parse(payload.toString('utf8')) as Json;
      const ex = executionOf(body);
      if (topic.endsWith('/notify-next') && ex?.status === 'QUEUED') void d.client.publishAsync(`$bastion/jobs/${d.id}/start-next`, '{}', { qos: 1 });
      else if (topic.endsWith('/start-next/accepted') && ex !== undefined)
        void d.client.publishAsync(`$bastion/jobs/${d.id}/${ex.jobId}/update`, JSON.stringify({ status: 'SUCCEEDED', expectedVersion: ex.versionNumber }), { qos: 1 });
    });
  }
  ok(await ota(a, 'campaign', 'create', '--release', release, '--target', `clients:${ids.join(',')}`, '--rollout', '50%,100%', '--id', 'cmp-cluster'));
  const status = async (node: ProvisioningBroker): Promise<{ state: string; stage: number; progress: { terminal: number } }> =>
    JSON.parse(ok(await ota(node, 'campaign', 'status', 'cmp-cluster', '--json')).stdout) as { state: string; stage: number; progress: { terminal: number } };
  await until(async () => (await status(a)).state === 'COMPLETED', 30_000, 'the campaign COMPLETED on a');
  const onA = await status(a);
  assert.deepEqual([onA.stage, onA.progress.terminal], [2, 4]);
  await until(async () => (await status(b)).state === 'COMPLETED', WAIT_MS, 'the campaign COMPLETED on b');
  for (const d of fleet) assert.ok(d.seen.some((m) => m.topic.endsWith('/update/accepted')), `${d.id} reported through b`);
});

test('both nodes sweep: an overdue execution is timed out once in the cluster, and its retry is one row', async () => {
  const eventsA = new EventRecorder(a.server.broker.events);
  const eventsB = new EventRecorder(b.server.broker.events);
  try {
    const dev = await device(b, 'dev-3');
    const noticed = dev.notice((m) => executionOf(m)?.status === 'QUEUED', 'notify-next of the job');
    const jobId = /job (job-[0-9a-f]+)/.exec(ok(await ota(a, 'job', 'create', '--release', release, '--clients', 'dev-3', '--retries', '1')).stdout)![1]!;
    await noticed;
    // A one-second step timer: both nodes' sweeps find it overdue at about the same time.
    const retried = dev.notice((m) => executionOf(m)?.jobId === jobId && (m.execution as { executionNumber: number }).executionNumber === 2, 'notify-next of the retry');
    const started = await dev.ask('start-next', { stepTimeoutInMinutes: 1 / 60 });
    assert.equal(executionOf(started.body)?.status, 'IN_PROGRESS', JSON.stringify(started.body));
    await retried;
    const rows = (node: ProvisioningBroker): string => {
      const s = SqliteJobStore.open(join(node.dataDir, JOBS_DB_FILE));
      try {
        return JSON.stringify(s.executionsOf(jobId));
      } finally {
        s.close();
      }
    };
    await until(() => rows(a) === rows(b) && rows(a).includes('"executionNumber":2'), WAIT_MS, 'both nodes to hold the same executions');
    const timedOut = [...eventsA.of('job', (e) => e.jobId === jobId && e.action === 'TIMED_OUT'), ...eventsB.of('job', (e) => e.jobId === jobId && e.action === 'TIMED_OUT')];
    assert.equal(timedOut.length, 1, `one node timed it out: ${JSON.stringify(timedOut)}`);
    assert.equal(timedOut[0]!.retried, true);
    const executions = JSON.parse(rows(a)) as { executionNumber: number; status: string }[];
    assert.deepEqual(executions.map((e) => [e.executionNumber, e.status]), [[1, 'TIMED_OUT'], [2, 'QUEUED']]);
  } finally {
    eventsA.stop();
    eventsB.stop();
  }
});

test('the image of a release made on a reaches b through the object store; a device on b installs it through b', async () => {
  const index = (node: ProvisioningBroker): { id: string; imageDigest: string }[] => {
    const path = join(node.dataDir, 'ota', 'releases.json');
    return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as { releases: { id: string; imageDigest: string }[] }).releases : [];
  };
  const digest = index(a).find((r) => r.id === release)!.imageDigest;
  const onB = join(b.dataDir, 'ota', 'images', digest);
  await until(() => index(b).some((r) => r.id === release) && existsSync(onB), WAIT_MS, 'the release and its image on b');
  assert.ok(readFileSync(onB).equals(imageBytes), 'b holds the very bytes of the release');

  const otaDir = join(a.dataDir, 'ota');
  const rootKeys = (JSON.parse(readFileSync(join(otaDir, 'root.pub.json'), 'utf8')) as { rootKeys: FirmwarePublicKey[] }).rootKeys;
  const keySet = JSON.parse(readFileSync(join(otaDir, 'keyset.json'), 'utf8')) as SignedKeySet;
  const c = certs.get('dev-img')!;
  const dev = new BastionDevice({ url: b.url, ca: b.caPem, store: new MemoryIdentityStore({ identity: 'dev-img', certPem: c.cert, keyPem: c.key }), reconnect: { minDelayMs: 50, maxDelayMs: 200 } });
  const stateDir = join(dir, 'state-dev-img');
  mkdirSync(stateDir, { recursive: true });
  const verifier = await UpdateVerifier.open({ rootKeys, vendorId: 'acme', classId: 'thermo', state: new MemoryUpdateStateStore(), initialKeySet: keySet });
  const installed: Buffer[] = [];
  const agent = new OtaAgent({ device: dev, verifier, stateDir, install: (path) => (installed.push(readFileSync(path)), Promise.resolve()) });
  let blocks = 0;
  dev.on('message', (m) => void (m.topic.endsWith('/data') && blocks++));
  const done = new Promise<Json>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for the install')), 30_000);
    agent.on('installed', (body: unknown) => (clearTimeout(timer), resolve(body as Json)));
  });
  try {
    await dev.connect();
    await agent.start();
    const jobId = /job (job-[0-9a-f]+)/.exec(ok(await ota(a, 'job', 'create', '--release', release, '--clients', 'dev-img')).stdout)![1]!;
    const body = await done;
    assert.equal(body.jobId, jobId);
    assert.equal(installed.length, 1);
    assert.ok(installed[0]!.equals(imageBytes), 'the installed image is the released one');
    assert.ok(blocks >= 3, `the image came in blocks from b (${blocks})`);
    await until(async () => /dev-img\s+1\s+SUCCEEDED/.test(ok(await ota(a, 'job', 'show', jobId)).stdout), WAIT_MS, 'a to show the install SUCCEEDED');
  } finally {
    await agent.close();
    await dev.close();
  }
});

test('an image object whose bytes are not its release\'s is refused; a release entry that is not its manifest\'s is ignored', async () => {
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  const good = Buffer.alloc(5000, 9);
  const digest = sha(good);
  const manifest = { manifestVersion: 1, sequence: 1, vendorId: 'acme', classId: 'forged', version: '9.9.9', imageDigest: digest, imageSize: good.length, uri: `bastion-image:sha256:${digest}` };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const id = sha(bytes).slice(0, 16);
  const record = {
    id,
    vendorId: 'acme',
    classId: 'forged',
    version: '9.9.9',
    sequence: 1,
    imageDigest: digest,
    imageSize: good.length,
    uri: manifest.uri,
    keyId: 'k1',
    keySetVersion: 1,
    notAfter: '2030-01-01T00:00:00Z',
    createdAt: new Date().toISOString(),
    manifest: { manifest: bytes.toString('base64'), keyId: 'k1', signature: { classic: 'AAAA', classicAlg: 'ECDSA P-256' } },
  };
  const nc = await natsConnect({ servers: nats.url });
  try {
    // Other bytes of the same size under the image's name, then the release naming it.
    const images = await new Objm(nc).open('bmq_ota_images');
    await images.putBlob({ name: digest }, Buffer.alloc(good.length, 8));
    const kv = await new Kvm(nc).open('bmq_state');
    await kv.put(`otar.r.${id}`, JSON.stringify(record));
    await kv.put('otar.r.0123456789abcdef', JSON.stringify({ ...record, id: '0123456789abcdef' }));
    await logB.waitFor("ota releases: an image from the cluster is not its release's; refused", { releaseId: id }, WAIT_MS);
    await logB.waitFor('ota releases: an entry from the cluster is malformed; ignored', { key: 'otar.r.0123456789abcdef' }, WAIT_MS);
  } finally {
    await nc.close();
  }
  assert.equal(existsSync(join(b.dataDir, 'ota', 'images', digest)), false, 'the wrong bytes are not stored');
  const listed = ok(await ota(b, 'release', 'list', '--json')).stdout;
  assert.doesNotMatch(listed, /0123456789abcdef/);
});
