/**
 * The authorizer until rule-based ACLs arrive: an authenticated client may publish and
 * subscribe anywhere except `$`-prefixed topics, which belong to the broker.
 * SECURITY: `$` topics are refused for publish, subscribe and delivery alike.
 */
import type { AuthorizedClient, DeliveryAuthorizer } from '../../broker/ports.js';

function isReserved(topicOrFilter: string): boolean {
  return topicOrFilter.charCodeAt(0) === 0x24; /* $ */
}

export class DefaultAuthorizer implements DeliveryAuthorizer {
  canPublish(_client: AuthorizedClient, topic: string): boolean {
    return !isReserved(topic);
  }
  canSubscribe(_client: AuthorizedClient, filter: string): boolean {
    return !isReserved(filter);
  }
  canReceive(_client: AuthorizedClient, topic: string): boolean {
    return !isReserved(topic);
  }
}
