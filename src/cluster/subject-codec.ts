/**
 * The mapping between MQTT names and the NATS names the cluster routes and stores on
 * (issue 12): topics ↔ message subjects, filters → subscription subjects, topics and client
 * ids ↔ JetStream KV keys. Owns: the escape alphabet, the subject prefix and QoS token,
 * the length bound, filter expansion and the receiver's `$`-rule check. Must not: do I/O,
 * hold state, or know about NATS connections; it does not judge MQTT validity beyond what
 * the mapping needs (the channel has checked topics and filters before they get here).
 *
 * Layout
 * - Message subject: `bmq.<q>.<t1>.<t2>…` where `<q>` is the QoS token `0`, `1` or `2`
 *   and `<tN>` is the encoded Nth topic level. `bmq.1.>` and `bmq.2.>` are what a
 *   JetStream stream of QoS ≥ 1 messages captures.
 * - Level token: the characters `[A-Za-z0-9_-]` stand for themselves; every other
 *   character is written as its UTF-8 bytes, each `=XX` (two UPPERCASE hex digits), so `=`
 *   itself is `=3D`, `.` is `=2E`, `*` is `=2A`, `$` is `=24`, a space `=20`, `é` `=C3=A9`.
 *   An empty level (MQTT allows `a//b`, `/a`, `a/`) is the token `=` alone, which no
 *   non-empty level can produce. Examples: `$SYS/x` → `bmq.0.=24SYS.x`; `a//b.c` →
 *   `bmq.1.a.=.b=2Ec`; `/` → `bmq.0.=.=`.
 * - Filter subjects: the QoS token is `*` (any QoS; or one given digit), `+` → `*`, a last
 *   `#` → `>`. MQTT's `#` also matches its parent level, so `a/#` needs BOTH `…a` and
 *   `…a.>`; when the parent is itself `+` the two collapse into one (`a/+/#` → `…a.>`,
 *   `+/#` and `#` → `bmq.*.>`). Shared filters (`$share/g/f`) are refused here: the caller
 *   parses them (`parseSharedFilter`) and expands the inner filter, choosing the queue
 *   group itself.
 * - KV keys: a retained topic's key is its encoded levels joined by `.` (the subject
 *   without `bmq.<q>.`), so the same filter expansion (`filterToKeyPatterns`) selects keys;
 *   a client id's key is ONE token (its `/` and `.` escaped too). Both fit NATS KV's key
 *   grammar `^[-/=.\w]+$` with no leading or trailing `.`.
 *
 * Results: encoders return the string, or a `CodecRefusal` (`isCodecRefusal`) naming the
 * first problem found: 'too-long' (the broker answers TopicNameInvalid on PUBLISH,
 * TopicFilterInvalid on SUBSCRIBE), 'invalid-topic' / 'invalid-filter' /
 * 'invalid-client-id' (not a name the mapping accepts), 'shared-filter'. Decoders return
 * null for anything that is not exactly what an encoder produces.
 *
 * SECURITY: every character outside the safe set is escaped, so a topic can never put a
 * NATS separator (`.`), wildcard (`*`, `>`) or whitespace into a subject: a level that is
 * literally `*` or `>` is `=2A` / `=3E`, a literal token, never a wildcard.
 * SECURITY: every subject starts with the fixed `bmq.` and every level is escaped, so a
 * topic such as `$JS/API/STREAM/DELETE/x` (→ `bmq.0.=24JS.API.STREAM.DELETE.x`) can never
 * reach the JetStream API (`$JS.…`), the system account (`$SYS.…`) or an inbox (`_INBOX.…`).
 * SECURITY: decoding is strict and canonical (uppercase hex only, no escape of a character
 * the encoder keeps, valid UTF-8 only, no BOM swallowed), so the mapping is a bijection:
 * NATS matches literal tokens by equality, and an alias subject for the same topic could
 * slip past a subscription or an authorization decision made on the decoded topic.
 * SECURITY: nats-server cuts the node's whole connection (everything in flight) on a
 * subject over its max_control_line (4096 bytes); encoders refuse anything whose encoded
 * levels exceed MAX_ENCODED_TOPIC_BYTES (3900), leaving room for `bmq.<q>.` or
 * `$KV.<bucket ≤ 64>.` and for the PUB/HPUB verb, reply subject and sizes.
 * SECURITY: NATS wildcards match an escaped `$` level, so a wildcard-first filter's
 * subscription DOES receive `$SYS/…` messages; [MQTT-4.7.2-1] is kept on receipt: drop when
 * `wildcardFirst && isDollarTopicSubject(subject)` (the local trie's `topicMatches` also
 * applies the rule to the decoded topic).
 */
