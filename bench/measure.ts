/**
 * The timing of a bench run. Owns: waiting for workers to be ready, the warm-up and the
 * measured window (watching for a stalled broker), and letting deliveries settle after
 * the publishers stop. Must not: wait without a deadline, or outlive a dead broker.
 */
import type { Fleet, Member } from './fleet.js';
import { snapshot, Window } from './counter-window.js';
import type { ScenarioContext } from './scenario-api.js';
import { sleep } from './sleep.js';
import { Counter } from './worker-api.js';

export const SETUP_TIMEOUT_MS = 30_000;

/** Sleeps, but fails at once if the broker dies or a worker fails. */
export async function hold(ctx: ScenarioContext, fleet: Fleet, ms: number): Promise<void> {
  const died = ctx.broker.exited.then((d) => {
    throw new Error(`${d}: ${ctx.broker.log()}`);
  });
  died.catch(() => undefined);
  await Promise.race([sleep(ms), died, fleet.failed]);
}

export async function ready(ctx: ScenarioContext, fleet: Fleet, members: Member[], what: string, timeoutMs = SETUP_TIMEOUT_MS): Promise<void> {
  const died = ctx.broker.exited.then((d) => {
    throw new Error(`${d}: ${ctx.broker.log()}`);
  });
  died.catch(() => undefined);
  await Promise.race([fleet.ready(members, timeoutMs, what), died]);
}

/** Warm-up, then one measured window; the fleet is stopped whatever happens. */
const PROGRESS_SAMPLE_MS = 100;
/** A run whose counter stood still this long (share of the window) measured a stalled broker, not a rate. */
const MAX_STALL_SHARE = 0.5;

/**
 * Warm-up, then one measured window, watching `progress` every 100 ms: the longest time
 * it stood still is reported, and a broker that stalls for half the window fails the run.
 */
export async function measure(ctx: ScenarioContext, fleet: Fleet, start: Member[], progress: number, onMeasure?: (on: boolean) => void): Promise<Window> {
  fleet.start(start);
  await hold(ctx, fleet, ctx.warmupMs);
  onMeasure?.(true);
  const a = snapshot(fleet, ctx.broker);
  let last = fleet.c[progress] ?? 0;
  let lastChange = a.t;
  let longestStall = 0;
  for (;;) {
    const left = a.t + ctx.durationMs - performance.now();
    if (left <= 0) break;
    await hold(ctx, fleet, Math.min(PROGRESS_SAMPLE_MS, left));
    const now = performance.now();
    const value = fleet.c[progress] ?? 0;
    if (value !== last) {
      last = value;
      lastChange = now;
    }
    longestStall = Math.max(longestStall, now - lastChange);
  }
  const b = snapshot(fleet, ctx.broker);
  onMeasure?.(false);
  if (longestStall > ctx.durationMs * MAX_STALL_SHARE) {
    throw new Error(`no progress for ${Math.round(longestStall)} ms of the ${ctx.durationMs} ms window: the broker stalled (${ctx.broker.alive ? 'still running' : 'exited'})`);
  }
  return new Window(a, b, longestStall);
}

const SETTLE_MAX_MS = 2000;
const SETTLE_QUIET_MS = 250;

/** After publishers stop: waits until every expected delivery arrived, or deliveries stop. */
export async function settle(fleet: Fleet, expected: () => number): Promise<void> {
  const deadline = performance.now() + SETTLE_MAX_MS;
  let last = -1;
  let quietSince = performance.now();
  while (performance.now() < deadline) {
    const received = fleet.c[Counter.Received] ?? 0;
    if (received >= expected()) return;
    if (received !== last) {
      last = received;
      quietSince = performance.now();
    } else if (performance.now() - quietSince >= SETTLE_QUIET_MS) return;
    await sleep(20);
  }
}
