/**
 * `bastion ota key|sign|release` as an operator runs them (real CLI processes on a temp
 * data directory): key init writes the root key 0600 with the offline warning, sign and
 * release create store a content-addressed image, list shows it; after a rotation a
 * manifest signed by the old key is refused (RotatedOutKey), the old key signs nothing
 * more, and the new one works; an image over the size limit and a tampered image are each
 * refused in one line; a device-side verifyUpdate accepts what the CLI released.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { verifyUpdate, type FirmwarePublicKey } from '../../src/firmware/index.js';
import { failedWithOneLine } from '../helpers/audit-files.js';
import { BASTION_MAIN, run, type ProcResult } from './support.js';

let work: string;
let dataDir: string;
let image: string;
const imageBytes = Buffer.alloc(200_000);
for (let i = 0; i < imageBytes.length; i++) imageBytes[i] = (i * 7919) & 0xff;
const digest = createHash('sha256').update(imageBytes).digest('hex');

function ota(...args: string[]): Promise<ProcResult> {
  return run(process.execPath, [BASTION_MAIN, 'ota', ...args, '--data-dir', dataDir]);
}

function ok(r: ProcResult): ProcResult {
  assert.equal(r.code, 0, `exit ${String(r.code)}; stdout: ${r.stdout} stderr: ${r.stderr}`);
  return r;
}

describe('bastion ota', () => {
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'bastion-ota-cli-'));
    dataDir = join(work, 'data');
    image = join(work, 'fw-1.bin');
    writeFileSync(image, imageBytes);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('key init writes the keys, the key set and the pins, and says to move the root key offline', async () => {
    const r = ok(await ota('key', 'init'));
    assert.match(r.stdout, /key set\s+version 1/);
    assert.match(r.stderr, /OFFLINE ROOT KEY/);
    assert.match(r.stderr, /root\.key\.json/);
    const dir = join(dataDir, 'ota');
    assert.equal(statSync(join(dir, 'root.key.json')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'release.key.json')).mode & 0o777, 0o600);
    assert.ok(existsSync(join(dir, 'keyset.json')) && existsSync(join(dir, 'root.pub.json')));
    // A second init never replaces the keys.
    assert.match(failedWithOneLine(await ota('key', 'init')), /already exist/);
  });

  test('sign, release create and list: the image is stored under its SHA-256; the sequence counts up', async () => {
    const s = ok(await ota('sign', image, '--class', 'thermo', '--vendor', 'acme', '--fw-version', '1.0.0', '--out', join(work, 'm1.json')));
    assert.match(s.stdout, /sequence 1 /);
    const c = ok(await ota('release', 'create', image, '--manifest', join(work, 'm1.json')));
    assert.match(c.stdout, new RegExp(`image sha256 ${digest}`));
    assert.deepEqual(readFileSync(join(dataDir, 'ota', 'images', digest)), imageBytes);
    const again = ok(await ota('sign', image, '--class', 'thermo', '--vendor', 'acme', '--fw-version', '1.0.1', '--out', join(work, 'm2.json')));
    assert.match(again.stdout, /sequence 2 /);
    const list = ok(await ota('release', 'list', '--json'));
    const rows = list.stdout.trim().split('\n').map((l) => JSON.parse(l) as { classId: string; sequence: number; imageDigest: string });
    assert.deepEqual(rows.map((x) => [x.classId, x.sequence, x.imageDigest]), [['thermo', 1, digest]]);
    assert.match(ok(await ota('release', 'list')).stdout, /thermo\s+1\.0\.0\s+1\s+200000/);
    // The same manifest twice is refused (one release per class and sequence).
    assert.match(failedWithOneLine(await ota('release', 'create', image, '--manifest', join(work, 'm1.json'))), /already has release/);
  });

  test('what the CLI released verifies on a device', () => {
    const dir = join(dataDir, 'ota');
    const rootKeys = (JSON.parse(readFileSync(join(dir, 'root.pub.json'), 'utf8')) as { rootKeys: FirmwarePublicKey[] }).rootKeys;
    const r = verifyUpdate({
      envelope: readFileSync(join(work, 'm1.json'), 'utf8'),
      keySet: readFileSync(join(dir, 'keyset.json'), 'utf8'),
      rootKeys,
      policy: { requirePostQuantum: true },
      device: { vendorId: 'acme', classId: 'thermo', lastSequence: 0, now: Date.now() },
      image: imageBytes,
    });
    assert.ok(r.ok, r.ok ? '' : r.message);
  });

  test('a tampered image is refused by release create, and nothing is stored', async () => {
    const tampered = join(work, 'tampered.bin');
    const bytes = Buffer.from(imageBytes);
    bytes[1234] = bytes[1234]! ^ 0xff;
    writeFileSync(tampered, bytes);
    const line = failedWithOneLine(await ota('release', 'create', tampered, '--manifest', join(work, 'm2.json')));
    assert.match(line, /DigestMismatch/);
    assert.deepEqual(readdirSync(join(dataDir, 'ota', 'images')), [digest]);
    const truncated = join(work, 'truncated.bin');
    writeFileSync(truncated, imageBytes.subarray(0, 1000));
    assert.match(failedWithOneLine(await ota('release', 'create', truncated, '--manifest', join(work, 'm2.json'))), /SizeMismatch/);
  });

  test('an image over the size limit is refused in one line, by sign and by release create', async () => {
    assert.match(failedWithOneLine(await ota('sign', image, '--class', 'thermo', '--vendor', 'acme', '--fw-version', '9', '--max-image-size', '100K', '--out', join(work, 'big.json'))), /over the limit of 102400 bytes/);
    assert.equal(existsSync(join(work, 'big.json')), false);
    assert.match(failedWithOneLine(await ota('release', 'create', image, '--manifest', join(work, 'm2.json'), '--max-image-size', '100K')), /over the limit of 102400 bytes/);
  });

  test('bad input: one line and a non-zero exit', async () => {
    assert.match(failedWithOneLine(await ota('sign', image, '--vendor', 'acme', '--fw-version', '1')), /--class is required/);
    assert.match(failedWithOneLine(await ota('sign', join(work, 'missing.bin'), '--class', 'c', '--vendor', 'acme', '--fw-version', '1')), /cannot read the image/);
    assert.match(failedWithOneLine(await ota('sign', image, '--class', 'c', '--vendor', 'acme', '--fw-version', '1', '--seq', '0')), /--seq must be a whole number/);
    assert.match(failedWithOneLine(await ota('sign', image, '--class', 'bad class', '--vendor', 'acme', '--fw-version', '1', '--out', join(work, 'x.json'))), /cannot sign: manifest.classId/);
    writeFileSync(join(work, 'junk.json'), '{"manifest":"!!"}');
    assert.match(failedWithOneLine(await ota('release', 'create', image, '--manifest', join(work, 'junk.json'))), /Malformed/);
    assert.match(failedWithOneLine(await ota('key', 'rotate')), /--root-key FILE is required/);
  });

  test('after a rotation the old key is refused: its manifest by release create, and it signs nothing more', async () => {
    const dir = join(dataDir, 'ota');
    const oldKey = join(work, 'old-release.key.json');
    writeFileSync(oldKey, readFileSync(join(dir, 'release.key.json')), { mode: 0o600 });
    const r = ok(await ota('key', 'rotate', '--root-key', join(dir, 'root.key.json')));
    assert.match(r.stdout, /key set\s+version 2/);
    const line = failedWithOneLine(await ota('release', 'create', image, '--manifest', join(work, 'm2.json')));
    assert.match(line, /RotatedOutKey/);
    assert.match(failedWithOneLine(await ota('sign', image, '--class', 'thermo', '--vendor', 'acme', '--fw-version', '1.0.2', '--key', oldKey, '--out', join(work, 'm3-old.json'))), /rotated out in key set version 2/);
    const s = ok(await ota('sign', image, '--class', 'thermo', '--vendor', 'acme', '--fw-version', '1.0.2', '--out', join(work, 'm3.json')));
    assert.match(s.stdout, /sequence 3 /);
    ok(await ota('release', 'create', image, '--manifest', join(work, 'm3.json')));
    // A release key is not the root key.
    assert.match(failedWithOneLine(await ota('key', 'rotate', '--root-key', join(dir, 'release.key.json'))), /holds a release key, not a root key/);
  });
});
