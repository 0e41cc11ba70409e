/**
 * The device SDK's OtaAgent (issue 14 item 5) against the real broker: the built-in PKI
 * issues the devices' certificates, `bastion ota` (real CLI processes) makes the keys, the
 * signed manifests, the releases and jobs, and the broker's jobs and block transfer serve
 * them. (a) A signed ~300 KB update is installed end to end; (b) refusals are reported on
 * the job with their reason (tampered image, replayed old manifest, bad signature, wrong
 * class, rotated-out key, missing ML-DSA half) and nothing is downloaded for a refused
 * manifest; (c) a download cut by a killed connection, and one cut by a broker restart,
 * resume and fetch only the blocks missing; (d) an install that throws is FAILED
 * (InstallFailed), and a job canceled mid-download stops it (the partial kept); (e) a
 * report lost with the connection after install is made after the reconnect.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BrokerApi } from '../../src/broker/api.js';
import { BastionDevice, FileUpdateStateStore, MemoryIdentityStore, MemoryUpdateStateStore, OtaAgent, UpdateVerifier, type OtaAgentEvents, type UpdateStateStore } from '../../src/device/index.js';
import type { FirmwarePublicKey, SignedKeySet } from '../../src/firmware/index.js';
import { JOBS_DB_FILE, SqliteJobStore } from '../../src/ota/jobs/sqlite-job-store.js';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { BASTION_MAIN, Inbox, run, withTimeout, type ProcResult } from './support.js';

type Json = Record<string, unknown>;
type AgentEvent = { kind: keyof OtaAgentEvents; body: Json };

let broker: ProvisioningBroker;
const certs = new Map<string, { cert: string; key: string }>();
let rootKeys: FirmwarePublicKey[];
let keySetV1: SignedKeySet;

const ota = (...args: string[]): Promise<ProcResult> => run(process.execPath, [BASTION_MAIN, 'ota', ...args, '--data-dir', broker.dataDir], { timeoutMs: 60_000 });
function ok(r: ProcResult): ProcResult {
  assert.equal(r.code, 0, `exit ${String(r.code)}; stdout: ${r.stdout} stderr: ${r.stderr}`);
  return r;
}

async function issue(id: string): Promise<void> {
  certs.set(id, await broker.clientCert(id));
}

/** An image file of `size` random bytes. */
function image(name: string, size: number): { path: string; bytes: Buffer } {
  const bytes = randomBytes(size);
  const path = join(broker.dir, name);
  writeFileSync(path, bytes);
  return { path, bytes };
}

/** `bastion ota sign`: the signed envelope (JSON text) and its file. */
async function sign(img: string, name: string, extra: string[]): Promise<{ file: string; envelope: Json }> {
  const file = join(broker.dir, `${name}.manifest.json`);
  ok(await ota('sign', img, '--vendor', 'acme', '--fw-version', name, '--out', file, ...extra));
  return { file, envelope: JSON.parse(readFileSync(file, 'utf8')) as Json };
}

/** `release create`, then `job create` for `clients`: the release id and the job id. */
async function releaseAndJob(img: string, manifestFile: string, clients: string[]): Promise<{ release: string; jobId: string; digest: string }> {
  ok(await ota('release', 'create', img, '--manifest', manifestFile));
  const releases = ok(await ota('release', 'list', '--json'))
    .stdout.trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { id: string; imageDigest: string; version: string });
  const version = (JSON.parse(Buffer.from((JSON.parse(readFileSync(manifestFile, 'utf8')) as { manifest: string }).manifest, 'base64').toString('utf8')) as { version: string }).version;
  const r = releases.find((x) => x.version === version)!;
  const created = ok(await ota('job', 'create', '--release', r.id, '--clients', clients.join(',')));
  return { release: r.id, jobId: /job (job-[0-9a-f]+)/.exec(created.stdout)![1]!, digest: r.imageDigest };
}

