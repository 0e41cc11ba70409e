/**
 * The pure logic of the idle-footprint account (bench/idle-account-parse.ts): smaps parsing,
 * heap-snapshot aggregation and diff, per-connection arithmetic. Owns: checks on tiny
 * synthetic inputs. Must not: start servers, open sockets or read /proc (the bench does).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  aggregateSnapshot,
  diffGroups,
  formatGroups,
  formatTable,
  groupOf,
  parseSmapsRollup,
  perConnection,
  smapsByMapping,
  subtract,
  type HeapSnapshotJson,
  type Reading,
} from '../../bench/idle-account-parse.js';

const ROLLUP = `55d1c0000000-7ffd3a7fe000 ---p 00000000 00:00 0                          [rollup]
Rss:              123456 kB
Pss:              120000 kB
Anonymous:         98765 kB
Swap:                  0 kB
`;

test('smaps_rollup: kB lines become bytes by key, the header is skipped', () => {
  const s = parseSmapsRollup(ROLLUP);
  assert.equal(s['Rss'], 123456 * 1024);
  assert.equal(s['Anonymous'], 98765 * 1024);
  assert.equal(s['Swap'], 0);
  assert.equal(Object.keys(s).length, 4);
});

const SMAPS = `5600aa000000-5600aa100000 r-xp 00000000 08:01 1234                       /usr/bin/node
Rss:                 100 kB
Anonymous:             0 kB
5600ab000000-5600ab800000 rw-p 00000000 00:00 0                          [heap]
Rss:                2000 kB
Anonymous:          2000 kB
7f0000000000-7f0000400000 rw-p 00000000 00:00 0 
Rss:                 300 kB
7f0000400000-7f0000800000 rw-p 00000000 00:00 0
Rss:                  50 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                   8 kB
`;

test('smaps by mapping: [heap] is brk, unnamed anonymous mappings are mmap, the rest is other', () => {
  const m = smapsByMapping(SMAPS);
  assert.equal(m.brk, 2000 * 1024);
  assert.equal(m.anonMmap, 350 * 1024);
  assert.equal(m.other, 108 * 1024);
});

function reading(over: Partial<Reading>): Reading {
  return { rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0, anon: 0, smapsRss: 0, brk: 0, anonMmap: 0, ...over };
}

test('per connection: growth over N, native is RSS growth minus committed heap growth', () => {
  const before = reading({ rss: 100_000, heapTotal: 40_000, heapUsed: 30_000, anon: 80_000, brk: 10_000 });
  const after = reading({ rss: 300_000, heapTotal: 90_000, heapUsed: 70_000, anon: 260_000, brk: 110_000 });
  const p = perConnection(before, after, 100);
  assert.equal(p.rss, 2000);
  assert.equal(p.heapUsed, 400);
  assert.equal(p.anon, 1800);
  assert.equal(p.brk, 1000);
  assert.equal(p.native, 1500);
  assert.throws(() => perConnection(before, after, 0), /no connections/);
  const d = subtract(p, perConnection(before, before, 100));
  assert.deepEqual(d, p);
  const table = formatTable([{ server: 'x', conns: 100, perConn: p, before, after }]);
  assert.match(table, /\| x \| 100 \| 1\.95 \| 1\.76 \| 0\.39 \|/);
});

/** A snapshot with fields in a non-default order, to check the reader uses node_fields. */
function snapshot(nodes: [string, string, number][]): HeapSnapshotJson {
  const types = ['hidden', 'array', 'string', 'object', 'code', 'closure', 'regexp', 'number', 'native', 'synthetic', 'concatenated string', 'sliced string'];
  const strings: string[] = [];
  const idx = (s: string): number => {
    const i = strings.indexOf(s);
    if (i >= 0) return i;
    strings.push(s);
    return strings.length - 1;
  };
  const flat: number[] = [];
  let id = 1;
  for (const [type, name, size] of nodes) flat.push(size, types.indexOf(type), idx(name), id++, 0);
  return { snapshot: { meta: { node_fields: ['self_size', 'type', 'name', 'id', 'edge_count'], node_types: [types, 'string'] } }, nodes: flat, strings };
}

test('snapshot aggregation: objects by constructor, strings together, closures and natives apart', () => {
  const agg = aggregateSnapshot(
    snapshot([
      ['object', 'Connection', 192],
      ['object', 'Connection', 192],
      ['string', 'abc', 20],
      ['concatenated string', 'abcdef', 32],
      ['closure', 'onData', 56],
      ['native', 'Node / TLSWrap', 368],
      ['code', 'x', 100],
    ]),
  );
  assert.deepEqual(agg.get('Connection'), { count: 2, selfSize: 384 });
  assert.deepEqual(agg.get('(string)'), { count: 2, selfSize: 52 });
  assert.deepEqual(agg.get('(closure) onData'), { count: 1, selfSize: 56 });
  assert.deepEqual(agg.get('(native) Node / TLSWrap'), { count: 1, selfSize: 368 });
  assert.equal(groupOf('code', 'anything'), '(code)');
  assert.throws(() => aggregateSnapshot({ ...snapshot([]), nodes: [1, 2, 3] }), /whole number/);
});

test('snapshot diff: growth per connection, largest first, unchanged groups dropped', () => {
  const before = aggregateSnapshot(snapshot([['object', 'Map', 64], ['object', 'Server', 500]]));
  const after = aggregateSnapshot(
    snapshot([
      ['object', 'Map', 64],
      ['object', 'Map', 64],
      ['object', 'Map', 64],
      ['object', 'Server', 500],
      ['object', 'Session', 200],
      ['object', 'Session', 200],
    ]),
  );
  const d = diffGroups(before, after, 2);
  assert.deepEqual(
    d.map((x) => [x.group, x.countPerConn, x.bytesPerConn]),
    [
      ['Session', 1, 200],
      ['Map', 1, 64],
    ],
  );
  const text = formatGroups('t', d, 1);
  assert.match(text, /\| Session \| 1\.00 \| 200 \|/);
  assert.doesNotMatch(text, /\| Map \|/);
  assert.match(text, /\| \(all groups\) \| \| 264 \|/);
});
