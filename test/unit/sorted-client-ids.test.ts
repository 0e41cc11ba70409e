/**
 * The listing index of connected client ids (broker/sorted-client-ids.ts): after any mix of
 * connects and disconnects it equals a fresh sort, prefix ranges and cursor positions are
 * exact, and a listing of a large, mostly unchanged fleet costs far less than a sort (the
 * figures are printed, not asserted: speed is the bench's business).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareClientIds, positionAfter, prefixRange, SortedClientIds } from '../../src/broker/sorted-client-ids.js';
import { prng } from '../helpers/prng.js';

/** Whole numbers from `lo` to `hi` (both included), seeded. */
function ints(seed: number): { int(lo: number, hi: number): number } {
  const next = prng(seed);
  return { int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)) };
}

test('after random connects and disconnects the index equals a fresh sort', () => {
  const rng = ints(16);
  const index = new SortedClientIds();
  const connected = new Set<string>();
  for (let round = 0; round < 200; round++) {
    const adds = rng.int(0, 20);
    for (let i = 0; i < adds; i++) connected.add(`${['sensor', 'gw', 'a', 'é'][rng.int(0, 3)]}-${rng.int(0, 500)}`);
    for (const id of [...connected]) if (rng.int(0, 9) === 0) connected.delete(id);
    const ids = [...connected];
    assert.deepEqual(index.refresh(ids), [...ids].sort(compareClientIds), `round ${round}`);
  }
});

test('prefix ranges and cursor positions', () => {
  const sorted = ['a', 'ab', 'abc', 'abd', 'b', 'ba', 'c'];
  assert.deepEqual(prefixRange(sorted, 'ab'), { start: 1, end: 4 });
  assert.deepEqual(prefixRange(sorted, 'b'), { start: 4, end: 6 });
  assert.deepEqual(prefixRange(sorted, 'zz'), { start: 7, end: 7 });
  assert.deepEqual(prefixRange(sorted, ''), { start: 0, end: 7 });
  assert.equal(positionAfter(sorted, 'ab'), 2);
  assert.equal(positionAfter(sorted, 'ab', true), 1);
  assert.equal(positionAfter(sorted, 'aa'), 1);
  assert.equal(positionAfter(sorted, 'c'), 7);
});

test('a listing of 100k ids with a few changes costs far less than sorting them (printed)', (t) => {
  const rng = ints(7);
  const ids = Array.from({ length: 100_000 }, (_, i) => `sensor-${rng.int(0, 1e9).toString(36)}-${i}`);
  const index = new SortedClientIds();
  let start = performance.now();
  index.refresh(ids);
  const first = performance.now() - start;
  const churned = ids.slice(50);
  for (let i = 0; i < 50; i++) churned.push(`new-${i}`);
  start = performance.now();
  const after = index.refresh(churned);
  const incremental = performance.now() - start;
  start = performance.now();
  index.refresh(churned);
  const unchanged = performance.now() - start;
  assert.equal(after.length, 100_000);
  assert.deepEqual(after.slice(0, 3), ['new-0', 'new-1', 'new-10']);
  t.diagnostic(`100k ids: first listing (full sort) ${first.toFixed(1)} ms, 50 out and 50 in ${incremental.toFixed(1)} ms, unchanged ${unchanged.toFixed(1)} ms`);
});
