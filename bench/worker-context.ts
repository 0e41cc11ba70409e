/**
 * What every module of a load-generating worker thread shares: its init data, the shared
 * counters, the channel to the coordinator and the first errors seen. Owns: that state.
 * Must not: be imported outside a worker thread (it reads workerData and parentPort).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Counter, type WorkerInit, type WorkerReport } from './worker-api.js';

export const init = workerData as WorkerInit;
export const C = new Int32Array(init.counters);
export const port = parentPort!;
export const errors: string[] = [];

export function stopped(): boolean {
  return Atomics.load(C, Counter.Stop) !== 0;
}

export function note(message: string): void {
  if (errors.length < 5 && !errors.includes(message)) errors.push(message);
}

export function send(report: WorkerReport): void {
  port.postMessage(report);
}

/** TLS connections this worker completed, by `<protocol> <negotiated group>`. */
export const tlsGroups = new Map<string, number>();

export function tallyTlsGroup(name: string): void {
  tlsGroups.set(name, (tlsGroups.get(name) ?? 0) + 1);
}
