/**
 * Filter-versus-filter questions the authorizer asks at SUBSCRIBE time. Owns: "does every
 * topic this filter matches also match that one?". Must not: know about rules or clients.
 */

/**
 * True when every topic matched by `inner` is also matched by `outer` (both valid MQTT
 * filters). `outer` with a leading wildcard never covers `$` topics [MQTT-4.7.2-1].
 */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split('/');
  const i = inner.split('/');
  const o0 = o[0]!;
  const i0 = i[0]!;
  // SECURITY: `#` or `+` in a rule never reaches `$SYS/...`; only a literal `$` level does.
  if (i0.startsWith('$') && (o0 === '+' || o0 === '#')) return false;
  for (let k = 0; k < i.length; k++) {
    const ol = o[k];
    const il = i[k]!;
    if (ol === '#') return true;
    if (ol === undefined) return false;
    if (il === '#') return false;
    if (il === '+') {
      if (ol !== '+') return false;
      continue;
    }
    if (ol !== '+' && ol !== il) return false;
  }
  // `a/#` also matches `a` itself.
  return o.length === i.length || (o.length === i.length + 1 && o[i.length] === '#');
}

/** True when some topic matches both filters (used by lint to find overlapping rules). */
export function filtersIntersect(a: string, b: string): boolean {
  const x = a.split('/');
  const y = b.split('/');
  const x0 = x[0]!;
  const y0 = y[0]!;
  if ((x0.startsWith('$') && (y0 === '+' || y0 === '#')) || (y0.startsWith('$') && (x0 === '+' || x0 === '#'))) return false;
  for (let k = 0; ; k++) {
    const p = x[k];
    const q = y[k];
    if (p === '#' || q === '#') return true;
    if (p === undefined || q === undefined) {
      // Both ended: same depth. One ended: `a` meets `a/#` only, handled by the `#` test above.
      return p === q;
    }
    if (p !== '+' && q !== '+' && p !== q) return false;
  }
}
