/**
 * `BastionDevice`: a provisioned device's connection to Bastion. Owns: connecting with the
 * stored identity (mutual TLS, client id = identity), reconnecting with backoff, the
 * subscriptions (made again on every connection), the offline queue (offline-queue.ts)
 * and when its messages go out, and automatic certificate renewal: on the CONNACK's
 * `bastion-cert-renew` user property or a `$bastion/certs/<identity>/renewal-due` notice
 * it renews (renewal.ts), stores the new identity, then reconnects with it.
 * Must not: provision (provision.ts), or touch files other than through its IdentityStore.
 *
 * Every connection is a new MQTT.js client with clean start: MQTT.js's own reconnect and
 * offline queue are off, so that a renewed certificate is used at the next connection and
 * the one queue here decides the order. QoS 1 is at least once: a message in flight when a
 * connection drops is sent again on the next one.
 */
import { EventEmitter } from 'node:events';
import type { IClientPublishOptions, IPublishPacket, MqttClient } from 'mqtt';
import { connectOnce, endClient } from './connection.js';
import { DeviceError, hex } from './errors.js';
import type { DeviceIdentity, IdentityStore } from './identity-store.js';
import { OfflineQueue, type OfflineQueueOptions } from './offline-queue.js';
import { deviceTopicPrefix, jsonObjectOf, parseRenewalDue, renewalDueTopic, renewalFromConnack } from './protocol.js';
import { DEFAULT_REQUEST_TIMEOUT_MS } from './provision.js';
import { renewCertificate, renewalWorthwhile } from './renewal.js';
import { subackCodes, withDeadline } from './request.js';

export interface BastionDeviceOptions {
  /** `mqtts://host:port` of a listener that requires client certificates. */
  url: string;
  store: IdentityStore;
  /** CA PEM to verify the broker (default: the stored identity's `caPem`). */
  ca?: string | Buffer;
  /** TLS server name to check when it differs from the URL's host. */
  servername?: string;
  /** Default 60. */
  keepaliveSeconds?: number;
  /** Deadline of each CONNECT, default 10 s. */
  connectTimeoutMs?: number;
  /** Deadline of SUBSCRIBE and renewal requests, default 10 s. */
  requestTimeoutMs?: number;
  /** Backoff between reconnects (doubling, with jitter), default 1 s to 60 s; false: no reconnect. */
  reconnect?: { minDelayMs?: number; maxDelayMs?: number } | false;
  /** Bound and overflow policy of the offline queue (default 1000, reject). */
  queue?: OfflineQueueOptions;
  /** QoS 1 messages in flight at most (also bounded by the broker's Receive Maximum), default 32. */
  maxInflight?: number;
  renewal?: {
    /** Renew when the broker says so (default true); `renew()` works either way. */
    auto?: boolean;
    /** Automatic renewal only once the certificate used this share of its lifetime (default 0.5). */
    minLifetimeUsed?: number;
  };
}

export interface DeviceMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  properties: IPublishPacket['properties'];
}

export interface PublishOptions {
  /** 0 or 1 (default 1). */
  qos?: 0 | 1;
  retain?: boolean;
  properties?: IClientPublishOptions['properties'];
}

export interface DeviceEvents {
  connected: [{ identity: string; certificateId: string | undefined }];
  disconnected: [{ reason: string; reconnecting: boolean }];
  message: [DeviceMessage];
  'renewal-due': [{ notAfter: Date | null; source: 'connack' | 'notice' }];
  renewed: [{ identity: string; certificateId: string; notAfter: Date }];
  /** Failures that belong to no call (a reconnect, an automatic renewal); emitted only when listened to. */
  error: [Error];
}

interface Outgoing {
  topic: string;
  payload: Buffer;
  options: IClientPublishOptions;
  resolve(): void;
  reject(err: Error): void;
}

interface Live {
  client: MqttClient;
  generation: number;
  identity: DeviceIdentity;
  /** QoS 1 messages in flight at most on this connection. */
  window: number;
  why: () => string;
  /** The CONNACK or a notice said "renew" on this connection (said once). */
  renewalNoticed: boolean;
}

type State = 'idle' | 'connecting' | 'online' | 'offline' | 'closed';

export class BastionDevice extends EventEmitter<DeviceEvents> {
  private readonly queue: OfflineQueue<Outgoing>;
  private readonly subscriptions = new Map<string, 0 | 1 | 2>();
  private state: State = 'idle';
  private live: Live | null = null;
  /** Bumped by every new connection and every deliberate end: events of older ones are ignored. */
  private generation = 0;
  private attempts = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connecting: Promise<void> | null = null;
  private renewing: Promise<void> | null = null;
  private lastIdentity: string | undefined;

