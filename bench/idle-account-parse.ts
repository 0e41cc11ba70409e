/**
 * Pure logic of the idle-footprint account (bench/idle-account.ts): parsing
 * /proc/self/smaps_rollup, aggregating a V8 heap snapshot's self sizes by constructor,
 * turning two readings into per-connection figures, and formatting the tables. Owns: only
 * computations on values it is given. Must not: read files, spawn processes or touch the
 * network (the callers do), so test/unit/idle-account.test.ts can check it on tiny inputs.
 */

/** One reading of the server process's memory, after gc() twice. Sizes in bytes. */
export interface Reading {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** smaps_rollup `Anonymous` (bytes): private anonymous memory (malloc, V8 heap, stacks). */
  anon: number;
  /** smaps_rollup `Rss` (bytes); null when the file could not be read. */
  smapsRss: number | null;
  /** Rss of the `[heap]` mapping (glibc's main malloc arena, grown by brk): OpenSSL's and Node's C++ allocations. */
  brk: number;
  /** Rss of anonymous mappings without a name: V8's heap pages, large (mmap'd) mallocs, other arenas. */
  anonMmap: number;
}

/** Per-connection figures, bytes per connection (fractional). */
export interface PerConn {
  rss: number;
  anon: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  brk: number;
  anonMmap: number;
  /**
   * Native memory per connection: RSS growth minus the V8 heap's growth (heapTotal: the
   * pages V8 committed). What OpenSSL, libuv, Node's C++ wrappers and malloc hold.
   */
  native: number;
}

/**
 * Parses smaps_rollup (or smaps) text: `Key:   123 kB` lines into bytes by key. Lines of
 * other shapes (the header with the address range) are skipped.
 */
export function parseSmapsRollup(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_]+):\s+(\d+)\s+kB\s*$/.exec(line);
    if (m === null) continue;
    out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]) * 1024;
  }
  return out;
}

/**
 * Rss by kind of mapping from /proc/self/smaps: `[heap]` (brk), anonymous mappings without
 * a name, and the rest (files, stacks, vdso…). A mapping header is a line starting with
 * the address range; the next `Rss:` line belongs to it.
 */
export function smapsByMapping(text: string): { brk: number; anonMmap: number; other: number } {
  const out = { brk: 0, anonMmap: 0, other: 0 };
  let current: 'brk' | 'anonMmap' | 'other' = 'other';
  for (const line of text.split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+\s+\S+\s+\S+\s+\S+\s+\d+\s*(.*)$/.exec(line);
    if (header !== null) {
      const name = header[1]!.trim();
      current = name === '[heap]' ? 'brk' : name === '' ? 'anonMmap' : 'other';
      continue;
    }
    const rss = /^Rss:\s+(\d+)\s+kB/.exec(line);
    if (rss !== null) out[current] += Number(rss[1]) * 1024;
  }
  return out;
}

export function perConnection(before: Reading, after: Reading, conns: number): PerConn {
  if (conns <= 0) throw new Error('perConnection: no connections between the readings');
  const d = (k: 'rss' | 'anon' | 'heapUsed' | 'heapTotal' | 'external' | 'arrayBuffers' | 'brk' | 'anonMmap'): number => (after[k] - before[k]) / conns;
  return {
    rss: d('rss'),
    anon: d('anon'),
    heapUsed: d('heapUsed'),
    heapTotal: d('heapTotal'),
    external: d('external'),
    arrayBuffers: d('arrayBuffers'),
    brk: d('brk'),
    anonMmap: d('anonMmap'),
    native: (after.rss - before.rss - (after.heapTotal - before.heapTotal)) / conns,
  };
}

/** The subset of the .heapsnapshot JSON this account reads. */
export interface HeapSnapshotJson {
  snapshot: { meta: { node_fields: string[]; node_types: unknown[] } };
  nodes: number[];
  strings: string[];
}

/**
 * The group a snapshot node counts in: an object's constructor name; a closure as
 * `(closure) name`; every string kind as `(string)`; Node's C++ objects (type `native`,
 * sizes from Node's memory tracker, e.g. `Node / TLSWrap`) as `(native) name`; other V8
 * internals as `(type) name`.
 */
export function groupOf(type: string, name: string): string {
  switch (type) {
    case 'object':
      return name;
    case 'string':
    case 'concatenated string':
    case 'sliced string':
      return '(string)';
    case 'number':
    case 'heap number':
      return '(number)';
    case 'code':
      return '(code)';
    default:
      return `(${type}) ${name}`;
  }
}

