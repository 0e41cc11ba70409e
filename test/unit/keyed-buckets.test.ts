/**
 * Per-key token buckets (src/security/limits/keyed-buckets.ts): each key has its own burst
 * and rate; idle (full) buckets are forgotten when the map is at its bound; a new key is
 * refused rather than grow the map past it while every bucket is busy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyedTokenBuckets } from '../../src/security/limits/keyed-buckets.js';

test('each key has its own burst, then its rate', () => {
  const b = new KeyedTokenBuckets(10, 3);
  for (let i = 0; i < 3; i++) assert.equal(b.take('a', 0), true);
  assert.equal(b.take('a', 0), false, 'burst spent');
  assert.equal(b.take('b', 0), true, 'another key is not affected');
  assert.equal(b.take('a', 99), false, 'less than one token after 99 ms at 10/s');
  assert.equal(b.take('a', 100), true);
});

test('the map stays within its bound: idle keys are dropped, busy ones refuse a newcomer', () => {
  const b = new KeyedTokenBuckets(1, 2, 2);
  assert.equal(b.take('a', 0), true);
  assert.equal(b.take('b', 0), true);
  assert.equal(b.take('c', 0), false, 'both buckets busy: no room');
  assert.equal(b.size, 2);
  // Two seconds later both are full again: forgotten, and c gets a bucket.
  assert.equal(b.take('c', 2000), true);
  assert.equal(b.size, 1);
});
