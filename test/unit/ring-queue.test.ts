import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RingQueue } from '../../src/broker/session/ring-queue.js';

test('ring queue keeps FIFO order across growth and wrap-around', () => {
  const q = new RingQueue<number>(2);
  const model: number[] = [];
  let next = 0;
  for (let round = 0; round < 200; round++) {
    const pushes = (round * 7) % 5;
    for (let i = 0; i < pushes; i++) {
      q.push(next);
      model.push(next++);
    }
    const shifts = (round * 3) % 4;
    for (let i = 0; i < shifts; i++) assert.equal(q.shift(), model.shift());
    assert.equal(q.length, model.length);
    assert.equal(q.peek(), model[0]);
  }
  assert.deepEqual([...q], model);
  q.clear();
  assert.equal(q.shift(), undefined);
});
