import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isValidTopicFilter, isValidTopicName, parseSharedFilter, topicMatches } from '../../src/protocol/topic.js';

test('topic names: no wildcards, not empty, no NUL', () => {
  for (const ok of ['a', 'a/b', '/a', 'a/', '$SYS/x', 'a b/c']) assert.equal(isValidTopicName(ok), true, ok);
  for (const bad of ['', 'a/+', '#', 'a/#', 'a\u0000b']) assert.equal(isValidTopicName(bad), false, bad);
});

test('topic filters: # last and alone, + alone in its level', () => {
  for (const ok of ['#', '+', 'a/#', 'a/+/b', '+/+', '/#', 'a//b', '$SYS/#']) assert.equal(isValidTopicFilter(ok), true, ok);
  for (const bad of ['', 'a#', 'a/#/b', 'a/b#', 'a+/b', 'a/+b', '#/a']) assert.equal(isValidTopicFilter(bad), false, bad);
});

test('matching follows MQTT 4.7', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a/b', 'a/b', true],
    ['a/b', 'a/bc', false],
    ['a/bc', 'a/b', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a/', true],
    ['a/+', 'a/b/c', false],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['+/#', 'a', true],
    ['#', 'a/b', true],
    ['+', '/a', false],
    ['+/+', '/a', true],
    ['#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/x', true],
  ];
  for (const [filter, topic, expected] of cases) assert.equal(topicMatches(filter, topic), expected, `${filter} ~ ${topic}`);
});

test('shared subscription filters parse and reject bad forms', () => {
  assert.equal(parseSharedFilter('a/b'), null);
  assert.deepEqual(parseSharedFilter('$share/g1/a/+'), { group: 'g1', filter: 'a/+' });
  assert.deepEqual(parseSharedFilter('$share/g1'), { group: '', filter: '' });
  assert.deepEqual(parseSharedFilter('$share//a'), { group: '', filter: '' });
  assert.deepEqual(parseSharedFilter('$share/g+/a'), { group: '', filter: '' });
  assert.deepEqual(parseSharedFilter('$share/g/a/#/b'), { group: '', filter: '' });
});
