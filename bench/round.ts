/**
 * Rounding of the reported figures. Owns: turning a figure that may be missing or not
 * finite into a rounded number or null.
 */

export function round(v: number | null, digits = 0): number | null {
  if (v === null || !Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