import { isValidTopicFilter } from '../protocol/topic.js';

export type ClusterQoS = 0 | 1 | 2;

/** The first token of every subject this codec produces. */
export const SUBJECT_PREFIX = 'bmq';

/**
 * The most bytes the encoded levels of a topic or filter may take (a KV key, or a subject
 * without its `bmq.<q>.`). Subjects are ASCII, so bytes = characters.
 */
export const MAX_ENCODED_TOPIC_BYTES = 3900;

/** `bmq.<q>.`: what a message subject adds to the encoded levels. */
export const SUBJECT_HEAD_BYTES = SUBJECT_PREFIX.length + 3;

/** The longest subject produced: 3906 bytes, under nats-server's 4096-byte control line. */
export const MAX_SUBJECT_BYTES = SUBJECT_HEAD_BYTES + MAX_ENCODED_TOPIC_BYTES;

/**
 * The worst case of encoded bytes per UTF-16 code unit (a BMP character outside ASCII is one
 * unit and three `=XX`). Any name of at most MAX_ENCODED_TOPIC_BYTES / 9 = 433 code units
 * always fits; a configured maximum client id length above that can be refused here.
 */
export const MAX_ENCODED_BYTES_PER_CODE_UNIT = 9;

export type CodecRefusalKind = 'too-long' | 'invalid-topic' | 'invalid-filter' | 'invalid-client-id' | 'shared-filter';

/** Why a name was not encoded. A value, not an exception: the broker maps it to a reason code. */
export interface CodecRefusal {
  readonly refusal: CodecRefusalKind;
  /** For 'too-long': the encoded length in bytes (> `limit`); otherwise 0. */
  readonly bytes: number;
  readonly limit: number;
  readonly message: string;
}

export function isCodecRefusal(value: unknown): value is CodecRefusal {
  return typeof value === 'object' && value !== null && 'refusal' in value;
}

/** What `filterToSubjects` / `filterToKeyPatterns` return. */
export interface FilterPatterns {
  /** NATS subjects (or KV key patterns) whose union matches exactly the filter's topics. */
  readonly patterns: readonly string[];
  /**
   * The filter's first level is `+` or `#`: deliveries whose topic starts with `$` must be
   * dropped by the receiver [MQTT-4.7.2-1] (`isDollarTopicSubject` / `isDollarTopicKey`).
   */
  readonly wildcardFirst: boolean;
}

export interface DecodedSubject {
  readonly qos: ClusterQoS;
  readonly topic: string;
}

// ---------------------------------------------------------------------------------------
// Alphabet

/** 1 for the characters a token keeps as they are: [A-Za-z0-9_-]. */
const SAFE = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/^[A-Za-z0-9_-]$/.test(ch)) SAFE[c] = 1;
}
const HEX_DIGITS = '0123456789ABCDEF';
/** `=XX` for each byte value. */
const ESC: readonly string[] = Array.from({ length: 256 }, (_, b) => `=${HEX_DIGITS[b >> 4]!}${HEX_DIGITS[b & 15]!}`);
/** Value of an UPPERCASE hex digit by char code, -1 for anything else (lowercase is not canonical). */
const HEX_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) HEX_VALUE[HEX_DIGITS.charCodeAt(i)] = i;

const EMPTY_LEVEL = '=';
const HEAD: readonly string[] = [`${SUBJECT_PREFIX}.0.`, `${SUBJECT_PREFIX}.1.`, `${SUBJECT_PREFIX}.2.`];
const ANY_QOS_HEAD = `${SUBJECT_PREFIX}.*.`;
const PREFIX_DOT = `${SUBJECT_PREFIX}.`;

/**
 * The fast path of both directions, for the common case: `s[from…]` made only of safe
 * characters and single separators `sep` (no empty level) maps to `head` + itself with
 * `sep` swapped for `to`; anything else returns null and takes the general path. One pass
 * with slices measured faster on Node 26 than a regular expression plus `replaceAll`.
 */
function swapPlain(s: string, from: number, sep: number, to: string, head: string): string | null {
  const n = s.length;
  if (n === from) return null;
  let out = head;
  let run = from;
  for (let i = from; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === sep) {
      if (i === run) return null;
      out += s.slice(run, i) + to;
      run = i + 1;
    } else if (c >= 0x80 || SAFE[c] !== 1) return null;
  }
  return run === n ? null : out + s.slice(run);
}

