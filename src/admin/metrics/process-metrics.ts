/**
 * The Node.js process metrics (event-loop lag, heap, CPU, file descriptors, GC) that
 * prom-client's `collectDefaultMetrics` provides, under their usual `nodejs_*` and
 * `process_*` names. Owns: one registry for them per process. Must not: hold broker state.
 *
 * They describe the process, not a broker, so every broker in the process (tests run
 * several) shares one registry: collectDefaultMetrics starts an event-loop delay monitor
 * and a GC observer that are never stopped, so it must run once, not once per broker.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

let shared: Registry | null = null;

export function processRegistry(): Registry {
  if (shared === null) {
    shared = new Registry();
    collectDefaultMetrics({ register: shared });
  }
  return shared;
}
