/**
 * The cluster's subject codec (src/cluster/subject-codec.ts), filters and keys: filter
 * expansion checked against MQTT matching through a reference NATS matcher, the `$` rule,
 * the length bound, and the KV key grammar. Topics: cluster-subject-codec.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clientIdToKey,
  encodedTopicBytes,
  filterToKeyPatterns,
  filterToSubjects,
  isCodecRefusal,
  isDollarTopicKey,
  isDollarTopicSubject,
  keyToClientId,
  MAX_ENCODED_BYTES_PER_CODE_UNIT,
  MAX_ENCODED_TOPIC_BYTES,
  MAX_SUBJECT_BYTES,
  retainedKeyToTopic,
  subjectToTopic,
  topicToRetainedKey,
  topicToSubject,
  type FilterPatterns,
} from '../../src/cluster/subject-codec.js';
import { topicMatches } from '../../src/protocol/topic.js';
import { prng } from '../helpers/prng.js';
import { subjectOf, patternsOf, refusalOf, assertFilterSubject, assertKvKey, natsMatches, delivered } from '../helpers/subject-codec-cases.js';

test('filter → subjects: expansion table', () => {
  const table: Array<[string, string[], boolean]> = [
    ['a/b', ['bmq.*.a.b'], false],
    ['a/+', ['bmq.*.a.*'], false],
    ['+', ['bmq.*.*'], true],
    ['+/+', ['bmq.*.*.*'], true],
    ['a/+/c', ['bmq.*.a.*.c'], false],
    // `#` also matches its parent level [MQTT-4.7.1-2]: two subjects
    ['a/#', ['bmq.*.a', 'bmq.*.a.>'], false],
    ['a/b/#', ['bmq.*.a.b', 'bmq.*.a.b.>'], false],
    ['/#', ['bmq.*.=', 'bmq.*.=.>'], false],
    ['a//#', ['bmq.*.a.=', 'bmq.*.a.=.>'], false],
    // `#` behind `+`: the parent and the children collapse into one `>`
    ['#', ['bmq.*.>'], true],
    ['+/#', ['bmq.*.>'], true],
    ['a/+/#', ['bmq.*.a.>'], false],
    ['+/+/#', ['bmq.*.*.>'], true],
    ['+/a/#', ['bmq.*.*.a', 'bmq.*.*.a.>'], true],
    // literal levels that look like NATS syntax stay literal
    ['*', ['bmq.*.=2A'], false],
    ['>', ['bmq.*.=3E'], false],
    ['a/*/>', ['bmq.*.a.=2A.=3E'], false],
    ['a.b/+', ['bmq.*.a=2Eb.*'], false],
    ['a b/=/#', ['bmq.*.a=20b.=3D', 'bmq.*.a=20b.=3D.>'], false],
    // empty levels
    ['/', ['bmq.*.=.='], false],
    ['+/', ['bmq.*.*.='], true],
    ['/+', ['bmq.*.=.*'], false],
    // $ topics, subscribed explicitly
    ['$SYS/#', ['bmq.*.=24SYS', 'bmq.*.=24SYS.>'], false],
    ['$SYS/+/uptime', ['bmq.*.=24SYS.*.uptime'], false],
    ['é/😀', ['bmq.*.=C3=A9.=F0=9F=98=80'], false],
  ];
  for (const [filter, subjects, wildcardFirst] of table) {
    const r = patternsOf(filter);
    assert.deepEqual(r.patterns, subjects, filter);
    assert.equal(r.wildcardFirst, wildcardFirst, filter);
    for (const s of r.patterns) assertFilterSubject(s, filter);
    const keys = filterToKeyPatterns(filter) as FilterPatterns;
    assert.deepEqual(keys.patterns, subjects.map((s) => s.slice(6)), filter);
    assert.equal(keys.wildcardFirst, wildcardFirst, filter);
  }
  // A fixed QoS token instead of `*`, e.g. for a JetStream consumer of QoS 1 only.
  assert.deepEqual(patternsOf('a/#', 1).patterns, ['bmq.1.a', 'bmq.1.a.>']);
  assert.deepEqual(patternsOf('#', 2).patterns, ['bmq.2.>']);
});