// fatal: malformed UTF-8 is refused, not replaced; ignoreBOM: a leading U+FEFF is data.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function refused(refusal: Exclude<CodecRefusalKind, 'too-long'>, message: string): CodecRefusal {
  return Object.freeze({ refusal, bytes: 0, limit: MAX_ENCODED_TOPIC_BYTES, message });
}
const INVALID_TOPIC = refused('invalid-topic', 'not a topic name the cluster can carry (empty, +, #, NUL or a lone surrogate)');
const INVALID_FILTER = refused('invalid-filter', 'not a valid topic filter');
const INVALID_CLIENT_ID = refused('invalid-client-id', 'not a client id the cluster can carry (empty or a lone surrogate)');
const SHARED_FILTER = refused('shared-filter', 'a $share filter: expand its inner filter instead');

function tooLong(bytes: number): CodecRefusal {
  return Object.freeze({
    refusal: 'too-long' as const,
    bytes,
    limit: MAX_ENCODED_TOPIC_BYTES,
    message: `encodes to ${bytes} bytes, over the cluster's ${MAX_ENCODED_TOPIC_BYTES}`,
  });
}

// ---------------------------------------------------------------------------------------
// Encoding

/**
 * Encodes `s[from, to)` as one token. Returns null on a lone surrogate, and, when
 * `topicLevel`, on `+`, `#` or NUL (not part of a topic name [MQTT-4.7.3-1] [MQTT-4.7.1-1]).
 */
function encodeToken(s: string, from: number, to: number, topicLevel: boolean): string | null {
  if (from === to) return EMPTY_LEVEL;
  let out = '';
  let run = from;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (SAFE[c] === 1) continue;
      if (topicLevel && (c === 0x2b || c === 0x23 || c === 0)) return null;
      if (run < i) out += s.slice(run, i);
      out += ESC[c]!;
    } else {
      if (run < i) out += s.slice(run, i);
      if (c < 0x800) {
        out += ESC[0xc0 | (c >> 6)]! + ESC[0x80 | (c & 63)]!;
      } else if (c < 0xd800 || c > 0xdfff) {
        out += ESC[0xe0 | (c >> 12)]! + ESC[0x80 | ((c >> 6) & 63)]! + ESC[0x80 | (c & 63)]!;
      } else {
        const d = i + 1 < to ? s.charCodeAt(i + 1) : 0;
        if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) return null;
        const cp = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
        out += ESC[0xf0 | (cp >> 18)]! + ESC[0x80 | ((cp >> 12) & 63)]! + ESC[0x80 | ((cp >> 6) & 63)]! + ESC[0x80 | (cp & 63)]!;
        i++;
      }
    }
    run = i + 1;
  }
  return run === from ? s.slice(from, to) : run < to ? out + s.slice(run, to) : out;
}

/**
 * The encoded length of `s` (levels split on `/` when `levels`) without building it; a lone
 * surrogate counts as 3 bytes. For refusals and for callers sizing limits.
 */
function encodedLength(s: string, levels: boolean): number {
  let n = 0;
  let levelStart = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (levels && c === 0x2f) {
      n += levelStart ? 2 : 1;
      levelStart = true;
      continue;
    }
    levelStart = false;
    if (c < 0x80) n += SAFE[c] === 1 ? 1 : 3;
    else if (c < 0x800) n += 6;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 12;
      i++;
    } else n += 9;
  }
  return levelStart ? n + 1 : n;
}

/** The encoded levels of a topic (also its retained-message KV key), or a refusal. */
function encodeTopicBody(topic: string): string | CodecRefusal {
  if (topic.length > MAX_ENCODED_TOPIC_BYTES) return tooLong(encodedLength(topic, true));
  if (topic.length === 0) return INVALID_TOPIC;
  let body = '';
  let start = 0;
  for (;;) {
    let end = topic.indexOf('/', start);
    if (end < 0) end = topic.length;
    const token = encodeToken(topic, start, end, true);
    if (token === null) return INVALID_TOPIC;
    body += token;
    if (end === topic.length) break;
    body += '.';
    start = end + 1;
  }
  return body.length > MAX_ENCODED_TOPIC_BYTES ? tooLong(body.length) : body;
}

