/**
 * OTA block transfer, the pure parts: the topics (request and answer names, no wildcards,
 * the digest spelling), the guard's rules over a recording next authorizer, the JSON
 * checks of describe and get (sizes, block size bounds and the client's packet bound,
 * ranges), the bitmap (bit i of byte i >> 3, lengths, bits past the end), the data
 * message header, and the `ota` config section.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthorizedClient, DeliveryAuthorizer } from '../../src/broker/ports.js';
import { configSchema } from '../../src/core/config.js';
import { blockCountOf, blockMessage, BLOCK_HEADER_BYTES, parseBlockMessage } from '../../src/ota/transfer/block-source.js';
import { encodeBitmap, largestBlockSizeFor, MAX_TRANSFER_REQUEST_BYTES, parseGet, parseRequestJson, TransferRefusal, wantedBlocks } from '../../src/ota/transfer/request.js';
import { otaIdentityOf, transferRequestOf, transferTopic, transferTopicOf } from '../../src/ota/transfer/topics.js';
import { TransferGuard } from '../../src/ota/transfer/transfer-guard.js';

const D = 'ab'.repeat(32);

test('topics: the five kinds under a device prefix; no wildcards, bad digests or extra levels', () => {
  assert.deepEqual(transferTopicOf(`$bastion/ota/dev-1/files/${D}/get`), { identity: 'dev-1', digest: D, kind: 'get' });
  assert.deepEqual(transferRequestOf(`$bastion/ota/dev-1/files/${D}/describe`), { identity: 'dev-1', digest: D, kind: 'describe' });
  for (const k of ['description', 'data', 'rejected'] as const) {
    assert.equal(transferTopicOf(transferTopic('dev-1', D, k))?.kind, k);
    assert.equal(transferRequestOf(transferTopic('dev-1', D, k)), null, `${k} is not a request`);
  }
  for (const bad of [
    `$bastion/ota/+/files/${D}/get`,
    `$bastion/ota/dev-1/files/+/get`,
    `$bastion/ota/dev-1/files/${D.toUpperCase()}/get`,
    `$bastion/ota/dev-1/files/${D.slice(2)}/get`,
    `$bastion/ota/dev-1/files/${D}/get/x`,
    `$bastion/ota/dev-1/file/${D}/get`,
    `$bastion/ota/dev-1/files/${D}/put`,
    `$bastion/ota//files/${D}/get`,
    `$bastion/jobs/dev-1/get`,
  ]) {
    assert.equal(transferTopicOf(bad), null, bad);
  }
  assert.equal(otaIdentityOf('$bastion/ota/dev-1/#'), 'dev-1');
  assert.equal(otaIdentityOf('$bastion/ota/dev-1'), 'dev-1');
  assert.equal(otaIdentityOf('$bastion/ota/+/files/#'), null);
  assert.equal(otaIdentityOf('$bastion/ota/#'), null);
});

/** The next authorizer: records what reached it, allows everything. */
function recordingNext(): DeliveryAuthorizer & { seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    authorizePublish: (_c, topic) => (seen.push(`pub ${topic}`), { ok: true }),
    authorizeSubscribe: (_c, filter, qos) => (seen.push(`sub ${filter}`), { ok: true, qos }),
    canReceive: (_c, topic) => (seen.push(`recv ${topic}`), true),
  };
}

const client = (clientId: string): AuthorizedClient => ({ clientId, principal: null, identity: { method: 'certificate' } as AuthorizedClient['identity'] });

