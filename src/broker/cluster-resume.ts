/**
 * Cluster: resuming, on this node, a persistent session another node (or this one before
 * a restart) left. Owns: adopting the session from the cluster's record, replaying what it
 * missed from the cluster's stream in front of what arrives meanwhile, and matching each
 * replayed message against the session's own subscriptions. Must not: talk to the cluster
 * itself (the `ClusterResume` the claim returned does), or touch sockets.
 */
import type { QoS } from '../protocol/packets.js';
import { parseSharedFilter, topicMatches } from '../protocol/topic.js';
import type { Broker } from './broker.js';
import type { Message } from './message.js';
import type { ClusterResume, OutboundState } from './ports.js';
import type { Session } from './session/session.js';

/**
 * Before a CONNECT that does not start clean opens its session: takes over the persistent
 * session its last owner left and replays what it missed. On failure the session is
 * dropped again, so the next CONNECT resumes from the cluster's record once more.
 */
export async function resumeFromCluster(broker: Broker, resume: ClusterResume): Promise<void> {
  const rec = resume.record;
  const stale = broker.sessions.get(rec.clientId);
  // A copy here is stale (another node owned the client id since): dropped without
  // touching the cluster's record, which is the current one.
  if (stale !== undefined) broker.forgetSession(stale);
  const session = broker.adoptSession(rec, resume.incomingQos2);
  session.hold();
  let through: number;
  try {
    through = await resume.replay((message, inflight) => replayInto(broker, session, message, inflight));
  } catch (err) {
    broker.forgetSession(session);
    throw err;
  }
  session.releaseHeld(through);
}

/**
 * One replayed message into `session`: matched against its (non-shared) subscriptions,
 * merged as fan-out merges (highest QoS, every subscription id), authorized again. A QoS 2
 * exchange already in progress (`inflight`) resumes with its packet id and state.
 */
function replayInto(broker: Broker, session: Session, message: Message, inflight: { packetId: number; state: OutboundState } | null): void {
  let qos = -1;
  let retainAsPublished = false;
  const ids: number[] = [];
  for (const sub of session.subscriptions.values()) {
    if (parseSharedFilter(sub.filter) !== null || !topicMatches(sub.filter, message.topic)) continue;
    if (sub.noLocal && message.origin === session.clientId) continue;
    if (sub.qos > qos) qos = sub.qos;
    if (sub.retainAsPublished) retainAsPublished = true;
    if (sub.subscriptionId !== 0) ids.push(sub.subscriptionId);
  }
  if (qos < 0) return;
  const client = broker.clients.get(session);
  if (client === undefined || !broker.authorizer.canReceive(client, message.topic)) {
    broker.counters.deniedAtDelivery++;
    return;
  }
  const granted = Math.min(qos, message.qos) as QoS;
  const retainFlag = retainAsPublished ? message.retain : false;
  if (inflight !== null && granted === 2 && inflight.packetId !== 0) {
    session.restoreInflight(message, inflight.packetId, inflight.state, retainFlag, ids);
    return;
  }
  session.deliverNow(message, granted, retainFlag, ids, null);
}