/**
 * The subject a message on `topic` is published to: `bmq.<qos>.<levels>`. Accepts exactly
 * the valid MQTT topic names (non-empty, no `+`, `#` or NUL) that are well-formed UTF-16.
 */
export function topicToSubject(topic: string, qos: ClusterQoS): string | CodecRefusal {
  const head = HEAD[qos]!;
  if (topic.length <= MAX_ENCODED_TOPIC_BYTES) {
    const plain = swapPlain(topic, 0, 0x2f, '.', head);
    if (plain !== null) return plain;
  }
  const body = encodeTopicBody(topic);
  return typeof body === 'string' ? head + body : body;
}

/** The retained-message KV key of `topic`: its encoded levels joined by `.`. */
export function topicToRetainedKey(topic: string): string | CodecRefusal {
  return encodeTopicBody(topic);
}

/** The KV key of a client id: one token (so `/` and `.` are escaped too). */
export function clientIdToKey(clientId: string): string | CodecRefusal {
  if (clientId.length > MAX_ENCODED_TOPIC_BYTES) return tooLong(encodedLength(clientId, false));
  if (clientId.length === 0) return INVALID_CLIENT_ID;
  const key = encodeToken(clientId, 0, clientId.length, false);
  if (key === null) return INVALID_CLIENT_ID;
  return key.length > MAX_ENCODED_TOPIC_BYTES ? tooLong(key.length) : key;
}

/**
 * The encoded length in bytes of a topic's levels (the KV key; the subject adds
 * SUBJECT_HEAD_BYTES), whether or not it is within the bound.
 */
export function encodedTopicBytes(topic: string): number {
  return encodedLength(topic, true);
}

// ---------------------------------------------------------------------------------------
// Filters

function filterBodies(filter: string): { bodies: string[]; wildcardFirst: boolean } | CodecRefusal {
  // SECURITY: a `$share/…` filter expanded literally would subscribe to topics named
  // `$share/…` and lose the group; the caller must split it first.
  if (filter.startsWith('$share/')) return SHARED_FILTER;
  // No quick refusal by length here: a filter is at most 65535 characters and SUBSCRIBE is
  // not the hot path, so the refusal reports the exact expanded length.
  if (!isValidTopicFilter(filter)) return INVALID_FILTER;
  const levels = filter.split('/');
  const multi = levels[levels.length - 1] === '#';
  if (multi) levels.pop();
  const tokens: string[] = [];
  for (const level of levels) {
    if (level === '+') tokens.push('*');
    else {
      const token = encodeToken(level, 0, level.length, false);
      if (token === null) return INVALID_FILTER;
      tokens.push(token);
    }
  }
  const wildcardFirst = filter.charCodeAt(0) === 0x2b || filter.charCodeAt(0) === 0x23;
  let bodies: string[];
  if (!multi) bodies = [tokens.join('.')];
  else if (tokens.length === 0) bodies = ['>'];
  else if (tokens[tokens.length - 1] === '*') {
    // `P/+/#` matches P plus one or more levels: exactly `P.>`.
    tokens[tokens.length - 1] = '>';
    bodies = [tokens.join('.')];
  } else {
    // [MQTT-4.7.1-2]: `P/#` also matches P itself.
    const parent = tokens.join('.');
    bodies = [parent, `${parent}.>`];
  }
  const longest = bodies[bodies.length - 1]!.length;
  return longest > MAX_ENCODED_TOPIC_BYTES ? tooLong(longest) : { bodies, wildcardFirst };
}

/**
 * The NATS subjects to subscribe to for an MQTT filter: their union is exactly the
 * message subjects of the topics the filter matches, before the `$` rule (see
 * `FilterPatterns.wildcardFirst`). `qos` 'any' (the default) puts `*` in the QoS token.
 */
export function filterToSubjects(filter: string, qos: ClusterQoS | 'any' = 'any'): FilterPatterns | CodecRefusal {
  const r = filterBodies(filter);
  if (isCodecRefusal(r)) return r;
  const head = qos === 'any' ? ANY_QOS_HEAD : HEAD[qos]!;
  return { patterns: r.bodies.map((b) => head + b), wildcardFirst: r.wildcardFirst };
}

/** The retained-message KV key patterns (for a watch or a consumer filter) of an MQTT filter. */
export function filterToKeyPatterns(filter: string): FilterPatterns | CodecRefusal {
  const r = filterBodies(filter);
  return isCodecRefusal(r) ? r : { patterns: r.bodies, wildcardFirst: r.wildcardFirst };
}

