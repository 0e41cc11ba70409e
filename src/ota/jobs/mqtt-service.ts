/**
 * Jobs over MQTT (issue 14, after AWS IoT Jobs): the broker service that owns
 * `$bastion/jobs/<identity>/…`, reads the JSON requests, asks the JobsService and answers
 * on `…/accepted` or `…/rejected` to the requester only; and pushes `…/notify-next` when
 * the device subscribes to it and whenever its next execution changes. Owns: the JSON in
 * and out, the payload bound and the per-device request rate. Must not: decide transitions
 * (jobs-service.ts) or authorize (jobs-guard.ts ran before).
 *
 * SECURITY: the identity a request acts for is the one the guard checked (the topic's,
 * equal to the requester's certificate identity); requests are bounded in size and rate.
 */
import type { ClientService, ServiceReply } from '../../broker/client-services.js';
import type { AuthorizedClient } from '../../broker/ports.js';
import type { Logger } from '../../core/logger.js';
import { topicMatches } from '../../protocol/topic.js';
import { KeyedTokenBuckets } from '../../security/limits/keyed-buckets.js';
import { JobRefusal, type JobsService } from './jobs-service.js';
import { jobRequestOf, notifyNextTopic } from './topics.js';

/** A request is a status and a few details: anything larger is refused unread. */
export const MAX_JOB_REQUEST_BYTES = 16 * 1024;
/** Per device: a burst of this many requests, then RATE_PER_SECOND. */
const BURST = 20;
const RATE_PER_SECOND = 5;

type Json = Record<string, unknown>;

interface Watcher {
  reply: ServiceReply;
  /** What was last pushed: `jobId#executionNumber`, or '' for none. */
  last: string | null;
}

export class JobsMqttService implements ClientService {
  /** Answers that found no matching subscription of the requester. */
  unanswered = 0;
  private readonly watchers = new Map<string, Watcher>();
  private readonly buckets = new KeyedTokenBuckets(RATE_PER_SECOND, BURST);

  constructor(
    private readonly service: JobsService,
    private readonly identityOf: (client: AuthorizedClient) => string | null,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    service.nextMayHaveChanged = (identity) => this.pushNext(identity, false);
  }

  owns(topic: string): boolean {
    return jobRequestOf(topic) !== null;
  }

  handle(client: AuthorizedClient, topic: string, payload: Buffer, reply: ServiceReply): void {
    // A start-next or update may wait on the cluster (a compare-and-set); the answer follows.
    void this.answer(client, topic, payload, reply);
  }

  private async answer(client: AuthorizedClient, topic: string, payload: Buffer, reply: ServiceReply): Promise<void> {
    const request = jobRequestOf(topic)!;
    let clientToken: string | undefined;
    try {
      // The guard let only the topic's own device publish here; check again rather than trust the wiring.
      if (this.identityOf(client) !== request.identity) throw new JobRefusal(403, 'InvalidRequest', 'not this device’s jobs');
      if (!this.take(request.identity)) throw new JobRefusal(429, 'Throttled', `at most ${RATE_PER_SECOND} job requests a second`);
      const req = parse(payload);
      clientToken = tokenOf(req);
      let body: Json;
      switch (request.kind) {
        case 'get':
          body = { ...this.service.pending(request.identity) };
          break;
        case 'start-next': {
          const e = await this.service.startNext(request.identity, req);
          body = e === null ? {} : { execution: e };
          break;
        }
        case 'describe':
          body = { execution: this.service.describe(request.identity, request.jobId, req) };
          break;
        case 'update':
          body = { ...(await this.service.update(request.identity, request.jobId, req)) };
          break;
      }
      this.send(reply, client, `${topic}/accepted`, { ...body, timestamp: secs(this.now()), ...(clientToken !== undefined ? { clientToken } : {}) });
    } catch (err) {
      const r = err instanceof JobRefusal ? err : new JobRefusal(500, 'InternalError', 'the request failed (see the broker log)');
      if (!(err instanceof JobRefusal)) this.logger.error({ clientId: client.clientId, topic, err: err instanceof Error ? err.message : String(err) }, 'job request failed');
      this.send(reply, client, `${topic}/rejected`, {
        statusCode: r.statusCode,
        errorCode: r.errorCode,
        errorMessage: r.message,
        ...(r.executionState !== undefined ? { executionState: r.executionState } : {}),
        timestamp: secs(this.now()),
        ...(clientToken !== undefined ? { clientToken } : {}),
      });
    }
  }

  subscribed(client: AuthorizedClient, filters: readonly string[], reply: ServiceReply): void {
    const identity = this.identityOf(client);
    if (identity === null) return;
    const topic = notifyNextTopic(identity);
    if (!filters.some((f) => topicMatches(f, topic))) return;
    this.watchers.set(identity, { reply, last: null });
    this.pushNext(identity, true);
  }

  /** Another process (the CLI) changed the store: push to every watcher whose next changed. */
  storeChanged(): void {
    for (const identity of this.watchers.keys()) this.pushNext(identity, false);
  }

  private pushNext(identity: string, always: boolean): void {
    const w = this.watchers.get(identity);
    if (w === undefined) return;
    try {
      const e = this.service.next(identity);
      const key = e === null ? '' : `${e.jobId}#${e.executionNumber}#${e.status}`;
      if (!always && key === w.last) return;
      w.last = key;
      const body = e === null ? {} : { execution: this.service.view(e, true) };
      // A watcher whose session no longer subscribes (or is gone) is forgotten.
      if (!w.reply.send(notifyNextTopic(identity), Buffer.from(JSON.stringify({ ...body, timestamp: secs(this.now()) })))) this.watchers.delete(identity);
    } catch (err) {
      this.logger.error({ identity, err: err instanceof Error ? err.message : String(err) }, 'jobs: notify-next failed');
    }
  }

  private take(identity: string): boolean {
    return this.buckets.take(identity, this.now());
  }

  private send(reply: ServiceReply, client: AuthorizedClient, topic: string, body: Json): void {
    if (reply.send(topic, Buffer.from(JSON.stringify(body)))) return;
    this.unanswered++;
    this.logger.warn({ clientId: client.clientId, topic }, 'job answer not delivered: the client did not subscribe to it before asking');
  }
}

const secs = (ms: number): number => Math.floor(ms / 1000);

function parse(payload: Buffer): Json {
  if (payload.length > MAX_JOB_REQUEST_BYTES) throw new JobRefusal(400, 'InvalidRequest', `a request is at most ${MAX_JOB_REQUEST_BYTES} bytes`);
  if (payload.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new JobRefusal(400, 'InvalidJson', 'the payload is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new JobRefusal(400, 'InvalidJson', 'the payload is not a JSON object');
  return v as Json;
}

function tokenOf(req: Json): string | undefined {
  const t = req.clientToken;
  if (t === undefined) return undefined;
  if (typeof t !== 'string' || t.length > 64) throw new JobRefusal(400, 'InvalidRequest', 'clientToken is a string of at most 64 characters');
  return t;
}
