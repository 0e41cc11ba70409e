/**
 * The authorization of provisioning and renewal, in front of the ACL (issue 13): a
 * provisioning-only client (a claim certificate, a step-1 certificate, a one-time token)
 * may use the provisioning topics and nothing else; `$bastion/provision/…` is for them
 * only; `$bastion/certs/<identity>/…` is for the device whose certificate is `<identity>`
 * only. Everything else goes to the ACL unchanged. Owns: those rules. Must not: answer
 * requests (provisioning-service.ts) or evaluate ACL rules.
 *
 * SECURITY: fail closed and whatever the ACL says. These rules sit in front of the policy
 * engine, so an `allow-all` ACL or a careless rule on `$bastion/#` cannot give a claim
 * more than provisioning, nor one device another device's renewal.
 */
import type { AuthorizedClient, DeliveryAuthorizer, PublishAuthorization, SubscribeAuthorization } from '../broker/ports.js';
import type { QoS } from '../protocol/packets.js';
import { ReasonCode } from '../protocol/reason-codes.js';
import { isProvisioningOnlyCertificate } from './claim-identity.js';
import { certsIdentityOf, CERTS_PREFIX, PROVISION_PREFIX, requestOf } from './topics.js';

/** The answer per identity (it is fixed for a connection): the guard asks on every PUBLISH and delivery. */
const provisioningOnly = new WeakMap<AuthorizedClient['identity'], boolean>();

/** Whether `client` holds only a provisioning credential. */
export function isProvisioningOnly(client: AuthorizedClient): boolean {
  const id = client.identity;
  let only = provisioningOnly.get(id);
  if (only === undefined) {
    only = id.method === 'provision-token' || (id.certificate !== undefined && isProvisioningOnlyCertificate(id.certificate.organizationalUnits));
    provisioningOnly.set(id, only);
  }
  return only;
}

/** A topic or filter that may concern provisioning or renewal (they all start with `$bastion/`). */
function serviceTopic(topicOrFilter: string): boolean {
  return topicOrFilter.charCodeAt(0) === 0x24 && topicOrFilter.startsWith('$bastion/');
}

/** The identity a device's `$bastion/certs/…` topics are named after: its certificate's CN. */
export function certificateIdentity(client: AuthorizedClient): string | null {
  const cert = client.identity.certificate;
  if (cert === undefined || isProvisioningOnlyCertificate(cert.organizationalUnits)) return null;
  return cert.commonName;
}

const deny = (reason: string): PublishAuthorization => ({ ok: false, reasonCode: ReasonCode.NotAuthorized, reason });

export class ProvisioningGuard implements DeliveryAuthorizer {
  constructor(private readonly acl: DeliveryAuthorizer) {}

  authorizePublish(client: AuthorizedClient, topic: string, qos: QoS, retain: boolean): PublishAuthorization {
    // The common case, per PUBLISH: a device's own topic goes to the ACL after two cheap tests.
    if (!serviceTopic(topic) && !isProvisioningOnly(client)) return this.acl.authorizePublish(client, topic, qos, retain);
    const request = requestOf(topic);
    if (isProvisioningOnly(client)) {
      if (request === null || request.kind === 'renew') return deny('a provisioning credential may only publish provisioning requests');
      if (retain) return deny('provisioning requests are not retained');
      return { ok: true };
    }
    if (topic.startsWith(PROVISION_PREFIX)) return deny('only a claim or a provisioning token may provision');
    if (topic.startsWith(CERTS_PREFIX)) {
      const own = certificateIdentity(client);
      if (request?.kind !== 'renew' || own === null || request.identity !== own) return deny('a device may only renew its own certificate');
      if (retain) return deny('renewal requests are not retained');
      return { ok: true };
    }
    return this.acl.authorizePublish(client, topic, qos, retain);
  }

  authorizeSubscribe(client: AuthorizedClient, filter: string, qos: QoS): SubscribeAuthorization {
    const capped = (qos > 1 ? 1 : qos) as QoS;
    if (isProvisioningOnly(client)) {
      // The answer topics (or a filter inside `$bastion/provision/`, which holds nothing else).
      if (!filter.startsWith(PROVISION_PREFIX)) return { ok: false, reason: 'a provisioning credential may only subscribe to the provisioning answers' };
      return { ok: true, qos: capped };
    }
    if (filter.startsWith(PROVISION_PREFIX)) return { ok: false, reason: 'only a claim or a provisioning token may provision' };
    if (filter.startsWith(CERTS_PREFIX)) {
      const own = certificateIdentity(client);
      if (own === null || certsIdentityOf(filter) !== own) return { ok: false, reason: 'a device may only follow its own certificate topics' };
      return { ok: true, qos: capped };
    }
    // A filter that could match service topics from above (`$bastion/#`, `$bastion/+/…`) goes to the ACL; delivery below still fences it.
    return this.acl.authorizeSubscribe(client, filter, qos);
  }

  canReceive(client: AuthorizedClient, topic: string): boolean {
    // Per delivery: the same two cheap tests first.
    if (!serviceTopic(topic) && !isProvisioningOnly(client)) return this.acl.canReceive(client, topic);
    if (isProvisioningOnly(client)) return topic.startsWith(PROVISION_PREFIX);
    if (topic.startsWith(PROVISION_PREFIX)) return false;
    if (topic.startsWith(CERTS_PREFIX)) return certsIdentityOf(topic) === certificateIdentity(client) && certificateIdentity(client) !== null;
    return this.acl.canReceive(client, topic);
  }
}
