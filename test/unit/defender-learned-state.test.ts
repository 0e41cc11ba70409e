/**
 * What the evaluator learned about an identity, exported as JSON and adopted elsewhere
 * (a cluster node a device moves to): baselines, known items and alarm cooldowns carry
 * over by rule position; a node that already knows more keeps its own; a snapshot of
 * other rules is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientStats } from '../../src/defender/detect/client-stats.js';
import { Evaluator, type LearnedState } from '../../src/defender/detect/evaluator.js';
import { DEFAULT_RULES } from '../../src/defender/detect/detect-config.js';

const W = 30_000;

/** Feeds `windows` windows of `perWindow` messages to `dev-1` on devices/dev-1/t; returns the evaluator's changes. */
function feed(ev: Evaluator, t0: number, windows: number, perWindow: (w: number) => number, topic = 'devices/dev-1/t'): Array<{ rule: string; state: string }> {
  const stats = new ClientStats(t0);
  stats.observe({ kind: 'connect', identity: 'dev-1', clientId: 'dev-1', remote: '10.0.0.7', at: t0 });
  const out: Array<{ rule: string; state: string }> = [];
  for (let w = 1; w <= windows; w++) {
    for (let i = 0; i < perWindow(w); i++) stats.published('dev-1', topic, 100);
    out.push(...ev.evaluate(stats.closeWindow(t0 + w * W)).map((c) => ({ rule: c.rule, state: c.state })));
  }
  return out;
}

test('a learned baseline adopted by another evaluator judges at once; an unlearned one is still warming up', () => {
  const first = new Evaluator(DEFAULT_RULES);
  assert.deepEqual(feed(first, 0, 70, () => 10), [], 'a steady device raises nothing');
  const snapshot = JSON.parse(JSON.stringify(first.exportState('dev-1'))) as LearnedState;
  assert.equal(snapshot.datapoints, 70);
  assert.equal(snapshot.baselines.length, DEFAULT_RULES.length);

  const moved = new Evaluator(DEFAULT_RULES);
  assert.equal(moved.importState('dev-1', snapshot), true);
  const burst = feed(moved, 10_000_000, 2, (w) => (w === 1 ? 10 : 200));
  assert.ok(burst.some((c) => c.rule === 'messages-baseline' && c.state === 'ALARM'), `baseline alarm after the move: ${JSON.stringify(burst)}`);

  const fresh = new Evaluator(DEFAULT_RULES);
  assert.deepEqual(feed(fresh, 10_000_000, 2, (w) => (w === 1 ? 10 : 200)), [], 'without the snapshot the same burst falls in the warm-up');
});

test('known topic prefixes travel: the moved identity alarms on a new prefix, not on its usual one', () => {
  const first = new Evaluator(DEFAULT_RULES);
  feed(first, 0, 61, () => 3);
  const moved = new Evaluator(DEFAULT_RULES);
  assert.equal(moved.importState('dev-1', first.exportState('dev-1')!), true);
  assert.deepEqual(feed(moved, 5_000_000, 1, () => 3).filter((c) => c.rule === 'new-topic-prefix'), [], 'its usual prefix is known');
  assert.deepEqual(feed(moved, 6_000_000, 1, () => 1, 'cmd/reboot').filter((c) => c.rule === 'new-topic-prefix'), [{ rule: 'new-topic-prefix', state: 'ALARM' }]);
});

test('an evaluator that knows more keeps its own state; a snapshot of other rules is refused', () => {
  const first = new Evaluator(DEFAULT_RULES);
  feed(first, 0, 5, () => 3);
  const knowsMore = new Evaluator(DEFAULT_RULES);
  feed(knowsMore, 0, 10, () => 3);
  assert.equal(knowsMore.importState('dev-1', first.exportState('dev-1')!), false);
  assert.equal(knowsMore.exportState('dev-1')!.datapoints, 10);
  const other = new Evaluator(DEFAULT_RULES.slice(0, 3));
  assert.equal(other.importState('dev-1', first.exportState('dev-1')!), false);
  assert.equal(other.exportState('dev-1'), null);
});
