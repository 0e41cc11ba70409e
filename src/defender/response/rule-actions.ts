/**
 * Which actions each rule takes: `defender.detect.actions` per rule name, else
 * `defaultActions`, with `alert` always first (an action nobody hears of is not
 * reversible). Owns: that merge. Must not: take any action.
 */
import type { DefenderActionName, DetectSettings } from '../../core/defender-config.js';
import type { Rule } from '../detect/rules.js';

/** The order actions are taken in: the alert first, the ban last (it outlives the session). */
const ORDER: readonly DefenderActionName[] = ['alert', 'quarantine', 'throttle', 'disconnect', 'ban'];

export function actionsOf(settings: Pick<DetectSettings, 'actions' | 'defaultActions'>, rule: string): DefenderActionName[] {
  const chosen = new Set<DefenderActionName>(settings.actions[rule] ?? settings.defaultActions);
  chosen.add('alert');
  return ORDER.filter((a) => chosen.has(a));
}

/** The actions of every rule, by rule name. */
export function actionsByRule(settings: Pick<DetectSettings, 'actions' | 'defaultActions'>, rules: readonly Rule[]): Record<string, DefenderActionName[]> {
  return Object.fromEntries(rules.map((r) => [r.name, actionsOf(settings, r.name)]));
}

/** Rule names in `actions` that no rule has: a typo that would silently do nothing. */
export function unknownActionRules(settings: Pick<DetectSettings, 'actions'>, rules: readonly Rule[]): string[] {
  const names = new Set(rules.map((r) => r.name));
  return Object.keys(settings.actions).filter((n) => !names.has(n));
}
