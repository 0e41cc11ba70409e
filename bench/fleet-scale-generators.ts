/**
 * The generator processes of `--fleet`: spawning them under `prlimit --nofile` (one slice
 * of the fleet each), sending them commands and merging their answers. Owns: those
 * processes, from spawn to kill. Must not: wait without a deadline, or leave a generator
 * running (every one is killed by pid at the end, and exits when the coordinator goes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FD_MARGIN } from './fleet-scale-options.js';
import { withTimeout } from './fleet.js';
import type { FleetCommand, FleetConnectCommand, FleetConnectResult, FleetReport, FleetStats, FleetWorkerInit } from './worker-fleet-api.js';

const WORKER = fileURLToPath(new URL('./worker-fleet.js', import.meta.url));
export const PRLIMIT = '/usr/bin/prlimit';
const READY_TIMEOUT_MS = 20_000;
const STATS_TIMEOUT_MS = 10_000;

/** `prlimit --nofile=n:n -- <cmd>`: the child runs with n open files allowed (soft and hard). */
export function underPrlimit(nofile: number, cmd: string, args: readonly string[]): [string, string[]] {
  return [PRLIMIT, [`--nofile=${nofile}:${nofile}`, '--', cmd, ...args]];
}

interface Gen {
  child: ChildProcess;
  /** Waiters for the next report of each type. */
  waiters: Map<FleetReport['type'], (r: FleetReport) => void>;
  back: number;
}

export type MergedConnect = Omit<FleetConnectResult, 'startedAt'> & { startedAt: number };

export class Generators {
  private readonly gens: Gen[] = [];
  private fatal: string | null = null;

  private constructor() {}

  /**
   * Spawns `count` generators for `total` devices (slices as even as can be), each allowed
   * its slice + FD_MARGIN open files, and initialises them.
   */
  static async start(count: number, total: number, base: Omit<FleetWorkerInit, 'type' | 'first' | 'count'>): Promise<Generators> {
    const g = new Generators();
    const per = Math.ceil(total / count);
    for (let i = 0; i < count && i * per < total; i++) {
      const n = Math.min(per, total - i * per);
      const [cmd, args] = underPrlimit(n + FD_MARGIN, process.execPath, [WORKER]);
      const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const gen: Gen = { child, waiters: new Map(), back: 0 };
      child.on('message', (m: FleetReport) => {
        if (m.type === 'progress') {
          gen.back = m.back;
          return;
        }
        if (m.type === 'fatal') {
          g.fatal ??= `generator ${i + 1}: ${m.message}`;
          for (const w of gen.waiters.values()) w(m);
          gen.waiters.clear();
          return;
        }
        const w = gen.waiters.get(m.type);
        gen.waiters.delete(m.type);
        w?.(m);
      });
      child.on('exit', (code, signal) => {
        g.fatal ??= `generator ${i + 1} exited (${signal ?? `code ${code ?? '?'}`})`;
        for (const w of gen.waiters.values()) w({ type: 'fatal', message: g.fatal });
        gen.waiters.clear();
      });
      g.gens.push(gen);
      const ready = g.ask(gen, { ...base, type: 'init', first: i * per, count: n }, 'ready');
      await withTimeout(ready, READY_TIMEOUT_MS, `generator ${i + 1} start`);
    }
    return g;
  }

  private ask<T extends FleetReport['type']>(gen: Gen, cmd: FleetCommand, answer: T): Promise<Extract<FleetReport, { type: T }>> {
    return new Promise((resolve, reject) => {
      if (this.fatal !== null) return reject(new Error(this.fatal));
      gen.waiters.set(answer, (r) => (r.type === 'fatal' ? reject(new Error(r.message)) : resolve(r as Extract<FleetReport, { type: T }>)));
      gen.child.send(cmd);
    });
  }

  /** Devices back so far in the running connect command (from the generators' progress reports). */
  back(): number {
    return this.gens.reduce((n, g) => n + g.back, 0);
  }

  /** Runs a connect command on every generator at once; bounded by `timeoutMs` overall. */
  async connect(c: Omit<FleetConnectCommand, 'type'>, timeoutMs: number, what: string): Promise<MergedConnect> {
    for (const g of this.gens) g.back = 0;
    const all = await withTimeout(Promise.all(this.gens.map((g) => this.ask(g, { type: 'connect', ...c }, 'connected'))), timeoutMs, what);
    return {
      backAt: all.flatMap((r) => r.backAt),
      resumed: all.reduce((n, r) => n + r.resumed, 0),
      full: all.reduce((n, r) => n + r.full, 0),
      failedAttempts: all.reduce((n, r) => n + r.failedAttempts, 0),
      notBack: all.reduce((n, r) => n + r.notBack, 0),
      errors: [...new Set(all.flatMap((r) => r.errors))].slice(0, 5),
      startedAt: all.reduce((m, r) => Math.min(m, r.startedAt), Infinity),
    };
  }

  async disconnect(timeoutMs: number): Promise<number> {
    const all = await withTimeout(Promise.all(this.gens.map((g) => this.ask(g, { type: 'disconnect' }, 'disconnected'))), timeoutMs, 'devices disconnecting');
    return all.reduce((n, r) => n + r.closed, 0);
  }

  async stats(): Promise<FleetStats & { perGenerator: FleetStats[] }> {
    const all = await withTimeout(Promise.all(this.gens.map((g) => this.ask(g, { type: 'stats' }, 'stats'))), STATS_TIMEOUT_MS, 'generator stats');
    const sum = (k: keyof FleetStats): number => all.reduce((n, r) => n + r[k], 0);
    return { held: sum('held'), withTicket: sum('withTicket'), lost: sum('lost'), rssKb: sum('rssKb'), cpuMs: sum('cpuMs'), perGenerator: all.map(({ held, withTicket, lost, rssKb, cpuMs }) => ({ held, withTicket, lost, rssKb, cpuMs })) };
  }

  /** Kills every generator by pid (the sockets go with them); idempotent. */
  kill(): void {
    for (const g of this.gens) {
      if (g.child.exitCode === null && g.child.signalCode === null) g.child.kill('SIGKILL');
    }
  }

  /** Resolves when every generator has exited (after kill()), bounded. */
  async exited(timeoutMs = 5_000): Promise<void> {
    const gone = this.gens.map((g) => (g.child.exitCode !== null || g.child.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => g.child.once('exit', () => r()))));
    await withTimeout(Promise.all(gone), timeoutMs, 'generators exiting').catch(() => undefined);
  }
}
