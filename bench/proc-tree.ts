/**
 * CPU time and memory of one process, or of a process and its descendants, from /proc.
 * Owns: reading `/proc/<pid>/stat` and `/proc/<pid>/status`, and finding a process's
 * descendants by their parent pid (`bastion serve --workers N` is a primary and N forked
 * workers). Must not: signal or wait for processes (brokers.ts and nats-server.ts do), or
 * read anything else under /proc.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** USER_HZ; 100 on every Linux this bench targets (getconf CLK_TCK). */
const CLOCK_TICKS = 100;

interface Stat {
  ppid: number;
  /** User + system CPU time, ms (all threads). */
  cpuMs: number;
}

function readStat(pid: number): Stat | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); ppid is field 4, utime and stime are fields 14 and 15.
    return { ppid: Number(fields[1]), cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS };
  } catch {
    return null;
  }
}

/** User + system CPU time of one process in ms (all its threads), or null when it is gone. */
export function processCpuMs(pid: number): number | null {
  return readStat(pid)?.cpuMs ?? null;
}

/** Resident set size in KB, from /proc/<pid>/status, or null when it is gone. */
export function processRssKb(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** Every live descendant of `pid` (children, their children…), ascending pid order. */
export function descendants(pid: number): number[] {
  const byParent = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const child = Number(name);
    const st = readStat(child);
    if (st === null) continue;
    const list = byParent.get(st.ppid);
    if (list === undefined) byParent.set(st.ppid, [child]);
    else list.push(child);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const c of byParent.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out.sort((a, b) => a - b);
}

/** CPU ms of `pid` and of each live descendant, `pid` first; null when `pid` itself is gone. */
export function treeCpuParts(pid: number): { pid: number; cpuMs: number }[] | null {
  const own = processCpuMs(pid);
  if (own === null) return null;
  const parts = [{ pid, cpuMs: own }];
  for (const d of descendants(pid)) {
    const ms = processCpuMs(d);
    if (ms !== null) parts.push({ pid: d, cpuMs: ms });
  }
  return parts;
}

/** RSS in KB of `pid` and its live descendants together; null when `pid` is gone. */
export function treeRssKb(pid: number): number | null {
  const own = processRssKb(pid);
  if (own === null) return null;
  return descendants(pid).reduce((sum, d) => sum + (processRssKb(d) ?? 0), own);
}
