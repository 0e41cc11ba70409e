/**
 * How a restriction is put on an identity and lifted again (issue 15 item 3): the port the
 * responder acts through, and the broker-backed implementation. Owns: quarantine (an
 * authorizer in front of the ACL), throttle (a lower publish quota, on the live connection
 * and on every later one), disconnect and ban (the ban list). Must not: decide when to act
 * (responder.ts does) or record anything (the store and the events are the responder's).
 *
 * SECURITY: every restriction is keyed by the authenticated identity, and every one can be
 * lifted exactly: a ban records the entry it added, so a release removes that entry and
 * never an operator's own.
 */
import type { BrokerApi } from '../../broker/api.js';
import type { PublishQuota } from '../../broker/broker.js';
import type { AuthorizedClient, ClientQuota, ClientQuotaSource, DeliveryAuthorizer, PublishAuthorization, SubscribeAuthorization } from '../../broker/ports.js';
import type { LimitsConfig } from '../../core/limits-config.js';
import type { DetectSettings } from '../../core/defender-config.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import type { QoS } from '../../protocol/packets.js';
import type { BanKind, BanList } from '../../security/limits/ban-list.js';
import { ClientPublishQuota } from '../../security/limits/client-limits.js';
import { identityOf } from '../runtime/detector.js';

/** The one topic a quarantined identity may publish to. */
export function quarantineTopic(identity: string): string {
  return `$bastion/quarantine/${identity}`;
}

/** What lifting a ban needs: the entry it added. */
export interface BanRef {
  kind: BanKind;
  value: string;
}

export interface Enforcement {
  quarantine(identity: string): void;
  unquarantine(identity: string): void;
  throttle(identity: string): void;
  unthrottle(identity: string): void;
  /** Closes the identity's live sessions on this node; returns how many. */
  disconnect(identity: string, reason: string): number;
  /** Bans the identity (certificate serial, user name, client id, or a source address); null when there is nothing to ban it by. */
  ban(identity: string, expiresAt: number | null, reason: string, createdBy: string): BanRef | null;
  unban(ref: BanRef, removedBy: string): boolean;
  /** The ban-list entries the defender added (their createdBy names the alert), in force. */
  defenderBans(): Array<BanRef & { alertId: number }>;
  isQuarantined(identity: string): boolean;
  isThrottled(identity: string): boolean;
}

/** Identities of source addresses (the `$address` role's datapoints) start with this. */
export const ADDRESS_IDENTITY_PREFIX = 'addr:';

export interface BrokerEnforcementOptions {
  settings: Pick<DetectSettings, 'throttle'>;
  limits: LimitsConfig;
  now: () => number;
  /** A connected client of the identity (the detector's), to ban it by what it proved. */
  liveClient: (identity: string) => AuthorizedClient | null;
}

export class BrokerEnforcement implements Enforcement {
  private readonly quarantined = new Set<string>();
  private readonly throttled = new Set<string>();
  private api: BrokerApi | null = null;
  private bans: BanList | null = null;
  /** The quota source in front of the role quotas: set by `quotas()`, asked to restore a quota. */
  private normalQuotas: ClientQuotaSource | null = null;

  constructor(private readonly opts: BrokerEnforcementOptions) {}

  /** Connects the broker facade and the ban list once both exist (the broker is built with `guard` and `quotas`). */
  attach(api: BrokerApi, bans: BanList | null): void {
    this.api = api;
    this.bans = bans;
  }

  isQuarantined(identity: string): boolean {
    return this.quarantined.has(identity);
  }

  isThrottled(identity: string): boolean {
    return this.throttled.has(identity);
  }

  /**
   * The authorizer the broker gets: quarantined identities may publish to their quarantine
   * topic and nothing else, subscribe to nothing, and receive nothing; everyone else goes
   * to `next`. One Set lookup per check while nobody is quarantined.
   */
  guard(next: DeliveryAuthorizer): DeliveryAuthorizer {
    const quarantined = this.quarantined;
    return {
      authorizePublish(client: AuthorizedClient, topic: string, qos: QoS, retain: boolean): PublishAuthorization {
        if (quarantined.size > 0) {
          const identity = identityOf(client);
          // SECURITY: the quarantine topic only, never retained (it must not outlive the incident on a topic others read).
          if (quarantined.has(identity)) return topic === quarantineTopic(identity) && !retain ? { ok: true } : { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'quarantined' };
        }
        return next.authorizePublish(client, topic, qos, retain);
      },
      authorizeSubscribe(client: AuthorizedClient, filter: string, qos: QoS): SubscribeAuthorization {
        if (quarantined.size > 0 && quarantined.has(identityOf(client))) return { ok: false, reason: 'quarantined' };
        return next.authorizeSubscribe(client, filter, qos);
      },
      canReceive(client: AuthorizedClient, topic: string): boolean {
        if (quarantined.size > 0 && quarantined.has(identityOf(client))) return false;
        return next.canReceive(client, topic);
      },
    };
  }