test('guard: a device publishes describe/get on its own prefix only, never retained; subscribes and receives under its own prefix only; others get nothing; the rest goes on', () => {
  const next = recordingNext();
  // The identity is the client id here; null stands for a client without a device certificate.
  const guard = new TransferGuard(next, (c) => (c.clientId === 'anon' ? null : c.clientId));
  const own = (k: 'get' | 'describe' | 'data'): string => transferTopic('dev-1', D, k);
  assert.equal(guard.authorizePublish(client('dev-1'), own('get'), 1, false).ok, true);
  assert.equal(guard.authorizePublish(client('dev-1'), own('describe'), 0, false).ok, true);
  const refused = (v: { ok: boolean; reasonCode?: number }): boolean => v.ok === false && v.reasonCode === 0x87;
  assert.ok(refused(guard.authorizePublish(client('dev-1'), own('get'), 1, true)), 'retained');
  assert.ok(refused(guard.authorizePublish(client('dev-1'), own('data'), 1, false)), 'an answer topic');
  assert.ok(refused(guard.authorizePublish(client('dev-2'), own('get'), 1, false)), "another device's prefix");
  assert.ok(refused(guard.authorizePublish(client('anon'), own('get'), 1, false)), 'no identity');
  assert.ok(refused(guard.authorizePublish(client('dev-1'), '$bastion/ota/dev-1/other', 1, false)), 'not a request');
  assert.equal(guard.authorizeSubscribe(client('dev-1'), '$bastion/ota/dev-1/files/+/+', 2).ok, true);
  assert.deepEqual(guard.authorizeSubscribe(client('dev-1'), '$bastion/ota/dev-1/#', 2), { ok: true, qos: 1 });
  for (const f of ['$bastion/ota/dev-2/#', '$bastion/ota/+/files/#', '$bastion/ota/#']) assert.equal(guard.authorizeSubscribe(client('dev-1'), f, 1).ok, false, f);
  assert.equal(guard.authorizeSubscribe(client('anon'), '$bastion/ota/anon/#', 1).ok, false);
  assert.equal(guard.canReceive(client('dev-1'), own('data')), true);
  assert.equal(guard.canReceive(client('dev-2'), own('data')), false);
  assert.equal(guard.canReceive(client('anon'), own('data')), false);
  assert.deepEqual(next.seen, [], 'nothing under $bastion/ota/ reached the next authorizer');
  guard.authorizePublish(client('dev-1'), 'devices/dev-1/t', 1, false);
  guard.authorizeSubscribe(client('dev-1'), '$bastion/#', 1);
  guard.canReceive(client('dev-1'), 'devices/dev-1/t');
  assert.deepEqual(next.seen, ['pub devices/dev-1/t', 'sub $bastion/#', 'recv devices/dev-1/t']);
});

const refusal = (code: string, match?: RegExp) => (err: unknown): boolean => err instanceof TransferRefusal && err.errorCode === code && err.statusCode === (code === 'Throttled' ? 429 : 400) && (match === undefined || match.test(err.message));

test('request JSON: bounded, an object, clientToken at most 64 characters', () => {
  assert.deepEqual(parseRequestJson(Buffer.alloc(0)), {});
  assert.throws(() => parseRequestJson(Buffer.from('{nope')), refusal('InvalidJson'));
  assert.throws(() => parseRequestJson(Buffer.from('[1]')), refusal('InvalidJson'));
  assert.throws(() => parseRequestJson(Buffer.from('"x"')), refusal('InvalidJson'));
  assert.throws(() => parseRequestJson(Buffer.alloc(MAX_TRANSFER_REQUEST_BYTES + 1, 0x20)), refusal('InvalidRequest', /4096 bytes/));
  assert.throws(() => parseGet({ blockSize: 1024, firstBlock: 0, clientToken: 'x'.repeat(65) }, 32, 1e9), refusal('InvalidRequest', /clientToken/));
});

test('get fields: blockSize a multiple of 256 from 256 to 131072 and within the client packet bound; firstBlock ≥ 0; blockCount 1..max; bitmap base64', () => {
  const ok = parseGet({ blockSize: 4096, firstBlock: 3, blockCount: 8, bitmap: 'Dw==', clientToken: 't' }, 32, Number.MAX_SAFE_INTEGER);
  assert.equal(ok.blockSize, 4096);
  assert.deepEqual([...ok.bitmap!], [0x0f]);
  for (const blockSize of [0, 255, 300, 131072 + 256, 1024.5, '1024', null]) assert.throws(() => parseGet({ blockSize, firstBlock: 0 }, 32, 1e9), refusal('InvalidRequest', /blockSize/), String(blockSize));
  assert.equal(parseGet({ blockSize: 131072, firstBlock: 0 }, 32, 1e9).blockSize, 131072);
  // A v5 client that takes at most 4,608-byte packets: blocks up to 4,096 bytes.
  assert.equal(largestBlockSizeFor(4608), 4096);
  assert.equal(largestBlockSizeFor(4700), 4096);
  assert.equal(largestBlockSizeFor(700), 0);
  assert.equal(parseGet({ blockSize: 4096, firstBlock: 0 }, 32, 4608).blockSize, 4096);
  assert.throws(() => parseGet({ blockSize: 4352, firstBlock: 0 }, 32, 4608), refusal('InvalidRequest', /blockSize/));
  assert.throws(() => parseGet({ blockSize: 256, firstBlock: 0 }, 32, 700), refusal('InvalidRequest', /Maximum Packet Size/));
  for (const firstBlock of [-1, 1.5, '0', undefined]) assert.throws(() => parseGet({ blockSize: 256, firstBlock }, 32, 1e9), refusal('InvalidRequest', /firstBlock/), String(firstBlock));
  for (const blockCount of [0, 33, 2.5, '4']) assert.throws(() => parseGet({ blockSize: 256, firstBlock: 0, blockCount }, 32, 1e9), refusal('InvalidRequest', /blockCount/), String(blockCount));
  for (const bitmap of ['***', 'AAA', 5, 'A===']) assert.throws(() => parseGet({ blockSize: 256, firstBlock: 0, bitmap }, 32, 1e9), refusal('InvalidRequest', /bitmap/), String(bitmap));
});