/**
 * Is this a message subject whose topic starts with `$`? O(1), no decoding. A receiver
 * drops such a delivery on a subscription whose filter is `wildcardFirst` [MQTT-4.7.2-1].
 */
export function isDollarTopicSubject(subject: string): boolean {
  return subject.startsWith('=24', SUBJECT_HEAD_BYTES) && subject.startsWith(PREFIX_DOT) && subject.charCodeAt(SUBJECT_HEAD_BYTES - 1) === 0x2e;
}

/** Is this a retained-message key whose topic starts with `$`? */
export function isDollarTopicKey(key: string): boolean {
  return key.startsWith('=24');
}

// ---------------------------------------------------------------------------------------
// Decoding

/**
 * Decodes encoded levels (or one token when `!levels`), or null when `body` is not exactly
 * what the encoder produces for some accepted name.
 */
function decodeBody(body: string, levels: boolean): string | null {
  const len = body.length;
  if (len === 0 || len > MAX_ENCODED_TOPIC_BYTES) return null;
  const plain = swapPlain(body, 0, levels ? 0x2e : -1, '/', '');
  if (plain !== null) return plain;
  const bytes = new Uint8Array(len);
  let n = 0;
  let tokenStart = 0;
  for (let i = 0; i < len; i++) {
    const c = body.charCodeAt(i);
    if (c === 0x2e /* . */) {
      if (!levels || i === tokenStart) return null;
      bytes[n++] = 0x2f;
      tokenStart = i + 1;
    } else if (c === 0x3d /* = */) {
      if (i === tokenStart && (i + 1 === len || body.charCodeAt(i + 1) === 0x2e)) continue; // empty level
      const hi = i + 2 < len ? (HEX_VALUE[body.charCodeAt(i + 1)] ?? -1) : -1;
      const lo = hi >= 0 ? (HEX_VALUE[body.charCodeAt(i + 2)] ?? -1) : -1;
      if (lo < 0) return null;
      const b = (hi << 4) | lo;
      if (b < 0x80) {
        // Canonical: the encoder never escapes a safe character. In a topic level it never
        // writes `/` (a separator), `+`, `#` or NUL.
        if (SAFE[b] === 1) return null;
        if (levels && (b === 0x2f || b === 0x2b || b === 0x23 || b === 0)) return null;
      }
      bytes[n++] = b;
      i += 2;
    } else if (c < 0x80 && SAFE[c] === 1) {
      bytes[n++] = c;
    } else return null;
  }
  if (tokenStart === len) return null; // trailing `.`
  let text: string;
  try {
    text = UTF8.decode(bytes.subarray(0, n));
  } catch {
    return null;
  }
  // `=` alone is the empty name, which no encoder accepts.
  return text.length === 0 ? null : text;
}

/**
 * The QoS and topic of a message subject, or null when it is not exactly a subject
 * `topicToSubject` produces (wrong prefix or QoS token, empty token, bad or non-canonical
 * escape, invalid UTF-8, a `+`/`#`/NUL in the topic, over the length bound). The receiver
 * drops (and counts) a null: it did not come from a Bastion node.
 */
export function subjectToTopic(subject: string): DecodedSubject | null {
  if (!subject.startsWith(PREFIX_DOT) || subject.charCodeAt(SUBJECT_HEAD_BYTES - 1) !== 0x2e) return null;
  const q = subject.charCodeAt(SUBJECT_PREFIX.length + 1) - 0x30;
  if (q !== 0 && q !== 1 && q !== 2) return null;
  if (subject.length - SUBJECT_HEAD_BYTES <= MAX_ENCODED_TOPIC_BYTES) {
    const plain = swapPlain(subject, SUBJECT_HEAD_BYTES, 0x2e, '/', '');
    if (plain !== null) return { qos: q as ClusterQoS, topic: plain };
  }
  const topic = decodeBody(subject.slice(SUBJECT_HEAD_BYTES), true);
  return topic === null ? null : { qos: q as ClusterQoS, topic };
}

/** The topic of a retained-message KV key, or null when it is not one `topicToRetainedKey` makes. */
export function retainedKeyToTopic(key: string): string | null {
  return decodeBody(key, true);
}

/** The client id of a KV key, or null when it is not one `clientIdToKey` makes. */
export function keyToClientId(key: string): string | null {
  return decodeBody(key, false);
}
