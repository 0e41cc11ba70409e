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

const MISNAMED_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

let shared: Registry | null = null;

export function processRegistry(): Registry {
  if (shared === null) {
    shared = new Registry();
    collectDefaultMetrics({ register: shared });
    // Gauges that prom-client names like counters: promtool refuses them, and the same
    // counts stay available per type as nodejs_active_handles / _requests / _resources.
    for (const name of MISNAMED_GAUGES) shared.removeSingleMetric(name);
  }
  return shared;
}
