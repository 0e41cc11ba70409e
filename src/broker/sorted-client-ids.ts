/**
 * The connected client ids in listing order, kept between listings so that a page of a large
 * fleet does not sort every id again. Each listing hands in the ids connected now; the index
 * finds what changed with one pass of set lookups, sorts only the new ids and merges them in.
 * Owns: that index. Must not: know sessions or clients (api.ts maps ids back to them).
 *
 * Why: sorting 100k ids of 15 characters took 99-132 ms on the broker's one thread (Node 26,
 * 2-core host), which would stall every client's traffic for each page an operator opens;
 * with the index a listing costs one pass of lookups, plus a merge when something changed
 * (test/unit/sorted-client-ids.test.ts prints both).
 */

/** Client ids in the order listings use (UTF-16 code units, as `<` on strings). */
export function compareClientIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function merge(a: readonly string[], b: readonly string[]): string[] {
  const out = new Array<string>(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = a[i]! <= b[j]! ? a[i++]! : b[j++]!;
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}

export class SortedClientIds {
  private sorted: string[] = [];
  private members = new Set<string>();

  /** Brings the index up to `connected` (every connected id once, any order) and returns it sorted. */
  refresh(connected: readonly string[]): readonly string[] {
    let kept = 0;
    const added: string[] = [];
    for (const id of connected) {
      if (this.members.has(id)) kept++;
      else added.push(id);
    }
    // Nothing left and nothing came: the common case costs one lookup per id.
    if (kept === this.sorted.length && added.length === 0) return this.sorted;
    let stay = this.sorted;
    if (kept < this.sorted.length) {
      const now = new Set(connected);
      stay = this.sorted.filter((id) => now.has(id));
      this.members = now;
    } else for (const id of added) this.members.add(id);
    added.sort(compareClientIds);
    this.sorted = added.length === 0 ? stay : merge(stay, added);
    return this.sorted;
  }
}

/** The first position in `sorted` whose id is greater than `id` (or, with `orEqual`, not less than it). */
export function positionAfter(sorted: readonly string[], id: string, orEqual = false): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (orEqual ? sorted[mid]! < id : sorted[mid]! <= id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The range of `sorted` whose ids start with `prefix` (ids with a prefix are contiguous in this order). */
export function prefixRange(sorted: readonly string[], prefix: string): { start: number; end: number } {
  const start = positionAfter(sorted, prefix, true);
  let end = start;
  while (end < sorted.length && sorted[end]!.startsWith(prefix)) end++;
  return { start, end };
}
