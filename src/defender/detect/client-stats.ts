/**
 * Behaviour metrics per identity (issue 15 item 1): counts what each identity did during
 * one window (messages and bytes each way, message size, distinct topics, denials,
 * failures, connects, disconnects, source addresses, session duration) and closes the
 * window into datapoints for the evaluator. Owns: the input event union, the per-window
 * state and its bounds. Must not: decide anything (evaluator.ts does), know the broker's
 * internals, do I/O or keep history beyond the open window (baselines live in the evaluator).
 *
 * SECURITY: memory is bounded per identity (fixed-size sketch, capped sets) and in total
 * (`maxIdentities`, `maxAddresses`): a flood of identities, topics or addresses cannot grow
 * it. Events beyond a bound are counted in `overflow`, never dropped silently.
 */
import { DEFENDER_METRICS } from '../../core/defender-config.js';
import { DistinctSketch } from './distinct-sketch.js';

/** What the wiring feeds in. Names are from the client's side: `sent` = the client published. */
export type BehaviourEvent =
  /** A session opened for an authenticated identity. */
  | { kind: 'connect'; identity: string; role?: string; clientId: string; remote: string; at: number }
  /** A session of the identity closed (any reason). */
  | { kind: 'disconnect'; identity: string; at: number }
  /** The identity published a message that the broker accepted (bytes: whole packet or payload, consistently). */
  | { kind: 'publish'; identity: string; topic: string; bytes: number; at: number }
  /** The broker delivered a message to the identity. */
  | { kind: 'deliver'; identity: string; topic: string; bytes: number; at: number }
  /** The identity subscribed (granted or not: a denial also comes as authz-denied). */
  | { kind: 'subscribe'; identity: string; filter: string; at: number }
  /** Authentication refused; `identity` is what the client claimed (untrusted). */
  | { kind: 'auth-failure'; remote: string; identity?: string; at: number }
  /** Authorization refused a publish, subscribe, will or delivery. */
  | { kind: 'authz-denied'; identity: string; topic: string; at: number };

/** The metrics of a datapoint (the list is core's: the config schema names them). */
export const METRIC_NAMES = DEFENDER_METRICS;
export type MetricName = (typeof METRIC_NAMES)[number];

/** The role of the per-address datapoints (authentication failures by source address). */
export const ADDRESS_ROLE = '$address';

/** One identity's behaviour over one closed window. */
export interface Datapoint {
  identity: string;
  role: string;
  windowStart: number;
  windowEnd: number;
  metrics: Record<MetricName, number>;
  /** Topic keys published to in the window (first `topicLevels` levels), at most `maxTopicKeys`. */
  topicKeys: string[];
  /** Source addresses of the sessions opened in the window, at most `maxAddressesPerIdentity`. */
  addresses: string[];
  /** Client ids of the sessions opened in the window, at most `maxClientIds`. */
  clientIds: string[];
}

export interface ClientStatsOptions {
  /** How many identities are tracked at once; beyond it new identities are counted in `overflow`. */
  maxIdentities?: number;
  /** How many source addresses with authentication failures are tracked per window. */
  maxAddresses?: number;
  /** Topic levels kept as a key for the "new topic" rule (0: the full topic). */
  topicLevels?: number;
  maxTopicKeys?: number;
  maxAddressesPerIdentity?: number;
  maxClientIds?: number;
  /** Windows an identity may stay idle and disconnected before its entry is freed. */
  idleWindowsToForget?: number;
  defaultRole?: string;
}

/** Counters of one identity for the open window, plus its open sessions (which outlive windows). */
class IdentityWindow {
  role: string;
  sent = 0;
  bytesSent = 0;
  received = 0;
  bytesReceived = 0;
  sizeMax = 0;
  subscribes = 0;
  wildcardSubscribes = 0;
  authzDenials = 0;
  authFailures = 0;
  connects = 0;
  disconnects = 0;
  openSessions = 0;
  concurrentMax = 0;
  /** Start of the oldest open session (approximation: sessions are not told apart). */
  openSince = 0;
  sessionMin = 0;
  active = false;
  idleWindows = 0;
  /** Made at the window's first topic and dropped at its end: an idle identity holds none (~330 bytes each). */
  topics: DistinctSketch | null = null;
  /**
   * The last few distinct topics published in this window, newest first: a device repeating
   * or cycling through its few topics skips the sketch and key work (both idempotent).
   */
  recentTopics: string[] = [];
  topicKeys: string[] = [];
  addresses: string[] = [];
  clientIds: string[] = [];

