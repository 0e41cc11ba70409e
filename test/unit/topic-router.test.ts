import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TopicRouter, type RoutableSubscriber } from '../../src/broker/router/topic-router.js';
import type { SubscriptionOptions } from '../../src/broker/ports.js';

const opts = (qos: 0 | 1 | 2 = 0): SubscriptionOptions => ({ qos, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: 0 });
const sub = (clientId: string, online = true): RoutableSubscriber => ({ clientId, online });

function matches(router: TopicRouter<RoutableSubscriber>, topic: string): string[] {
  const out: string[] = [];
  router.match(topic, true, (e, shared) => out.push(`${e.subscriber.clientId}${shared ? '*' : ''}`));
  return out.sort();
}

test('router matches exact, + and # and keeps $ topics away from leading wildcards', () => {
  const r = new TopicRouter<RoutableSubscriber>();
  r.add('a/b', { subscriber: sub('exact'), options: opts() });
  r.add('a/+', { subscriber: sub('plus'), options: opts() });
  r.add('a/#', { subscriber: sub('hash'), options: opts() });
  r.add('#', { subscriber: sub('all'), options: opts() });
  r.add('$SYS/#', { subscriber: sub('sys'), options: opts() });
  assert.deepEqual(matches(r, 'a/b'), ['all', 'exact', 'hash', 'plus']);
  assert.deepEqual(matches(r, 'a'), ['all', 'hash']);
  assert.deepEqual(matches(r, 'a/b/c'), ['all', 'hash']);
  assert.deepEqual(matches(r, '$SYS/load'), ['sys']);
  assert.equal(r.size, 5);
});

test('removing subscriptions prunes the trie and stops matches', () => {
  const r = new TopicRouter<RoutableSubscriber>();
  r.add('x/y/z', { subscriber: sub('c1'), options: opts() });
  assert.equal(r.remove('x/y/z', 'c1'), true);
  assert.equal(r.remove('x/y/z', 'c1'), false);
  assert.deepEqual(matches(r, 'x/y/z'), []);
  assert.equal(r.size, 0);
});

test('a re-subscription replaces the options and does not duplicate', () => {
  const r = new TopicRouter<RoutableSubscriber>();
  const s = sub('c1');
  assert.equal(r.add('t', { subscriber: s, options: opts(0) }), true);
  assert.equal(r.add('t', { subscriber: s, options: opts(2) }), false);
  const seen: number[] = [];
  r.match('t', true, (e) => seen.push(e.options.qos));
  assert.deepEqual(seen, [2]);
});

test('shared groups deliver round-robin, preferring online members', () => {
  const r = new TopicRouter<RoutableSubscriber>();
  r.add('jobs/+', { subscriber: sub('w1'), options: opts() }, 'g');
  r.add('jobs/+', { subscriber: sub('w2'), options: opts() }, 'g');
  r.add('jobs/+', { subscriber: sub('w3', false), options: opts() }, 'g');
  const picks = [1, 2, 3, 4].map(() => matches(r, 'jobs/1')[0]);
  assert.deepEqual(picks, ['w1*', 'w2*', 'w1*', 'w2*']);
  r.remove('jobs/+', 'w1', 'g');
  assert.deepEqual(matches(r, 'jobs/2'), ['w2*']);
});

test('cluster scopes: plain matching leaves shared groups out; pickShared picks one member of one group under one filter', () => {
  const r = new TopicRouter<RoutableSubscriber>();
  r.add('jobs/+', { subscriber: sub('plain'), options: opts() });
  r.add('jobs/+', { subscriber: sub('w1'), options: opts() }, 'g');
  r.add('jobs/+', { subscriber: sub('w2'), options: opts() }, 'g');
  r.add('jobs/#', { subscriber: sub('h1'), options: opts() }, 'h');
  const plain: string[] = [];
  r.match('jobs/1', false, (e, shared) => plain.push(`${e.subscriber.clientId}${shared ? '*' : ''}`));
  assert.deepEqual(plain, ['plain']);
  assert.deepEqual([r.pickShared('jobs/+', 'g')?.subscriber.clientId, r.pickShared('jobs/+', 'g')?.subscriber.clientId], ['w1', 'w2']);
  assert.equal(r.pickShared('jobs/#', 'h')?.subscriber.clientId, 'h1');
  assert.equal(r.pickShared('jobs/#', 'g'), undefined);
  assert.equal(r.pickShared('other', 'g'), undefined);
});