test('filter → subjects: refusals (invalid filters, $share left to the caller)', () => {
  const invalid = ['', 'a#', 'a/#/b', '#/a', 'a/b#', 'a+/b', 'a/+b', 'a\u0000', '\ud800', 'a/\udfff', '\ud83d/#'];
  for (const filter of invalid) {
    assert.equal(refusalOf(filterToSubjects(filter)).refusal, 'invalid-filter', JSON.stringify(filter));
    assert.equal(refusalOf(filterToKeyPatterns(filter)).refusal, 'invalid-filter', JSON.stringify(filter));
  }
  for (const filter of ['$share/g/a', '$share/g/#', '$share/g/+/x']) {
    assert.equal(refusalOf(filterToSubjects(filter)).refusal, 'shared-filter', filter);
  }
  // `$shared/...` and `$SHARE/...` are not shared filters: plain $ topics.
  assert.deepEqual(patternsOf('$shared/a').patterns, ['bmq.*.=24shared.a']);
  assert.deepEqual(patternsOf('$SHARE/g/a').patterns, ['bmq.*.=24SHARE.g.a']);
});

test('the $ rule [MQTT-4.7.2-1]: NATS wildcards match escaped $ levels, the receiver check drops them', () => {
  const sys = subjectOf('$SYS/broker/uptime');
  const table: Array<[string, boolean]> = [
    ['#', false],
    ['+/#', false],
    ['+/broker/uptime', false],
    ['+/+/+', false],
    ['$SYS/#', true],
    ['$SYS/+/uptime', true],
    ['$SYS/broker/uptime', true],
  ];
  for (const [filter, expected] of table) {
    const r = patternsOf(filter);
    // NATS itself delivers to every one of these subscriptions ...
    assert.ok(r.patterns.some((p) => natsMatches(p, sys)), filter);
    // ... and the receiver keeps only what MQTT allows.
    assert.equal(delivered(r, sys), expected, filter);
    assert.equal(topicMatches(filter, '$SYS/broker/uptime'), expected, filter);
  }
  const dollar: Array<[string, boolean]> = [
    [sys, true],
    [subjectOf('$'), true],
    [subjectOf('$/a'), true],
    [subjectOf('a/$SYS'), false],
    [subjectOf('=24'), false], // the topic "=24" is bmq.0.=3D24
    [subjectOf('x$'), false],
    [subjectOf('/$'), false],
    ['$JS.API.INFO', false],
    ['bmq.*.=24SYS', true], // a filter subject is not a message subject; callers pass message subjects
  ];
  for (const [subject, expected] of dollar) assert.equal(isDollarTopicSubject(subject), expected, subject);
  assert.equal(isDollarTopicKey('=24SYS.x'), true);
  assert.equal(isDollarTopicKey('=3D24'), false);
});

test('seeded: NATS delivery of the expanded filter plus the $ check equals MQTT matching (10,000 pairs)', () => {
  const seed = 0xf17e5;
  const r = prng(seed);
  // A small alphabet so that filters and topics collide often; $ first levels included.
  const LEVELS = ['a', 'b', '', '$', '$SYS', '*', '>', '.', 'a.b', '=', '=2A', 'é', '😀'];
  const level = (): string => LEVELS[Math.floor(r() * LEVELS.length)]!;
  const topicOf = (): string => {
    for (;;) {
      const t = Array.from({ length: 1 + Math.floor(r() * 4) }, level).join('/');
      if (t !== '') return t; // '' is no topic name
    }
  };
  let matches = 0;
  for (let i = 0; i < 10000; i++) {
    const topic = topicOf();
    // A filter derived from a topic (often matching), or from another one.
    const levels = (r() < 0.7 ? topic : topicOf()).split('/').map((l) => (r() < 0.3 ? '+' : l));
    if (r() < 0.4) {
      levels.length = Math.floor(r() * (levels.length + 1));
      levels.push('#');
    }
    const filter = levels.join('/');
    if (filter === '') continue;
    const expansion = patternsOf(filter);
    const context = `seed ${seed} case ${i}: filter ${JSON.stringify(filter)} topic ${JSON.stringify(topic)}`;
    for (const s of expansion.patterns) assertFilterSubject(s, context);
    const expected = topicMatches(filter, topic);
    if (expected) matches++;
    for (const qos of [0, 1, 2] as const) assert.equal(delivered(expansion, subjectOf(topic, qos)), expected, context);
    // The same patterns select retained keys.
    const keys = filterToKeyPatterns(filter) as FilterPatterns;
    const key = topicToRetainedKey(topic) as string;
    const keyDelivered = keys.patterns.some((p) => natsMatches(p, key)) && !(keys.wildcardFirst && isDollarTopicKey(key));
    assert.equal(keyDelivered, expected, `${context} (KV)`);
  }
  assert.ok(matches > 2000 && matches < 8000, `matches ${matches}`);
});