  constructor(role: string) {
    this.role = role;
  }

  reset(): void {
    this.sent = this.bytesSent = this.received = this.bytesReceived = this.sizeMax = 0;
    this.subscribes = this.wildcardSubscribes = this.authzDenials = this.authFailures = 0;
    this.connects = this.disconnects = this.sessionMin = 0;
    this.concurrentMax = this.openSessions;
    this.active = false;
    this.topics = null;
    if (this.recentTopics.length > 0) this.recentTopics = [];
    if (this.topicKeys.length > 0) this.topicKeys = [];
    if (this.addresses.length > 0) this.addresses = [];
    if (this.clientIds.length > 0) this.clientIds = [];
  }
}

/** Topics remembered per identity and window to skip repeated work (a device's usual handful). */
const RECENT_TOPICS = 4;

type CappedList = 'topicKeys' | 'addresses' | 'clientIds';

/**
 * Adds `value` to one of `e`'s lists unless it is there; false when the cap refused it. A
 * first value gets an array of its own size: a push onto an empty array reserves 17 slots
 * (~150 bytes), kept by every connected identity.
 */
function addCapped(e: IdentityWindow, key: CappedList, value: string, cap: number): boolean {
  const list = e[key];
  if (list.includes(value)) return true;
  if (list.length >= cap) return false;
  if (list.length === 0) e[key] = [value];
  else list.push(value);
  return true;
}

/** The topic key of `topic`: its first `levels` levels (0: all). */
export function topicKey(topic: string, levels: number): string {
  if (levels <= 0) return topic;
  let at = -1;
  for (let i = 0; i < levels; i++) {
    at = topic.indexOf('/', at + 1);
    if (at < 0) return topic;
  }
  return topic.slice(0, at);
}

export class ClientStats {
  private readonly identities = new Map<string, IdentityWindow>();
  private readonly addressFailures = new Map<string, number>();
  private windowStart: number;
  private readonly opts: Required<ClientStatsOptions>;
  /** Events not fully counted because a bound was reached (identities, addresses, keys). */
  overflow = 0;

  constructor(now: number, options: ClientStatsOptions = {}) {
    this.windowStart = now;
    this.opts = {
      maxIdentities: options.maxIdentities ?? 100_000,
      maxAddresses: options.maxAddresses ?? 10_000,
      topicLevels: options.topicLevels ?? 1,
      maxTopicKeys: options.maxTopicKeys ?? 16,
      maxAddressesPerIdentity: options.maxAddressesPerIdentity ?? 4,
      maxClientIds: options.maxClientIds ?? 4,
      idleWindowsToForget: options.idleWindowsToForget ?? 60,
      defaultRole: options.defaultRole ?? 'device',
    };
  }

  get size(): number {
    return this.identities.size;
  }

  private entry(identity: string, create: boolean, role?: string): IdentityWindow | undefined {
    let e = this.identities.get(identity);
    if (e === undefined) {
      if (!create) return undefined;
      if (this.identities.size >= this.opts.maxIdentities) {
        this.overflow++;
        return undefined;
      }
      e = new IdentityWindow(role ?? this.opts.defaultRole);
      this.identities.set(identity, e);
    } else if (role !== undefined) e.role = role;
    e.active = true;
    return e;
  }

  observe(ev: BehaviourEvent): void {
    switch (ev.kind) {
      case 'connect': {
        const e = this.entry(ev.identity, true, ev.role);
        if (e === undefined) return;
        e.connects++;
        if (e.openSessions === 0) e.openSince = ev.at;
        e.openSessions++;
        if (e.openSessions > e.concurrentMax) e.concurrentMax = e.openSessions;
        if (!addCapped(e, 'addresses', ev.remote, this.opts.maxAddressesPerIdentity)) this.overflow++;
        if (!addCapped(e, 'clientIds', ev.clientId, this.opts.maxClientIds)) this.overflow++;
        return;
      }
      case 'disconnect': {
        const e = this.entry(ev.identity, false);
        if (e === undefined) return;
        e.disconnects++;
        if (e.openSessions > 0) {
          const seconds = Math.max(0, (ev.at - e.openSince) / 1000);
          e.sessionMin = e.sessionMin === 0 ? seconds : Math.min(e.sessionMin, seconds);
          e.openSessions--;
          if (e.openSessions > 0) e.openSince = ev.at;
        }
        return;
      }
      case 'publish':
        this.published(ev.identity, ev.topic, ev.bytes);
        return;
      case 'deliver':
        this.delivered(ev.identity, 1, ev.bytes);
        return;
      case 'subscribe': {
        const e = this.entry(ev.identity, true);
        if (e === undefined) return;
        e.subscribes++;
        if (ev.filter.includes('#') || ev.filter.includes('+')) e.wildcardSubscribes++;
        (e.topics ??= new DistinctSketch()).add(ev.filter);
        return;
      }
      case 'authz-denied': {
        const e = this.entry(ev.identity, true);
        if (e === undefined) return;
        e.authzDenials++;
        return;
      }
      case 'auth-failure': {
        // SECURITY: the claimed identity is untrusted: it is counted only on an identity
        // already known (one that authenticated), so made-up names cannot fill the table.
        if (ev.identity !== undefined) {
          const e = this.entry(ev.identity, false);
          if (e !== undefined) e.authFailures++;
        }
        const n = this.addressFailures.get(ev.remote);
        if (n !== undefined) this.addressFailures.set(ev.remote, n + 1);
        else if (this.addressFailures.size < this.opts.maxAddresses) this.addressFailures.set(ev.remote, 1);
        else this.overflow++;
        return;
      }
    }
  }

