/**
 * Idle footprint, where the bytes go (issue 17, part 2):
 *
 *   node --expose-gc dist/bench/idle-account.js [--conns 2000] [--transport tcp|tls|both]
 *        [--snapshot-conns 500 | 0] [--variants no-tickets,exchange,arena1,x25519,client-x25519,no-client-cert,net-exchange]
 *        [--semi default|1] [--json file] [--keep-snapshots dir] [--shared-cert] [--bare-only]
 *
 * For each server (bare net, bare TLS, Bastion TCP, Bastion mTLS), in its own process
 * (bench/idle-account-server.ts, --expose-gc), a client process (bench/idle-account-client.ts)
 * first opens a warm-up batch and the server is read, then N more connections and it is
 * read again: the per-connection figures are the difference over N, so one-time costs
 * (code compiled on the first connection, lazily loaded modules) stay out. Then, with
 * --snapshot-conns, the same with heap snapshots, aggregated by constructor. Variants of
 * bare TLS are the experiment toward going below the floor.
 * Owns: orchestrating those processes, the tables and the JSON. Must not: change src/ or
 * leave a process behind (each child is killed by pid in a finally).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeIdlePki, type IdlePki } from './idle-account-pki.js';
import {
  aggregateSnapshot,
  diffGroups,
  formatGroups,
  formatTable,
  perConnection,
  subtract,
  type GroupDiff,
  type HeapSnapshotJson,
  type Reading,
  type ServerResult,
} from './idle-account-parse.js';
import type { FromServer, ServerKind, ServerSpec } from './idle-account-server.js';
import type { ClientSpec, FromClient } from './idle-account-client.js';

/**
 * Bare-TLS variants (the experiment): `no-tickets` SSL_OP_NO_TICKET; `exchange` 16 KB each
 * way once after CONNACK (record buffers used, then idle); `arena1` glibc with one malloc
 * arena and trim threshold 0; `x25519` the server takes X25519 only (no hybrid ML-KEM);
 * `client-x25519` the clients offer X25519 only (a ClientHello ~1.2 KB smaller, so the
 * handshake's flights fit in NodeBIO's first 1 KB buffer); `no-client-cert` server-only
 * TLS (what the client's verified chain costs); `net-exchange` the 16 KB exchange on bare
 * net (what Node's streams keep of it, without TLS).
 */
type Variant = 'default' | 'no-tickets' | 'exchange' | 'arena1' | 'x25519' | 'client-x25519' | 'no-client-cert' | 'net-exchange';
const VARIANTS: readonly Variant[] = ['default', 'no-tickets', 'exchange', 'arena1', 'x25519', 'client-x25519', 'no-client-cert', 'net-exchange'];

interface Options {
  conns: number;
  transports: ('tcp' | 'tls')[];
  snapshotConns: number;
  variants: Variant[];
  semi: string;
  json: string | null;
  /** Where the .heapsnapshot files stay (for a look at retainers in DevTools); absent: deleted once read. */
  keepSnapshots: string | null;
  /** mTLS clients share one certificate instead of one per device (faster set-up, hides per-identity state). */
  sharedCert: boolean;
  /** Only the bare servers (Node's floor), e.g. on a Node whose better-sqlite3 build Bastion cannot load. */
  bareOnly: boolean;
}

const STEP_TIMEOUT_MS = 110_000;

function parseArgs(argv: string[]): Options {
  const o: Options = { conns: 2000, transports: ['tcp', 'tls'], snapshotConns: 500, variants: [], semi: '1', json: null, keepSnapshots: null, sharedCert: false, bareOnly: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    const need = (): string => {
      if (v === undefined) throw new Error(`${a} needs a value`);
      i++;
      return v;
    };
    if (a === '--conns') o.conns = Number(need());
    else if (a === '--transport') {
      const t = need();
      o.transports = t === 'both' ? ['tcp', 'tls'] : t === 'tcp' || t === 'tls' ? [t] : [];
      if (o.transports.length === 0) throw new Error(`--transport tcp|tls|both, not ${t}`);
    } else if (a === '--snapshot-conns') o.snapshotConns = Number(need());
    else if (a === '--variants') {
      o.variants = need().split(',') as Variant[];
      for (const x of o.variants) if (!VARIANTS.includes(x)) throw new Error(`unknown variant ${x} (${VARIANTS.join(', ')})`);
    } else if (a === '--semi') o.semi = need();
    else if (a === '--json') o.json = need();
    else if (a === '--keep-snapshots') o.keepSnapshots = need();
    else if (a === '--shared-cert') o.sharedCert = true;
    else if (a === '--bare-only') o.bareOnly = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!(o.conns > 0 && o.conns <= 20_000)) throw new Error('--conns 1..20000');
  return o;
}