// ---------------------------------------------------------------------------------------
// Length

test(`length bound: encoded levels at most ${MAX_ENCODED_TOPIC_BYTES} bytes, subjects at most ${MAX_SUBJECT_BYTES}`, () => {
  const M = MAX_ENCODED_TOPIC_BYTES;
  const fits: Array<[string, string]> = [
    ['plain', 'a'.repeat(M)],
    ['escaped dots', '.'.repeat(M / 3)],
    ['empty levels', '/'.repeat((M - 2) / 2)], // n slashes: n + 1 tokens "=", n dots
    ['emoji', '😀'.repeat(M / 12)],
    ['mixed', `${'a'.repeat(M - 7)}/é`],
  ];
  for (const [name, topic] of fits) {
    const subject = topicToSubject(topic, 1);
    if (isCodecRefusal(subject)) assert.fail(`${name}: ${subject.message}`);
    assert.ok(subject.length <= MAX_SUBJECT_BYTES, name);
    assert.equal(subjectToTopic(subject)?.topic, topic, name);
  }
  assert.equal((topicToSubject('a'.repeat(M), 0) as string).length, MAX_SUBJECT_BYTES);
  assert.equal(encodedTopicBytes('/'.repeat((M - 2) / 2)), M - 1);

  const over: Array<[string, string, number]> = [
    ['plain', 'a'.repeat(M + 1), M + 1],
    ['escaped dots', `${'.'.repeat(M / 3)}a`, M + 1],
    ['empty levels', '/'.repeat(M / 2), M + 1],
    ['emoji', `${'😀'.repeat(M / 12)}a`, M + 1],
    ['one escape too many', `${'a'.repeat(M - 2)}=`, M + 1],
    ['longest MQTT topic', 'é'.repeat(65535), 65535 * 6],
    ['quick refusal of an invalid long name', `${'a'.repeat(M)}+`, M + 3],
  ];
  for (const [name, topic, bytes] of over) {
    const r = refusalOf(topicToSubject(topic, 0));
    assert.equal(r.refusal, 'too-long', name);
    assert.equal(r.bytes, bytes, name);
    assert.equal(r.limit, M, name);
    assert.equal(refusalOf(topicToRetainedKey(topic)).refusal, 'too-long', name);
    assert.equal(encodedTopicBytes(topic), bytes, name);
  }

  // Filters: the longest expanded subject counts (`a/#` → `a.>`).
  assert.deepEqual(patternsOf(`${'x'.repeat(M - 2)}/#`).patterns.map((p) => p.length - 6), [M - 2, M]);
  assert.equal(refusalOf(filterToSubjects(`${'x'.repeat(M - 1)}/#`)).bytes, M + 1);
  assert.equal(patternsOf(`${'x'.repeat(M - 2)}/+`).patterns[0]!.length, MAX_SUBJECT_BYTES);
  assert.equal(refusalOf(filterToSubjects(`${'x'.repeat(M - 1)}/+`)).refusal, 'too-long');
  assert.equal(refusalOf(filterToSubjects(`${'x'.repeat(M)}/a#`)).refusal, 'invalid-filter');

  // Client ids: one token, same bound; any id of 433 code units fits.
  assert.equal(clientIdToKey('c'.repeat(M)), 'c'.repeat(M));
  assert.equal(refusalOf(clientIdToKey('c'.repeat(M + 1))).bytes, M + 1);
  assert.equal(refusalOf(clientIdToKey('/'.repeat(M / 3 + 1))).bytes, M + 3);
  const worst = '\u0800'.repeat(Math.floor(M / MAX_ENCODED_BYTES_PER_CODE_UNIT));
  assert.ok(!isCodecRefusal(clientIdToKey(worst)));
  assert.equal(refusalOf(clientIdToKey(`${worst}\u0800`)).refusal, 'too-long');

  // What the bound leaves of nats-server's 4096-byte control line (default max_control_line),
  // for the longest HPUB with a 64-byte reply subject and a KV subject in a 64-byte bucket.
  const hpub = `HPUB ${'s'.repeat(MAX_SUBJECT_BYTES)} ${'r'.repeat(64)} 4294967295 4294967295\r\n`;
  assert.ok(hpub.length < 4096, `${hpub.length}`);
  const kvPub = `HPUB $KV.${'b'.repeat(64)}.${'k'.repeat(M)} ${'r'.repeat(64)} 4294967295 4294967295\r\n`;
  assert.ok(kvPub.length < 4096, `${kvPub.length}`);
});

