/**
 * One measured window of a bench run. Owns: snapshots of the shared counters and of the
 * broker's, the generator's and the machine's CPU (in cluster runs also the nats-server's
 * and each broker process's), and the figures between two snapshots.
 * Must not: wait or sleep (measure.ts decides when to take the snapshots).
 */
import type { Fleet } from './fleet.js';
import { CPUS, hostCpu, type HostCpu } from './host-cpu.js';
import { round } from './round.js';
import type { BrokerUnderTest, Details } from './scenario-api.js';

// ---------------------------------------------------------------- sampling

export interface Snapshot {
  t: number;
  c: number[];
  brokerCpuMs: number | null;
  genCpuUs: number;
  host: HostCpu | null;
  /** Cluster runs only: the nats-server's CPU ms; null otherwise. */
  natsCpuMs: number | null;
  /** Cluster runs only: CPU ms per broker process; empty otherwise. */
  parts: Record<string, number>;
}

export function snapshot(fleet: Fleet, broker: BrokerUnderTest): Snapshot {
  const u = process.cpuUsage();
  return {
    t: performance.now(),
    c: Array.from(fleet.c),
    brokerCpuMs: broker.cpuMs(),
    genCpuUs: u.user + u.system,
    host: hostCpu(),
    natsCpuMs: broker.natsCpuMs?.() ?? null,
    parts: broker.cpuParts?.() ?? {},
  };
}

/** Figures between two snapshots: per-second rates of every counter and CPU shares (100 = one core). */
export class Window {
  readonly seconds: number;
  constructor(
    readonly a: Snapshot,
    readonly b: Snapshot,
    /** Longest time the scenario's progress counter stood still, ms (sampled every 100 ms). */
    readonly longestStallMs: number,
  ) {
    this.seconds = (b.t - a.t) / 1000;
  }
  delta(i: number): number {
    return (this.b.c[i] ?? 0) - (this.a.c[i] ?? 0);
  }
  rate(i: number): number {
    return this.delta(i) / this.seconds;
  }
  brokerCpuPct(): number | null {
    if (this.a.brokerCpuMs === null || this.b.brokerCpuMs === null) return null;
    return (this.b.brokerCpuMs - this.a.brokerCpuMs) / (this.seconds * 10);
  }
  /** The nats-server's CPU in % of one core (cluster runs); null otherwise. */
  natsCpuPct(): number | null {
    if (this.a.natsCpuMs === null || this.b.natsCpuMs === null) return null;
    return (this.b.natsCpuMs - this.a.natsCpuMs) / (this.seconds * 10);
  }
  /** `a.w1=95.0 a.w2=40.1 …`: each broker process's CPU in % of one core (cluster runs); null otherwise. */
  partsCpu(): string | null {
    const labels = Object.keys(this.b.parts).filter((k) => this.a.parts[k] !== undefined);
    if (labels.length === 0) return null;
    return labels.map((k) => `${k}=${((this.b.parts[k]! - this.a.parts[k]!) / (this.seconds * 10)).toFixed(1)}`).join(' ');
  }
  genCpuPct(): number {
    return (this.b.genCpuUs - this.a.genCpuUs) / (this.seconds * 1e4);
  }
  hostBusyPct(): number | null {
    if (this.a.host === null || this.b.host === null) return null;
    const total = this.b.host.total - this.a.host.total;
    return total > 0 ? (100 * (this.b.host.busy - this.a.host.busy)) / total : null;
  }
  /** Broker CPU time per unit of `counter`, in µs. */
  brokerUsPer(counter: number): number | null {
    const pct = this.brokerCpuPct();
    const n = this.delta(counter);
    return pct === null || n <= 0 ? null : (pct * this.seconds * 1e4) / n;
  }
  /**
   * CPU used by neither the broker nor the generator (nor, in cluster runs, the
   * nats-server), in % of one core: the kernel's loopback work that no process is charged
   * for, plus whatever else runs on the machine.
   * A high figure means the run competed with other work and its numbers are suspect.
   */
  otherCpuPct(): number | null {
    const host = this.hostBusyPct();
    const broker = this.brokerCpuPct();
    return host === null || broker === null ? null : Math.max(0, host * CPUS - broker - this.genCpuPct() - (this.natsCpuPct() ?? 0));
  }
  cpuDetails(): Details {
    const nats = this.natsCpuPct();
    const parts = this.partsCpu();
    return {
      seconds: round(this.seconds, 2),
      longestStallMs: round(this.longestStallMs),
      brokerCpuPct: round(this.brokerCpuPct(), 1),
      // Cluster runs only (absent from the keys otherwise, so other reports stay as they were).
      ...(parts !== null ? { brokerProcessCpuPct: parts } : {}),
      ...(nats !== null ? { natsCpuPct: round(nats, 1) } : {}),
      generatorCpuPct: round(this.genCpuPct(), 1),
      otherCpuPct: round(this.otherCpuPct(), 1),
    };
  }
}