/** Messages from a child, in order, each awaited with a deadline. */
class Mailbox<T> {
  private queue: T[] = [];
  private waiting: ((m: T) => void) | null = null;
  private failure: Error | null = null;
  constructor(readonly child: ChildProcess, what: string) {
    child.on('message', (m: unknown) => this.push(m as T));
    child.on('exit', (code, signal) => this.fail(new Error(`${what} exited (${code ?? signal})`)));
  }
  private push(m: T): void {
    if (this.waiting !== null) {
      const w = this.waiting;
      this.waiting = null;
      w(m);
    } else this.queue.push(m);
  }
  private fail(e: Error): void {
    this.failure = e;
    this.rejecter?.(e);
  }
  private rejecter: ((e: Error) => void) | null = null;
  next(ms = STEP_TIMEOUT_MS): Promise<T> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('child did not answer in time')), ms);
      this.waiting = (m) => {
        clearTimeout(timer);
        this.rejecter = null;
        resolve(m);
      };
      this.rejecter = (e) => {
        clearTimeout(timer);
        reject(e);
      };
    });
  }
}

function kill(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill('SIGKILL');
}

interface RunSpec {
  label: string;
  kind: ServerKind;
  variant: Variant;
  conns: number;
  snapshotDir: string | null;
}

interface RunResult {
  result: ServerResult;
  warm: number;
  groups: GroupDiff[] | null;
  node: string;
  openssl: string;
}

