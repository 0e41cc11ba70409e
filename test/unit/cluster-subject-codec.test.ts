/**
 * The cluster's subject codec (src/cluster/subject-codec.ts): byte-exact tables for the
 * tricky cases, seeded randomized round trips and mutations, filter expansion checked
 * against MQTT matching through a reference NATS matcher, the NATS token and KV key
 * grammars, and the length bound. A failing seeded case prints its seed and input.
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
  type ClusterQoS,
  type CodecRefusal,
  type FilterPatterns,
} from '../../src/cluster/subject-codec.js';
import { topicMatches } from '../../src/protocol/topic.js';
import { prng } from '../helpers/prng.js';

// ---------------------------------------------------------------------------------------
// Helpers

function subjectOf(topic: string, qos: ClusterQoS = 0): string {
  const s = topicToSubject(topic, qos);
  if (isCodecRefusal(s)) assert.fail(`${JSON.stringify(topic)} refused: ${s.message}`);
  return s;
}

function patternsOf(filter: string, qos: ClusterQoS | 'any' = 'any'): FilterPatterns {
  const r = filterToSubjects(filter, qos);
  if (isCodecRefusal(r)) assert.fail(`${JSON.stringify(filter)} refused: ${r.message}`);
  return r;
}

function refusalOf(value: unknown): CodecRefusal {
  if (!isCodecRefusal(value)) assert.fail(`expected a refusal, got ${JSON.stringify(value)}`);
  return value;
}

/** A token NATS takes literally: our alphabet only (no whitespace, `.`, `*`, `>`, `$`). */
const LITERAL_TOKEN = /^[A-Za-z0-9_=-]+$/;

/** A message subject: `bmq.<digit>.` then one or more literal tokens, within the bound. */
function assertMessageSubject(subject: string, context: string): void {
  assert.match(subject, /^bmq\.[012](?:\.[A-Za-z0-9_=-]+)+$/, context);
  assert.ok(subject.length <= MAX_SUBJECT_BYTES, context);
}

/**
 * A subscription subject: non-empty tokens; `*` and `>` only as whole tokens, `>` only
 * last; everything else literal.
 */
function assertFilterSubject(subject: string, context: string): void {
  const tokens = subject.split('.');
  assert.equal(tokens[0], 'bmq', context);
  assert.match(tokens[1] ?? '', /^[012*]$/, context);
  assert.ok(tokens.length >= 3, context);
  tokens.forEach((t, i) => {
    if (t === '>') assert.equal(i, tokens.length - 1, `${context}: > not last`);
    else if (t !== '*') assert.match(t, LITERAL_TOKEN, context);
  });
  assert.ok(subject.length <= MAX_SUBJECT_BYTES, context);
}

/** NATS KV's key grammar (@nats-io/kv 3.4 lib/kv.js validateKey): `^[-/=.\w]+$`, no edge dots. */
function assertKvKey(key: string, context: string): void {
  assert.match(key, /^[-/=.\w]+$/, context);
  assert.ok(!key.startsWith('.') && !key.endsWith('.') && !key.includes('..'), context);
}

/** NATS subject matching: `*` is one token, `>` one or more trailing tokens. */
function natsMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

/** What a receiving node delivers: NATS interest, then the `$` rule on receipt. */
function delivered(expansion: FilterPatterns, subject: string): boolean {
  if (!expansion.patterns.some((p) => natsMatches(p, subject))) return false;
  return !(expansion.wildcardFirst && isDollarTopicSubject(subject));
}

const hex = (b: number): string => `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
const utf8Escaped = (s: string): string => [...Buffer.from(s, 'utf8')].map(hex).join('');
/** An independent statement of the encoding, through Buffer's UTF-8: the oracle for random topics. */
const expectedBody = (topic: string): string =>
  topic
    .split('/')
    .map((l) => (l === '' ? '=' : [...l].map((ch) => (/^[A-Za-z0-9_-]$/.test(ch) ? ch : utf8Escaped(ch))).join('')))
    .join('.');

// Characters chosen for being awkward somewhere: NATS syntax, whitespace, JSON/line breaks,
// BOM, non-characters, the last code point, ZWJ sequences, combining marks.
const SPECIALS = [
  '.', '*', '>', '=', '$', ' ', '\t', '\n', '\r', '\f', '\v', '\u007f', '\u0080', '\u0085', '\u00a0', '\u00ff',
  '\u0100', '\u07ff', '\u0800', '\u2028', '\u2029', '\u200d', '\ufeff', '\ufffd', '\ufffe', '\uffff', '\u{10000}',
  '\u{10ffff}', '\u{1f600}', '\u{1f468}\u200d\u{1f469}', 'e\u0301', '%', '\\', '"', "'", '`', '/',
];

function randomChar(r: () => number): string {
  const k = r();
  if (k < 0.35) {
    // Every ASCII character a topic name may hold: 0x01-0x7f without + and #.
    for (;;) {
      const c = 1 + Math.floor(r() * 127);
      if (c !== 0x2b && c !== 0x23 && c !== 0x2f) return String.fromCharCode(c);
    }
  }
  if (k < 0.5) {
    const s = SPECIALS[Math.floor(r() * SPECIALS.length)]!;
    return s === '/' ? '.' : s;
  }
  if (k < 0.7) {
    const cp = 0x80 + Math.floor(r() * (0x10000 - 0x80)); // ASCII comes from the branch above
    return cp >= 0xd800 && cp <= 0xdfff ? '\u{e000}' : String.fromCodePoint(cp);
  }
  if (k < 0.85) return String.fromCodePoint(0x1f300 + Math.floor(r() * 0x400));
  return String.fromCodePoint(0x10000 + Math.floor(r() * 0x100000));
}

function randomTopic(r: () => number): string {
  for (;;) {
    const t = randomLevels(r);
    if (t !== '') return t; // one empty level is the empty string: no topic name
  }
}

function randomLevels(r: () => number): string {
  const levels: string[] = [];
  const n = 1 + Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    let level = '';
    if (r() >= 0.15) {
      const len = 1 + Math.floor(r() * 10);
      for (let j = 0; j < len; j++) level += randomChar(r);
    }
    levels.push(level);
  }
  return levels.join('/');
}

// ---------------------------------------------------------------------------------------
// Topic ↔ subject

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