export interface GroupSize {
  count: number;
  selfSize: number;
}

/** Sums self size and node count by group (see groupOf) over a whole snapshot. */
export function aggregateSnapshot(snap: HeapSnapshotJson): Map<string, GroupSize> {
  const fields = snap.snapshot.meta.node_fields;
  const typeNames = snap.snapshot.meta.node_types[0];
  if (!Array.isArray(typeNames)) throw new Error('heap snapshot: node_types[0] is not the list of type names');
  const width = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  if (width === 0 || iType < 0 || iName < 0 || iSize < 0) throw new Error('heap snapshot: node_fields lacks type, name or self_size');
  if (snap.nodes.length % width !== 0) throw new Error('heap snapshot: nodes is not a whole number of records');
  const out = new Map<string, GroupSize>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = String(typeNames[snap.nodes[i + iType]!] ?? 'unknown');
    const name = snap.strings[snap.nodes[i + iName]!] ?? '';
    const key = groupOf(type, name);
    const g = out.get(key);
    const size = snap.nodes[i + iSize]!;
    if (g === undefined) out.set(key, { count: 1, selfSize: size });
    else {
      g.count += 1;
      g.selfSize += size;
    }
  }
  return out;
}

export interface GroupDiff {
  group: string;
  /** Objects of this group per connection (after − before) / conns. */
  countPerConn: number;
  /** Self bytes per connection. */
  bytesPerConn: number;
}

/** after − before by group, divided by conns, largest first; groups whose growth rounds to nothing are dropped. */
export function diffGroups(before: Map<string, GroupSize>, after: Map<string, GroupSize>, conns: number): GroupDiff[] {
  const keys = new Set([...before.keys(), ...after.keys()]);
  const out: GroupDiff[] = [];
  for (const group of keys) {
    const b = before.get(group) ?? { count: 0, selfSize: 0 };
    const a = after.get(group) ?? { count: 0, selfSize: 0 };
    const bytesPerConn = (a.selfSize - b.selfSize) / conns;
    if (Math.abs(bytesPerConn) < 0.5) continue;
    out.push({ group, countPerConn: (a.count - b.count) / conns, bytesPerConn });
  }
  out.sort((x, y) => y.bytesPerConn - x.bytesPerConn);
  return out;
}

const kb = (bytes: number): string => (bytes / 1024).toFixed(2);

export interface ServerResult {
  server: string;
  conns: number;
  perConn: PerConn;
  before: Reading;
  after: Reading;
}

/** A Markdown table: one row per server, KB per connection. */
export function formatTable(rows: ServerResult[]): string {
  const lines = [
    '| server | conns | RSS | anon | heapUsed | heapTotal | external | arrayBuffers | native (RSS − heapTotal) | [heap] (brk) | anon mmap |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const p = r.perConn;
    lines.push(`| ${r.server} | ${r.conns} | ${kb(p.rss)} | ${kb(p.anon)} | ${kb(p.heapUsed)} | ${kb(p.heapTotal)} | ${kb(p.external)} | ${kb(p.arrayBuffers)} | ${kb(p.native)} | ${kb(p.brk)} | ${kb(p.anonMmap)} |`);
  }
  return lines.join('\n');
}

/** `a − b` per field, for "what Bastion adds beyond the floor". */
export function subtract(a: PerConn, b: PerConn): PerConn {
  return {
    rss: a.rss - b.rss,
    anon: a.anon - b.anon,
    heapUsed: a.heapUsed - b.heapUsed,
    heapTotal: a.heapTotal - b.heapTotal,
    external: a.external - b.external,
    arrayBuffers: a.arrayBuffers - b.arrayBuffers,
    brk: a.brk - b.brk,
    anonMmap: a.anonMmap - b.anonMmap,
    native: a.native - b.native,
  };
}

export function formatGroups(title: string, diffs: GroupDiff[], top: number): string {
  const lines = [`${title}`, '| group (constructor) | objects/conn | bytes/conn |', '|---|---|---|'];
  for (const d of diffs.slice(0, top)) lines.push(`| ${d.group.replace(/\|/g, '\\|')} | ${d.countPerConn.toFixed(2)} | ${d.bytesPerConn.toFixed(0)} |`);
  const total = diffs.reduce((s, d) => s + d.bytesPerConn, 0);
  lines.push(`| (all groups) | | ${total.toFixed(0)} |`);
  return lines.join('\n');
}
