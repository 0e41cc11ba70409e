/**
 * The cluster's subject codec (src/cluster/subject-codec.ts), topics: byte-exact tables for
 * the tricky cases, seeded randomized round trips and mutations, the NATS token grammar.
 * Filters, the length bound and KV keys: cluster-subject-filters.test.ts. A failing seeded
 * case prints its seed and input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  clientIdToKey,
  encodedTopicBytes,
  isCodecRefusal,
  isDollarTopicKey,
  isDollarTopicSubject,
  keyToClientId,
  MAX_ENCODED_BYTES_PER_CODE_UNIT,
  MAX_ENCODED_TOPIC_BYTES,
  retainedKeyToTopic,
  subjectToTopic,
  topicToRetainedKey,
  topicToSubject,
  type ClusterQoS,
} from '../../src/cluster/subject-codec.js';
import { prng } from '../helpers/prng.js';
import { subjectOf, refusalOf, assertMessageSubject, assertKvKey, hex, expectedBody, randomTopic } from '../helpers/subject-codec-cases.js';

test('topic → subject: byte-exact table of the tricky cases', () => {
  const table: Array<[string, ClusterQoS, string]> = [
    ['a/b', 0, 'bmq.0.a.b'],
    ['Sensors/Temp-1/x_y', 2, 'bmq.2.Sensors.Temp-1.x_y'],
    ['a', 1, 'bmq.1.a'],
    // empty levels [MQTT-4.7.1-1]: leading, trailing, inner, only
    ['/a', 0, 'bmq.0.=.a'],
    ['a/', 0, 'bmq.0.a.='],
    ['a//b', 0, 'bmq.0.a.=.b'],
    ['/', 0, 'bmq.0.=.='],
    ['//', 0, 'bmq.0.=.=.='],
    // NATS syntax inside a level: literal, never separator or wildcard
    ['a.b', 0, 'bmq.0.a=2Eb'],
    ['.', 0, 'bmq.0.=2E'],
    ['*', 0, 'bmq.0.=2A'],
    ['>', 0, 'bmq.0.=3E'],
    ['a/*/>', 1, 'bmq.1.a.=2A.=3E'],
    ['**', 0, 'bmq.0.=2A=2A'],
    ['=', 0, 'bmq.0.=3D'],
    ['=2E', 0, 'bmq.0.=3D2E'],
    ['a=b', 0, 'bmq.0.a=3Db'],
    // whitespace and control characters
    ['a b', 0, 'bmq.0.a=20b'],
    ['\t\r\n\f\v', 0, 'bmq.0.=09=0D=0A=0C=0B'],
    ['\u0001\u001f\u007f', 0, 'bmq.0.=01=1F=7F'],
    // $ topics stay under the prefix
    ['$SYS/broker/uptime', 0, 'bmq.0.=24SYS.broker.uptime'],
    ['$JS/API/STREAM/DELETE/BMQ_MSGS', 1, 'bmq.1.=24JS.API.STREAM.DELETE.BMQ_MSGS'],
    ['$KV/bmq_sess/x', 0, 'bmq.0.=24KV.bmq_sess.x'],
    ['_INBOX/x', 0, 'bmq.0._INBOX.x'],
    // non-ASCII: every UTF-8 byte escaped, uppercase hex
    ['é', 0, 'bmq.0.=C3=A9'],
    ['e\u0301', 0, 'bmq.0.e=CC=81'],
    ['日本/語', 0, 'bmq.0.=E6=97=A5=E6=9C=AC.=E8=AA=9E'],
    ['\u{1f600}', 0, 'bmq.0.=F0=9F=98=80'],
    ['\ufeffx', 0, 'bmq.0.=EF=BB=BFx'],
    ['\uffff', 0, 'bmq.0.=EF=BF=BF'],
    ['\u{10ffff}', 0, 'bmq.0.=F4=8F=BF=BF'],
    ['\u0080\u07ff\u0800', 0, 'bmq.0.=C2=80=DF=BF=E0=A0=80'],
  ];
  for (const [topic, qos, subject] of table) {
    assert.equal(topicToSubject(topic, qos), subject, JSON.stringify(topic));
    assert.deepEqual(subjectToTopic(subject), { qos, topic }, subject);
    assertMessageSubject(subject, JSON.stringify(topic));
    assert.equal(encodedTopicBytes(topic), subject.length - 6, JSON.stringify(topic));
  }
});

