/**
 * The OTA bench's telemetry probe, coordinator side: starts ota-telemetry-worker.ts (a
 * QoS 1 publisher → subscriber pair at a fixed rate over mutual TLS, in a worker thread),
 * marks measurement windows on the shared monotonic clock and asks the worker for the
 * latency of the messages sent in each. Owns: the worker's lifetime (start with a deadline,
 * stop, terminate) and the message contract with it. Must not: pace or time messages itself.
 */
import { Worker } from 'node:worker_threads';

export interface TelemetrySetup {
  host: string;
  port: number;
  /** PEM of the CA(s) the broker's certificate chains to. */
  ca: string;
  publisher: { cert: string; key: string; clientId: string };
  subscriber: { cert: string; key: string; clientId: string };
  topic: string;
  /** Messages a second. */
  rate: number;
  /** The most messages recorded (one slot each). */
  capacity: number;
}

export interface WindowSummary {
  /** Messages sent in the window; received = those that arrived (by the time of the question). */
  sent: number;
  received: number;
  missing: number;
  p50Us: number | null;
  p90Us: number | null;
  p99Us: number | null;
  maxUs: number | null;
  meanUs: number | null;
  seconds: number;
}

export type TelemetryRequest = { type: 'window'; id: number; fromMs: number; toMs: number } | { type: 'stop' };
export type TelemetryResponse =
  | { type: 'ready' }
  | { type: 'error'; message: string }
  | { type: 'stopped' }
  | { type: 'window'; id: number; summary: WindowSummary; totals: { sent: number; received: number; duplicates: number; overflow: number }; failure: string | null };

const WORKER_URL = new URL('./ota-telemetry-worker.js', import.meta.url);
const START_MS = 20_000;
const ASK_MS = 5_000;
const STOP_MS = 3_000;

/** The shared monotonic clock (process.hrtime), in ms: what the worker stamps messages with. */
export const monoMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export class TelemetryProbe {
  private failure: string | null = null;
  private nextId = 0;
  private readonly waiting = new Map<number, (r: Extract<TelemetryResponse, { type: 'window' }>) => void>();
  private stoppedResolve: (() => void) | null = null;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: TelemetryResponse) => {
      if (m.type === 'error') this.failure ??= m.message;
      else if (m.type === 'window') {
        this.waiting.get(m.id)?.(m);
        this.waiting.delete(m.id);
      } else if (m.type === 'stopped') this.stoppedResolve?.();
    });
    worker.on('error', (e) => (this.failure ??= `telemetry worker: ${e.message}`));
    worker.on('exit', (code) => {
      if (code !== 0) this.failure ??= `telemetry worker exited with code ${code}`;
    });
  }

  /** Starts the pair; resolves once the subscriber is subscribed and the publisher sends. */
  static async start(setup: TelemetrySetup): Promise<TelemetryProbe> {
    const worker = new Worker(WORKER_URL, { workerData: setup });
    const probe = new TelemetryProbe(worker);
    const outcome = await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => resolve(`telemetry not ready within ${START_MS} ms`), START_MS);
      const done = (v: string | null): void => {
        clearTimeout(timer);
        resolve(v);
      };
      worker.on('message', (m: TelemetryResponse) => {
        if (m.type === 'ready') done(null);
        if (m.type === 'error') done(m.message);
      });
      worker.once('error', (e) => done(e.message));
      worker.once('exit', (code) => done(`telemetry worker exited (${code}) before it was ready`));
    });
    if (outcome !== null) {
      await worker.terminate();
      throw new Error(outcome);
    }
    return probe;
  }

  /** What went wrong in the worker (a lost connection ends the measurement), or null. */
  get error(): string | null {
    return this.failure;
  }

  /** The latency of the messages sent between `fromMs` and `toMs` (monoMs), as received so far. */
  async window(fromMs: number, toMs: number): Promise<Extract<TelemetryResponse, { type: 'window' }>> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`the telemetry worker did not answer within ${ASK_MS} ms`));
      }, ASK_MS);
      this.waiting.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.worker.postMessage({ type: 'window', id, fromMs, toMs } satisfies TelemetryRequest);
    });
  }

  /** Disconnects both clients (bounded), then ends the thread. */
  async stop(): Promise<void> {
    const stopped = new Promise<void>((resolve) => {
      this.stoppedResolve = resolve;
      setTimeout(resolve, STOP_MS).unref();
    });
    this.worker.postMessage({ type: 'stop' } satisfies TelemetryRequest);
    await stopped;
    await this.worker.terminate();
  }

  /** For a signal handler or the watchdog: end the thread now. */
  kill(): void {
    void this.worker.terminate();
  }
}
