/**
 * A campaign's plan (issue 14): the `--rollout` stages, the `--abort` rule, how many devices
 * each stage reaches, whether the rule trips, and the stable rollout order of the targets.
 * Owns: those parsers and calculations (pure; every refusal is one readable line). Must
 * not: read stores or talk to devices.
 *
 * Rules (docs/OTA.md "Campaigns"):
 * - `--rollout 10%,50%,100%`: cumulative percentages of the targets, strictly increasing,
 *   0 < p ≤ 100 with at most two decimals, the last exactly 100%, at most 20 stages.
 * - `--rollout exponential`: 1%, then doubling (2%, 4%, … 64%), then 100%: eight stages.
 * - Stage k reaches ceil(p_k × N / 100) devices in total (at least 1); a stage that would
 *   add no device (few targets) is merged with the one before it (which then shows the
 *   higher percentage), so every stage adds at least one device.
 * - `--abort 'failed>5% after 20'`: failed devices (FAILED, TIMED_OUT or REJECTED as their
 *   latest execution, no retry pending) above 5% of the devices whose latest execution is
 *   terminal, evaluated once at least 20 devices are terminal (`after N` is optional, default
 *   1). `>=` is accepted, and a count instead of a percentage: `failed>=3`.
 */
import { createHash } from 'node:crypto';
import { BastionError } from '../../core/errors.js';
import type { AbortRule } from './ports.js';

export const MAX_STAGES = 20;
/** The exponential rollout: 1% doubling up to 64%, then everyone. */
export const EXPONENTIAL: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 100];

function usage(message: string): BastionError {
  return new BastionError('ERR_USAGE', message);
}

/** `--rollout`: the cumulative percentages. */
export function parseRollout(text: string): number[] {
  const t = text.trim();
  if (t === 'exponential') return [...EXPONENTIAL];
  const parts = t.split(',').map((s) => s.trim());
  if (parts.length > MAX_STAGES) throw usage(`--rollout has at most ${MAX_STAGES} stages`);
  const out: number[] = [];
  for (const p of parts) {
    const m = /^(\d{1,3}(?:\.\d{1,2})?)%$/.exec(p);
    if (m === null) throw usage(`--rollout takes cumulative percentages like 10%,50%,100% (or exponential); "${p}" is not a percentage`);
    const v = Number(m[1]);
    if (v <= 0 || v > 100) throw usage(`--rollout: ${p} is not above 0% and at most 100%`);
    if (out.length > 0 && v <= out[out.length - 1]!) throw usage(`--rollout percentages are cumulative and must increase (${p} after ${out[out.length - 1]!}%)`);
    out.push(v);
  }
  if (out[out.length - 1] !== 100) throw usage('--rollout must end at 100% (the last stage reaches every target)');
  return out;
}

/** Cumulative device counts per stage for `n` targets, and their percentages (a stage adding no device merged into the one before). */
export function stagePlan(percents: readonly number[], n: number): { percents: number[]; counts: number[] } {
  const kept: number[] = [];
  const counts: number[] = [];
  for (const p of percents) {
    // The epsilon keeps 10% of 50 at 5 despite binary fractions.
    const c = p >= 100 ? n : Math.min(n, Math.max(1, Math.ceil((p * n) / 100 - 1e-9)));
    if (counts.length > 0 && c <= counts[counts.length - 1]!) {
      kept[kept.length - 1] = p; // merged into this one: the stage reaches up to p%
      continue;
    }
    kept.push(p);
    counts.push(c);
  }
  return { percents: kept, counts };
}

/** `--abort`: e.g. `failed>5% after 20`, `failed>=3`. */
export function parseAbortRule(text: string): AbortRule {
  const m = /^\s*failed\s*(>=|>)\s*(\d{1,6}(?:\.\d{1,2})?)(%?)(?:\s+after\s+(\d{1,6}))?\s*$/.exec(text);
  if (m === null) throw usage(`--abort takes a rule like 'failed>5% after 20' or 'failed>=3', got "${text}"`);
  const op = m[1] as '>' | '>=';
  const value = Number(m[2]);
  const kind = m[3] === '%' ? 'percent' : 'count';
  if (kind === 'percent' && value >= 100 && op === '>') throw usage(`--abort: failed>${value}% can never trip`);
  if (kind === 'percent' && value > 100) throw usage(`--abort: ${value}% is above 100%`);
  if (kind === 'count' && !Number.isInteger(value)) throw usage('--abort: a device count is a whole number');
  if (op === '>=' && value === 0) throw usage('--abort: failed>=0 would trip at once');
  const after = m[4] !== undefined ? Number(m[4]) : 1;
  if (after < 1) throw usage('--abort: "after N" needs N of at least 1');
  return { text: `failed${op}${value}${kind === 'percent' ? '%' : ''}${m[4] !== undefined ? ` after ${after}` : ''}`, op, kind, value, after };
}

/** Why the rule trips for these counts, or null. */
export function abortReason(rule: AbortRule, failed: number, terminal: number): string | null {
  if (terminal < rule.after || terminal === 0) return null;
  const measured = rule.kind === 'percent' ? (failed * 100) / terminal : failed;
  const trips = rule.op === '>' ? measured > rule.value : measured >= rule.value;
  if (!trips) return null;
  return `abort rule ${rule.text}: ${failed} of ${terminal} terminal device(s) failed${rule.kind === 'percent' ? ` (${(Math.round(measured * 10) / 10).toString()}%)` : ''}`;
}

/**
 * The rollout order: sorted (so the result does not depend on where the list came from),
 * then a Fisher–Yates shuffle drawn from SHA-256(seed, counter), so the same campaign id
 * always gives the same order but stage 1 is not always the alphabetically first devices.
 */
export function rolloutOrder(identities: readonly string[], seed: string): string[] {
  const out = [...new Set(identities)].sort();
  let counter = 0;
  let pool = Buffer.alloc(0);
  const draw = (): number => {
    if (pool.length < 6) pool = Buffer.concat([pool, createHash('sha256').update(`${seed}\u0000${counter++}`).digest()]);
    const v = pool.readUIntBE(0, 6);
    pool = pool.subarray(6);
    return v / 2 ** 48;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(draw() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
