/**
 * Micro benchmark of the session stores: outbound add + remove throughput with group
 * commit. Each round records a batch of B adds plus the B removes of the previous round's
 * messages in one event-loop turn, then waits on afterFlush (one transaction per round),
 * which is what a broker acknowledging QoS 1 from persistent sessions does.
 * A second mode adds and removes the same messages within one turn (coalesced away).
 *
 * Usage: npm run build && node dist/bench/store-bench.js [seconds-per-case=1.5]
 * Prints ops/s, where an op is one add or one remove, and messages/s (add + remove).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Message } from '../src/broker/message.js';
import type { SessionStore, StoredOutbound } from '../src/broker/ports.js';
import { MemoryStore } from '../src/store/memory/memory-store.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';

const seconds = Number(process.argv[2] ?? '1.5');
const payload = Buffer.alloc(64, 0x61);
const plain: Message = {
  topic: 'bench/device/42/telemetry',
  payload,
  qos: 1,
  retain: false,
  properties: undefined,
  expiresAt: 0,
  origin: 'publisher',
};

function entry(store: SessionStore, clientId: string): StoredOutbound {
  return {
    seq: store.nextSeq(),
    clientId,
    message: plain,
    qos: 1,
    retainFlag: false,
    subscriptionIds: [],
    state: 'queued',
    packetId: 0,
  };
}

function flushed(store: SessionStore): Promise<void> {
  return new Promise((resolve) => store.afterFlush(resolve));
}

interface Result {
  ops: number;
  elapsedMs: number;
  rounds: number;
}

/** Adds `batch` outbound messages spread over 64 clients. */
function addBatch(store: SessionStore, batch: number): StoredOutbound[] {
  const added: StoredOutbound[] = [];
  for (let i = 0; i < batch; i++) {
    const e = entry(store, `client-${i % 64}`);
    store.addOutbound(e);
    added.push(e);
  }
  return added;
}

/** Adds in round k, removes them in round k+1: every round is one real transaction. */
async function pipelined(store: SessionStore, batch: number): Promise<Result> {
  let previous: StoredOutbound[] = [];
  let ops = 0;
  let rounds = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (performance.now() < deadline) {
    const current = addBatch(store, batch);
    for (const e of previous) store.removeOutbound(e.clientId, e.seq);
    ops += current.length + previous.length;
    previous = current;
    rounds++;
    await flushed(store);
  }
  return { ops, elapsedMs: performance.now() - start, rounds };
}

/** Add, mark sent and remove within one turn (a fast subscriber): coalesced away. */
async function sameTurn(store: SessionStore, batch: number): Promise<Result> {
  let ops = 0;
  let rounds = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (performance.now() < deadline) {
    const current = addBatch(store, batch);
    for (const e of current) store.updateOutbound(e.clientId, e.seq, 'publish-sent', 1);
    for (const e of current) store.removeOutbound(e.clientId, e.seq);
    ops += current.length * 2;
    rounds++;
    await flushed(store);
  }
  return { ops, elapsedMs: performance.now() - start, rounds };
}

function report(label: string, r: Result): void {
  const opsPerSec = (r.ops / r.elapsedMs) * 1000;
  const perRound = (r.elapsedMs / r.rounds) * 1000;
  console.log(
    `${label.padEnd(44)} ${Math.round(opsPerSec).toLocaleString('en-US').padStart(11)} ops/s ` +
      `${Math.round(opsPerSec / 2).toLocaleString('en-US').padStart(11)} msg/s ` +
      `${perRound.toFixed(0).padStart(7)} µs/round`,
  );
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bastion-store-bench-'));
  try {
    console.log(`node ${process.version}, ${os.cpus().length} CPUs, ${seconds}s per case, 64-byte payloads`);
    console.log('pipelined: round k adds B messages and removes the B of round k-1, then waits on afterFlush');
    const batches = [1, 10, 100, 1000];
    for (const batch of batches) report(`memory    pipelined B=${batch}`, await pipelined(new MemoryStore(), batch));
    for (const synchronous of ['NORMAL', 'FULL'] as const) {
      for (const batch of batches) {
        const file = path.join(dir, `bench-${synchronous}-${batch}.db`);
        const store = new SqliteStore({ path: file, synchronous });
        report(`sqlite ${synchronous.padEnd(6)} pipelined B=${batch}`, await pipelined(store, batch));
        store.close();
      }
    }
    for (const batch of [100, 1000]) {
      const store = new SqliteStore({ path: path.join(dir, `bench-same-${batch}.db`) });
      report(`sqlite NORMAL  same-turn (coalesced) B=${batch}`, await sameTurn(store, batch));
      store.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
