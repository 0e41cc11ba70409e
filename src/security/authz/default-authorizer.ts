/**
 * The minimal authorizer for embedded use and unit tests: an authenticated client may
 * publish and subscribe anywhere except `$`-prefixed topics, which belong to the broker.
 * The server never uses it: it builds a PolicyEngine from the config (deny by default).
 * SECURITY: `$` topics are refused for publish, subscribe and delivery alike.
 */
import { PUBLISH_ALLOWED, type AuthorizedClient, type DeliveryAuthorizer, type PublishAuthorization, type SubscribeAuthorization } from '../../broker/ports.js';
import type { QoS } from '../../protocol/packets.js';
import { ReasonCode } from '../../protocol/reason-codes.js';

function isReserved(topicOrFilter: string): boolean {
  return topicOrFilter.charCodeAt(0) === 0x24; /* $ */
}

export class DefaultAuthorizer implements DeliveryAuthorizer {
  authorizePublish(_client: AuthorizedClient, topic: string): PublishAuthorization {
    return isReserved(topic) ? { ok: false, reasonCode: ReasonCode.NotAuthorized, reason: 'topics starting with $ belong to the broker' } : PUBLISH_ALLOWED;
  }
  authorizeSubscribe(_client: AuthorizedClient, filter: string, qos: QoS): SubscribeAuthorization {
    return isReserved(filter) ? { ok: false, reason: 'topics starting with $ belong to the broker' } : { ok: true, qos };
  }
  canReceive(_client: AuthorizedClient, topic: string): boolean {
    return !isReserved(topic);
  }
}