async function expect<T extends { type: string }>(box: Mailbox<T>, type: T['type']): Promise<T> {
  const m = await box.next();
  if (m.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(m)}`);
  return m;
}

async function runOne(pki: IdlePki, o: Options, r: RunSpec): Promise<RunResult> {
  const tlsKind = r.kind === 'bare-tls' || r.kind === 'bastion-tls';
  const spec: ServerSpec = {
    kind: r.kind,
    caCert: pki.caCert,
    serverCert: pki.serverCert,
    serverKey: pki.serverKey,
    noTickets: r.variant === 'no-tickets',
    exchange: r.variant === 'exchange' || r.variant === 'net-exchange',
    ...(r.variant === 'x25519' ? { groups: 'X25519' } : {}),
    noClientCert: r.variant === 'no-client-cert',
  };
  const execArgv = ['--expose-gc', ...(o.semi !== 'default' ? [`--max-semi-space-size=${o.semi}`] : [])];
  const env = { ...process.env, ...(r.variant === 'arena1' ? { MALLOC_ARENA_MAX: '1', MALLOC_TRIM_THRESHOLD_: '0' } : {}) };
  const server = fork(new URL('./idle-account-server.js', import.meta.url), [JSON.stringify(spec)], { execArgv, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let client: ChildProcess | null = null;
  try {
    const sbox = new Mailbox<FromServer>(server, r.label);
    const ready = await expect(sbox, 'ready');
    if (ready.type !== 'ready') throw new Error('unreachable');
    const warm = Math.max(50, Math.round(r.conns / 10));
    const cspec: ClientSpec = {
      port: ready.port,
      tls: tlsKind,
      caCert: pki.caCert,
      clientCert: pki.clientCert,
      clientKey: pki.clientKey,
      devicesFile: o.sharedCert ? null : pki.devicesFile,
      concurrency: tlsKind ? 8 : 32,
      exchange: r.variant === 'exchange' || r.variant === 'net-exchange',
      spreadSources: r.conns + warm > 5000,
      ...(r.variant === 'client-x25519' ? { groups: 'X25519' } : {}),
    };
    client = fork(new URL('./idle-account-client.js', import.meta.url), [JSON.stringify(cspec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const cbox = new Mailbox<FromClient>(client, 'client');
    const openBatch = async (count: number): Promise<void> => {
      client!.send({ cmd: 'open', count });
      const m = await cbox.next();
      if (m.type !== 'opened') throw new Error(`client: ${m.message}`);
      if (m.failed > 0) throw new Error(`${r.label}: ${m.failed} of ${count} connections failed (first: ${m.firstError})`);
    };
    const read = async (): Promise<Reading> => {
      server.send({ cmd: 'measure' });
      const m = await sbox.next();
      if (m.type !== 'reading') throw new Error(`${r.label}: ${JSON.stringify(m)}`);
      return m.reading;
    };
    const snap = async (name: string): Promise<Map<string, { count: number; selfSize: number }>> => {
      const path = join(r.snapshotDir!, `${r.label.replace(/\s+/g, '-')}-${name}.heapsnapshot`);
      server.send({ cmd: 'snapshot', path });
      const m = await sbox.next();
      if (m.type !== 'snapshot') throw new Error(`${r.label}: ${JSON.stringify(m)}`);
      const agg = aggregateSnapshot(JSON.parse(readFileSync(m.path, 'utf8')) as HeapSnapshotJson);
      if (o.keepSnapshots === null) rmSync(m.path, { force: true });
      return agg;
    };
    await openBatch(warm);
    const before = await read();
    const snapBefore = r.snapshotDir !== null ? await snap('before') : null;
    await openBatch(r.conns);
    // Idle for a moment: the last handshakes' follow-ups (tickets, acks) are done.
    await new Promise((res) => setTimeout(res, 500));
    const after = await read();
    const groups = snapBefore !== null ? diffGroups(snapBefore, await snap('after'), r.conns) : null;
    return { result: { server: r.label, conns: r.conns, perConn: perConnection(before, after, r.conns), before, after }, warm, groups, node: ready.node, openssl: ready.openssl };
  } finally {
    if (client !== null) kill(client);
    kill(server);
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const dir = mkdtempSync(join(tmpdir(), 'bastion-idle-account-'));
  try {
    // One certificate per device (each its own identity, as in a fleet), enough for the
    // largest run: warm-up batch plus N.
    const devices = o.sharedCert || !o.transports.includes('tls') ? 0 : Math.max(o.conns, o.snapshotConns) + Math.max(50, Math.round(Math.max(o.conns, o.snapshotConns) / 10));
    const pki = await makeIdlePki(dir, devices);
    const servers: { label: string; kind: ServerKind; variant: Variant }[] = [];
    for (const t of o.transports) {
      servers.push({ label: t === 'tcp' ? 'bare-net' : 'bare-tls', kind: t === 'tcp' ? 'bare-net' : 'bare-tls', variant: 'default' });
      if (!o.bareOnly) servers.push({ label: `bastion-${t}`, kind: t === 'tcp' ? 'bastion-tcp' : 'bastion-tls', variant: 'default' });
    }
    for (const v of o.variants) {
      if (v === 'net-exchange') servers.push({ label: 'bare-net exchange', kind: 'bare-net', variant: v });
      else if (v !== 'default') servers.push({ label: `bare-tls ${v}`, kind: 'bare-tls', variant: v });
    }

    const runs: RunResult[] = [];
    for (const s of servers) {
      const res = await runOne(pki, o, { ...s, conns: o.conns, snapshotDir: null });
      runs.push(res);
      console.error(`${s.label}: ${(res.result.perConn.rss / 1024).toFixed(2)} KB RSS/conn (${o.conns} after ${res.warm} warm-up)`);
    }
    const first = runs[0];
    const header = `Node ${first?.node ?? process.version}, OpenSSL ${first?.openssl ?? ''}, N=${o.conns} idle connections (after a warm-up batch), children --expose-gc${o.semi !== 'default' ? ` --max-semi-space-size=${o.semi}` : ''}, mTLS clients with ${o.sharedCert ? 'one shared certificate' : 'one certificate each'}; KB per connection`;
    console.log(`\n${header}\n\n${formatTable(runs.map((x) => x.result))}`);
    const byLabel = new Map(runs.map((x) => [x.result.server, x.result]));
    const diffs: { transport: string; perConn: ReturnType<typeof subtract> }[] = [];
    for (const [b, f, t] of [['bastion-tcp', 'bare-net', 'tcp'], ['bastion-tls', 'bare-tls', 'tls']] as const) {
      const bb = byLabel.get(b);
      const ff = byLabel.get(f);
      if (bb === undefined || ff === undefined) continue;
      diffs.push({ transport: t, perConn: subtract(bb.perConn, ff.perConn) });
    }
    if (diffs.length > 0) console.log(`\nBastion − floor\n\n${formatTable(diffs.map((d) => ({ server: `bastion-${d.transport} − floor`, conns: o.conns, perConn: d.perConn, before: runs[0]!.result.before, after: runs[0]!.result.after })))}`);

    const snapshots: { label: string; conns: number; groups: GroupDiff[] }[] = [];
    if (o.snapshotConns > 0) {
      for (const s of servers) {
        const res = await runOne(pki, o, { ...s, conns: o.snapshotConns, snapshotDir: o.keepSnapshots ?? dir });
        snapshots.push({ label: s.label, conns: o.snapshotConns, groups: res.groups ?? [] });
        console.log(`\n${formatGroups(`Heap snapshot diff, ${s.label}, ${o.snapshotConns} connections: self size per connection by constructor (top 25)`, res.groups ?? [], 25)}`);
      }
    }
    if (o.json !== null) writeFileSync(o.json, `${JSON.stringify({ header, options: o, runs, bastionMinusFloor: diffs, snapshots }, null, 2)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
