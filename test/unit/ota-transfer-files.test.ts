/**
 * OTA block transfer on real files: the block source reads the content-addressed store
 * (`<dataDir>/ota/images/<sha256>`) with a bounded number of open handles, closed when
 * idle and at close, and refuses a stored file of the wrong size; the fence names the
 * image of a device's QUEUED or IN_PROGRESS execution only (the real SQLite job store and
 * a release index written as the CLI writes it), and sees a release created after it
 * cached the index.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JOBS_DB_FILE, SqliteJobStore } from '../../src/ota/jobs/sqlite-job-store.js';
import { otaDirOf } from '../../src/ota/ota-files.js';
import { readReleaseIndex, writeReleaseIndex, type ReleaseRecord } from '../../src/ota/releases.js';
import { BlockSource } from '../../src/ota/transfer/block-source.js';
import { TransferFence } from '../../src/ota/transfer/fence.js';

const root = mkdtempSync(join(tmpdir(), 'bastion-transfer-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A data directory with `count` stored images; returns their digests and bytes. */
function dataDirWith(count: number, size = 5000): { dataDir: string; images: Array<{ digest: string; bytes: Buffer }> } {
  const dataDir = join(root, `d${n++}`);
  const dir = join(otaDirOf(dataDir), 'images');
  mkdirSync(dir, { recursive: true });
  const images = Array.from({ length: count }, () => {
    const bytes = randomBytes(size);
    const digest = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(dir, digest), bytes);
    return { digest, bytes };
  });
  return { dataDir, images };
}

test('block source: exact bytes at an offset, handles bounded and closed, a wrong size or a closed source refused', async () => {
  const { dataDir, images } = dataDirWith(6);
  let now = 1_000;
  const src = new BlockSource(dataDir, { maxIdle: 2, idleMs: 10_000, now: () => now });
  const [first] = images;
  assert.deepEqual(await src.read(first!.digest, 5000, 4096, 904), first!.bytes.subarray(4096));
  // Six images read one after another: at most two idle handles stay open.
  for (const img of images) assert.deepEqual(await src.read(img.digest, 5000, 0, 10), img.bytes.subarray(0, 10));
  assert.equal(src.openCount, 2);
  // Idle longer than idleMs: closed at the next trim (a later read).
  now += 20_000;
  await src.read(first!.digest, 5000, 0, 1);
  assert.equal(src.openCount, 1);
  // Reads at once share one handle per image.
  await Promise.all(Array.from({ length: 20 }, (_, i) => src.read(images[1]!.digest, 5000, i * 100, 100)));
  assert.ok(src.openCount <= 2);
  await assert.rejects(src.read(images[2]!.digest, 4999, 0, 10), /is 5000 bytes, not the release's 4999/);
  await assert.rejects(src.read(images[2]!.digest, 5000, 4990, 20), /outside the image/);
  await assert.rejects(src.read('../../etc/passwd', 5000, 0, 1), /not an image digest/);
  await assert.rejects(src.read('0'.repeat(64), 5000, 0, 1), /ENOENT/);
  await src.close();
  assert.equal(src.openCount, 0);
  await assert.rejects(src.read(first!.digest, 5000, 0, 1), /closed/);
});

function release(id: string, digest: string, size: number): ReleaseRecord {
  return { id, vendorId: 'acme', classId: `c-${id}`, version: '1', sequence: 1, imageDigest: digest, imageSize: size, uri: '', keyId: 'k', keySetVersion: 1, notAfter: '', createdAt: '', manifest: { manifest: '', keyId: 'k', signature: { classic: '', classicAlg: 'ECDSA P-256' } } } as ReleaseRecord;
}

test('fence: only the release image of a QUEUED or IN_PROGRESS execution of this device; a later release is seen at once', async () => {
  const { dataDir, images } = dataDirWith(3);
  const [img1, img2, img3] = [images[0]!, images[1]!, images[2]!];
  const otaDir = otaDirOf(dataDir);
  await writeReleaseIndex(otaDir, { version: 1, releases: [release('r1', img1.digest, 5000), release('r2', img2.digest, 5000)], lastSequence: {} });
  const store = SqliteJobStore.open(join(dataDir, JOBS_DB_FILE));
  try {
    const job = (id: string, releaseId: string, who: string[]): void =>
      assert.ok(store.createJob({ id, document: { releaseId }, maxRetries: 0, defaultStepTimeoutMs: null, inProgressTimeoutMs: null, createdAt: 1 }, who));
    let t = 10_000;
    const fence = new TransferFence(store, dataDir, () => t);
    job('j1', 'r1', ['dev-a']);
    assert.deepEqual(await fence.imageFor('dev-a', img1.digest), { digest: img1.digest, size: 5000, releaseId: 'r1' });
    // Another release's image, another device, an unknown digest: no.
    assert.equal(await fence.imageFor('dev-a', img2.digest), null);
    assert.equal(await fence.imageFor('dev-b', img1.digest), null);
    assert.equal(await fence.imageFor('dev-a', 'f'.repeat(64)), null);
    // Started (IN_PROGRESS): still yes; finished: no.
    const e = store.execution('j1', 'dev-a')!;
    const started = store.apply(e, { status: 'IN_PROGRESS', startedAt: 2, lastUpdatedAt: 2 }, false)!;
    assert.ok((await fence.imageFor('dev-a', img1.digest)) !== null);
    store.apply(started, { status: 'SUCCEEDED', lastUpdatedAt: 3 }, false);
    assert.equal(await fence.imageFor('dev-a', img1.digest), null);
    // A job whose release is not in the index: no image, and no crash.
    job('j-none', 'r-missing', ['dev-a']);
    assert.equal(await fence.imageFor('dev-a', img1.digest), null);
    // A release created after the index was cached, within the same second: seen at once.
    const index = await readReleaseIndex(otaDir);
    index.releases.push(release('r3', img3.digest, 5000));
    await writeReleaseIndex(otaDir, index);
    job('j3', 'r3', ['dev-a']);
    t += 1;
    assert.equal((await fence.imageFor('dev-a', img3.digest))?.releaseId, 'r3');
    // Canceled: no.
    store.cancelJob('j3', 4);
    assert.equal(await fence.imageFor('dev-a', img3.digest), null);
  } finally {
    store.close();
  }
});
