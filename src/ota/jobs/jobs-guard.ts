/**
 * The authorization of the jobs topics, in front of the ACL (issue 14): `$bastion/jobs/<X>/…`
 * is for the device whose certificate identity is X, and nobody else. Everything else
 * goes to the next authorizer unchanged. Owns: those rules. Must not: answer requests
 * (mqtt-service.ts) or evaluate ACL rules.
 *
 * SECURITY: fail closed whatever the ACL says (an `allow-all` ACL or a rule on
 * `$bastion/#` gives nobody another device's jobs): no identity (not a device
 * certificate) → refused; a wildcard in the identity segment → refused; a publish that
 * is not a request, or is retained → refused.
 */
import type { AuthorizedClient, DeliveryAuthorizer, PublishAuthorization, SubscribeAuthorization } from '../../broker/ports.js';
import type { QoS } from '../../protocol/packets.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import { jobRequestOf, jobsIdentityOf, JOBS_PREFIX } from './topics.js';

/** The device identity jobs are addressed to (its certificate's CN), or null when `client` is not a device. */
export type JobIdentityOf = (client: AuthorizedClient) => string | null;

export class JobsGuard implements DeliveryAuthorizer {
  constructor(
    private readonly next: DeliveryAuthorizer,
    private readonly identityOf: JobIdentityOf,
  ) {}

  authorizePublish(client: AuthorizedClient, topic: string, qos: QoS, retain: boolean): PublishAuthorization {
    if (!topic.startsWith(JOBS_PREFIX)) return this.next.authorizePublish(client, topic, qos, retain);
    const own = this.identityOf(client);
    const request = jobRequestOf(topic);
    if (own === null || request === null || request.identity !== own) return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'a device may only publish requests on its own jobs topics' };
    if (retain) return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'job requests are not retained' };
    return { ok: true };
  }

  authorizeSubscribe(client: AuthorizedClient, filter: string, qos: QoS): SubscribeAuthorization {
    if (!filter.startsWith(JOBS_PREFIX)) return this.next.authorizeSubscribe(client, filter, qos);
    const own = this.identityOf(client);
    if (own === null || jobsIdentityOf(filter) !== own) return { ok: false, reason: 'a device may only follow its own jobs topics' };
    return { ok: true, qos: (qos > 1 ? 1 : qos) as QoS };
  }

  canReceive(client: AuthorizedClient, topic: string): boolean {
    if (!topic.startsWith(JOBS_PREFIX)) return this.next.canReceive(client, topic);
    const own = this.identityOf(client);
    return own !== null && jobsIdentityOf(topic) === own;
  }
}
