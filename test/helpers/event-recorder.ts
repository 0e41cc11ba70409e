/**
 * Records every security event a broker emits (`server.broker.events`) for tests, waitable
 * by type and content with a timeout. Must not: be imported by src/.
 */
import type { SecurityEvent, SecurityEvents, SecurityEventType } from '../../src/core/security-events.js';
import { Inbox } from '../integration/support.js';

const WAIT = 5000;

export type EventOf<T extends SecurityEventType> = Extract<SecurityEvent, { type: T }>;

/** Every event the broker emits from now on, waitable by type and content. */
export class EventRecorder {
  readonly inbox = new Inbox<SecurityEvent>();
  readonly stop: () => void;

  constructor(events: SecurityEvents) {
    this.stop = events.on((e) => this.inbox.push(e));
  }

  async waitFor<T extends SecurityEventType>(type: T, match: (e: EventOf<T>) => boolean): Promise<EventOf<T>> {
    const pick = (items: SecurityEvent[]): EventOf<T> | undefined => items.find((e): e is EventOf<T> => e.type === type && match(e as EventOf<T>));
    const items = await this.inbox.waitFor((all) => pick(all) !== undefined, WAIT, `a ${type} event`);
    return pick(items)!;
  }

  of<T extends SecurityEventType>(type: T, match: (e: EventOf<T>) => boolean = () => true): EventOf<T>[] {
    return this.inbox.items.filter((e): e is EventOf<T> => e.type === type && match(e as EventOf<T>));
  }
}
