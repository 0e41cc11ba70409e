/**
 * OTA block transfer over MQTT (issue 14 item 4): a real broker with the built-in PKI,
 * devices with real certificates (MQTT.js over mqtts), releases made by the real CLI
 * (`bastion ota key init|sign|release create`) and jobs written to `<dataDir>/ota-jobs.db`
 * as the CLI writes them. describe; a whole ~1 MB image fetched block by block and its
 * SHA-256 checked; a bitmap re-request; the refusals (JSON, block size, range, an image
 * not this device's, a canceled job, another device's topics at the guard); a disconnect
 * mid-transfer and a broker restart, each followed by fetching only the missing blocks;
 * and telemetry between two other clients still flowing while several devices download.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { JOBS_DB_FILE, SqliteJobStore } from '../../src/ota/jobs/sqlite-job-store.js';
import { parseBlockMessage } from '../../src/ota/transfer/block-source.js';
import { encodeBitmap } from '../../src/ota/transfer/request.js';
import { EventRecorder } from '../helpers/event-recorder.js';
import { parseExposition, sampleValue } from '../helpers/prom-text.js';
import { startProvisioningBroker, type ProvisioningBroker } from '../helpers/provisioning-broker.js';
import { BASTION_MAIN, Inbox, run, type ProcResult } from './support.js';

type Json = Record<string, unknown>;
const WAIT = 15_000;
const IMAGE_BYTES = 1_000_000 + 123;
const BLOCK = 16384;

interface Rx {
  topic: string;
  payload: Buffer;
}

interface Release {
  id: string;
  digest: string;
  bytes: Buffer;
}

const prefix = (id: string, digest: string): string => `$bastion/ota/${id}/files/${digest}`;

/** A device as the test drives it: its client, everything it received, and the blocks it holds. */
class Device {
  readonly inbox = new Inbox<Rx>();
  /** Blocks kept (index → bytes) for the image being fetched. */
  readonly have = new Map<number, Buffer>();
  /** Every data block received, in order. */
  readonly arrivals: number[] = [];
  /** Stop keeping blocks after this many (a device that loses power mid-transfer). */
  cutAfter = Infinity;
  onCut: (() => void) | null = null;

  constructor(
    readonly id: string,
    readonly client: MqttClient,
    private readonly release: Release,
    private readonly blockSize = BLOCK,
  ) {
    client.on('message', (topic, payload) => {
      // The block is kept before waiters look at the inbox.
      if (topic.endsWith('/data')) this.keep(payload);
      this.inbox.push({ topic, payload });
    });
  }

  private keep(payload: Buffer): void {
    if (this.arrivals.length >= this.cutAfter) return;
    const b = parseBlockMessage(payload);
    // What a device must check of every block: format, image, block size, length.
    assert.ok(b !== null);
    assert.equal(b.version, 1);
    assert.equal(b.digest, this.release.digest);
    assert.equal(b.blockSize, this.blockSize);
    assert.equal(b.bytes.length, Math.min(this.blockSize, this.release.bytes.length - b.index * this.blockSize));
    this.arrivals.push(b.index);
    this.have.set(b.index, Buffer.from(b.bytes));
    if (this.arrivals.length === this.cutAfter) this.onCut?.();
  }

  get blockCount(): number {
    return Math.ceil(this.release.bytes.length / this.blockSize);
  }

  /** A JSON request; resolves with the answer topic's last level and body (matched by clientToken). */
  async ask(kind: 'describe' | 'get', body: Json, digest = this.release.digest, id = this.id): Promise<{ kind: string; body: Json }> {
    const clientToken = `t-${randomBytes(6).toString('hex')}`;
    const from = this.inbox.items.length;
    await this.client.publishAsync(`${prefix(id, digest)}/${kind}`, JSON.stringify({ ...body, clientToken }), { qos: 1 });
    const answer = (items: Rx[]): Rx | undefined =>
      items.slice(from).find((m) => !m.topic.endsWith('/data') && (JSON.parse(m.payload.toString('utf8')) as Json).clientToken === clientToken);
    const m = answer(await this.inbox.waitFor((items) => answer(items) !== undefined, WAIT, `an answer to ${kind}`))!;
    return { kind: m.topic.slice(m.topic.lastIndexOf('/') + 1), body: JSON.parse(m.payload.toString('utf8')) as Json };
  }

  /** A refused request's body (fails when it was answered otherwise). */
  async refused(kind: 'describe' | 'get', body: Json, digest?: string): Promise<Json> {
    const a = await this.ask(kind, body, digest);
    assert.equal(a.kind, 'rejected', JSON.stringify(a));
    return a.body;
  }

