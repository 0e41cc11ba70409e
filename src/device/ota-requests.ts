/**
 * Request and answer for the OTA agent over a `BastionDevice`: publish a JSON request with
 * a fresh `clientToken`, then wait for the answer on one of its answer topics that echoes
 * that token (the jobs topics' `…/accepted|rejected`, the transfer's
 * `…/description|rejected`). Owns: matching answers to requests, the deadline, and turning
 * a lost connection or a refused PUBLISH into one error. Must not: know what the requests
 * mean (ota-jobs-client.ts, ota-download.ts), or subscribe (the agent subscribes once,
 * before it asks, as the broker answers only on subscribed topics).
 */
import type { BastionDevice } from './device.js';
import { DeviceError } from './errors.js';
import { jsonObjectOf, newClientToken, type JsonObject } from './protocol.js';

export type { JsonObject };

export interface Answer {
  /** The answer topic it came on. */
  topic: string;
  body: JsonObject;
}

interface Waiter {
  topics: readonly string[];
  clientToken: string;
  resolve(a: Answer): void;
  reject(err: Error): void;
}

export class TokenRequests {
  private readonly waiters = new Set<Waiter>();

  constructor(private readonly device: BastionDevice) {}

  /**
   * Publishes `body` plus a clientToken to `topic` (QoS 1) and resolves with the first
   * answer on one of `answerTopics` that echoes it. Rejects when not connected (a request
   * would wait in the offline queue and its answer could not be matched reliably), on a
   * refused PUBLISH, a lost connection (`failAll`) or the deadline.
   */
  ask(topic: string, body: JsonObject, answerTopics: readonly string[], timeoutMs: number): Promise<Answer> {
    if (!this.device.connected) return Promise.reject(new DeviceError('ERR_DEVICE_CONNECTION', `not connected: cannot ask on ${topic}`));
    const clientToken = newClientToken();
    let waiter: Waiter | undefined;
    let timer: NodeJS.Timeout | undefined;
    const answer = new Promise<Answer>((resolve, reject) => {
      waiter = { topics: answerTopics, clientToken, resolve, reject };
      this.waiters.add(waiter);
      timer = setTimeout(() => reject(new DeviceError('ERR_DEVICE_TIMEOUT', `no answer on ${answerTopics[0] ?? topic} within ${timeoutMs} ms`)), timeoutMs);
    });
    this.device.publish(topic, JSON.stringify({ ...body, clientToken }), { qos: 1 }).catch((err: unknown) => {
      if (waiter !== undefined && this.waiters.has(waiter)) waiter.reject(err instanceof Error ? err : new Error(String(err)));
    });
    return answer.finally(() => {
      clearTimeout(timer);
      if (waiter !== undefined) this.waiters.delete(waiter);
    });
  }

  /** An incoming message: true when it answered a waiting request. */
  deliver(topic: string, payload: Buffer): boolean {
    for (const w of this.waiters) {
      if (!w.topics.includes(topic)) continue;
      const body = jsonObjectOf(payload);
      // An answer to another (earlier, timed-out) request is not this one's.
      if (body === null || body.clientToken !== w.clientToken) continue;
      this.waiters.delete(w);
      w.resolve({ topic, body });
      return true;
    }
    return false;
  }

  /** Fails every waiting request (the connection was lost, or the agent closed). */
  failAll(err: Error): void {
    for (const w of this.waiters) w.reject(err);
    this.waiters.clear();
  }
}