  /** The quota source the broker gets: a throttled identity's new connections get the throttle quota. */
  quotas(next: ClientQuotaSource | null): ClientQuotaSource {
    this.normalQuotas = next;
    const throttled = this.throttled;
    return {
      clientQuota: (client, defaults, now): ClientQuota | undefined => {
        if (throttled.size > 0 && throttled.has(identityOf(client))) {
          const own = next?.clientQuota(client, defaults, now);
          return { publish: this.throttleQuota(now), maxSubscriptions: own?.maxSubscriptions ?? defaults.maxSubscriptions, ...(own?.maxQueued !== undefined ? { maxQueued: own.maxQueued } : {}) };
        }
        return next?.clientQuota(client, defaults, now);
      },
    };
  }

  private throttleQuota(now: number): PublishQuota {
    const t = this.opts.settings.throttle;
    return new ClientPublishQuota(t.publishRate, t.bandwidth, now);
  }

  quarantine(identity: string): void {
    this.quarantined.add(identity);
  }

  unquarantine(identity: string): void {
    this.quarantined.delete(identity);
  }

  throttle(identity: string): void {
    this.throttled.add(identity);
    this.api?.setPublishQuota((c) => identityOf(c) === identity, () => this.throttleQuota(this.opts.now()));
  }

  unthrottle(identity: string): void {
    if (!this.throttled.delete(identity)) return;
    // Back to what the client would have had: its role quota, else limits.client (none with limits off).
    this.api?.setPublishQuota(
      (c) => identityOf(c) === identity,
      (c) => {
        const now = this.opts.now();
        const own = this.normalQuotas?.clientQuota(c, this.opts.limits.client, now);
        if (own !== undefined) return own.publish;
        const { publishRate, bandwidth } = this.opts.limits.client;
        return this.opts.limits.enabled && (publishRate.perSecond > 0 || bandwidth.perSecond > 0) ? new ClientPublishQuota(publishRate, bandwidth, now) : null;
      },
    );
  }

  disconnect(identity: string, reason: string): number {
    if (this.api === null) return 0;
    return this.api.disconnectWhere((c) => identityOf(c) === identity, reason).length;
  }

  ban(identity: string, expiresAt: number | null, reason: string, createdBy: string): BanRef | null {
    const bans = this.bans;
    if (bans === null) return null;
    const ref = this.banTarget(identity);
    if (ref === null) return null;
    const ban = bans.add({ kind: ref.kind, value: ref.value, reason, createdBy, createdAt: this.opts.now(), expiresAt });
    // A ban also ends what is connected under it (the admission guard only sees new sessions).
    if (this.api !== null) this.api.disconnectWhere((c) => identityOf(c) === identity, reason);
    return { kind: ban.kind, value: ban.value };
  }

  /** What an identity is banned by: its address, certificate serial, user name, or client id. */
  private banTarget(identity: string): BanRef | null {
    if (identity.startsWith(ADDRESS_IDENTITY_PREFIX)) return { kind: 'ip', value: identity.slice(ADDRESS_IDENTITY_PREFIX.length) };
    const client = this.opts.liveClient(identity);
    if (client === null) return null;
    const cert = client.identity.certificate;
    if (cert !== undefined) return { kind: 'certSerial', value: cert.serialNumber };
    if (client.identity.username !== undefined) return { kind: 'username', value: client.identity.username };
    return { kind: 'clientId', value: client.clientId };
  }

  defenderBans(): Array<BanRef & { alertId: number }> {
    const out: Array<BanRef & { alertId: number }> = [];
    for (const b of this.bans?.list({ list: 'deny' }) ?? []) {
      const m = /^defender:alert-(\d+)$/.exec(b.createdBy);
      if (m !== null) out.push({ kind: b.kind, value: b.value, alertId: Number(m[1]) });
    }
    return out;
  }

  unban(ref: BanRef, removedBy: string): boolean {
    const bans = this.bans;
    if (bans === null) return false;
    const entry = bans.list({ list: 'deny' }).find((b) => b.kind === ref.kind && b.value === ref.value);
    return entry !== undefined && bans.remove(entry.id, removedBy) !== null;
  }
}
