/**
 * The machine's CPU load, from /proc/stat. Owns: reading the whole machine's busy time and
 * waiting for a quiet machine before a run. Must not: look at single processes (the
 * broker's CPU is BrokerProcess's, the generator's is process.cpuUsage()).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { round } from './round.js';
import { sleep } from './sleep.js';

export const CPUS = availableParallelism();

export interface HostCpu {
  busy: number;
  total: number;
}

export function hostCpu(): HostCpu | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/** Busy CPU of the whole machine over `ms`, in % of one core (200 = both cores of two). */
async function machineLoad(ms: number): Promise<number | null> {
  const a = hostCpu();
  await sleep(ms);
  const b = hostCpu();
  if (a === null || b === null || b.total <= a.total) return null;
  return (100 * CPUS * (b.busy - a.busy)) / (b.total - a.total);
}

/**
 * Before a run (no broker, no generator yet): waits while other work keeps more than
 * `thresholdPct` of a core busy, sampling every 500 ms, for at most `maxMs`. Returns the
 * last load seen and how long it waited, so a report can show which runs shared the machine.
 */
export async function waitForQuietMachine(thresholdPct: number, maxMs: number): Promise<{ loadPct: number | null; waitedMs: number }> {
  const start = performance.now();
  let load = await machineLoad(500);
  while (load !== null && load > thresholdPct && performance.now() - start + 500 <= maxMs) load = await machineLoad(500);
  return { loadPct: round(load, 0), waitedMs: Math.round(performance.now() - start) };
}