  constructor(private readonly options: BastionDeviceOptions) {
    super();
    this.queue = new OfflineQueue(options.queue);
  }

  /** The identity of the current (or last) connection. */
  get identity(): string | undefined {
    return this.lastIdentity;
  }

  get connected(): boolean {
    return this.state === 'online';
  }

  /** Messages held by the offline queue (waiting and in flight). */
  get queued(): number {
    return this.queue.size;
  }

  /** Connects with the stored identity; rejects when this first attempt fails (no retry). */
  connect(): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new DeviceError('ERR_DEVICE_CLOSED', 'the device was closed'));
    if (this.state === 'online') return Promise.resolve();
    return this.connecting ?? this.openShared();
  }

  /**
   * Publishes now, or queues until connected. Resolves once sent (QoS 0) or acknowledged
   * (QoS 1); rejects when the queue is full, the broker refuses the message, or on close().
   */
  publish(topic: string, payload: string | Buffer | Uint8Array, opts: PublishOptions = {}): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new DeviceError('ERR_DEVICE_CLOSED', 'the device was closed'));
    if (typeof topic !== 'string' || topic.length === 0 || /[+#\u0000]/.test(topic)) {
      return Promise.reject(new DeviceError('ERR_DEVICE_INVALID_INPUT', `cannot publish to ${JSON.stringify(topic)}: a topic name has no wildcards`));
    }
    const qos = opts.qos ?? 1;
    if (qos !== 0 && qos !== 1) return Promise.reject(new DeviceError('ERR_DEVICE_INVALID_INPUT', 'QoS must be 0 or 1'));
    return new Promise<void>((resolve, reject) => {
      const options: IClientPublishOptions = { qos, retain: opts.retain ?? false, ...(opts.properties !== undefined ? { properties: opts.properties } : {}) };
      const msg: Outgoing = { topic, payload: typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload), options, resolve, reject };
      const dropped = this.queue.add(msg);
      dropped?.reject(new DeviceError('ERR_DEVICE_QUEUE_FULL', `dropped from the full offline queue (limit ${this.queue.limit}) for a newer message`));
      this.pump();
    });
  }

  /**
   * Subscribes, now and on every later connection. When connected, resolves once the
   * broker granted it (a refusal rejects and forgets it); when not, resolves at once.
   */
  async subscribe(filter: string, opts: { qos?: 0 | 1 | 2 } = {}): Promise<void> {
    if (this.state === 'closed') throw new DeviceError('ERR_DEVICE_CLOSED', 'the device was closed');
    const qos = opts.qos ?? 1;
    this.subscriptions.set(filter, qos);
    const live = this.live;
    if (live === null || this.state !== 'online') return;
    const refused = await this.subscribeOn(live.client, [[filter, qos]]);
    if (refused.length > 0) throw refused[0]!;
  }

  async unsubscribe(filter: string): Promise<void> {
    this.subscriptions.delete(filter);
    const live = this.live;
    if (live !== null && this.state === 'online') await withDeadline(live.client.unsubscribeAsync(filter), this.requestTimeout, `UNSUBACK for ${filter}`);
  }

  /**
   * Renews the certificate now: a new key, its CSR to the broker, the new identity stored,
   * then a reconnect with it. One renewal at a time (a second call joins the first).
   */
  renew(): Promise<void> {
    this.renewing ??= this.renewNow().finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  /**
   * Disconnects cleanly (messages in flight get a moment to be acknowledged) and stops
   * reconnecting; messages still queued are rejected with ERR_DEVICE_CLOSED.
   */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.reconnectTimer);
    const live = this.live;
    this.live = null;
    this.generation++;
    if (live !== null) await endClient(live.client);
    for (const msg of this.queue.clear()) msg.reject(new DeviceError('ERR_DEVICE_CLOSED', 'the device was closed before the message was sent'));
  }

  /** A method, not a field test: the state changes across awaits, which narrowing does not see. */
  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private get requestTimeout(): number {
    return this.options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  }

  private emitError(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', err instanceof Error ? err : new Error(String(err)));
  }

  /** A connection attempt that a concurrent connect() joins instead of starting another. */
  private openShared(): Promise<void> {
    const attempt: Promise<void> = this.open().finally(() => {
      if (this.connecting === attempt) this.connecting = null;
    });
    this.connecting = attempt;
    return attempt;
  }

  /** One connection attempt with the stored identity. */
  private async open(): Promise<void> {
    const identity = await this.options.store.load();
    if (identity === null) throw new DeviceError('ERR_DEVICE_STORE', 'no identity is stored: provision the device first');
    const ca = this.options.ca ?? identity.caPem;
    if (ca === undefined) throw new DeviceError('ERR_DEVICE_INVALID_INPUT', 'no CA to verify the broker with: give the ca option');
    if (this.state === 'closed') throw new DeviceError('ERR_DEVICE_CLOSED', 'the device was closed');
    this.state = 'connecting';
    const generation = ++this.generation;
    let disconnectReason: string | undefined;
    let opened;
    try {
      opened = await connectOnce(
        {
          url: this.options.url,
          ca,
          clientId: identity.identity,
          credentials: { kind: 'certificate', certPem: identity.certPem, keyPem: identity.keyPem },
          ...(this.options.servername !== undefined ? { servername: this.options.servername } : {}),
          ...(this.options.keepaliveSeconds !== undefined ? { keepaliveSeconds: this.options.keepaliveSeconds } : {}),
          ...(this.options.connectTimeoutMs !== undefined ? { connectTimeoutMs: this.options.connectTimeoutMs } : {}),
        },
        (client) => {
          // Before CONNECT: a queued notice may arrive in the same read as the CONNACK.
          client.on('message', (topic, payload, packet) => this.onMessage(generation, identity.identity, topic, payload, packet));
          client.on('disconnect', (packet) => {
            disconnectReason = `disconnected by the broker (${hex(packet.reasonCode ?? 0)}${typeof packet.properties?.reasonString === 'string' ? `: ${packet.properties.reasonString}` : ''})`;
          });
        },
      );
    } catch (err) {
      if (this.generation === generation && this.state === 'connecting') this.state = this.lastIdentity === undefined ? 'idle' : 'offline';
      throw err;
    }
    const { client, connack, lastError } = opened;
    if (this.isClosed() || this.generation !== generation) {
      await endClient(client);
      throw new DeviceError('ERR_DEVICE_CLOSED', 'the device was closed while connecting');
    }
    const receiveMaximum = connack.properties?.receiveMaximum ?? 65_535;
    this.live = {
      client,
      generation,
      identity,
      window: Math.max(1, Math.min(this.options.maxInflight ?? 32, receiveMaximum)),
      why: () => disconnectReason ?? lastError()?.message ?? 'connection closed',
      renewalNoticed: false,
    };
    client.on('close', () => this.onClose(generation));
    this.state = 'online';
    this.attempts = 0;
    this.lastIdentity = identity.identity;
    this.emit('connected', { identity: identity.identity, certificateId: identity.certificateId });
    if (this.generation !== generation) return;
    // The CONNACK's notice first: the renewal-due notice arrives once subscribed.
    const due = renewalFromConnack(connack.properties?.userProperties);
    if (due !== null) this.renewalDue(this.live, due.notAfter, 'connack');
    await this.resubscribe(client, identity.identity, generation);
    if (this.generation !== generation) return;
    this.pump();
  }

  /** The renewal notice subscription and the user's, in one SUBSCRIBE. */
  private async resubscribe(client: MqttClient, identity: string, generation: number): Promise<void> {
    const notice = renewalDueTopic(identity);
    const refused = await this.subscribeOn(client, [[notice, 1], ...this.subscriptions]).catch((err: unknown) => {
      // A connection already replaced (a renewal's reconnect) is not worth a report.
      if (this.generation === generation) this.emitError(err);
      return [];
    });
    if (this.generation !== generation) return;
    for (const err of refused) {
      // A broker without provisioning may refuse the notice topic: renewal then relies on
      // the CONNACK property. A refused user subscription is reported and forgotten.
      if (err.topic === notice) continue;
      this.subscriptions.delete(err.topic);
      this.emitError(err);
    }
  }

  /** Subscribes; returns one error per refused filter (a lost connection or timeout throws). */
  private async subscribeOn(client: MqttClient, filters: Array<[string, 0 | 1 | 2]>): Promise<Array<DeviceError & { topic: string }>> {
    const map = Object.fromEntries(filters.map(([f, qos]) => [f, { qos }]));
    const refusal = (topic: string, code: number): DeviceError & { topic: string } =>
      Object.assign(new DeviceError('ERR_DEVICE_SUBSCRIBE', `the broker refused the subscription to ${topic} (${hex(code)})`, code), { topic });
    let granted;
    try {
      granted = await withDeadline(client.subscribeAsync(map), this.requestTimeout, 'SUBACK');
    } catch (err) {
      // A v5 refusal fails the whole SUBSCRIBE; its SUBACK has one code per filter, in the
      // order MQTT.js sent them (the map's key order).
      const codes = subackCodes(err);
      if (codes === null) throw err;
      return Object.keys(map).flatMap((topic, i) => {
        const code = codes[i];
        return code !== undefined && code >= 0x80 ? [refusal(topic, code)] : [];
      });
    }
    // v3.1.1 refusals are grants of 0x80.
    return granted.filter((g) => g.qos >= 0x80).map((g) => refusal(g.topic, g.qos));
  }

  private onMessage(generation: number, identity: string, topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (generation !== this.generation) return;
    if (topic === renewalDueTopic(identity)) {
      const o = jsonObjectOf(payload);
      const notice = o === null ? null : parseRenewalDue(o);
      if (notice !== null && notice.identity === identity) this.renewalDue(this.live, notice.notAfter, 'notice');
      return;
    }
    // Answers to the SDK's own requests (renew/json/…) are not the application's.
    if (topic.startsWith(deviceTopicPrefix(identity))) return;
    this.emit('message', { topic, payload, qos: packet.qos, retain: packet.retain, properties: packet.properties });
  }

  /** Told that the certificate should be renewed: said once per connection, acted on when worth it. */
  private renewalDue(live: Live | null, notAfter: Date | null, source: 'connack' | 'notice'): void {
    if (live === null || live !== this.live || live.renewalNoticed) return;
    live.renewalNoticed = true;
    this.emit('renewal-due', { notAfter, source });
    if (this.options.renewal?.auto === false || this.renewing !== null) return;
    if (!renewalWorthwhile(live.identity.certPem, live.identity.keyPem, new Date(), this.options.renewal?.minLifetimeUsed ?? 0.5)) return;
    this.renew().catch((err: unknown) => this.emitError(err));
  }

  private async renewNow(): Promise<void> {
    const live = this.live;
    if (live === null || this.state !== 'online') throw new DeviceError('ERR_DEVICE_CONNECTION', 'renew needs a connection');
    const next = await renewCertificate(live.client, live.identity, this.requestTimeout);
    // Stored before the reconnect: if the process dies now, the next start uses the new one.
    await this.options.store.save(next);
    this.emit('renewed', { identity: next.identity, certificateId: next.certificateId ?? '', notAfter: next.notAfter ?? new Date(0) });
    if (this.isClosed()) return;
    // Reconnect with the new certificate (its first use lets the broker revoke the old one).
    this.generation++;
    this.live = null;
    this.state = 'connecting';
    this.queue.requeueInFlight();
    // A clean end: PUBACKs still due on the old connection can complete their messages.
    await endClient(live.client);
    this.emit('disconnected', { reason: 'reconnecting with the renewed certificate', reconnecting: true });
    try {
      await this.openShared();
    } catch (err) {
      if (this.isClosed()) return;
      this.emitError(err);
      this.scheduleReconnect();
    }
  }

  private onClose(generation: number): void {
    const live = this.live;
    if (live === null || live.generation !== generation || generation !== this.generation) return;
    this.live = null;
    this.generation++;
    this.queue.requeueInFlight();
    live.client.end(true);
    if (this.state === 'closed') return;
    this.state = 'offline';
    const reconnecting = this.options.reconnect !== false;
    this.emit('disconnected', { reason: live.why(), reconnecting });
    if (reconnecting) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.state === 'closed' || this.options.reconnect === false) return;
    this.state = 'offline';
    const min = this.options.reconnect?.minDelayMs ?? 1000;
    const max = this.options.reconnect?.maxDelayMs ?? 60_000;
    const delay = Math.min(max, min * 2 ** Math.min(this.attempts, 20)) * (0.5 + Math.random() / 2);
    this.attempts++;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.connect().catch((err: unknown) => {
        if (this.state === 'closed') return;
        this.emitError(err);
        this.scheduleReconnect();
      });
    }, delay);
  }

  /** Sends waiting messages while the window has room. */
  private pump(): void {
    const live = this.live;
    if (live === null || this.state !== 'online') return;
    for (const msg of this.queue.take(live.window - this.queue.inFlight)) {
      live.client.publish(msg.topic, msg.payload, msg.options, (err) => this.settled(msg, err));
    }
  }

  /** A publish callback, from this connection or an older one (MQTT.js passes null or undefined for success). */
  private settled(msg: Outgoing, err: Error | null | undefined): void {
    if (err === undefined || err === null) {
      // Acknowledged (or QoS 0 written): done, whichever connection it went out on.
      if (this.queue.done(msg)) msg.resolve();
      this.pump();
      return;
    }
    const code = (err as Error & { code?: unknown }).code;
    if (typeof code === 'number' && code >= 0x80) {
      // The broker refused it (e.g. 0x87 not authorized): sending again would not help.
      if (this.queue.done(msg)) msg.reject(new DeviceError('ERR_DEVICE_PUBLISH', `the broker refused the message on ${msg.topic}: ${err.message}`, code));
      this.pump();
    }
    // Otherwise the connection failed: the message waits for the next one (onClose).
  }
}
