import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MatchList, TopicRouter, type RouteEntry, type RoutableSubscriber } from '../../src/broker/router/topic-router.js';
import type { SubscriptionOptions } from '../../src/broker/ports.js';

const opts = (qos: 0 | 1 | 2 = 0): SubscriptionOptions => ({ qos, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: 0 });
const sub = (clientId: string, online = true): RoutableSubscriber => ({ clientId, online });

/** Every match of `topic`, as [entry, shared] pairs. */
function collect(router: TopicRouter<RoutableSubscriber>, topic: string, includeShared = true): Array<[RouteEntry<RoutableSubscriber>, boolean]> {
  const list = new MatchList<RoutableSubscriber>();
  router.match(topic, includeShared, list);
  const out: Array<[RouteEntry<RoutableSubscriber>, boolean]> = [];
  for (let i = 0; i < list.length; i++) out.push([list.entries[i]!, list.shared[i]!]);
  return out;
}

function matches(router: TopicRouter<RoutableSubscriber>, topic: string): string[] {
  return collect(router, topic)
    .map(([e, shared]) => `${e.subscriber.clientId}${shared ? '*' : ''}`)
    .sort();
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
  assert.deepEqual(
    collect(r, 't').map(([e]) => e.options.qos),
    [2],
  );
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
  assert.deepEqual(
    collect(r, 'jobs/1', false).map(([e, shared]) => `${e.subscriber.clientId}${shared ? '*' : ''}`),
    ['plain'],
  );
  assert.deepEqual([r.pickShared('jobs/+', 'g')?.subscriber.clientId, r.pickShared('jobs/+', 'g')?.subscriber.clientId], ['w1', 'w2']);
  assert.equal(r.pickShared('jobs/#', 'h')?.subscriber.clientId, 'h1');
  assert.equal(r.pickShared('jobs/#', 'g'), undefined);
  assert.equal(r.pickShared('other', 'g'), undefined);
});

test('a subscription added or removed after a match is seen by the next match, and a cleared list holds nothing', () => {
  const r = new TopicRouter<RoutableSubscriber>();
  r.add('a/b', { subscriber: sub('first'), options: opts() });
  assert.deepEqual(matches(r, 'a/b'), ['first']);
  r.add('a/b', { subscriber: sub('second'), options: opts() });
  assert.deepEqual(matches(r, 'a/b'), ['first', 'second']);
  r.remove('a/b', 'first');
  assert.deepEqual(matches(r, 'a/b'), ['second']);
  const list = new MatchList<RoutableSubscriber>();
  r.match('a/b', true, list, ['a', 'b']);
  assert.equal(list.length, 1);
  list.clear();
  assert.equal(list.length, 0);
  assert.equal(list.entries[0], undefined);
});
