/**
 * Brute-force protection: authentication failures counted per source address and per
 * client id in a sliding window; at `maxFailures` within `windowSeconds` an automatic,
 * temporary ban (kind ip or clientId, `createdBy: auto:brute-force`) whose length doubles
 * with each further automatic ban of the same key: `banSeconds * 2^(n-1)`, capped at
 * `maxBanSeconds`, n counted from the ban list's history (expired automatic bans are kept a
 * day, also across a restart). Owns: the counting and the decision. Must not: do I/O or
 * touch sessions except through the `disconnect` it is given.
 *
 * SECURITY decisions:
 * - A successful login resets neither count: an attacker who also holds one valid account
 *   (or interleaves with a real device's logins) would otherwise reset the window at will.
 * - An address ban applies at once to live sessions from that address (they share the
 *   attacker's address), and is then enforced at accept, before TLS.
 * - A client-id ban refuses new CONNECTs with that id, but does NOT close the live session
 *   holding it: that session proved the credentials, the failures came from someone else,
 *   and closing it would let anyone with the id knock a device offline. The ban is always
 *   temporary (escalation is capped by `maxBanSeconds`), so a failed login from anywhere can
 *   never lock a legitimate client id out for good.
 * - While a key is banned, further failures for it restart its count without a second ban;
 *   the next ban after this one ends is the longer one.
 */
import type { AuthorizedClient } from '../../broker/ports.js';
import type { LimitsConfig } from '../../core/limits-config.js';
import type { SecurityEvents } from '../../core/security-events.js';
import { banApplies, type Ban, type BanList } from './ban-list.js';
import type { BanKind } from './ban-values.js';
import { parseClientAddress } from './address-match.js';
import { SlidingWindowCounter } from './sliding-window.js';

export const BRUTE_FORCE_BY = 'auto:brute-force';

/** What automatic bans need around them. */
export interface AutoBanDeps {
  bans: BanList;
  /** Disconnects the live sessions `match` selects; returns their client ids. */
  disconnect(match: (client: AuthorizedClient) => boolean, reason: string): string[];
  /**
   * Runs a disconnect after the current event's other subscribers (the event may be emitted
   * while the session is still being opened). Default: a microtask.
   */
  defer?: (fn: () => void) => void;
}

/** The length of the n-th automatic ban of one key (n ≥ 1), in seconds. */
export function escalatedBanSeconds(n: number, banSeconds: number, maxBanSeconds: number): number {
  // 2^(n-1) overflows nothing below 2^53; past the cap the exponent no longer matters.
  return Math.min(maxBanSeconds, banSeconds * 2 ** Math.min(Math.max(n, 1) - 1, 52));
}

export class BruteForceProtection {
  private readonly byAddress: SlidingWindowCounter;
  private readonly byClientId: SlidingWindowCounter;
  private readonly defer: (fn: () => void) => void;

  constructor(
    private readonly cfg: LimitsConfig['authFailures'],
    private readonly deps: AutoBanDeps,
  ) {
    const windowMs = cfg.windowSeconds * 1000;
    this.byAddress = new SlidingWindowCounter(windowMs, Math.max(cfg.maxFailures, 1));
    this.byClientId = new SlidingWindowCounter(windowMs, Math.max(cfg.maxFailures, 1));
    this.defer = deps.defer ?? queueMicrotask;
  }

  /** Subscribes to `auth.failure`; returns the unsubscribe function. */
  attach(events: SecurityEvents): () => void {
    return events.on((event, at) => {
      if (event.type === 'auth.failure') this.onFailure(event.remoteAddress, event.clientId, at);
    });
  }

  /** Counts one failure; returns the bans it started (none, or an address and/or a client-id ban). */
  onFailure(remoteAddress: string, clientId: string, at: number): Ban[] {
    if (this.cfg.maxFailures === 0) return [];
    const started: Ban[] = [];
    // The canonical address (the dual-stack `::ffff:a.b.c.d` is the IPv4 address): one key
    // however the socket spelled it. The fast parser: a flood of failures is the attack here.
    const key = parseClientAddress(remoteAddress)?.text;
    if (key !== undefined) {
      const count = this.byAddress.hit(key, at);
      if (count >= this.cfg.maxFailures) {
        this.byAddress.clear(key);
        const ban = this.ban('ip', key, count, at);
        if (ban !== null) started.push(ban);
      }
    }
    // An empty client id is assigned by the broker later: there is no identity to protect.
    if (clientId !== '') {
      const count = this.byClientId.hit(clientId, at);
      if (count >= this.cfg.maxFailures) {
        this.byClientId.clear(clientId);
        const ban = this.ban('clientId', clientId, count, at);
        if (ban !== null) started.push(ban);
      }
    }
    return started;
  }

  private ban(kind: Extract<BanKind, 'ip' | 'clientId'>, value: string, count: number, at: number): Ban | null {
    const { bans } = this.deps;
    if (bans.denied(kind, value) !== null) return null;
    const n = bans.autoBanCount(kind, value, BRUTE_FORCE_BY) + 1;
    const seconds = escalatedBanSeconds(n, this.cfg.banSeconds, this.cfg.maxBanSeconds);
    const who = kind === 'ip' ? 'from this address' : 'for this client id';
    const ban = bans.add({
      kind,
      value,
      list: 'deny',
      reason: `${count} authentication failures within ${this.cfg.windowSeconds}s ${who} (automatic ban ${n}, ${seconds}s)`,
      createdBy: BRUTE_FORCE_BY,
      createdAt: at,
      expiresAt: at + seconds * 1000,
    });
    if (kind === 'ip') this.defer(() => this.deps.disconnect((client) => banApplies(ban, client), 'banned: too many authentication failures from this address'));
    return ban;
  }
}