test('topic → subject: every ASCII character, at the start, middle and end of levels', () => {
  for (let c = 1; c < 128; c++) {
    const ch = String.fromCharCode(c);
    if (ch === '/') continue;
    const topic = `${ch}x/y${ch}z/${ch}/w${ch}`;
    if (ch === '+' || ch === '#') {
      assert.equal(refusalOf(topicToSubject(topic, 0)).refusal, 'invalid-topic', `0x${c.toString(16)}`);
      continue;
    }
    const tok = /[A-Za-z0-9_-]/.test(ch) ? ch : hex(c);
    const subject = `bmq.0.${tok}x.y${tok}z.${tok}.w${tok}`;
    assert.equal(topicToSubject(topic, 0), subject, `0x${c.toString(16)}`);
    assert.deepEqual(subjectToTopic(subject), { qos: 0, topic }, `0x${c.toString(16)}`);
  }
});

test('topic → subject: refusals for what is not a topic name', () => {
  const invalid = ['', 'a/+', '+', '#', 'a/#', 'a+b', 'a#b', 'a\u0000b', '\ud800', 'a\udc00b', '\ud83d/x', 'x/\ude00', '\ude00\ud83d'];
  for (const topic of invalid) {
    const r = refusalOf(topicToSubject(topic, 1));
    assert.equal(r.refusal, 'invalid-topic', JSON.stringify(topic));
    assert.equal(refusalOf(topicToRetainedKey(topic)).refusal, 'invalid-topic', JSON.stringify(topic));
  }
});

test('the prefix keeps every topic away from NATS system subjects ($JS, $SYS, $KV, _INBOX)', () => {
  const r = prng(0x5eed0001);
  const topics = ['$JS/API/INFO', '$JS/API/STREAM/DELETE/X', '$JS/ACK/x/y', '$SYS/REQ/SERVER/PING', '$KV/b/k', '$O/x', '$MQTT/sess/x', '_INBOX/abc', '$', '$/', '$$'];
  for (let i = 0; i < 500; i++) topics.push(`$${randomTopic(r)}`);
  for (const topic of topics) {
    const subject = subjectOf(topic, 2);
    assert.ok(subject.startsWith('bmq.2.=24') || subject.startsWith('bmq.2._INBOX'), subject);
    for (const token of subject.split('.')) assert.ok(!token.startsWith('$'), `${subject}: a token starts with $`);
    assert.ok(!/^(\$JS|\$SYS|\$KV|\$O|_INBOX)\./.test(subject), subject);
  }
});

test(`seeded round trip: 20,000 random topics (all planes, emoji, empty levels, every ASCII) through subject, retained key and client-id key`, () => {
  const seed = 0x0c0dec;
  const r = prng(seed);
  let escaped = 0;
  for (let i = 0; i < 20000; i++) {
    const topic = randomTopic(r);
    const qos = Math.floor(r() * 3) as ClusterQoS;
    const context = `seed ${seed} case ${i}: ${JSON.stringify(topic)}`;
    const subject = subjectOf(topic, qos);
    assert.equal(subject, `bmq.${qos}.${expectedBody(topic)}`, context);
    assertMessageSubject(subject, context);
    assert.deepEqual(subjectToTopic(subject), { qos, topic }, context);
    assert.equal(subject.length - 6, encodedTopicBytes(topic), context);
    assert.ok(encodedTopicBytes(topic) <= MAX_ENCODED_BYTES_PER_CODE_UNIT * topic.length + 1, context);
    if (subject.includes('=')) escaped++;

    const key = topicToRetainedKey(topic);
    assert.equal(key, subject.slice(6), context);
    assertKvKey(key as string, context);
    assert.equal(retainedKeyToTopic(key as string), topic, context);
    assert.equal(isDollarTopicSubject(subject), topic.startsWith('$'), context);
    assert.equal(isDollarTopicKey(key as string), topic.startsWith('$'), context);

    const idKey = clientIdToKey(topic);
    if (isCodecRefusal(idKey)) assert.fail(`${context}: ${idKey.message}`);
    assertKvKey(idKey, context);
    assert.ok(!idKey.includes('.'), context);
    assert.equal(keyToClientId(idKey), topic, context);
  }
  assert.ok(escaped > 15000, 'the generator exercises escapes');
});

