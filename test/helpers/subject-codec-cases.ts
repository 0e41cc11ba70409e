/**
 * Shared by the subject-codec tests (test/unit/cluster-subject-*.test.ts): the encoder's
 * results unwrapped, the NATS subject and KV key grammars as assertions, a reference NATS
 * matcher, and the seeded generators of topics. Must not: be imported by src/.
 */
import assert from 'node:assert/strict';
import {
  filterToSubjects,
  isCodecRefusal,
  isDollarTopicSubject,
  MAX_SUBJECT_BYTES,
  topicToSubject,
  type ClusterQoS,
  type CodecRefusal,
  type FilterPatterns,
} from '../../src/cluster/subject-codec.js';


export function subjectOf(topic: string, qos: ClusterQoS = 0): string {
  const s = topicToSubject(topic, qos);
  if (isCodecRefusal(s)) assert.fail(`${JSON.stringify(topic)} refused: ${s.message}`);
  return s;
}

export function patternsOf(filter: string, qos: ClusterQoS | 'any' = 'any'): FilterPatterns {
  const r = filterToSubjects(filter, qos);
  if (isCodecRefusal(r)) assert.fail(`${JSON.stringify(filter)} refused: ${r.message}`);
  return r;
}

export function refusalOf(value: unknown): CodecRefusal {
  if (!isCodecRefusal(value)) assert.fail(`expected a refusal, got ${JSON.stringify(value)}`);
  return value;
}

/** A token NATS takes literally: our alphabet only (no whitespace, `.`, `*`, `>`, `$`). */
export const LITERAL_TOKEN = /^[A-Za-z0-9_=-]+$/;

/** A message subject: `bmq.<digit>.` then one or more literal tokens, within the bound. */
export function assertMessageSubject(subject: string, context: string): void {
  assert.match(subject, /^bmq\.[012](?:\.[A-Za-z0-9_=-]+)+$/, context);
  assert.ok(subject.length <= MAX_SUBJECT_BYTES, context);
}

/**
 * A subscription subject: non-empty tokens; `*` and `>` only as whole tokens, `>` only
 * last; everything else literal.
 */
export function assertFilterSubject(subject: string, context: string): void {
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
export function assertKvKey(key: string, context: string): void {
  assert.match(key, /^[-/=.\w]+$/, context);
  assert.ok(!key.startsWith('.') && !key.endsWith('.') && !key.includes('..'), context);
}

/** NATS subject matching: `*` is one token, `>` one or more trailing tokens. */
export function natsMatches(pattern: string, subject: string): boolean {
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
export function delivered(expansion: FilterPatterns, subject: string): boolean {
  if (!expansion.patterns.some((p) => natsMatches(p, subject))) return false;
  return !(expansion.wildcardFirst && isDollarTopicSubject(subject));
}

export const hex = (b: number): string => `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
export const utf8Escaped = (s: string): string => [...Buffer.from(s, 'utf8')].map(hex).join('');
/** An independent statement of the encoding, through Buffer's UTF-8: the oracle for random topics. */
export const expectedBody = (topic: string): string =>
  topic
    .split('/')
    .map((l) => (l === '' ? '=' : [...l].map((ch) => (/^[A-Za-z0-9_-]$/.test(ch) ? ch : utf8Escaped(ch))).join('')))
    .join('.');

// Characters chosen for being awkward somewhere: NATS syntax, whitespace, JSON/line breaks,
// BOM, non-characters, the last code point, ZWJ sequences, combining marks.
export const SPECIALS = [
  '.', '*', '>', '=', '$', ' ', '\t', '\n', '\r', '\f', '\v', '\u007f', '\u0080', '\u0085', '\u00a0', '\u00ff',
  '\u0100', '\u07ff', '\u0800', '\u2028', '\u2029', '\u200d', '\ufeff', '\ufffd', '\ufffe', '\uffff', '\u{10000}',
  '\u{10ffff}', '\u{1f600}', '\u{1f468}\u200d\u{1f469}', 'e\u0301', '%', '\\', '"', "'", '`', '/',
];

export function randomChar(r: () => number): string {
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

export function randomTopic(r: () => number): string {
  for (;;) {
    const t = randomLevels(r);
    if (t !== '') return t; // one empty level is the empty string: no topic name
  }
}

export function randomLevels(r: () => number): string {
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
