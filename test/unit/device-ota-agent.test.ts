/**
 * The OTA agent's pure parts and its download files (src/device/ota-blocks.ts,
 * ota-download-state.ts, ota-jobs-client.ts): the have-bitmap in the wire's bit order, the
 * data block header, refusing a block of another image / size / index / length, planning
 * `get` windows around the blocks had, and resuming a download from the persisted part and
 * bitmap in a temporary directory (what a restarted device does). The download loop
 * (ota-download.ts) is driven with blocks handed to it directly, over a BastionDevice that
 * is not connected (its requests are not sent, so only the timer asks again): windows one
 * after another, a foreign block refused and not written, a redelivered block ignored, and
 * the bounded re-asks ending in DownloadTimeout.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BLOCK_HEADER_BYTES, BlockBitmap, blockCountOf, blockLengthOf, checkBlock, isValidBlockSize, parseBlock, planWindow, transferTopicOf, type DataBlock } from '../../src/device/ota-blocks.js';
import { BastionDevice } from '../../src/device/device.js';
import { MemoryIdentityStore } from '../../src/device/identity-store.js';
import { BlockDownload } from '../../src/device/ota-download.js';
import { bitmapPathOf, discardOtherDownloads, DownloadFiles, partPathOf, readPersistedBitmap } from '../../src/device/ota-download-state.js';
import { details, executionOf, parseNotifyNext } from '../../src/device/ota-jobs-client.js';

const dir = mkdtempSync(join(tmpdir(), 'bastion-ota-agent-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function blockPayload(digest: string, index: number, blockSize: number, data: Buffer, version = 1): Buffer {
  const h = Buffer.alloc(BLOCK_HEADER_BYTES);
  h[0] = version;
  Buffer.from(digest, 'hex').copy(h, 1);
  h.writeUInt32BE(index, 33);
  h.writeUInt32BE(blockSize, 37);
  return Buffer.concat([h, data]);
}

describe('BlockBitmap', () => {
  test('set, has, count, duplicates, and the wire bit order', () => {
    const b = new BlockBitmap(11);
    assert.equal(b.bytes.length, 2);
    assert.equal(b.set(0), true);
    assert.equal(b.set(9), true);
    assert.equal(b.set(9), false, 'a duplicate is not counted twice');
    assert.equal(b.set(11), false, 'past the end');
    assert.equal(b.set(-1), false);
    assert.equal(b.count, 2);
    // bit i = (byte[i >> 3] >> (i & 7)) & 1
    assert.deepEqual([...b.bytes], [0b0000_0001, 0b0000_0010]);
    assert.equal(b.has(9), true);
    assert.equal(b.has(8), false);
    assert.equal(b.firstMissing(), 1);
    assert.equal(b.firstMissing(9), 10);
    for (let i = 0; i < 11; i++) b.set(i);
    assert.equal(b.complete, true);
    assert.equal(b.firstMissing(), -1);
  });

  test('from bytes: counted, spare bits past the last block cleared, a wrong length refused', () => {
    const b = new BlockBitmap(10, Buffer.from([0xff, 0xff]));
    assert.equal(b.count, 10);
    assert.equal(b.complete, true);
    assert.equal(b.bytes[1], 0b11);
    assert.throws(() => new BlockBitmap(10, Buffer.from([0xff])), /2 bytes/);
    assert.deepEqual(new BlockBitmap(5, Buffer.from([0b10101])).missingIndices(), [1, 3]);
  });
});

describe('data blocks', () => {
  const image = Buffer.alloc(1000, 7);
  const digest = sha(image);

  test('the header: version, digest, index, block size, then the bytes', () => {
    const p = parseBlock(blockPayload(digest, 3, 256, image.subarray(768)));
    assert.ok(p.ok);
    if (!p.ok) return;
    assert.equal(p.block.digest, digest);
    assert.equal(p.block.index, 3);
    assert.equal(p.block.blockSize, 256);
    assert.equal(p.block.data.length, 232);
    const short = parseBlock(Buffer.alloc(40));
    assert.ok(!short.ok && /at least 41 bytes/.test(short.message));
    const v2 = parseBlock(blockPayload(digest, 0, 256, Buffer.alloc(256), 2));
    assert.ok(!v2.ok && /version 2/.test(v2.message));
  });

  test('checkBlock refuses a foreign image, another block size, an index not asked for or past the end, a wrong length', () => {
    const have = new BlockBitmap(blockCountOf(image.length, 256));
    assert.equal(have.blockCount, 4);
    const asked = new Set([0, 1, 3]);
    const e = { digest, size: image.length, blockSize: 256, asked, have };
    const block = (over: Partial<DataBlock>): DataBlock => ({ digest, index: 0, blockSize: 256, data: Buffer.alloc(256), ...over });
    assert.deepEqual(checkBlock(block({}), e), { ok: true });
    const foreign = checkBlock(block({ digest: sha(Buffer.from('other image')) }), e);
    assert.ok(!foreign.ok && !foreign.duplicate && foreign.reason === 'ForeignImage');
    const size = checkBlock(block({ blockSize: 512 }), e);
    assert.ok(!size.ok && !size.duplicate && size.reason === 'WrongBlockSize');
    const notAsked = checkBlock(block({ index: 2 }), e);
    assert.ok(!notAsked.ok && !notAsked.duplicate && notAsked.reason === 'UnexpectedBlock');
    const past = checkBlock(block({ index: 4 }), e);
    assert.ok(!past.ok && !past.duplicate && past.reason === 'UnexpectedBlock');
    // The last block is shorter: 1000 - 3 * 256 = 232 bytes, exactly.
    assert.equal(blockLengthOf(3, image.length, 256), 232);
    assert.deepEqual(checkBlock(block({ index: 3, data: Buffer.alloc(232) }), e), { ok: true });
    const long = checkBlock(block({ index: 3, data: Buffer.alloc(256) }), e);
    assert.ok(!long.ok && !long.duplicate && long.reason === 'BadBlockLength');
    const truncated = checkBlock(block({ data: Buffer.alloc(100) }), e);
    assert.ok(!truncated.ok && !truncated.duplicate && truncated.reason === 'BadBlockLength');
    have.set(1);
    assert.deepEqual(checkBlock(block({ index: 1 }), e), { ok: false, duplicate: true });
  });

  test('block sizes and transfer topics', () => {
    assert.ok(isValidBlockSize(256) && isValidBlockSize(16_384) && isValidBlockSize(131_072));
    assert.ok(!isValidBlockSize(0) && !isValidBlockSize(300) && !isValidBlockSize(131_328) && !isValidBlockSize(256.5));
    assert.deepEqual(transferTopicOf('dev-1', `$bastion/ota/dev-1/files/${digest}/data`), { digest, kind: 'data' });
    assert.equal(transferTopicOf('dev-1', `$bastion/ota/dev-2/files/${digest}/data`), null);
    assert.equal(transferTopicOf('dev-1', `$bastion/ota/dev-1/files/${digest}/data/x`), null);
  });
});

describe('planWindow', () => {
  test('from the first missing block, at most maxBlocks, a bitmap only when blocks of the range are had', () => {
    const have = new BlockBitmap(100);
    assert.deepEqual(planWindow(have, 32), { firstBlock: 0, blockCount: 32, wanted: Array.from({ length: 32 }, (_, i) => i) });
    for (const i of [0, 1, 2, 5, 6]) have.set(i);
    const w = planWindow(have, 8)!;
    assert.equal(w.firstBlock, 3);
    assert.equal(w.blockCount, 8);
    assert.deepEqual(w.wanted, [3, 4, 7, 8, 9, 10]);
    // Bits relative to firstBlock: 0,1 wanted; 2,3 (blocks 5,6) had; 4..7 wanted.
    assert.deepEqual([...Buffer.from(w.bitmap!, 'base64')], [0b1111_0011]);
  });

  test('clipped at the last missing block and the image end; null when complete; from a position', () => {
    const have = new BlockBitmap(10);
    for (let i = 0; i < 10; i++) if (i !== 4 && i !== 9) have.set(i);
    const w = planWindow(have, 32)!;
    assert.equal(w.firstBlock, 4);
    assert.equal(w.blockCount, 6);
    assert.deepEqual(w.wanted, [4, 9]);
    assert.deepEqual([...Buffer.from(w.bitmap!, 'base64')], [0b10_0001]);
    assert.deepEqual(planWindow(have, 32, 5), { firstBlock: 9, blockCount: 1, wanted: [9] });
    have.set(4);
    have.set(9);
    assert.equal(planWindow(have, 32), null);
  });
});

describe('download files', () => {
  const image = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 31) & 0xff));
  const digest = sha(image);
  const blockOf = (i: number, bs: number): Buffer => image.subarray(i * bs, Math.min(image.length, (i + 1) * bs));

  test('blocks land at their offsets; a reopened download resumes from the persisted bitmap and finishes with the right digest', async () => {
    const stateDir = join(dir, 'resume');
    const first = await DownloadFiles.open(stateDir, digest, image.length, 1024);
    assert.equal(first.resumedBlocks, 0);
    assert.equal(first.have.blockCount, 5);
    assert.equal(statSync(partPathOf(stateDir, digest)).size, image.length);
    assert.equal(statSync(partPathOf(stateDir, digest)).mode & 0o777, 0o600);
    assert.equal(await first.writeBlock(3, blockOf(3, 1024)), true);
    assert.equal(await first.writeBlock(0, blockOf(0, 1024)), true);
    assert.equal(await first.writeBlock(0, blockOf(0, 1024)), false, 'a block is written once');
    await first.persist();
    // Written but never persisted: a crash forgets it (fetched again), never claims it.
    await first.writeBlock(4, blockOf(4, 1024));
    await first.close();

    // A restarted device, possibly told another block size: the persisted one counts.
    const again = await DownloadFiles.open(stateDir, digest, image.length, 4096);
    assert.equal(again.blockSize, 1024);
    assert.equal(again.resumedBlocks, 2);
    assert.deepEqual(again.have.missingIndices(), [1, 2, 4]);
    for (const i of again.have.missingIndices()) await again.writeBlock(i, blockOf(i, 1024));
    assert.equal(again.have.complete, true);
    await again.persist();
    await again.close();
    assert.deepEqual(await again.hash(), { digest, size: image.length });
    assert.deepEqual(readFileSync(partPathOf(stateDir, digest)), image);
    const persisted = await readPersistedBitmap(stateDir, digest, image.length);
    assert.equal(persisted?.have.complete, true);
    await again.discard();
    assert.equal(await readPersistedBitmap(stateDir, digest, image.length), null);
  });

  test('a bitmap of another size, an unreadable one, or a missing part starts over', async () => {
    const stateDir = join(dir, 'over');
    const a = await DownloadFiles.open(stateDir, digest, image.length, 1024);
    await a.writeBlock(1, blockOf(1, 1024));
    await a.persist();
    await a.close();
    assert.equal((await DownloadFiles.open(stateDir, digest, image.length + 1, 1024).then(async (f) => (await f.close(), f))).resumedBlocks, 0);
    // The bitmap was replaced by the one for the other size: set one up again, then break it.
    const b = await DownloadFiles.open(stateDir, digest, image.length, 1024);
    await b.writeBlock(2, blockOf(2, 1024));
    await b.persist();
    await b.close();
    writeFileSync(bitmapPathOf(stateDir, digest), '{not json');
    const c = await DownloadFiles.open(stateDir, digest, image.length, 1024);
    assert.equal(c.resumedBlocks, 0);
    await c.writeBlock(2, blockOf(2, 1024));
    await c.persist();
    await c.close();
    rmSync(partPathOf(stateDir, digest));
    const d = await DownloadFiles.open(stateDir, digest, image.length, 1024);
    assert.equal(d.resumedBlocks, 0, 'a bitmap without its part is not trusted');
    await d.discard();
    await assert.rejects(DownloadFiles.open(stateDir, digest, image.length, 1000), /multiple of 256/);
  });
});

describe('the download loop', () => {
  const image = Buffer.from(Array.from({ length: 10 * 256 + 100 }, (_, i) => (i * 7) & 0xff));
  const digest = sha(image);
  // Never connected: the loop's gets stay unsent (BastionDevice.connected is false).
  const offline = (): BastionDevice => new BastionDevice({ url: 'mqtts://127.0.0.1:1', store: new MemoryIdentityStore({ identity: 'dev-u', certPem: '', keyPem: '' }), reconnect: false });
  const blockOf = (i: number, d = digest): DataBlock => ({ digest: d, index: i, blockSize: 256, data: image.subarray(i * 256, Math.min(image.length, (i + 1) * 256)) });

  test('windows one after another until complete; a foreign block is refused, a redelivery ignored', async () => {
    const stateDir = join(dir, 'loop');
    const files = await DownloadFiles.open(stateDir, digest, image.length, 256);
    const refused: string[] = [];
    const progress: number[] = [];
    const requests: number[][] = [];
    // The broker's part: each get answered with its blocks, each delivered twice (QoS 1 may).
    const dl: BlockDownload = new BlockDownload({
      device: offline(),
      identity: 'dev-u',
      files,
      maxBlocksPerRequest: 4,
      onBlock: (n) => progress.push(n),
      onRefused: (reason) => refused.push(reason),
      onRequest: (w) => {
        requests.push([...w.wanted]);
        queueMicrotask(() => {
          for (const i of w.wanted) {
            dl.onData(blockOf(i));
            dl.onData(blockOf(i));
          }
        });
      },
    });
    const outcome = dl.run();
    assert.equal(dl.gets, 1, 'the first window is asked for at once');
    dl.onData(blockOf(0, sha(Buffer.from('another image'))));
    dl.onData(blockOf(5));
    assert.deepEqual(refused, ['ForeignImage', 'UnexpectedBlock'], 'a block of another image, and one outside the window');
    assert.deepEqual(await outcome, { kind: 'complete' });
    assert.deepEqual(refused, ['ForeignImage', 'UnexpectedBlock'], 'redeliveries are not refusals');
    assert.equal(dl.written, 11);
    assert.equal(dl.gets, 3, 'three windows of at most 4 blocks');
    assert.deepEqual(requests, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]);
    assert.deepEqual(progress, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    await files.close();
    assert.deepEqual(await files.hash(), { digest, size: image.length });
    assert.equal((await readPersistedBitmap(stateDir, digest, image.length))?.have.complete, true);
  });

  test('no block: asked again after each timeout, then DownloadTimeout; what was had stays for a resume', async () => {
    const stateDir = join(dir, 'timeout');
    const files = await DownloadFiles.open(stateDir, digest, image.length, 256);
    const dl = new BlockDownload({ device: offline(), identity: 'dev-u', files, maxBlocksPerRequest: 32, blockTimeoutMs: 5, maxRetries: 2, onBlock: () => undefined, onRefused: () => undefined });
    const outcome = dl.run();
    dl.onData(blockOf(3));
    const o = await outcome;
    assert.equal(o.kind, 'failed');
    assert.ok(o.kind === 'failed' && o.reason === 'DownloadTimeout' && /\/11 blocks had/.test(o.message), JSON.stringify(o));
    assert.equal(dl.gets, 3, 'the first ask and two re-asks');
    await files.suspend();
    const again = await DownloadFiles.open(stateDir, digest, image.length, 256);
    assert.deepEqual(again.have.missingIndices(), [0, 1, 2, 4, 5, 6, 7, 8, 9, 10]);
    await again.close();
    // Another image's download starts: this one's files go.
    await discardOtherDownloads(stateDir, sha(Buffer.from('next image')));
    assert.equal(await readPersistedBitmap(stateDir, digest, image.length), null);
  });
});

describe('the download loop: rejections', () => {
  const image = Buffer.alloc(3000, 1);
  const digest = sha(image);
  const offline = (): BastionDevice => new BastionDevice({ url: 'mqtts://127.0.0.1:1', store: new MemoryIdentityStore({ identity: 'dev-u', certPem: '', keyPem: '' }), reconnect: false });

  test('Throttled is waited out (asked again after the timeout); InvalidRequest fails and the files are not kept; another token is not this download\'s', async () => {
    const files = await DownloadFiles.open(join(dir, 'rejected'), digest, image.length, 256);
    const tokens: string[] = [];
    let askedAgain: () => void = () => undefined;
    const secondGet = new Promise<void>((resolve) => {
      askedAgain = resolve;
    });
    const onRequest = (w: { clientToken: string }): void => {
      tokens.push(w.clientToken);
      if (tokens.length === 2) askedAgain();
    };
    const dl = new BlockDownload({ device: offline(), identity: 'dev-u', files, maxBlocksPerRequest: 32, blockTimeoutMs: 5, maxRetries: 10, onBlock: () => undefined, onRefused: () => undefined, onRequest });
    const outcome = dl.run();
    assert.equal(dl.onRejected({ errorCode: 'InvalidRequest', clientToken: 'not-mine' }), false);
    assert.equal(dl.onRejected({ statusCode: 429, errorCode: 'Throttled', errorMessage: 'slow down', clientToken: tokens[0] }), true);
    // The timer asks again: the second get's answer is an InvalidRequest.
    await secondGet;
    assert.equal(dl.onRejected({ statusCode: 400, errorCode: 'InvalidRequest', errorMessage: 'blockSize', clientToken: tokens[1] }), true);
    const o = await outcome;
    assert.ok(o.kind === 'failed' && o.reason === 'TransferRejected' && o.discard === true && /InvalidRequest \(400\): blockSize/.test(o.message), JSON.stringify(o));
    await files.discard();
  });
});

describe('job answers', () => {
  test('notify-next and executions are read field by field; statusDetails become bounded strings', () => {
    assert.equal(parseNotifyNext(Buffer.from('{"timestamp":1}')), null);
    assert.equal(parseNotifyNext(Buffer.from('not json')), undefined);
    assert.equal(parseNotifyNext(Buffer.from('{"execution":{"jobId":1}}')), undefined);
    const e = parseNotifyNext(Buffer.from(JSON.stringify({ execution: { jobId: 'j', executionNumber: 2, versionNumber: 3, status: 'QUEUED', jobDocument: { manifest: {} } } })));
    assert.deepEqual(e, { jobId: 'j', executionNumber: 2, versionNumber: 3, status: 'QUEUED', jobDocument: { manifest: {} } });
    assert.equal(executionOf({ jobId: 'j', executionNumber: 1, versionNumber: 1, status: 'QUEUED', jobDocument: [1] })?.jobDocument, null);
    const d = details({ received: 10, message: 'x'.repeat(2000) });
    assert.equal(d.received, '10');
    assert.equal(d.message!.length, 1024);
  });
});
