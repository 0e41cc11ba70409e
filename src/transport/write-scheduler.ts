/**
 * One write per socket per event-loop turn: connections queue their bytes here and a
 * single setImmediate flushes every dirty connection after the turn's reads are handled.
 * Measured on a 2-vCPU VM: a syscall costs ~1 µs and a small loopback write ~5 µs, so
 * batching is the main lever on throughput (docs/ARCHITECTURE.md, Conventions).
 */
export interface Flushable {
  flush(): void;
}

let dirty: Flushable[] = [];
let scheduled = false;

function flushAll(): void {
  scheduled = false;
  const batch = dirty;
  dirty = [];
  for (let i = 0; i < batch.length; i++) batch[i]!.flush();
}

export function scheduleFlush(target: Flushable): void {
  dirty.push(target);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flushAll);
  }
}
