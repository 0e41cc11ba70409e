/**
 * Retained-message semantics [MQTT-3.3.1-5..-12]: set, replace, clear with an empty
 * payload, and lookup by filter. Owns: the in-memory index. Must not: decide who may see
 * a message (the broker checks authorization at delivery).
 *
 * `$SYS/...` messages are held in memory only: they are the broker's live state, rewritten
 * every interval (broker/sys), so storing them would write the database on every tick and
 * bring back stale values after a restart, even with $SYS turned off (Mosquitto does not
 * persist them either). No client can publish to a `$` topic, so only the broker's own
 * publications take this path.
 */
import type { Clock } from '../../core/clock.js';
import { topicMatches } from '../../protocol/topic.js';
import type { Message } from '../message.js';
import type { RetainStore } from '../ports.js';

/** Retained messages under this prefix live in memory only (see the header). */
const VOLATILE_PREFIX = '$SYS/';

function durable(topic: string): boolean {
  return !topic.startsWith(VOLATILE_PREFIX);
}

export class RetainedMessages {
  private readonly byTopic = new Map<string, Message>();

  constructor(
    private readonly store: RetainStore | null,
    private readonly clock: Clock,
  ) {}

  get size(): number {
    return this.byTopic.size;
  }

  /**
   * Loads messages from the store at start-up without writing them back. A `$SYS` message
   * stored by an older version is dropped, and removed from the store.
   */
  restore(messages: Iterable<Message>): void {
    for (const m of messages) {
      if (durable(m.topic)) this.byTopic.set(m.topic, m);
      else this.store?.setRetained(m.topic, null);
    }
  }

  /** Applies a PUBLISH with the retain flag: an empty payload clears [MQTT-3.3.1-10]. */
  update(message: Message): void {
    if (message.payload.length === 0) {
      if (this.byTopic.delete(message.topic) && durable(message.topic)) this.store?.setRetained(message.topic, null);
      return;
    }
    const stored: Message = { ...message, retain: true };
    this.byTopic.set(message.topic, stored);
    if (durable(message.topic)) this.store?.setRetained(message.topic, stored);
  }

  /** Retained messages whose topic matches `filter`; expired ones are removed on the way. */
  match(filter: string): Message[] {
    const now = this.clock.now();
    const out: Message[] = [];
    const exact = !filter.includes('+') && !filter.includes('#');
    if (exact) {
      const m = this.byTopic.get(filter);
      if (m !== undefined) this.keepIfLive(m, now, out);
      return out;
    }
    for (const m of this.byTopic.values()) {
      if (topicMatches(filter, m.topic)) this.keepIfLive(m, now, out);
    }
    return out;
  }

  private keepIfLive(m: Message, now: number, out: Message[]): void {
    if (m.expiresAt !== 0 && m.expiresAt <= now) {
      this.byTopic.delete(m.topic);
      if (durable(m.topic)) this.store?.setRetained(m.topic, null);
      return;
    }
    out.push(m);
  }
}
