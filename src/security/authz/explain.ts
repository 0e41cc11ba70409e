/**
 * `acl explain`: which rule decides a publish or subscribe for an identity described on
 * the command line (or by the admin API). Owns: building that identity and the text form
 * of the answer. Must not: read certificate files (the CLI turns one into a
 * PeerCertificate).
 */
import type { AuthorizedClient, ClientIdentity } from '../../broker/ports.js';
import type { PeerCertificate } from '../../broker/channel/connection-port.js';
import type { AclPolicy } from '../../core/authz-config.js';
import { BastionError } from '../../core/errors.js';
import type { QoS } from '../../protocol/packets.js';
import { isValidTopicFilter, isValidTopicName } from '../../protocol/topic.js';
import { PolicyEngine, type AuthzAction, type RuleRef } from './engine.js';

export interface ExplainRequest {
  clientId: string;
  username?: string;
  pskIdentity?: string;
  certificate?: PeerCertificate;
  action: AuthzAction;
  /** A topic name (publish) or a topic filter (subscribe). */
  topic: string;
  qos?: QoS;
  retain?: boolean;
}

export interface Explanation {
  decision: 'allow' | 'deny';
  action: AuthzAction;
  topic: string;
  /** The deciding rule; null: no rule matched (default deny). */
  rule: RuleRef | null;
  reason: string;
  /** The roles bound to the identity. */
  roles: string[];
  /** Subscribe: the QoS that would be granted. */
  qos?: QoS;
}

/** The identity the broker would see for a client with these attributes. */
function explainClient(req: Pick<ExplainRequest, 'clientId' | 'username' | 'pskIdentity' | 'certificate'>): AuthorizedClient {
  const method: ClientIdentity['method'] = req.certificate !== undefined ? 'certificate' : req.pskIdentity !== undefined ? 'psk' : req.username !== undefined ? 'password' : 'anonymous';
  const principal = req.certificate?.commonName ?? req.pskIdentity ?? req.username ?? null;
  const identity: ClientIdentity = {
    principal,
    method,
    remoteAddress: 'explain',
    listener: 'explain',
    ...(req.username !== undefined ? { username: req.username } : {}),
    ...(req.certificate !== undefined ? { certificate: req.certificate } : {}),
    ...(req.pskIdentity !== undefined ? { pskIdentity: req.pskIdentity } : {}),
  };
  return { clientId: req.clientId, principal, identity };
}

export function explain(policy: AclPolicy, req: ExplainRequest): Explanation {
  if (req.clientId.length === 0) throw new BastionError('ERR_USAGE', 'a client id is required');
  if (req.action === 'publish' && !isValidTopicName(req.topic)) throw new BastionError('ERR_USAGE', `"${req.topic}" is not a valid topic name (no + or #)`);
  if (req.action === 'subscribe' && !isValidTopicFilter(req.topic)) throw new BastionError('ERR_USAGE', `"${req.topic}" is not a valid topic filter`);
  const engine = new PolicyEngine(policy);
  const client = explainClient(req);
  // Without a QoS: publish at 0, subscribe asking 2 (so the answer shows a rule's maxQos).
  const v = req.action === 'publish' ? engine.decidePublish(client, req.topic, req.qos ?? 0, req.retain ?? false) : engine.decideSubscribe(client, req.topic, req.qos ?? 2);
  return {
    decision: v.allowed ? 'allow' : 'deny',
    action: req.action,
    topic: req.topic,
    rule: v.rule,
    reason: v.reason,
    roles: engine.rolesOf(client),
    ...(v.qos !== undefined ? { qos: v.qos } : {}),
  };
}

/** The human form: a first line with the verdict, then why. */
export function formatExplanation(e: Explanation): string {
  const lines = [`${e.decision.toUpperCase()} ${e.action} ${e.topic}`];
  if (e.rule === null) lines.push(`  ${e.reason}`);
  else lines.push(`  decided by role "${e.rule.role}" rule #${e.rule.index}: ${e.rule.text}${e.reason !== 'allowed by rule' && e.reason !== 'denied by rule' ? ` (${e.reason})` : ''}`);
  if (e.qos !== undefined) lines.push(`  granted QoS: ${e.qos}`);
  lines.push(`  roles: ${e.roles.length > 0 ? e.roles.join(', ') : '(none)'}`);
  return `${lines.join('\n')}\n`;
}
