/**
 * Helper shared by the store adapters. Owns: running a batch of afterFlush callbacks so
 * one that throws neither stops the others nor disappears. Must not: know any storage.
 */

/** Calls every callback in order, then rethrows the first error one of them threw. */
export function runAll(callbacks: ReadonlyArray<() => void>): void {
  let failed = false;
  let first: unknown;
  for (const cb of callbacks) {
    try {
      cb();
    } catch (err) {
      if (!failed) {
        failed = true;
        first = err;
      }
    }
  }
  if (failed) throw first;
}