test('subject → topic: null for everything the encoder never produces', () => {
  const bad = [
    '', 'bmq', 'bmq.', 'bmq.0', 'bmq.0.', 'BMQ.0.a', 'bmx.0.a', 'bmq.3.a', 'bmq.*.a', 'bmq.x.a', 'bmq.00.a', 'bmq..a',
    '$JS.API.INFO', 'a.b',
    // empty tokens and edge dots
    'bmq.0..a', 'bmq.0.a..b', 'bmq.0.a.', 'bmq.0.a.b.',
    // wildcards, whitespace, raw non-ASCII
    'bmq.0.*', 'bmq.0.>', 'bmq.0.a.*', 'bmq.0.a*', 'bmq.0.a b', 'bmq.0.a\tb', 'bmq.0.é', 'bmq.0.$SYS', 'bmq.0.a/b',
    // broken escapes
    'bmq.0.a=', 'bmq.0.a=4', 'bmq.0.=4', 'bmq.0.==', 'bmq.0.=G0', 'bmq.0.a=2', 'bmq.0.=.==', 'bmq.0.a=.b', 'bmq.0.==3D',
    // non-canonical: lowercase hex, a safe character escaped
    'bmq.0.=c3=a9', 'bmq.0.=2e', 'bmq.0.=41', 'bmq.0.a=5F', 'bmq.0.=2D', 'bmq.0.=30',
    // a level that would hold a separator, a wildcard or NUL; the empty topic
    'bmq.0.a=2Fb', 'bmq.0.=2B', 'bmq.0.=23', 'bmq.0.a.=23', 'bmq.0.=00', 'bmq.0.=',
    // invalid UTF-8: lone continuation, truncated, overlong, surrogate, past U+10FFFF, split by a safe byte
    'bmq.0.=80', 'bmq.0.=C3', 'bmq.0.=E6=97', 'bmq.0.=C0=80', 'bmq.0.=C1=BF', 'bmq.0.=E0=80=80', 'bmq.0.=ED=A0=80',
    'bmq.0.=ED=BF=BF', 'bmq.0.=F4=90=80=80', 'bmq.0.=F8=88=80=80=80', 'bmq.0.=FF', 'bmq.0.=C3a=A9', 'bmq.0.=C3.=A9',
  ];
  for (const s of bad) assert.equal(subjectToTopic(s), null, JSON.stringify(s));
  // And over the bound: the encoder refuses these topics, so the decoder refuses their subjects.
  assert.equal(subjectToTopic(`bmq.0.${'a'.repeat(MAX_ENCODED_TOPIC_BYTES + 1)}`), null);
  assert.equal(subjectToTopic(`bmq.0.${'=2E'.repeat(1300)}a`), null);
});

test('seeded mutations: whatever the decoder accepts re-encodes to the same subject (the mapping is a bijection)', () => {
  const seed = 0xb1ec7;
  const r = prng(seed);
  const pool = '.=0123456789ABCDEFabcdef-_xZ*> $/\u00e9';
  let accepted = 0;
  for (let i = 0; i < 20000; i++) {
    const subject = subjectOf(randomTopic(r), Math.floor(r() * 3) as ClusterQoS);
    const pos = 6 + Math.floor(r() * (subject.length - 6));
    const ch = pool[Math.floor(r() * pool.length)]!;
    const op = r();
    const mutated = op < 0.4 ? subject.slice(0, pos) + ch + subject.slice(pos + 1) : op < 0.7 ? subject.slice(0, pos) + subject.slice(pos + 1) : subject.slice(0, pos) + ch + subject.slice(pos);
    const decoded = subjectToTopic(mutated);
    if (decoded === null) continue;
    accepted++;
    assert.equal(topicToSubject(decoded.topic, decoded.qos), mutated, `seed ${seed} case ${i}: ${mutated}`);
    const key = mutated.slice(6);
    assert.equal(retainedKeyToTopic(key), decoded.topic, `seed ${seed} case ${i}`);
    const id = keyToClientId(key);
    if (id !== null) assert.equal(clientIdToKey(id), key, `seed ${seed} case ${i}`);
  }
  // Both outcomes happen: the test is not vacuous either way.
  assert.ok(accepted > 2000 && accepted < 18000, `accepted ${accepted}`);
});

// ---------------------------------------------------------------------------------------
// Filters
