/** Waiting in the bench coordinator. Owns: a promise that resolves after a delay. */

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