// ---------------------------------------------------------------------------------------
// KV keys

test('KV keys: client ids are one token in the KV grammar and round-trip', () => {
  const table: Array<[string, string]> = [
    ['device-42', 'device-42'],
    ['dev/1.x', 'dev=2F1=2Ex'],
    ['a b', 'a=20b'],
    ['*', '=2A'],
    ['>', '=3E'],
    ['=', '=3D'],
    ['.', '=2E'],
    ['+#', '=2B=23'],
    ['\u0000', '=00'],
    ['$', '=24'],
    ['😀', '=F0=9F=98=80'],
    ['\ufeff', '=EF=BB=BF'],
  ];
  for (const [id, key] of table) {
    assert.equal(clientIdToKey(id), key, JSON.stringify(id));
    assert.equal(keyToClientId(key), id, key);
    assertKvKey(key, key);
  }
  assert.equal(refusalOf(clientIdToKey('')).refusal, 'invalid-client-id');
  assert.equal(refusalOf(clientIdToKey('a\ud800')).refusal, 'invalid-client-id');
  for (const bad of ['', '=', 'a.b', '.a', 'a.', '=2e', '=41', 'a=', '=C3', 'a b', '*', '=ED=A0=80']) {
    assert.equal(keyToClientId(bad), null, JSON.stringify(bad));
  }
});

test('KV keys: retained topics are their encoded levels; filters give key patterns', () => {
  assert.equal(topicToRetainedKey('a/b'), 'a.b');
  assert.equal(topicToRetainedKey('$SYS/x/'), '=24SYS.x.=');
  assert.equal(topicToRetainedKey('a.b/*'), 'a=2Eb.=2A');
  assert.equal(retainedKeyToTopic('=.='), '/');
  for (const bad of ['', '.', 'a..b', '.a', 'a.', '=', '*', '>', 'a.*', '=2F', '=2e', '=a']) {
    assert.equal(retainedKeyToTopic(bad), null, JSON.stringify(bad));
  }
  assert.deepEqual((filterToKeyPatterns('a/#') as FilterPatterns).patterns, ['a', 'a.>']);
  assert.deepEqual((filterToKeyPatterns('#') as FilterPatterns).patterns, ['>']);
  assert.deepEqual((filterToKeyPatterns('+/x') as FilterPatterns).patterns, ['*.x']);
  // Key patterns fit the KV search grammar (@nats-io/kv validateSearchKey).
  for (const f of ['a/#', '#', '+/x', '+/+/#', '$SYS/+', 'a b/*/>']) {
    for (const p of (filterToKeyPatterns(f) as FilterPatterns).patterns) {
      assert.match(p, /^[-/=.>*\w]+$/, f);
      assert.ok(!p.startsWith('.') && !p.endsWith('.') && !p.includes('..'), f);
    }
  }
});
