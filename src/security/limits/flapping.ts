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
 *
 * SECURITY: a client with a verified certificate is counted and banned by its certificate
 * fingerprint, not its client id: the ban list never lets an automatic client-id ban refuse
 * a certificate client (anybody can type its id), while a fingerprint ban can only be
 * earned by the holder of that certificate's key, so a broken certificate device is still
 * paused. Other clients are counted by client id (PSK clients therefore escape flapping
 * bans: there is no PSK-identity ban kind to key them on).
 */
import type { LimitsConfig } from '../../core/limits-config.js';
import type { SecurityEvent, SecurityEvents } from '../../core/security-events.js';
import { banApplies, provenByTransport, type Ban } from './ban-list.js';
import { canonicalBanValue, type BanKind } from './ban-values.js';
import type { AutoBanDeps } from './brute-force.js';
import { SlidingWindowCounter } from './sliding-window.js';

export const FLAPPING_BY = 'auto:flapping';

export class FlappingProtection {
  private readonly connects: SlidingWindowCounter;
  private readonly defer: (fn: () => void) => void;

  constructor(
    private readonly cfg: LimitsConfig['flapping'],
    private readonly deps: AutoBanDeps,
    /**
     * Connections another limit governs instead (a provisioning claim connects once per
     * device it provisions, and is held to `provisioning.ratePerMinute`, answered Throttled).
     */
    private readonly exempt: (event: Extract<SecurityEvent, { type: 'connection.accepted' }>) => boolean = () => false,
  ) {
    this.connects = new SlidingWindowCounter(cfg.windowSeconds * 1000, cfg.maxConnects + 1);
    this.defer = deps.defer ?? queueMicrotask;
  }

  /** Subscribes to `connection.accepted`; returns the unsubscribe function. */
  attach(events: SecurityEvents): () => void {
    return events.on((event, at) => {
      if (event.type === 'connection.accepted' && !this.exempt(event)) this.onConnect(event.clientId, at, event.certificate?.fingerprint256);
    });
  }

  /**
   * Counts one opened session of `clientId` (of the certificate with `certFingerprint`, when
   * the client presented a verified one); returns the ban it started, or null.
   */
  onConnect(clientId: string, at: number, certFingerprint?: string): Ban | null {
    if (this.cfg.maxConnects === 0) return null;
    const byCert = certFingerprint !== undefined && certFingerprint !== '';
    const kind: Extract<BanKind, 'clientId' | 'certFingerprint'> = byCert ? 'certFingerprint' : 'clientId';
    const { bans } = this.deps;
    // One spelling per key (fingerprints: upper-case colon pairs); a value no ban could hold is not counted.
    const canonical = canonicalBanValue(kind, byCert ? certFingerprint : clientId);
    if (!canonical.ok) return null;
    const value = canonical.value;
    const key = `${kind}\u0000${value}`;
    const count = this.connects.hit(key, at);
    if (count <= this.cfg.maxConnects) return null;
    this.connects.clear(key);
    if (bans.denied(kind, value) !== null) return null;
    const ban = bans.add({
      kind,
      value,
      list: 'deny',
      reason: `flapping: ${count} connects within ${this.cfg.windowSeconds}s`,
      createdBy: FLAPPING_BY,
      createdAt: at,
      expiresAt: at + this.cfg.banSeconds * 1000,
    });
    // The session that crossed the line is open now: close it once its opening is done. A
    // client-id ban never closes a certificate or PSK session holding that id (it may not be
    // the one flapping, and the ban would not refuse it either).
    this.defer(() => this.deps.disconnect((client) => banApplies(ban, client) && (byCert || !provenByTransport(client)), 'banned: flapping (too many connects)'));
    return ban;
  }
}
