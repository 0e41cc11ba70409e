/**
 * Reads what a resumed persistent session missed from the cluster's message stream: every
 * stored message after the session's cursor, up to the stream's end when the replay
 * started, filtered by the session's subscriptions. Owns: the ordered consumer (ephemeral,
 * created for this replay only, never a durable consumer per session: that is nats-server's
 * own scale problem) and its subject filter. Must not: match subscriptions precisely or
 * authorize (the broker does both for each message it is handed).
 *
 * Filters: the consumer narrows the read to the session's QoS 1/2 filters where the server
 * can (one filter subject on nats-server 2.9; several from 2.10); otherwise it reads every
 * message after the cursor and the broker keeps the matching ones.
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { Message } from '../broker/message.js';
import type { StoredSubscription } from '../broker/ports.js';
import { parseSharedFilter } from '../protocol/topic.js';
import { liveSubject, MESSAGE_STREAM, storedSubject } from './cluster-bus.js';
import { decodeEnvelope } from './message-envelope.js';
import type { ClusterNatsConnection } from './nats-connection.js';
import { filterToSubjects, isCodecRefusal, subjectToTopic } from './subject-codec.js';

const BATCH = 256;
/** How long a replay may take before the CONNECT that asked for it is refused. */
const REPLAY_DEADLINE_MS = 8000;

export interface ReplayRequest {
  /** Each fetch is made through the connection's consumer gate (nats-connection.ts). */
  conn: Pick<ClusterNatsConnection, 'consumer'>;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** The server takes several filter subjects on one consumer (2.10+). */
  multiFilter: boolean;
  subscriptions: readonly StoredSubscription[];
  /** Every message up to this sequence is done for the session. */
  cursor: number;
  deliver(message: Message): void;
}

/** The stored subjects the session's QoS 1/2 subscriptions match; null: no narrowing possible (read all). */
function filterSubjects(subs: readonly StoredSubscription[]): string[] | null {
  const out = new Set<string>();
  for (const sub of subs) {
    if (sub.qos === 0 || parseSharedFilter(sub.filter) !== null) continue;
    const patterns = filterToSubjects(sub.filter);
    if (isCodecRefusal(patterns)) return null;
    for (const p of patterns.patterns) out.add(storedSubject(p));
  }
  return [...out];
}

/** Replays and resolves with the last stream sequence the replay covers. */
export async function replaySession(req: ReplayRequest): Promise<number> {
  const subjects = filterSubjects(req.subscriptions);
  const info = await req.jsm.streams.info(MESSAGE_STREAM);
  const end = info.state.last_seq;
  // Nothing to read: no QoS 1/2 subscription, or nothing stored after the cursor.
  if ((subjects !== null && subjects.length === 0) || end <= req.cursor) return end;
  const first = Math.max(req.cursor + 1, info.state.first_seq);
  const narrowed = subjects !== null && (subjects.length === 1 || req.multiFilter);
  const consumer = await req.js.consumers.get(MESSAGE_STREAM, {
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: first,
    ...(narrowed ? { filter_subjects: subjects.length === 1 ? subjects[0]! : subjects } : {}),
  });
  const deadline = Date.now() + REPLAY_DEADLINE_MS;
  let last = req.cursor;
  try {
    for (;;) {
      const batch = await req.conn.consumer(
        () => consumer.fetch({ max_messages: BATCH, expires: 2000 }),
        (b) => b.stop(),
      );
      let got = 0;
      let done = false;
      for await (const m of batch) {
        got++;
        last = m.seq;
        if (m.seq > end) {
          done = true;
          break;
        }
        const decoded = subjectToTopic(liveSubject(m.subject));
        const envelope = decoded === null ? null : decodeEnvelope(m.data, decoded.topic, decoded.qos);
        if (envelope !== null) {
          envelope.message.streamSeq = m.seq;
          req.deliver(envelope.message);
        }
        if (m.seq >= end || m.info.pending === 0) {
          done = true;
          break;
        }
      }
      if (done) break;
      if (got === 0) {
        // Nothing came: either nothing (more) matches, or JetStream is slow (an election).
        // Only the consumer's own count tells; a replay that cannot finish fails, and the
        // CONNECT is refused rather than resumed with a hole in it.
        const pending = (await consumer.info(false)).num_pending;
        if (pending === 0) break;
        if (Date.now() > deadline) throw new Error(`the replay of the session stopped at stream sequence ${last} of ${end}`);
      }
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
  return end;
}
