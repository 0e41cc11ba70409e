/**
 * Request and answer over MQTT, as docs/PROVISIONING.md has them: SUBSCRIBE to a request's
 * `…/accepted` and `…/rejected` first, then PUBLISH the request with a fresh `clientToken`,
 * then wait for the answer that echoes it. Owns: that order, matching answers to requests,
 * the deadline, and turning a refusal (SUBACK, PUBACK, `…/rejected`, a lost connection)
 * into one error. Must not: know what the requests mean (provision.ts, renewal.ts).
 */
import type { MqttClient } from 'mqtt';
import { DeviceError, hex, type ProvisioningStep } from './errors.js';
import { acceptedTopic, jsonObjectOf, newClientToken, rejectedTopic, rejectionOf, type JsonObject } from './protocol.js';

/** Rejects with ERR_DEVICE_TIMEOUT after `ms` unless `p` settles first. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeviceError('ERR_DEVICE_TIMEOUT', `no ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The SUBACK reason codes of a SUBSCRIBE MQTT.js failed because the broker refused a filter
 * (v5), or null when the failure was something else (a lost connection, a timeout).
 */
export function subackCodes(err: unknown): number[] | null {
  const granted = (err as { packet?: { cmd?: unknown; granted?: unknown } } | null)?.packet;
  if (granted?.cmd !== 'suback' || !Array.isArray(granted.granted)) return null;
  return granted.granted.map((g: unknown) => (typeof g === 'number' ? g : 0x80));
}

interface Waiter {
  accepted: string;
  rejected: string;
  clientToken: string;
  step: ProvisioningStep;
  resolve(answer: JsonObject): void;
  reject(err: Error): void;
}

/**
 * The answer topics of one connection. `subscribe` first (one SUBSCRIBE for all the
 * requests about to be made), then `ask` once per request. `close` detaches it.
 */
export class RequestChannel {
  private readonly waiters = new Set<Waiter>();
  private readonly onMessage = (topic: string, payload: Buffer): void => this.deliver(topic, payload);
  private readonly onClose = (): void => this.failAll(new DeviceError('ERR_DEVICE_CONNECTION', 'the connection closed while waiting for an answer'));
  private readonly subscribed = new Set<string>();

  constructor(private readonly client: MqttClient) {
    client.on('message', this.onMessage);
    client.on('close', this.onClose);
  }

  /** Subscribes (QoS 1) to the accepted and rejected topics of these requests; a refusal throws. */
  async subscribe(requestTopics: readonly string[], timeoutMs: number): Promise<void> {
    const topics = requestTopics.flatMap((t) => [acceptedTopic(t), rejectedTopic(t)]).filter((t) => !this.subscribed.has(t));
    if (topics.length === 0) return;
    let granted;
    try {
      granted = await withDeadline(this.client.subscribeAsync(topics, { qos: 1 }), timeoutMs, `SUBACK for ${topics[0]}`);
    } catch (err) {
      const codes = subackCodes(err);
      if (codes === null) throw err instanceof DeviceError ? err : new DeviceError('ERR_DEVICE_CONNECTION', `subscribing to ${topics[0]} failed: ${(err as Error).message}`);
      const i = codes.findIndex((c) => c >= 0x80);
      const topic = topics[i] ?? topics[0]!;
      throw new DeviceError('ERR_DEVICE_SUBSCRIBE', `the broker refused to subscribe to ${topic} (${hex(codes[i] ?? 0x80)})`, codes[i] ?? 0x80);
    }
    for (const g of granted) {
      // MQTT.js reports a v3.1.1 refusal (0x80) as a grant of QoS 128.
      if (g.qos >= 0x80) throw new DeviceError('ERR_DEVICE_SUBSCRIBE', `the broker refused to subscribe to ${g.topic} (${hex(g.qos)})`, g.qos);
      this.subscribed.add(g.topic);
    }
  }

  /**
   * Publishes `payload` plus a new clientToken to `requestTopic` (QoS 1) and returns the
   * accepted answer; a rejected one throws a ProvisioningError. Subscribe first.
   */
  async ask(requestTopic: string, step: ProvisioningStep, payload: JsonObject, timeoutMs: number): Promise<JsonObject> {
    const accepted = acceptedTopic(requestTopic);
    const rejected = rejectedTopic(requestTopic);
    if (!this.subscribed.has(accepted) || !this.subscribed.has(rejected)) {
      throw new DeviceError('ERR_DEVICE_INVALID_INPUT', `${step}: subscribe to the answer topics before asking (the broker answers only there)`);
    }
    const clientToken = newClientToken();
    let waiter: Waiter | undefined;
    const answer = new Promise<JsonObject>((resolve, reject) => {
      waiter = { accepted, rejected, clientToken, step, resolve, reject };
      this.waiters.add(waiter);
    });
    try {
      const published = this.client.publishAsync(requestTopic, JSON.stringify({ ...payload, clientToken }), { qos: 1 }).catch((err: unknown) => {
        const e = err as Error & { code?: unknown };
        const reasonCode = typeof e.code === 'number' ? e.code : undefined;
        throw new DeviceError('ERR_DEVICE_PUBLISH', `${step}: the broker refused the request on ${requestTopic}: ${e.message}`, reasonCode);
      });
      // The answer may come before the PUBACK; a refused PUBLISH fails at once.
      return await withDeadline(Promise.all([answer, published]).then(([a]) => a), timeoutMs, `answer to ${step} on ${accepted}`);
    } finally {
      if (waiter !== undefined) this.waiters.delete(waiter);
    }
  }

  /** Detaches from the client (the subscriptions stay until the connection ends). */
  close(): void {
    this.client.off('message', this.onMessage);
    this.client.off('close', this.onClose);
    this.failAll(new DeviceError('ERR_DEVICE_CLOSED', 'the request channel was closed'));
  }

  /** Unsubscribes from every answer topic (best effort) and detaches. */
  async closeAndUnsubscribe(timeoutMs: number): Promise<void> {
    this.close();
    const topics = [...this.subscribed];
    this.subscribed.clear();
    if (topics.length > 0 && this.client.connected) await withDeadline(this.client.unsubscribeAsync(topics), timeoutMs, 'UNSUBACK').catch(() => undefined);
  }

  private deliver(topic: string, payload: Buffer): void {
    for (const w of this.waiters) {
      if (topic !== w.accepted && topic !== w.rejected) continue;
      const o = jsonObjectOf(payload);
      // An answer to another (earlier, timed-out) request of this connection is not ours.
      if (o === null || o.clientToken !== w.clientToken) continue;
      this.waiters.delete(w);
      if (topic === w.accepted) w.resolve(o);
      else w.reject(rejectionOf(w.step, o));
      return;
    }
  }

  private failAll(err: Error): void {
    for (const w of this.waiters) w.reject(err);
    this.waiters.clear();
  }
}
