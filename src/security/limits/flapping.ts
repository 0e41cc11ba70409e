/**
 * Flapping detection: a client id that connects more than `maxConnects` times within
 * `windowSeconds` is banned for `banSeconds` (kind clientId, `createdBy: auto:flapping`),
 * and its live session is closed. Owns: the counting and the decision. Must not: do I/O or
 * touch sessions except through the `disconnect` it is given.
 *
 * Counted on `connection.accepted` (a session opened): refused attempts are not flapping,
 * they are counted by the brute-force and accept limits. A connect is the cycle's cost to
 * the broker (authentication, session takeover, will handling), so connects are what is
 * counted; the matching disconnects follow from them.
 *
 * SECURITY: flapping bans do not grow like brute-force bans: a flapping device is most
 * often broken rather than hostile, and a fixed pause lets it recover on its own.
 */
import type { LimitsConfig } from '../../core/limits-config.js';
import type { SecurityEvents } from '../../core/security-events.js';
import type { Ban } from './ban-list.js';
import type { AutoBanDeps } from './brute-force.js';
import { SlidingWindowCounter } from './sliding-window.js';

export const FLAPPING_BY = 'auto:flapping';

export class FlappingProtection {
  private readonly connects: SlidingWindowCounter;
  private readonly defer: (fn: () => void) => void;

  constructor(
    private readonly cfg: LimitsConfig['flapping'],
    private readonly deps: AutoBanDeps,
  ) {
    this.connects = new SlidingWindowCounter(cfg.windowSeconds * 1000, cfg.maxConnects + 1);
    this.defer = deps.defer ?? queueMicrotask;
  }

  /** Subscribes to `connection.accepted`; returns the unsubscribe function. */
  attach(events: SecurityEvents): () => void {
    return events.on((event, at) => {
      if (event.type === 'connection.accepted') this.onConnect(event.clientId, at);
    });
  }

  /** Counts one opened session of `clientId`; returns the ban it started, or null. */
  onConnect(clientId: string, at: number): Ban | null {
    if (this.cfg.maxConnects === 0) return null;
    const count = this.connects.hit(clientId, at);
    if (count <= this.cfg.maxConnects) return null;
    this.connects.clear(clientId);
    const { bans } = this.deps;
    if (bans.denied('clientId', clientId) !== null) return null;
    const ban = bans.add({
      kind: 'clientId',
      value: clientId,
      list: 'deny',
      reason: `flapping: ${count} connects within ${this.cfg.windowSeconds}s`,
      createdBy: FLAPPING_BY,
      createdAt: at,
      expiresAt: at + this.cfg.banSeconds * 1000,
    });
    // The session that crossed the line is open now: close it once its opening is done.
    this.defer(() => this.deps.disconnect((client) => client.clientId === clientId, 'banned: flapping (too many connects)'));
    return ban;
  }
}
