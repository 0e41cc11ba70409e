/**
 * What the SessionStore + RetainStore contract suites share: the fixture an adapter's test
 * hands in, the context a suite reads the current store from, and the builders and sorters
 * for records, messages and loaded state. Must not: hold tests (the suites do).
 */
import type { Message } from '../../src/broker/message.js';
import type { PersistedState, RetainStore, SessionRecord, SessionStore, StoredOutbound } from '../../src/broker/ports.js';

export type StoreUnderTest = SessionStore & RetainStore;

export interface StoreFixture {
  store: StoreUnderTest;
  /** Closes the current store and returns one over the same data. */
  reopen: () => Promise<StoreUnderTest>;
  /** Closes whatever is open and removes what the fixture created. */
  cleanup: () => Promise<void>;
}

/**
 * The store of the running test, read through a getter: `reopen()` replaces it (a durable
 * adapter hands back a new object), so a suite must not keep the first one.
 */
export interface ContractContext {
  readonly store: StoreUnderTest;
  /** Closes the store, opens one over the same data and returns what it loads. */
  reopen(): Promise<PersistedState>;
}

/** Every byte value, twice, in a scrambled order. */
export const ALL_BYTES = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 167 + 13) & 0xff));

export function message(overrides: Partial<Message> = {}): Message {
  return {
    topic: 'sensors/1/temp',
    payload: Buffer.from('21.5'),
    qos: 1,
    retain: false,
    properties: undefined,
    expiresAt: 0,
    origin: 'publisher-1',
    ...overrides,
  };
}

export function outbound(store: SessionStore, clientId: string, overrides: Partial<StoredOutbound> = {}): StoredOutbound {
  return {
    seq: store.nextSeq(),
    clientId,
    message: message(),
    qos: 1,
    retainFlag: false,
    subscriptionIds: [],
    state: 'queued',
    packetId: 0,
    ...overrides,
  };
}

export function session(clientId: string, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    clientId,
    protocolVersion: 5,
    expiryInterval: 3600,
    disconnectedAt: 0,
    subscriptions: [],
    ...overrides,
  };
}

export function flushed(store: SessionStore): Promise<void> {
  return new Promise((resolve) => store.afterFlush(resolve));
}

export function sortedSessions(state: PersistedState): SessionRecord[] {
  return [...state.sessions].sort((a, b) => a.clientId.localeCompare(b.clientId));
}

export function sortedRetained(state: PersistedState): Message[] {
  return [...state.retained].sort((a, b) => a.topic.localeCompare(b.topic));
}

export function incoming(state: PersistedState): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [clientId, ids] of state.incomingQos2) out[clientId] = [...ids].sort((a, b) => a - b);
  return out;
}

export function outboundKeys(state: PersistedState): string[] {
  return state.outbound.map((o) => `${o.clientId}:${o.seq}`);
}
