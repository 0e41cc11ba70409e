/**
 * `acl explain`: which rule decides a publish or subscribe for an identity described on
 * the command line (or by the admin API), and which quota the identity gets (its most
 * specific quota binding, quota.ts, or limits.client). Owns: building that identity and the
 * text form of the answer. Must not: read certificate files (the CLI turns one into a
 * PeerCertificate).
 */
import type { AuthorizedClient, ClientIdentity } from '../../broker/ports.js';
import type { PeerCertificate } from '../../broker/channel/connection-port.js';
import type { AclBinding, AclPolicy, RoleQuota } from '../../core/authz-config.js';
import { BastionError } from '../../core/errors.js';
import type { QoS } from '../../protocol/packets.js';
import { isValidTopicFilter, isValidTopicName } from '../../protocol/topic.js';
import { PolicyEngine, type AuthzAction, type RuleRef } from './engine.js';
import { chooseQuota, type BindingSpecificity } from './quota.js';

/**
 * The quota an identity gets. `role` null: no role with a quota is bound, limits.client
 * applies. A rate left null comes from limits.client (explain does not read the limits
 * section; the broker's log and config show those numbers).
 */
export interface QuotaExplanation {
  role: string | null;
  binding: AclBinding | null;
  specificity: BindingSpecificity | null;
  publishRate: NonNullable<RoleQuota['publishRate']> | null;
  bandwidth: NonNullable<RoleQuota['bandwidth']> | null;
  /** null: limits.client.maxSubscriptions. */
  maxSubscriptions: number | null;
  /** null: mqtt.maxQueued. */
  maxQueued: number | null;
}

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
  /** The publish quota this identity gets and which role gave it. */
  quota: QuotaExplanation;
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
    quota: explainQuota(policy, client),
  };
}

function explainQuota(policy: AclPolicy, client: AuthorizedClient): QuotaExplanation {
  const choice = chooseQuota(policy, client);
  if (choice === null) return { role: null, binding: null, specificity: null, publishRate: null, bandwidth: null, maxSubscriptions: null, maxQueued: null };
  const q = choice.quota;
  return {
    role: choice.role,
    binding: choice.binding,
    specificity: choice.specificity,
    publishRate: q.publishRate ?? null,
    bandwidth: q.bandwidth ?? null,
    maxSubscriptions: q.maxSubscriptions ?? null,
    maxQueued: q.maxQueued ?? null,
  };
}

function rateText(name: string, r: { perSecond: number; burst: number } | null, unit: string): string {
  if (r === null) return `${name} limits.client`;
  return r.perSecond === 0 ? `${name} unlimited` : `${name} ${r.perSecond}${unit}/s (burst ${r.burst})`;
}

/** The quota line of the human form. */
export function formatQuota(q: QuotaExplanation | undefined): string {
  // An older broker's admin API answers without a quota.
  if (q === undefined) return '  quota: (not reported)';
  if (q.role === null) return '  quota: limits.client (no role with a quota is bound)';
  const by = q.binding === null ? '' : ` via binding ${q.binding.attribute}=${q.binding.value} (${q.specificity})`;
  const subscriptions = `maxSubscriptions ${q.maxSubscriptions ?? 'limits.client'}`;
  const queue = `maxQueued ${q.maxQueued ?? 'mqtt.maxQueued'}`;
  return `  quota: role "${q.role}"${by}: ${rateText('publishRate', q.publishRate, ' msg')}, ${rateText('bandwidth', q.bandwidth, ' B')}, ${subscriptions}, ${queue}`;
}

/** The human form: a first line with the verdict, then why. */
export function formatExplanation(e: Explanation): string {
  const lines = [`${e.decision.toUpperCase()} ${e.action} ${e.topic}`];
  if (e.rule === null) lines.push(`  ${e.reason}`);
  else lines.push(`  decided by role "${e.rule.role}" rule #${e.rule.index}: ${e.rule.text}${e.reason !== 'allowed by rule' && e.reason !== 'denied by rule' ? ` (${e.reason})` : ''}`);
  if (e.qos !== undefined) lines.push(`  granted QoS: ${e.qos}`);
  lines.push(`  roles: ${e.roles.length > 0 ? e.roles.join(', ') : '(none)'}`);
  lines.push(formatQuota(e.quota));
  return `${lines.join('\n')}\n`;
}