  /**
   * A get for `wanted` (absolute block indices within firstBlock..firstBlock+31, the last of
   * them included): waits for those blocks and returns the indices that arrived for it.
   * Blocks of one get come in index order, so once the highest wanted one is here any
   * extra block of the range would have arrived before it.
   */
  async get(firstBlock: number, wanted: number[], opts: { bitmap?: boolean; blockCount?: number } = {}): Promise<number[]> {
    const from = this.arrivals.length;
    const count = opts.blockCount ?? Math.min(32, this.blockCount - firstBlock);
    const body: Json = { blockSize: this.blockSize, firstBlock, blockCount: count };
    if (opts.bitmap === true) body.bitmap = encodeBitmap(count, wanted.map((i) => i - firstBlock));
    const last = Math.max(...wanted);
    const data = `${prefix(this.id, this.release.digest)}/data`;
    await this.client.publishAsync(`${prefix(this.id, this.release.digest)}/get`, JSON.stringify(body), { qos: 1 });
    await this.inbox.waitFor(() => this.arrivals.slice(from).includes(last), WAIT, `block ${last} of ${this.id} on ${data}`);
    return this.arrivals.slice(from);
  }

  /** Fetches every block it does not have, 32 at a time with a bitmap; returns how many arrived. */
  async fetchMissing(): Promise<number> {
    const from = this.arrivals.length;
    for (let first = 0; first < this.blockCount; first += 32) {
      const count = Math.min(32, this.blockCount - first);
      const missing = Array.from({ length: count }, (_, k) => first + k).filter((i) => !this.have.has(i));
      if (missing.length === 0) continue;
      assert.deepEqual(await this.get(first, missing, { bitmap: true }), missing);
    }
    return this.arrivals.length - from;
  }

  image(): Buffer {
    return Buffer.concat(Array.from({ length: this.blockCount }, (_, i) => this.have.get(i)!));
  }
}

