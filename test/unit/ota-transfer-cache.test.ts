/**
 * The OTA block cache (src/ota/transfer/block-cache.ts): a block asked for by many devices
 * is loaded once (also when they ask while it is loading), served from memory afterwards,
 * the least recently used goes first past the byte bound, a failed load is not kept, and
 * a bound of 0 keeps nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockCache } from '../../src/ota/transfer/block-cache.js';

const loader = (loads: string[], key: string, size = 100): (() => Promise<Buffer>) => async () => {
  loads.push(key);
  return Buffer.alloc(size, key.length);
};

test('one load per block for any number of askers, concurrent ones included; later asks are answered synchronously', async () => {
  const c = new BlockCache(10_000);
  const loads: string[] = [];
  const first = await Promise.all(Array.from({ length: 50 }, () => c.get('img:16384:0', loader(loads, 'img:16384:0'))));
  assert.deepEqual(loads, ['img:16384:0']);
  assert.ok(first.every((b) => b === first[0]), 'every device gets the same message');
  const again = c.get('img:16384:0', loader(loads, 'img:16384:0'));
  assert.ok(Buffer.isBuffer(again), 'a held block is not a promise');
  assert.equal(loads.length, 1);
  assert.equal(c.misses, 1);
  assert.equal(c.hits, 50);
});

test('past the byte bound the least recently used block goes first', async () => {
  const c = new BlockCache(300);
  const loads: string[] = [];
  for (const k of ['a', 'b', 'c']) await c.get(k, loader(loads, k));
  await c.get('a', loader(loads, 'a')); // a is now the most recent
  await c.get('d', loader(loads, 'd')); // evicts b
  assert.equal(c.size, 300);
  await c.get('a', loader(loads, 'a'));
  await c.get('b', loader(loads, 'b'));
  assert.deepEqual(loads, ['a', 'b', 'c', 'd', 'b']);
});

test('a failed load is not kept, and a bound of 0 keeps nothing', async () => {
  const c = new BlockCache(1000);
  await assert.rejects(Promise.resolve(c.get('x', () => Promise.reject(new Error('EIO')))), /EIO/);
  const loads: string[] = [];
  await c.get('x', loader(loads, 'x'));
  assert.deepEqual(loads, ['x'], 'the next ask loads again');
  const off = new BlockCache(0);
  await off.get('y', loader(loads, 'y'));
  await off.get('y', loader(loads, 'y'));
  assert.equal(off.size, 0);
  assert.deepEqual(loads, ['x', 'y', 'y']);
});