  /**
   * A publish, without building an event object: the broker's publish path calls this once
   * per accepted PUBLISH, so it allocates nothing unless a topic key is new in the window.
   */
  published(identity: string, topic: string, bytes: number): void {
    const e = this.entry(identity, true);
    if (e === undefined) return;
    e.sent++;
    e.bytesSent += bytes;
    if (bytes > e.sizeMax) e.sizeMax = bytes;
    // Adding a topic twice changes nothing (the sketch and the key set are idempotent), so a
    // topic among the identity's last few, what telemetry mostly is, costs a few comparisons.
    const recent = e.recentTopics;
    for (let i = 0; i < recent.length; i++) if (recent[i] === topic) return;
    if (recent.length >= RECENT_TOPICS) recent.pop();
    recent.unshift(topic);
    (e.topics ??= new DistinctSketch()).add(topic);
    if (!addCapped(e, 'topicKeys', topicKey(topic, this.opts.topicLevels), this.opts.maxTopicKeys)) this.overflow++;
  }

  /** `messages` deliveries of `bytes` in all to the identity (read in bulk from the broker's counters). */
  delivered(identity: string, messages: number, bytes: number): void {
    const e = this.entry(identity, true);
    if (e === undefined) return;
    e.received += messages;
    e.bytesReceived += bytes;
  }

  /**
   * Closes the open window at `now`: one datapoint per identity active in it or connected
   * during it, and one per source address with authentication failures (role `$address`).
   */
  closeWindow(now: number): Datapoint[] {
    const start = this.windowStart;
    const out: Datapoint[] = [];
    for (const [identity, e] of this.identities) {
      if (!e.active && e.openSessions === 0) {
        if (++e.idleWindows >= this.opts.idleWindowsToForget) this.identities.delete(identity);
        continue;
      }
      e.idleWindows = 0;
      out.push({
        identity,
        role: e.role,
        windowStart: start,
        windowEnd: now,
        metrics: {
          messagesSent: e.sent,
          bytesSent: e.bytesSent,
          messagesReceived: e.received,
          bytesReceived: e.bytesReceived,
          messageSizeMean: e.sent === 0 ? 0 : e.bytesSent / e.sent,
          messageSizeMax: e.sizeMax,
          distinctTopics: e.topics?.estimate() ?? 0,
          subscribes: e.subscribes,
          wildcardSubscribes: e.wildcardSubscribes,
          authzDenials: e.authzDenials,
          authFailures: e.authFailures,
          connects: e.connects,
          disconnects: e.disconnects,
          distinctAddresses: e.addresses.length,
          concurrentSessionsMax: e.concurrentMax,
          sessionSecondsMin: e.sessionMin,
        },
        topicKeys: e.topicKeys,
        addresses: e.addresses,
        clientIds: e.clientIds,
      });
      e.reset();
    }
    for (const [remote, failures] of this.addressFailures) {
      const metrics = Object.fromEntries(METRIC_NAMES.map((m) => [m, 0])) as Record<MetricName, number>;
      metrics.authFailures = failures;
      out.push({ identity: `addr:${remote}`, role: ADDRESS_ROLE, windowStart: start, windowEnd: now, metrics, topicKeys: [], addresses: [remote], clientIds: [] });
    }
    this.addressFailures.clear();
    this.windowStart = now;
    return out;
  }
}
