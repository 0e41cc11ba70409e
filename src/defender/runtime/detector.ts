/**
 * Behaviour detection in the running broker (issue 15 items 1 and 2): the broker's
 * ClientActivity port and a SecurityEvents subscriber feeding ClientStats, and the window
 * tick that closes a window into datapoints and evaluates them. Owns: the mapping from
 * clients and events to identities, and the per-client-id takeover counts the live audit
 * reads. Must not: act on an alarm (response/responder.ts does) or own a timer (the
 * composition root ticks it, so tests and simulations drive the windows).
 *
 * SECURITY: an identity is the authenticated principal (certificate identity, user name),
 * never a client-chosen string: a device cannot spread its behaviour over made-up names.
 * A client without a principal (an anonymous listener the operator allowed) is tracked by
 * client id, prefixed so it cannot pose as a principal.
 */
import type { AuthorizedClient, ClientActivity } from '../../broker/ports.js';
import type { SecurityEvent } from '../../core/security-events.js';
import { ClientStats, type Datapoint } from '../detect/client-stats.js';
import { Evaluator, type AlarmChange, type LearnedState } from '../detect/evaluator.js';
import type { Rule } from '../detect/rules.js';

/** The identity detection tracks a client under. */
export function identityOf(client: { principal: string | null; clientId: string }): string {
  return client.principal ?? `client:${client.clientId}`;
}

export interface DetectorOptions {
  rules: readonly Rule[];
  windowMs: number;
  topicLevels: number;
  maxIdentities: number;
  maxAddresses: number;
  /** The role a client's datapoints are grouped under (the first role bound to it). */
  roleOf: (client: AuthorizedClient) => string;
  now: () => number;
}

/** Takeovers of one client id within the takeover window. */
export interface TakeoverCount {
  clientId: string;
  count: number;
  windowMs: number;
}

/** Identities whose last client is remembered after their sessions closed (about 1 KB each). */
const MAX_RECENT_CLIENTS = 10_000;

/** Client ids tracked for takeovers; beyond this, new ones are not counted until the window resets. */
const MAX_TAKEOVER_IDS = 10_000;

export class Detector implements ClientActivity {
  readonly stats: ClientStats;
  readonly evaluator: Evaluator;
  private readonly opts: DetectorOptions;
  /** Open connections per client id: a second open of the same id is a takeover. */
  private readonly openIds = new Map<string, number>();
  private takeoverCounts = new Map<string, number>();
  private takeoverWindowStart: number;
  /** The last connected client of each identity with a session open (a ban needs its certificate or user name). */
  private readonly liveClients = new Map<string, { client: AuthorizedClient; sessions: number }>();
  /** The same for identities whose sessions all closed lately (a reconnect storm is often between sessions when judged), oldest first. */
  private readonly recentClients = new Map<string, AuthorizedClient>();
  /** Reads the broker's delivery counters (BrokerApi.drainDeliveries), set once the broker exists; null: none counted. */
  drainDeliveries: ((read: (client: AuthorizedClient, messages: number, bytes: number) => void) => void) | null = null;
  /** Called after each window with its datapoints (cluster: share what was learned). */
  onWindow: ((datapoints: readonly Datapoint[]) => void) | null = null;
  /** Called when an identity's first session on this node opens (cluster: fetch what another node learned). */
  onIdentityOpened: ((identity: string) => void) | null = null;
  /** Called when an identity's last session on this node closes (cluster: hand over what was learned). */
  onIdentityClosed: ((identity: string) => void) | null = null;

  constructor(opts: DetectorOptions) {
    this.opts = opts;
    const now = opts.now();
    this.stats = new ClientStats(now, { maxIdentities: opts.maxIdentities, maxAddresses: opts.maxAddresses, topicLevels: opts.topicLevels });
    this.evaluator = new Evaluator(opts.rules, { maxIdentities: opts.maxIdentities });
    this.takeoverWindowStart = now;
  }

  // ---- ClientActivity (the broker's hot paths: O(1), no throw) ----