test('wanted blocks: the range clipped at the last block, the bitmap bit by bit, its length checked, firstBlock past the end refused', () => {
  const get = (o: { firstBlock: number; blockCount?: number; bitmap?: string }) => parseGet({ blockSize: 256, ...o }, 32, 1e9);
  assert.deepEqual(wantedBlocks(get({ firstBlock: 0, blockCount: 4 }), 10, 32), [0, 1, 2, 3]);
  // Absent blockCount: maxBlocksPerRequest, clipped at the image's end.
  assert.deepEqual(wantedBlocks(get({ firstBlock: 6 }), 10, 32), [6, 7, 8, 9]);
  assert.equal(wantedBlocks(get({ firstBlock: 0 }), 100, 32).length, 32);
  assert.throws(() => wantedBlocks(get({ firstBlock: 10 }), 10, 32), refusal('InvalidRequest', /past the last block/));
  // bit i = (byte[i >> 3] >> (i & 7)) & 1: 0b00000101, 0b10000000 → offsets 0, 2, 15.
  const bm = Buffer.from([0b0000_0101, 0b1000_0000]).toString('base64');
  assert.deepEqual(wantedBlocks(get({ firstBlock: 20, blockCount: 16, bitmap: bm }), 100, 32), [20, 22, 35]);
  assert.equal(encodeBitmap(16, [0, 2, 15]), bm);
  // The length is ceil(blockCount / 8): one byte too many or too few is refused.
  assert.throws(() => wantedBlocks(get({ firstBlock: 0, blockCount: 9, bitmap: encodeBitmap(8, [0]) }), 100, 32), refusal('InvalidRequest', /bitmap must be 2 bytes/));
  assert.throws(() => wantedBlocks(get({ firstBlock: 0, blockCount: 8, bitmap: encodeBitmap(16, [0]) }), 100, 32), refusal('InvalidRequest', /bitmap/));
  // Near the end: sized for the clipped count or the asked one; bits past the end are ignored.
  assert.deepEqual(wantedBlocks(get({ firstBlock: 8, blockCount: 16, bitmap: encodeBitmap(16, [0, 1, 5, 12]) }), 10, 32), [8, 9]);
  assert.deepEqual(wantedBlocks(get({ firstBlock: 8, blockCount: 16, bitmap: encodeBitmap(2, [1]) }), 10, 32), [9]);
  assert.deepEqual(wantedBlocks(get({ firstBlock: 0, blockCount: 8, bitmap: encodeBitmap(8, []) }), 10, 32), []);
});

test('data message: version 1, the raw digest, index and block size big-endian, then the bytes; block counts', () => {
  const bytes = Buffer.from('hello');
  const msg = blockMessage(D, 0x01020304, 4096, bytes);
  assert.equal(msg.length, BLOCK_HEADER_BYTES + 5);
  assert.equal(msg[0], 1);
  assert.equal(msg.subarray(1, 33).toString('hex'), D);
  assert.deepEqual([...msg.subarray(33, 37)], [1, 2, 3, 4]);
  assert.equal(msg.readUInt32BE(37), 4096);
  assert.deepEqual(parseBlockMessage(msg), { version: 1, digest: D, index: 0x01020304, blockSize: 4096, bytes });
  assert.equal(parseBlockMessage(Buffer.alloc(40)), null);
  assert.equal(blockCountOf(1_000_000, 16384), 62);
  assert.equal(blockCountOf(16384, 16384), 1);
});

test('config: ota.transfer defaults, bounds, strict keys', () => {
  const base = { listeners: [{ name: 'a', protocol: 'mqtt', port: 0, insecure: true, allowAnonymous: true }] };
  assert.deepEqual(configSchema.parse(base).ota, { transfer: { maxBytesPerSecond: 32 * 1024 * 1024, maxBlocksPerRequest: 32, defaultBlockSize: 16384, blockCacheBytes: 32 * 1024 * 1024 } });
  assert.equal(configSchema.parse({ ...base, ota: { transfer: { maxBytesPerSecond: 1048576 } } }).ota.transfer.maxBytesPerSecond, 1048576);
  for (const transfer of [{ maxBlocksPerRequest: 0 }, { maxBlocksPerRequest: 257 }, { defaultBlockSize: 1000 }, { defaultBlockSize: 262144 }, { maxBytesPerSecond: 100 }, { blockCacheBytes: -1 }, { blocks: 1 }]) {
    assert.equal(configSchema.safeParse({ ...base, ota: { transfer } }).success, false, JSON.stringify(transfer));
  }
  assert.equal(configSchema.safeParse({ ...base, ota: { other: {} } }).success, false);
});
