/**
 * A set of load-generating worker threads sharing one counters buffer. Owns: spawning
 * workers with their roles, waiting for them to be ready, starting and stopping them, and
 * terminating them no matter what. Must not: wait without a deadline.
 */
import { Worker } from 'node:worker_threads';
import { COUNTER_SLOTS, Counter, type LatencySummary, type Role, type WorkerInit, type WorkerReport } from './worker-api.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);
const STOP_TIMEOUT_MS = 5_000;

let nextWorkerIndex = 1;

export interface Ready {
  opened: number;
  failed: number;
}

export interface Done {
  latency: LatencySummary | null;
  behind: number;
  errors: string[];
  /** TLS connections the worker completed, by `<protocol> <negotiated group>`. */
  tlsGroups: Record<string, number>;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: Error) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Observed elsewhere (or deliberately ignored after a stop); never an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export class Member {
  readonly ready = deferred<Ready>();
  readonly done = deferred<Done>();
  private finished = false;

  constructor(
    readonly worker: Worker,
    readonly kind: Role['kind'],
    onFailure: (e: Error) => void,
  ) {
    const fail = (e: Error): void => {
      if (this.finished) return;
      this.finished = true;
      this.ready.reject(e);
      this.done.reject(e);
      onFailure(e);
    };
    worker.on('message', (m: WorkerReport) => {
      if (m.type === 'ready') this.ready.resolve({ opened: m.opened, failed: m.failed });
      else if (m.type === 'fatal') fail(new Error(m.message));
      else {
        this.finished = true;
        this.done.resolve({ latency: m.latency, behind: m.behind, errors: m.errors, tlsGroups: m.tlsGroups });
      }
    });
    worker.on('error', (e) => fail(new Error(`${kind} worker crashed: ${e.message}`)));
    worker.on('exit', (code) => fail(new Error(`${kind} worker exited (code ${code})`)));
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${Math.round(ms / 1000)} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export class Fleet {
  readonly counters = new SharedArrayBuffer(COUNTER_SLOTS * Int32Array.BYTES_PER_ELEMENT);
  readonly c = new Int32Array(this.counters);
  private readonly members: Member[] = [];
  private readonly failure = deferred<never>();
  /** Rejects as soon as any worker fails; race it against every wait. */
  readonly failed: Promise<never> = this.failure.promise;

  spawn(role: Role): Member {
    const init: WorkerInit = { role, counters: this.counters, index: nextWorkerIndex++ };
    const worker = new Worker(WORKER_URL, { workerData: init });
    const member = new Member(worker, role.kind, (e) => {
      if (Atomics.load(this.c, Counter.Stop) === 0) this.failure.reject(e);
    });
    this.members.push(member);
    return member;
  }

  async ready(members: Member[], timeoutMs: number, what: string): Promise<Ready[]> {
    return withTimeout(Promise.all(members.map((m) => m.ready.promise)), timeoutMs, what);
  }

  start(members: Member[]): void {
    for (const m of members) m.worker.postMessage({ type: 'start' });
  }

  /**
   * Sets the stop flag (publishers stop, subscribers keep counting), runs `settle` (e.g.
   * wait for in-flight deliveries), then collects each worker's report (bounded) and
   * terminates them all.
   */
  async stop(settle?: () => Promise<void>): Promise<Done[]> {
    Atomics.store(this.c, Counter.Stop, 1);
    if (settle !== undefined) await settle();
    for (const m of this.members) m.worker.postMessage({ type: 'stop' });
    const settled = await withTimeout(
      Promise.allSettled(this.members.map((m) => m.done.promise)),
      STOP_TIMEOUT_MS,
      'stopping workers',
    ).catch(() => []);
    await this.terminate();
    return settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  }

  async terminate(): Promise<void> {
    Atomics.store(this.c, Counter.Stop, 1);
    await Promise.allSettled(this.members.map((m) => m.worker.terminate()));
  }
}