describe('OTA block transfer over MQTT', () => {
  let broker: ProvisioningBroker;
  const certs = new Map<string, { cert: string; key: string }>();
  let main: Release;
  let other: Release;

  const ota = (...args: string[]): Promise<ProcResult> => run(process.execPath, [BASTION_MAIN, 'ota', ...args, '--data-dir', broker.dataDir]);
  const ok = (r: ProcResult): ProcResult => (assert.equal(r.code, 0, `exit ${String(r.code)}; stdout: ${r.stdout} stderr: ${r.stderr}`), r);

  async function release(name: string, cls: string, size: number): Promise<Release> {
    const bytes = randomBytes(size);
    const image = join(broker.dir, `${name}.bin`);
    writeFileSync(image, bytes);
    ok(await ota('sign', image, '--class', cls, '--vendor', 'acme', '--fw-version', '1.0.0', '--out', join(broker.dir, `${name}.manifest.json`)));
    ok(await ota('release', 'create', image, '--manifest', join(broker.dir, `${name}.manifest.json`)));
    const listed = ok(await ota('release', 'list', '--json', '--class', cls)).stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; imageDigest: string });
    const r = listed[listed.length - 1]!;
    assert.equal(r.imageDigest, createHash('sha256').update(bytes).digest('hex'));
    return { id: r.id, digest: r.imageDigest, bytes };
  }

  function withStore<T>(fn: (s: SqliteJobStore) => T): T {
    const s = SqliteJobStore.open(join(broker.dataDir, JOBS_DB_FILE));
    try {
      return fn(s);
    } finally {
      s.close();
    }
  }

  const createJob = (id: string, releaseId: string, devices: string[]): void =>
    assert.equal(withStore((s) => s.createJob({ id, document: { releaseId }, maxRetries: 0, defaultStepTimeoutMs: null, inProgressTimeoutMs: null, createdAt: Date.now() }, devices)), true);

  async function issue(id: string): Promise<void> {
    certs.set(id, await broker.clientCert(id));
  }

  async function device(id: string, r: Release = main, opts: { protocolVersion?: 4 | 5; subscribe?: boolean } = {}): Promise<Device> {
    const c = certs.get(id)!;
    const client = await broker.connect({ clientId: id, cert: c.cert, key: c.key, ...(opts.protocolVersion !== undefined ? { protocolVersion: opts.protocolVersion } : {}) });
    const d = new Device(id, client, r);
    if (opts.subscribe !== false) await client.subscribeAsync(`$bastion/ota/${id}/files/+/+`, { qos: 1 });
    return d;
  }

  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

  /** GET /metrics on the admin listener with an operator token. */
  async function scrape(token: string): Promise<(name: string, labels?: Record<string, string>) => number | undefined> {
    const text = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: broker.adminPort!, servername: 'localhost', path: '/metrics', ca: broker.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`/metrics: ${String(res.statusCode)}`))));
      });
      req.on('error', reject);
      req.end();
    });
    const families = parseExposition(text);
    return (name, labels = {}) => sampleValue(families, name, labels);
  }

  before(async () => {
    broker = await startProvisioningBroker({
      admin: {},
      // Telemetry between ordinary clients: every certificate holder may use devices/#.
      authz: { policy: 'rules', roles: { everything: { rules: [{ effect: 'allow', action: 'all', topic: 'devices/#' }] } }, bindings: [{ role: 'everything', attribute: 'clientId', value: '*' }] },
    });
    for (const id of ['dev-a', 'dev-b', 'dev-c', 'dev-v3', 'load-1', 'load-2', 'load-3', 'load-4', 'load-5', 'sensor', 'watcher', 'dev-flood']) await issue(id);
    ok(await ota('key', 'init'));
    main = await release('main', 'thermo', IMAGE_BYTES);
    other = await release('other', 'valve', 40_000);
    createJob('job-main', main.id, ['dev-a', 'dev-c', 'dev-v3', 'load-1', 'load-2', 'load-3', 'load-4', 'load-5', 'dev-flood']);
    createJob('job-other', other.id, ['dev-b']);
  });
  after(async () => {
    await broker.stop();
  });

  test('describe, then the whole image block by block: the SHA-256 matches; a bitmap re-request returns exactly the wanted blocks', async () => {
    const a = await device('dev-a');
    const desc = await a.ask('describe', {});
    assert.equal(desc.kind, 'description');
    assert.deepEqual({ ...desc.body, clientToken: undefined }, { digest: main.digest, size: IMAGE_BYTES, blockSize: BLOCK, blockCount: Math.ceil(IMAGE_BYTES / BLOCK), maxBlocksPerRequest: 32, clientToken: undefined });

    assert.equal(await a.fetchMissing(), a.blockCount);
    assert.equal(sha(a.image()), main.digest);
    // Each block once, in order.
    assert.deepEqual(a.arrivals, Array.from({ length: a.blockCount }, (_, i) => i));

    // A bitmap: blocks 33, 40 and 61 of 32..61 (the image has 62 blocks).
    assert.deepEqual(await a.get(32, [33, 40, 61], { bitmap: true }), [33, 40, 61]);
    // The last range is clipped at the image's end (62 blocks: 32..61).
    const lastRange = await a.get(32, [32, 61], { bitmap: true, blockCount: 32 });
    assert.deepEqual(lastRange, [32, 61]);
    // Without a bitmap, a plain range.
    assert.deepEqual(await a.get(5, [5, 6, 7], { blockCount: 3 }), [5, 6, 7]);
    a.client.end(true);
  });

  test('refusals: bad JSON, bad blockSize, firstBlock past the end, a bitmap of the wrong length, an image not this device’s, a canceled job; another device’s topics refused at the guard', async () => {
    const a = await device('dev-a');
    const badJson = a.inbox.waitFor((items) => items.some((m) => m.topic === `${prefix('dev-a', main.digest)}/rejected`), WAIT, 'InvalidJson');
    await a.client.publishAsync(`${prefix('dev-a', main.digest)}/get`, '{not json', { qos: 1 });
    const rj = (await badJson).find((m) => m.topic.endsWith('/rejected'))!;
    assert.deepEqual(JSON.parse(rj.payload.toString('utf8')), { statusCode: 400, errorCode: 'InvalidJson', errorMessage: 'the payload is not JSON' });

    for (const blockSize of [1000, 100, 262144]) {
      const r = await a.refused('get', { blockSize, firstBlock: 0 });
      assert.equal(r.errorCode, 'InvalidRequest');
      assert.match(String(r.errorMessage), /blockSize/);
    }
    const past = await a.refused('get', { blockSize: BLOCK, firstBlock: a.blockCount });
    assert.equal(past.statusCode, 400);
    assert.match(String(past.errorMessage), /past the last block/);
    const bitmap = await a.refused('get', { blockSize: BLOCK, firstBlock: 0, blockCount: 16, bitmap: encodeBitmap(24, [0]) });
    assert.match(String(bitmap.errorMessage), /bitmap must be 2 bytes/);

    // An image that exists but is dev-b's, and one that does not exist: the same NotFound.
    const notMine = await a.refused('describe', {}, other.digest);
    const none = await a.refused('get', { blockSize: BLOCK, firstBlock: 0 }, sha(Buffer.from('nothing')));
    for (const r of [notMine, none]) {
      assert.equal(r.statusCode, 404);
      assert.equal(r.errorCode, 'NotFound');
    }
    assert.equal(notMine.errorMessage, none.errorMessage);
    // dev-b's own job: it gets the description.
    const b = await device('dev-b', other);
    assert.equal((await b.ask('describe', {})).body.size, 40_000);

    // The guard: dev-b can neither follow nor ask on dev-a's prefix (v5: 0x87).
    const refusedSub = (err: Error & { packet?: { granted?: number[] } }): boolean => err.packet?.granted?.[0] === 0x87;
    await assert.rejects(b.client.subscribeAsync('$bastion/ota/dev-a/#', { qos: 1 }), refusedSub);
    await assert.rejects(b.client.subscribeAsync('$bastion/ota/+/files/+/+', { qos: 1 }), refusedSub);
    await assert.rejects(b.client.publishAsync(`${prefix('dev-a', main.digest)}/describe`, '{}', { qos: 1 }), (err: Error & { code?: number }) => err.code === 0x87);
    await assert.rejects(b.client.publishAsync(`${prefix('dev-b', other.digest)}/data`, 'x', { qos: 1 }), (err: Error & { code?: number }) => err.code === 0x87);
    await assert.rejects(b.client.publishAsync(`${prefix('dev-b', other.digest)}/describe`, '{}', { qos: 1, retain: true }), (err: Error & { code?: number }) => err.code === 0x87);

    // v3.1.1 has no reason code on PUBACK: the request is dropped, denied as an event, and
    // nothing comes back (its own describe, asked after, is answered first and alone).
    const events = new EventRecorder(broker.server.broker.events);
    const v3 = await device('dev-v3', main, { protocolVersion: 4 });
    await assert.rejects(v3.client.subscribeAsync('$bastion/ota/dev-a/#', { qos: 1 }), (err: Error & { packet?: { granted?: number[] } }) => err.packet?.granted?.[0] === 0x80);
    await v3.client.publishAsync(`${prefix('dev-a', main.digest)}/get`, JSON.stringify({ blockSize: BLOCK, firstBlock: 0 }), { qos: 1 });
    await events.waitFor('authz.denied', (e) => e.clientId === 'dev-v3' && e.action === 'publish' && e.topic === `${prefix('dev-a', main.digest)}/get`);
    events.stop();
    assert.equal((await v3.ask('describe', {})).kind, 'description');
    assert.equal(v3.inbox.items.filter((m) => m.topic.endsWith('/data')).length, 0);

    // A canceled job: its image is no longer this device's to fetch.
    createJob('job-c', other.id, ['dev-c']);
    const c = await device('dev-c', other);
    assert.equal((await c.ask('describe', {})).kind, 'description');
    assert.deepEqual(withStore((s) => s.cancelJob('job-c', Date.now())), ['dev-c']);
    assert.equal((await c.refused('get', { blockSize: BLOCK, firstBlock: 0 })).errorCode, 'NotFound');
    // Its other job (job-main) still lets it fetch that image.
    c.client.end(true);
    const c2 = await device('dev-c', main);
    assert.equal((await c2.ask('describe', {})).kind, 'description');

    for (const d of [a, b, v3, c2]) d.client.end(true);
  });

  test('a disconnect mid-transfer: after reconnecting the device fetches only the missing blocks', async () => {
    const first = await device('dev-a');
    first.cutAfter = 20;
    const cut = new Promise<void>((resolve) => (first.onCut = resolve));
    // One get for 32 blocks; the connection drops after the 20th arrives.
    await first.client.publishAsync(`${prefix('dev-a', main.digest)}/get`, JSON.stringify({ blockSize: BLOCK, firstBlock: 0, blockCount: 32 }), { qos: 1 });
    await cut;
    first.client.end(true);
    assert.equal(first.have.size, 20);

    const again = await device('dev-a');
    for (const [i, bytes] of first.have) again.have.set(i, bytes);
    const fetched = await again.fetchMissing();
    assert.equal(fetched, again.blockCount - 20, 'only the blocks it did not have');
    assert.ok(again.arrivals.every((i) => !first.have.has(i)));
    assert.equal(sha(again.image()), main.digest);
    again.client.end(true);
  });

  test('a broker restart mid-download: the broker keeps no state, the device resumes with the missing blocks', async () => {
    const before = await device('dev-a');
    await before.get(0, Array.from({ length: 32 }, (_, i) => i));
    assert.equal(before.have.size, 32);
    before.client.end(true);

    broker = await broker.restart();
    const resumed = await device('dev-a');
    for (const [i, bytes] of before.have) resumed.have.set(i, bytes);
    assert.equal(await resumed.fetchMissing(), resumed.blockCount - 32);
    assert.equal(sha(resumed.image()), main.digest);
    resumed.client.end(true);
  });

  test('metrics: blocks, bytes and refusals by code are counted', async () => {
    const token = ok(await run(process.execPath, [BASTION_MAIN, 'admin', 'token', 'create', '--name', 'prometheus', '--data-dir', broker.dataDir])).stdout.trim();
    const before = await scrape(token);
    const a = await device('dev-a');
    assert.deepEqual(await a.get(60, [60, 61]), [60, 61]);
    assert.equal((await a.refused('get', { blockSize: BLOCK, firstBlock: 0 }, other.digest)).errorCode, 'NotFound');
    assert.equal((await a.refused('get', { blockSize: 1000, firstBlock: 0 })).errorCode, 'InvalidRequest');
    const after = await scrape(token);
    const delta = (name: string, labels?: Record<string, string>): number => (after(name, labels) ?? Number.NaN) - (before(name, labels) ?? Number.NaN);
    assert.equal(delta('bastion_ota_transfer_blocks_total'), 2);
    // Block 60 is whole, block 61 (the last) is what is left of the image; each with its 41-byte header.
    assert.equal(delta('bastion_ota_transfer_bytes_total'), 2 * 41 + BLOCK + (IMAGE_BYTES - 61 * BLOCK));
    assert.equal(delta('bastion_ota_transfer_refusals_total', { code: 'NotFound' }), 1);
    assert.equal(delta('bastion_ota_transfer_refusals_total', { code: 'InvalidRequest' }), 1);
    assert.equal(delta('bastion_ota_transfer_refusals_total', { code: 'Throttled' }), 0);
    a.client.end(true);
  });

  test('telemetry between two other clients keeps flowing while five devices download', async () => {
    const watcher = await device('watcher', main, { subscribe: false });
    const sensor = await device('sensor', main, { subscribe: false });
    await watcher.client.subscribeAsync('devices/sensor/#', { qos: 1 });
    const loads = await Promise.all(['load-1', 'load-2', 'load-3', 'load-4', 'load-5'].map((id) => device(id)));
    // Each device fetches the image twice over (its blocks forgotten in between).
    const downloads = Promise.all(
      loads.map(async (d) => {
        await d.fetchMissing();
        assert.equal(sha(d.image()), main.digest);
        d.have.clear();
        await d.fetchMissing();
        assert.equal(sha(d.image()), main.digest);
      }),
    );
    const N = 100;
    for (let i = 0; i < N; i++) await sensor.client.publishAsync('devices/sensor/temp', JSON.stringify({ i }), { qos: 1 });
    const got = await watcher.inbox.waitFor((items) => items.filter((m) => m.topic === 'devices/sensor/temp').length === N, 30_000, 'all telemetry');
    assert.deepEqual(
      got.filter((m) => m.topic === 'devices/sensor/temp').map((m) => (JSON.parse(m.payload.toString('utf8')) as { i: number }).i),
      Array.from({ length: N }, (_, i) => i),
    );
    await downloads;
    for (const d of [watcher, sensor, ...loads]) d.client.end(true);
  });

  test('a device that asks too fast is throttled (429), and only it', async () => {
    const f = await device('dev-flood');
    const describeTopic = `${prefix('dev-flood', main.digest)}/describe`;
    // More than the burst at once (QoS 0, not awaited one by one).
    for (let i = 0; i < 130; i++) f.client.publish(describeTopic, '{}', { qos: 0 });
    const throttled = await f.inbox.waitFor(
      (items) => items.some((m) => m.topic.endsWith('/rejected') && (JSON.parse(m.payload.toString('utf8')) as Json).errorCode === 'Throttled'),
      WAIT,
      'a Throttled answer',
    );
    const body = JSON.parse(throttled.find((m) => m.topic.endsWith('/rejected'))!.payload.toString('utf8')) as Json;
    assert.equal(body.statusCode, 429);
    // Another device is not held back by it.
    const a = await device('dev-a');
    assert.equal((await a.ask('describe', {})).kind, 'description');
    for (const d of [f, a]) d.client.end(true);
  });
});