  opened(client: AuthorizedClient): void {
    const identity = identityOf(client);
    const open = this.openIds.get(client.clientId) ?? 0;
    if (open > 0 && (this.takeoverCounts.has(client.clientId) || this.takeoverCounts.size < MAX_TAKEOVER_IDS)) {
      this.takeoverCounts.set(client.clientId, (this.takeoverCounts.get(client.clientId) ?? 0) + 1);
    }
    this.openIds.set(client.clientId, open + 1);
    const live = this.liveClients.get(identity);
    if (live === undefined) {
      this.liveClients.set(identity, { client, sessions: 1 });
      this.onIdentityOpened?.(identity);
    } else {
      live.client = client;
      live.sessions++;
    }
    this.stats.observe({ kind: 'connect', identity, role: this.opts.roleOf(client), clientId: client.clientId, remote: client.identity.remoteAddress, at: this.opts.now() });
  }

  closed(client: AuthorizedClient): void {
    const identity = identityOf(client);
    const open = this.openIds.get(client.clientId) ?? 0;
    if (open <= 1) this.openIds.delete(client.clientId);
    else this.openIds.set(client.clientId, open - 1);
    const live = this.liveClients.get(identity);
    if (live !== undefined && --live.sessions <= 0) {
      this.liveClients.delete(identity);
      this.recentClients.delete(identity);
      this.recentClients.set(identity, live.client);
      if (this.recentClients.size > MAX_RECENT_CLIENTS) this.recentClients.delete(this.recentClients.keys().next().value!);
      this.onIdentityClosed?.(identity);
    }
    this.stats.observe({ kind: 'disconnect', identity, at: this.opts.now() });
  }

  published(client: AuthorizedClient, topic: string, bytes: number): void {
    this.stats.published(identityOf(client), topic, bytes);
  }

  subscribed(client: AuthorizedClient, filter: string): void {
    this.stats.observe({ kind: 'subscribe', identity: identityOf(client), filter, at: this.opts.now() });
  }

  // ---- security events ----

  /** The SecurityEvents subscriber: failures and denials. */
  readonly onEvent = (event: SecurityEvent, at: number): void => {
    if (event.type === 'auth.failure') {
      // SECURITY: the claimed name is untrusted; ClientStats counts it only for an identity it knows.
      const claimed = event.username ?? event.clientId;
      this.stats.observe({ kind: 'auth-failure', remote: event.remoteAddress, ...(claimed !== '' ? { identity: claimed } : {}), at });
    } else if (event.type === 'connection.refused' && (event.stage === 'accept' || event.stage === 'tls')) {
      // An address that keeps trying after it was banned (refused at accept: bans and
      // address lists only), or whose TLS client certificate failed, is failing to log in
      // too: without this, the brute-force ban at the 10th failure would hide the rest of a
      // credential-stuffing run from detection.
      this.stats.observe({ kind: 'auth-failure', remote: event.remoteAddress, at });
    } else if (event.type === 'authz.denied') {
      this.stats.observe({ kind: 'authz-denied', identity: identityOf(event), topic: event.topic, at });
    }
  };

  // ---- windows ----

  /** Closes the window at `now` and evaluates it; returns the alarm changes. */
  tick(now: number): AlarmChange[] {
    this.drainDeliveries?.((client, messages, bytes) => this.stats.delivered(identityOf(client), messages, bytes));
    const datapoints = this.stats.closeWindow(now);
    const changes = this.evaluator.evaluate(datapoints);
    if (now - this.takeoverWindowStart >= this.takeoverWindowMs()) {
      this.takeoverCounts = new Map();
      this.takeoverWindowStart = now;
    }
    this.onWindow?.(datapoints);
    return changes;
  }

  /** Takeovers are counted over ten windows (five minutes by default). */
  private takeoverWindowMs(): number {
    return this.opts.windowMs * 10;
  }

  /** Client ids taken over at least once in the current takeover window. */
  takeovers(): TakeoverCount[] {
    const windowMs = this.takeoverWindowMs();
    return [...this.takeoverCounts].map(([clientId, count]) => ({ clientId, count, windowMs }));
  }

  /** A connected (or lately connected) client of `identity` on this node, or null. */
  liveClient(identity: string): AuthorizedClient | null {
    return this.liveClients.get(identity)?.client ?? this.recentClients.get(identity) ?? null;
  }

  exportState(identity: string): LearnedState | null {
    return this.evaluator.exportState(identity);
  }

  importState(identity: string, learned: LearnedState): boolean {
    return this.evaluator.importState(identity, learned);
  }
}
