/**
 * Brute-force protection: authentication failures counted per source address and per user
 * name tried, in a sliding window; at `maxFailures` within `windowSeconds` an automatic,
 * temporary ban (kind ip or username, `createdBy: auto:brute-force`) whose length doubles
 * with each further automatic ban of the same key: `banSeconds * 2^(n-1)`, capped at
 * `maxBanSeconds`, n counted from the ban list's history (expired automatic bans are kept a
 * day, also across a restart). Owns: the counting and the decision. Must not: do I/O or
 * touch sessions except through the `disconnect` it is given.
 *
 * SECURITY decisions:
 * - Keys are what the failing party controls: the address it connects from, and the
 *   credential it tried (the user name). NOT the client id: anybody can type a device's
 *   client id, and counting it let an attacker lock a certificate device out for up to a
 *   day by failing under its id (issue 11). A user-name ban stops a distributed guess at one
 *   account; it refuses only logins that authenticate as that user name (a certificate's CN
 *   is not a user name), and the ban list never lets an automatic ban refuse a client that
 *   proved itself with a certificate or TLS-PSK (ban-list.ts, `provenByTransport`).
 * - A successful login resets neither count: an attacker who also holds one valid account
 *   (or interleaves with a real device's logins) would otherwise reset the window at will.
 * - An address ban applies at once to live sessions from that address that did not prove
 *   themselves with a certificate or PSK (they share the attacker's address and are only
 *   password-strong), and is then enforced at accept, before TLS.
 * - A user-name ban refuses new CONNECTs under that name, but does NOT close the live
 *   session holding it: that session proved the password, the failures came from someone
 *   else, and closing it would let anyone knock the account offline. The ban is always
 *   temporary (escalation is capped by `maxBanSeconds`).
 * - While a key is banned, further failures for it restart its count without a second ban;
 *   the next ban after this one ends is the longer one.
 */
import type { AuthorizedClient } from '../../broker/ports.js';
import type { LimitsConfig } from '../../core/limits-config.js';
import type { SecurityEvents } from '../../core/security-events.js';
import { banApplies, provenByTransport, type Ban, type BanList } from './ban-list.js';
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
  private readonly byUsername: SlidingWindowCounter;
  private readonly defer: (fn: () => void) => void;

  constructor(
    private readonly cfg: LimitsConfig['authFailures'],
    private readonly deps: AutoBanDeps,
  ) {
    const windowMs = cfg.windowSeconds * 1000;
    this.byAddress = new SlidingWindowCounter(windowMs, Math.max(cfg.maxFailures, 1));
    this.byUsername = new SlidingWindowCounter(windowMs, Math.max(cfg.maxFailures, 1));
    this.defer = deps.defer ?? queueMicrotask;
  }

  /** Subscribes to `auth.failure`; returns the unsubscribe function. */
  attach(events: SecurityEvents): () => void {
    return events.on((event, at) => {
      if (event.type === 'auth.failure') this.onFailure(event.remoteAddress, event.username, at);
    });
  }

  /**
   * Counts one failure from `remoteAddress` that tried `username` (undefined: none was
   * given, e.g. a certificate refused); returns the bans it started (none, or an address
   * and/or a user-name ban). The client id of the attempt is deliberately not an argument.
   */
  onFailure(remoteAddress: string, username: string | undefined, at: number): Ban[] {
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
    // An empty user name protects no account (and is no valid ban value).
    if (username !== undefined && username !== '') {
      const count = this.byUsername.hit(username, at);
      if (count >= this.cfg.maxFailures) {
        this.byUsername.clear(username);
        const ban = this.ban('username', username, count, at);
        if (ban !== null) started.push(ban);
      }
    }
    return started;
  }

  private ban(kind: Extract<BanKind, 'ip' | 'username'>, value: string, count: number, at: number): Ban | null {
    const { bans } = this.deps;
    if (bans.denied(kind, value) !== null) return null;
    const n = bans.autoBanCount(kind, value, BRUTE_FORCE_BY) + 1;
    const seconds = escalatedBanSeconds(n, this.cfg.banSeconds, this.cfg.maxBanSeconds);
    const who = kind === 'ip' ? 'from this address' : 'for this user name';
    const ban = bans.add({
      kind,
      value,
      list: 'deny',
      reason: `${count} authentication failures within ${this.cfg.windowSeconds}s ${who} (automatic ban ${n}, ${seconds}s)`,
      createdBy: BRUTE_FORCE_BY,
      createdAt: at,
      expiresAt: at + seconds * 1000,
    });
    // SECURITY: a live session that proved itself with a certificate or PSK is not the one
    // guessing passwords, whatever address it shares with the guesser: it stays.
    if (kind === 'ip') this.defer(() => this.deps.disconnect((client) => !provenByTransport(client) && banApplies(ban, client), 'banned: too many authentication failures from this address'));
    return ban;
  }
}