function withStore<T>(fn: (s: SqliteJobStore) => T): T {
  const s = SqliteJobStore.open(join(broker.dataDir, JOBS_DB_FILE));
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

/** A job written straight into the jobs store (as the CLI writes it) carrying `manifest`. */
let directJobs = 0;
function directJob(id: string, manifest: Json): string {
  const jobId = `direct-${++directJobs}`;
  assert.equal(withStore((s) => s.createJob({ id: jobId, document: { releaseId: 'none', manifest }, maxRetries: 0, defaultStepTimeoutMs: null, inProgressTimeoutMs: null, createdAt: Date.now() + directJobs }, [id])), true);
  return jobId;
}

function execution(jobId: string, id: string): { status: string; statusDetails: Record<string, string> } {
  const e = withStore((s) => s.execution(jobId, id));
  assert.ok(e !== null, `no execution of ${jobId} for ${id}`);
  return { status: e.status, statusDetails: e.statusDetails };
}

interface Dev {
  id: string;
  device: BastionDevice;
  agent: OtaAgent;
  verifier: UpdateVerifier;
  stateDir: string;
  events: Inbox<AgentEvent>;
  /** Data blocks the device received, all and since the last connection. */
  data: { total: number; sinceConnect: number };
  installed: Buffer[];
  errors: string[];
}

async function startDevice(
  id: string,
  o: { keySet?: SignedKeySet; state?: UpdateStateStore; blockSize?: number; onData?: (d: Dev) => void; stateDir?: string; install?: (path: string) => Promise<void> } = {},
): Promise<Dev> {
  const c = certs.get(id)!;
  const device = new BastionDevice({ url: broker.url, ca: broker.caPem, store: new MemoryIdentityStore({ identity: id, certPem: c.cert, keyPem: c.key }), reconnect: { minDelayMs: 50, maxDelayMs: 200 } });
  const stateDir = o.stateDir ?? join(broker.dir, `state-${id}`);
  mkdirSync(stateDir, { recursive: true });
  const verifier = await UpdateVerifier.open({ rootKeys, vendorId: 'acme', classId: 'thermo', state: o.state ?? new FileUpdateStateStore(stateDir), initialKeySet: o.keySet ?? keySetV1 });
  const installed: Buffer[] = [];
  const agent = new OtaAgent({
    device,
    verifier,
    stateDir,
    ...(o.blockSize !== undefined ? { blockSize: o.blockSize } : {}),
    install:
      o.install ??
      ((path) => {
        installed.push(readFileSync(path));
        return Promise.resolve();
      }),
  });
  const events = new Inbox<AgentEvent>();
  for (const kind of ['job', 'progress', 'refused', 'installed', 'failed', 'canceled'] as const) {
    agent.on(kind, (body: unknown) => events.push({ kind, body: body as Json }));
  }
  const d: Dev = { id, device, agent, verifier, stateDir, events, data: { total: 0, sinceConnect: 0 }, installed, errors: [] };
  // Kept for the message of a wait that fails (a request that timed out, a report refused).
  agent.on('error', (err) => d.errors.push(err.message));
  device.on('connected', () => {
    d.data.sinceConnect = 0;
  });
  device.on('message', (m) => {
    if (!m.topic.endsWith('/data')) return;
    d.data.total++;
    d.data.sinceConnect++;
    o.onData?.(d);
  });
  live.add(d);
  await device.connect();
  await agent.start();
  return d;
}

/** Devices still running: closed after the tests (a failed test leaves no reconnect loop behind). */
const live = new Set<Dev>();

async function stopDevice(d: Dev): Promise<void> {
  live.delete(d);
  await d.agent.close();
  await d.device.close();
}

const eventOf = (d: Dev, kind: AgentEvent['kind'], match: (b: Json) => boolean, what: string, timeoutMs = 30_000): Promise<Json> =>
  d.events.waitFor((items) => items.some((e) => e.kind === kind && match(e.body)), timeoutMs, what).then(
    (items) => items.find((e) => e.kind === kind && match(e.body))!.body,
    (err: Error) => {
      throw new Error(`${err.message}; agent errors: ${JSON.stringify(d.errors)}; events: ${JSON.stringify(d.events.items.map((e) => [e.kind, e.body.jobId, e.body.reason]))}`);
    },
  );

before(async () => {
  broker = await startProvisioningBroker();
  for (const id of ['dev-ok', 'dev-refuse', 'dev-rotated', 'dev-cut', 'dev-restart', 'dev-misc', 'dev-lost']) await issue(id);
  ok(await ota('key', 'init'));
  const otaDir = join(broker.dataDir, 'ota');
  rootKeys = (JSON.parse(readFileSync(join(otaDir, 'root.pub.json'), 'utf8')) as { rootKeys: FirmwarePublicKey[] }).rootKeys;
  keySetV1 = JSON.parse(readFileSync(join(otaDir, 'keyset.json'), 'utf8')) as SignedKeySet;
});
after(async () => {
  for (const d of [...live]) await stopDevice(d);
  await broker?.stop();
});

describe('OtaAgent', () => {
  test('(a) a signed ~300 KB update is installed end to end: SUCCEEDED, the installed bytes are the image, the sequence raised', async () => {
    const img = image('good.bin', 300 * 1024);
    const m = await sign(img.path, '1.0.0', ['--class', 'thermo', '--seq', '10']);
    const { jobId } = await releaseAndJob(img.path, m.file, ['dev-ok']);
    const d = await startDevice('dev-ok');
    const installed = await eventOf(d, 'installed', (b) => b.jobId === jobId, 'the install');
    assert.equal(installed.reported, true);
    assert.equal(installed.sequence, 10);
    assert.equal(d.installed.length, 1);
    assert.ok(d.installed[0]!.equals(img.bytes), 'the installed image is the released one');
    assert.equal(d.verifier.lastSequence, 10);
    const e = execution(jobId, 'dev-ok');
    assert.equal(e.status, 'SUCCEEDED');
    assert.deepEqual(e.statusDetails, { sequence: '10', version: '1.0.0' });
    // 300 KiB in the broker's default 16 KiB blocks, each received once.
    assert.equal(d.data.total, 19);
    const progress = d.events.items.filter((x) => x.kind === 'progress');
    assert.ok(progress.length >= 2 && progress.length <= 11, `progress at most every 10 %: ${progress.length}`);
    assert.equal(progress.at(-1)!.body.received, 300 * 1024);
    // Nothing left behind but the state.
    assert.deepEqual(readdirSync(d.stateDir).filter((f) => f.endsWith('.part') || f.endsWith('.bitmap') || f.endsWith('.img')), []);
    await stopDevice(d);
  });

  test('(b) refusals are reported on the job with their reason; nothing is downloaded for a refused manifest', async () => {
    // The device has installed sequence 5 already (a restart keeps it: a file store).
    const state = new MemoryUpdateStateStore();
    await state.save({ lastSequence: 5, keySetVersion: 0, keySet: null, installed: { thermo: 5 } });
    const old = await sign(image('old.bin', 2048).path, '0.3.0', ['--class', 'thermo', '--seq', '3']);
    const badSig = await sign(image('badsig.bin', 2048).path, '1.2.0', ['--class', 'thermo', '--seq', '12']);
    const sig = badSig.envelope.signature as Json;
    const classic = Buffer.from(sig.classic as string, 'base64');
    classic[classic.length - 1]! ^= 0x01;
    const wrongClass = await sign(image('boiler.bin', 2048).path, '1.0.0-boiler', ['--class', 'boiler', '--seq', '13']);
    const classicOnly = await sign(image('classic.bin', 2048).path, '1.4.0', ['--class', 'thermo', '--seq', '14']);
    const { pq: _pq, pqAlg: _pqAlg, ...classicSig } = classicOnly.envelope.signature as Json;
    const jobs = {
      Rollback: directJob('dev-refuse', old.envelope),
      BadSignature: directJob('dev-refuse', { ...badSig.envelope, signature: { ...sig, classic: classic.toString('base64') } }),
      WrongClass: directJob('dev-refuse', wrongClass.envelope),
      MissingPostQuantum: directJob('dev-refuse', { ...classicOnly.envelope, signature: classicSig }),
    };
    // A release whose stored image is corrupted after `release create` (same size, other bytes).
    const tampered = image('tampered.bin', 40 * 1024);
    const tm = await sign(tampered.path, '1.5.0', ['--class', 'thermo', '--seq', '15']);
    const t = await releaseAndJob(tampered.path, tm.file, ['dev-refuse']);
    const stored = join(broker.dataDir, 'ota', 'images', t.digest);
    const bytes = readFileSync(stored);
    bytes[1000]! ^= 0xff;
    writeFileSync(stored, bytes);

    const d = await startDevice('dev-refuse', { state });
    for (const [reason, jobId] of Object.entries(jobs)) {
      const r = await eventOf(d, 'refused', (b) => b.jobId === jobId, `the refusal of ${reason}`);
      assert.equal(r.reason, reason);
      const e = execution(jobId, 'dev-refuse');
      assert.equal(e.status, 'REJECTED', `${reason}: ${JSON.stringify(e)}`);
      assert.equal(e.statusDetails.reason, reason);
      assert.ok((e.statusDetails.message ?? '').length > 0);
    }
    const failed = await eventOf(d, 'failed', (b) => b.jobId === t.jobId, 'the tampered image');
    assert.equal(failed.reason, 'DigestMismatch');
    assert.equal(failed.reported, true);
    assert.deepEqual(execution(t.jobId, 'dev-refuse'), { status: 'FAILED', statusDetails: { reason: 'DigestMismatch', message: failed.message as string } });
    // Downloads only for the tampered release (40 KiB: 3 blocks), and its part was deleted.
    assert.deepEqual(
      [...new Set(d.events.items.filter((x) => x.kind === 'progress').map((x) => x.body.jobId))],
      [t.jobId],
    );
    assert.equal(d.data.total, 3);
    assert.equal(existsSync(join(d.stateDir, `${t.digest}.part`)), false);
    assert.equal(d.installed.length, 0);
    assert.equal(d.verifier.lastSequence, 5);
    await stopDevice(d);
  });

  test('(c) a connection killed mid-download: the agent resumes after the reconnect and fetches only the missing blocks', async () => {
    const img = image('cut.bin', 300 * 1024);
    const m = await sign(img.path, '2.0.0', ['--class', 'thermo', '--seq', '20']);
    const { jobId } = await releaseAndJob(img.path, m.file, ['dev-cut']);
    const api = new BrokerApi(broker.server.broker);
    let kicked = false;
    // 1 KiB blocks: 300 of them, 32 a request.
    const d = await startDevice('dev-cut', {
      blockSize: 1024,
      onData: (dev) => {
        if (kicked || dev.data.total < 100) return;
        kicked = true;
        void api.kick('dev-cut', 'test: cut mid-download');
      },
    });
    const resumed = await eventOf(d, 'progress', (b) => b.jobId === jobId && b.resumed === true, 'the resume after the reconnect');
    const had = resumed.blocks as number;
    assert.ok(had >= 90 && had < 300, `blocks kept across the reconnect: ${had}`);
    await eventOf(d, 'installed', (b) => b.jobId === jobId, 'the install after the resume');
    assert.equal(d.data.sinceConnect, 300 - had, 'after the reconnect, only the missing blocks came');
    assert.ok(d.installed[0]!.equals(img.bytes));
    assert.equal(execution(jobId, 'dev-cut').status, 'SUCCEEDED');
    await stopDevice(d);
  });

  test('(c) a broker restart mid-download: a restarted device resumes from its persisted blocks', async () => {
    const img = image('restart.bin', 300 * 1024);
    const m = await sign(img.path, '2.1.0', ['--class', 'thermo', '--seq', '21']);
    const { jobId } = await releaseAndJob(img.path, m.file, ['dev-restart']);
    const stateDir = join(broker.dir, 'state-dev-restart');
    let restarted: ((b: Promise<ProvisioningBroker>) => void) | null = null;
    const restarting = new Promise<ProvisioningBroker>((resolve) => {
      restarted = resolve;
    });
    const first = await startDevice('dev-restart', {
      stateDir,
      blockSize: 1024,
      onData: (dev) => {
        if (restarted === null || dev.data.total < 120) return;
        const go = restarted;
        restarted = null;
        go(broker.restart());
      },
    });
    broker = await withTimeout(restarting, 30_000, '120 blocks, then the broker restart');
    await stopDevice(first);
    assert.equal(first.installed.length, 0);
    const received = first.data.total;

    // The device comes back (same state directory) to the restarted broker.
    const second = await startDevice('dev-restart', { stateDir, blockSize: 1024 });
    const resumed = await eventOf(second, 'progress', (b) => b.jobId === jobId && b.resumed === true, 'the resume from disk');
    const had = resumed.blocks as number;
    assert.ok(had > 0 && had <= received, `persisted ${had} of ${received} received`);
    await eventOf(second, 'installed', (b) => b.jobId === jobId, 'the install after the restart');
    assert.equal(second.data.total, 300 - had, 'only the missing blocks were fetched again');
    assert.ok(second.installed[0]!.equals(img.bytes));
    assert.equal(execution(jobId, 'dev-restart').status, 'SUCCEEDED');
    await stopDevice(second);
  });

  test('(d) an install that throws: FAILED InstallFailed, the floor unchanged; a job canceled mid-download stops it', async () => {
    const small = image('install-fails.bin', 20 * 1024);
    const sm = await sign(small.path, '3.0.0', ['--class', 'thermo', '--seq', '30']);
    const a = await releaseAndJob(small.path, sm.file, ['dev-misc']);
    let cancelAt: (() => void) | null = null;
    // 256-byte blocks: the second image's 1200 take far longer than noticing the cancel.
    const d = await startDevice('dev-misc', {
      blockSize: 256,
      install: () => Promise.reject(new Error('the bootloader refused the image')),
      onData: (dev) => {
        if (cancelAt !== null && dev.data.total >= 80 + 50) {
          const go = cancelAt;
          cancelAt = null;
          go();
        }
      },
    });
    const failed = await eventOf(d, 'failed', (b) => b.jobId === a.jobId, 'the failed install');
    assert.equal(failed.reason, 'InstallFailed');
    assert.match(failed.message as string, /the bootloader refused the image/);
    assert.deepEqual(execution(a.jobId, 'dev-misc').statusDetails, { reason: 'InstallFailed', message: failed.message as string });
    assert.equal(execution(a.jobId, 'dev-misc').status, 'FAILED');
    assert.equal(d.verifier.lastSequence, 0, 'nothing counts as installed');

    const big = image('canceled.bin', 300 * 1024);
    const bm = await sign(big.path, '3.1.0', ['--class', 'thermo', '--seq', '31']);
    const canceled = new Promise<void>((resolve) => {
      cancelAt = resolve;
    });
    const b = await releaseAndJob(big.path, bm.file, ['dev-misc']);
    await withTimeout(canceled, 30_000, '50 blocks of the second image');
    assert.deepEqual(withStore((st) => st.cancelJob(b.jobId, Date.now())), ['dev-misc']);
    const c = await eventOf(d, 'canceled', (x) => x.jobId === b.jobId, 'the cancel');
    assert.equal(c.executionNumber, 1);
    assert.equal(execution(b.jobId, 'dev-misc').status, 'CANCELED');
    // Stopped, not thrown away: a later job of the same image would resume it.
    await stopDevice(d);
    assert.equal(existsSync(join(d.stateDir, `${b.digest}.part`)), true);
    assert.ok(d.data.total < 80 + 1200, `the download stopped (${d.data.total} blocks)`);
    const after = d.events.items.filter((x) => x.kind === 'installed' || x.kind === 'canceled' || (x.kind === 'failed' && x.body.jobId === b.jobId));
    assert.deepEqual(after.map((x) => x.kind), ['canceled'], `one cancel, nothing else: ${JSON.stringify(after)}; errors: ${JSON.stringify(d.errors)}`);
  });

  test('(e) the connection lost between install and the report: the report is made after the reconnect, not refused as a rollback', async () => {
    const img = image('lost-report.bin', 20 * 1024);
    const m = await sign(img.path, '4.0.0', ['--class', 'thermo', '--seq', '40']);
    const { jobId } = await releaseAndJob(img.path, m.file, ['dev-lost']);
    const api = new BrokerApi(broker.server.broker);
    let dev: Dev | null = null;
    const d = await startDevice('dev-lost', {
      // The bootloader swaps the image in, and the connection dies before install returns.
      install: async () => {
        const gone = new Promise((resolve) => dev!.device.once('disconnected', resolve));
        assert.equal(await api.kick('dev-lost', 'test: lost after install'), true);
        await gone;
      },
    });
    dev = d;
    const first = await eventOf(d, 'installed', (b) => b.jobId === jobId && b.reported === false, 'the install with its report lost');
    assert.equal(first.sequence, 40);
    const again = await eventOf(d, 'installed', (b) => b.jobId === jobId && b.reported === true, 'the report after the reconnect');
    assert.equal(again.sequence, 40);
    const e = execution(jobId, 'dev-lost');
    assert.equal(e.status, 'SUCCEEDED');
    assert.equal(e.statusDetails.note, 'installed before the report');
    assert.equal(d.verifier.lastSequence, 40);
    assert.equal(d.events.items.filter((x) => x.kind === 'refused').length, 0, 'not refused as Rollback');
    await stopDevice(d);
  });

  // Last: the rotation makes every later manifest one of the new release key.
  test('(b) a manifest signed by a rotated-out release key is refused (RotatedOutKey)', async () => {
    const before = await sign(image('rot.bin', 2048).path, '1.6.0', ['--class', 'thermo', '--seq', '16']);
    const rootKeyFile = join(broker.dataDir, 'ota', 'root.key.json');
    ok(await ota('key', 'rotate', '--root-key', rootKeyFile));
    const keySetV2 = JSON.parse(readFileSync(join(broker.dataDir, 'ota', 'keyset.json'), 'utf8')) as SignedKeySet;
    const jobId = directJob('dev-rotated', before.envelope);
    const d = await startDevice('dev-rotated', { keySet: keySetV2 });
    assert.equal(d.verifier.keySetVersion, 2);
    const r = await eventOf(d, 'refused', (b) => b.jobId === jobId, 'the rotated-out key');
    assert.equal(r.reason, 'RotatedOutKey');
    assert.deepEqual(execution(jobId, 'dev-rotated').statusDetails.reason, 'RotatedOutKey');
    assert.equal(d.data.total, 0);
    await stopDevice(d);
  });
});
