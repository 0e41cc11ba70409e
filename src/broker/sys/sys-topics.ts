/**
 * The `$SYS/broker/...` topics, with the names Mosquitto uses (clients, messages, bytes,
 * subscriptions, retained count, load averages, uptime, version, heap), published as
 * retained QoS 0 messages through `broker.publish` every `intervalSeconds`.
 * Owns: the topic names, their values and the load averages. Must not: read the process or
 * the OS (the server passes the version and a heap reading in), or write to a socket.
 *
 * SECURITY: nothing here bypasses authorization on the way out: deliveries of $SYS messages
 * are checked with `canReceive` like any other, and SUBSCRIBE to `$SYS/...` needs a rule
 * that allows it (the default device policy grants it to operators only). A `#` or `+`
 * filter never matches a `$` topic [MQTT-4.7.2-1], and no client may publish to one (the
 * authorizer refuses `$` topics for publish).
 */
import type { TimerHandle } from '../../core/clock.js';
import type { Broker } from '../broker.js';
import { brokerStats, type BrokerStats } from './broker-stats.js';

export interface SysTopicsOptions {
  broker: Broker;
  /** Seconds between publications (> 0). */
  intervalSeconds: number;
  /** What `$SYS/broker/version` says, e.g. "bastion version 0.1.0". */
  version: string;
  /** Heap bytes in use, for `$SYS/broker/heap/current` (left out when absent). */
  heapBytes?: () => number;
}

/** Averaging windows of the load topics, as Mosquitto names them. */
const LOAD_WINDOWS: ReadonlyArray<readonly [string, number]> = [
  ['1min', 60],
  ['5min', 300],
  ['15min', 900],
];

/** What the load topics average: a per-minute rate of a monotonic counter. */
const LOAD_SERIES: ReadonlyArray<readonly [string, (s: BrokerStats) => number]> = [
  ['messages/received', (s) => s.counters.received[0] + s.counters.received[1] + s.counters.received[2]],
  ['messages/sent', (s) => s.counters.sent[0] + s.counters.sent[1] + s.counters.sent[2]],
  ['bytes/received', (s) => s.counters.receivedBytes],
  ['bytes/sent', (s) => s.counters.sentBytes],
  ['connections', (s) => s.counters.connectionsAccepted],
];

export const SYS_PREFIX = '$SYS/broker/';

export class SysTopics {
  private readonly broker: Broker;
  private readonly intervalMs: number;
  private readonly startedAt: number;
  /** The payload last published per topic: only changes are published again. */
  private readonly published = new Map<string, string>();
  /** Per load series: the counter at the last tick, and one average per window (per minute). */
  private readonly loads = LOAD_SERIES.map(() => ({ last: 0, averages: LOAD_WINDOWS.map(() => 0) }));
  private lastTick = 0;
  private timer: TimerHandle | null = null;
  private stopped = false;

  constructor(private readonly opts: SysTopicsOptions) {
    this.broker = opts.broker;
    this.intervalMs = Math.max(1, opts.intervalSeconds) * 1000;
    this.startedAt = this.broker.clock.now();
  }

  /** Publishes the first values at once, then every interval (the timer does not hold the process open). */
  start(): void {
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }

  /** Computes every value and publishes those that changed; re-arms the timer. */
  tick(): void {
    this.timer = null;
    if (this.stopped || this.broker.shuttingDown) return;
    const now = this.broker.clock.now();
    const stats = brokerStats(this.broker);
    this.updateLoads(stats, now);
    const c = stats.counters;
    this.put('version', this.opts.version);
    this.put('uptime', `${Math.floor((now - this.startedAt) / 1000)} seconds`);
    this.put('clients/connected', stats.connected);
    this.put('clients/disconnected', stats.disconnected);
    this.put('clients/total', stats.sessions);
    this.put('clients/maximum', c.connectedPeak);
    this.put('messages/received', c.received[0] + c.received[1] + c.received[2]);
    this.put('messages/sent', c.sent[0] + c.sent[1] + c.sent[2]);
    this.put('messages/stored', stats.retained);
    this.put('bytes/received', c.receivedBytes);
    this.put('bytes/sent', c.sentBytes);
    this.put('subscriptions/count', stats.subscriptions);
    this.put('retained messages/count', stats.retained);
    LOAD_SERIES.forEach(([name], i) => {
      LOAD_WINDOWS.forEach(([window], w) => this.put(`load/${name}/${window}`, this.loads[i]!.averages[w]!.toFixed(2)));
    });
    if (this.opts.heapBytes !== undefined) this.put('heap/current', this.opts.heapBytes());
    this.timer = this.broker.clock.setTimeout(() => this.tick(), this.intervalMs);
  }

  /**
   * Exponentially weighted moving averages of per-minute rates, as Mosquitto's load topics:
   * each tick moves the average towards the rate seen since the last tick by a weight that
   * depends on how long that was relative to the window.
   */
  private updateLoads(stats: BrokerStats, now: number): void {
    const first = this.lastTick === 0;
    const elapsedMs = now - this.lastTick;
    this.lastTick = now;
    LOAD_SERIES.forEach(([, read], i) => {
      const load = this.loads[i]!;
      const value = read(stats);
      const delta = value - load.last;
      load.last = value;
      if (first || elapsedMs <= 0) return;
      const perMinute = (delta * 60_000) / elapsedMs;
      LOAD_WINDOWS.forEach(([, seconds], w) => {
        const keep = Math.exp(-elapsedMs / (seconds * 1000));
        load.averages[w] = perMinute + keep * (load.averages[w]! - perMinute);
      });
    });
  }

  private put(name: string, value: string | number): void {
    const topic = SYS_PREFIX + name;
    const payload = String(value);
    // Unchanged values are skipped only when the retained copy serves later subscribers; with
    // mqtt.retainAvailable false every value goes out every interval, or one that never
    // changes (the version) would reach only those subscribed at start.
    if (this.broker.config.retainAvailable && this.published.get(topic) === payload) return;
    this.published.set(topic, payload);
    this.broker.publish({ topic, payload: Buffer.from(payload), qos: 0, retain: true, properties: undefined, expiresAt: 0, origin: '' });
  }
}
