/**
 * The authorization of the OTA block transfer topics, in front of the next authorizer
 * (issue 14 item 4): `$bastion/ota/<X>/…` is for the device whose certificate identity is
 * X, and nobody else. Everything else goes to the next authorizer unchanged. Owns: those
 * rules. Must not: answer requests (transfer-service.ts) or evaluate ACL rules.
 *
 * SECURITY: fail closed whatever the ACL says (an `allow-all` ACL or a rule on
 * `$bastion/#` gives nobody another device's images): a client with no certificate
 * identity gets nothing; a wildcard in the identity segment names nobody; a device may
 * publish only `describe` and `get` under its own prefix, never retained, and subscribe
 * only under its own prefix.
 */
import type { AuthorizedClient, DeliveryAuthorizer, PublishAuthorization, SubscribeAuthorization } from '../../broker/ports.js';
import type { QoS } from '../../protocol/packets.js';
import { ReasonCode } from '../../protocol/reason-codes.js';
import { otaIdentityOf, OTA_TRANSFER_PREFIX, transferRequestOf } from './topics.js';

/** The device identity of `client` (its certificate's CN), or null when it is not a device. */
export type TransferIdentityOf = (client: AuthorizedClient) => string | null;

export class TransferGuard implements DeliveryAuthorizer {
  constructor(
    private readonly next: DeliveryAuthorizer,
    private readonly identityOf: TransferIdentityOf,
  ) {}

  authorizePublish(client: AuthorizedClient, topic: string, qos: QoS, retain: boolean): PublishAuthorization {
    if (!topic.startsWith(OTA_TRANSFER_PREFIX)) return this.next.authorizePublish(client, topic, qos, retain);
    const own = this.identityOf(client);
    const request = transferRequestOf(topic);
    if (own === null || request === null || request.identity !== own) return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'a device may only publish describe and get on its own OTA file topics' };
    if (retain) return { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'OTA file requests are not retained' };
    return { ok: true };
  }

  authorizeSubscribe(client: AuthorizedClient, filter: string, qos: QoS): SubscribeAuthorization {
    if (!filter.startsWith(OTA_TRANSFER_PREFIX)) return this.next.authorizeSubscribe(client, filter, qos);
    const own = this.identityOf(client);
    if (own === null || otaIdentityOf(filter) !== own) return { ok: false, reason: 'a device may only follow its own OTA file topics' };
    return { ok: true, qos: (qos > 1 ? 1 : qos) as QoS };
  }

  canReceive(client: AuthorizedClient, topic: string): boolean {
    if (!topic.startsWith(OTA_TRANSFER_PREFIX)) return this.next.canReceive(client, topic);
    const own = this.identityOf(client);
    return own !== null && otaIdentityOf(topic) === own;
  }
}
