/**
 * The broker facade for apps (admin API, OTA): read who is connected, disconnect clients,
 * add admission checks. Owns: the plain, serializable view of a connected client, the
 * administrative actions on it, and the `ClientDirectory` port through which apps see the
 * clients of a whole cluster (cluster/cluster-admin.ts fills it in). Must not: hand out
 * sessions or channels (apps never reach into them, ARCHITECTURE "Imports"), or do I/O.
 */
import { ReasonCode } from '../protocol/reason-codes.js';
import type { AdmissionGuard, Broker, PublishQuota } from './broker.js';
import type { AuthorizedClient } from './ports.js';
import type { Session } from './session/session.js';
import { compareClientIds, positionAfter, prefixRange, SortedClientIds } from './sorted-client-ids.js';

/** One connected client as apps see it: plain data, safe to serialize. */
export interface ConnectedClientView {
  clientId: string;
  /** The node the client is connected to (a single broker: its own node id). */
  node: string;
  /** The authenticated principal (certificate identity, PSK identity, user name); null when anonymous. */
  principal: string | null;
  method: AuthorizedClient['identity']['method'];
  /** The authenticated user name (password, JWT, SCRAM login); null otherwise. */
  username: string | null;
  remoteAddress: string;
  listener: string;
  /** ISO 8601 time the current connection opened its session. */
  connectedSince: string;
  protocolVersion: number;
  subscriptions: number;
  certificate: { commonName: string; serialNumber: string; organizationalUnits: string[]; fingerprint256: string } | null;
  /** The negotiated TLS version, cipher, key-exchange group (hybrid post-quantum or classic) and resumption; null on plaintext. */
  tls: { version: string; cipher: string; group: string; resumed: boolean } | null;
}

/** A client with its subscription filters (the detail view). */
export interface ConnectedClientDetail extends ConnectedClientView {
  subscriptionFilters: Array<{ filter: string; qos: number }>;
  inflight: number;
  queued: number;
  /**
   * The publish limits that apply: the broker-wide `limits.client`, and whether a role quota
   * (the ACL's) replaces them for this client; null when limits are off.
   */
  quota: { publishRate: unknown; bandwidth: unknown; maxSubscriptions: number; roleQuota: boolean } | null;
}

export interface ClientPage {
  total: number;
  offset: number;
  limit: number;
  clients: ConnectedClientView[];
  /** In a cluster: the nodes that did not answer (their clients are missing from `total` and the page). */
  unreachableNodes?: string[];
}

/**
 * Where apps find connected clients and act on them: this broker's (BrokerApi.directory
 * by default), or every node's of a cluster (set with BrokerApi.useDirectory).
 */
export interface ClientDirectory {
  /** Connected clients ordered by client id (stable paging), `limit` capped at MAX_CLIENT_PAGE; `prefix`: only ids starting with it. */
  listClients(offset: number, limit: number, prefix?: string): Promise<ClientPage>;
  /** One connected client, or null when no client with this id is connected. */
  getClient(clientId: string): Promise<ConnectedClientDetail | null>;
  /** Disconnects one connected client (v5: 0x98 with `reason`); false when none with this id is connected. */
  kick(clientId: string, reason: string): Promise<boolean>;
}

/** A directory could not tell (a cluster node that owns the client id did not answer). */
export class DirectoryUnavailableError extends Error {
  override readonly name = 'DirectoryUnavailableError';
}

/** The offset and limit a listing uses: whole numbers, limit within 1..MAX_CLIENT_PAGE. */
export function clampPage(offset: number, limit: number): { offset: number; limit: number } {
  return { offset: Math.max(0, Math.floor(offset)), limit: Math.min(MAX_CLIENT_PAGE, Math.max(1, Math.floor(limit))) };
}

export { compareClientIds };

/** The largest page an app may ask for: a listing must not build an unbounded array. */
export const MAX_CLIENT_PAGE = 1000;

export class BrokerApi {
  private clusterDirectory: ClientDirectory | null = null;
  /** Made at the first listing: an app that never lists never pays for it. */
  private listingIndex: SortedClientIds | null = null;
  /** This broker's clients as a ClientDirectory. */
  private readonly localDirectory: ClientDirectory = {
    listClients: (offset, limit, prefix) => Promise.resolve(this.listClients(offset, limit, prefix)),
    getClient: (clientId) => Promise.resolve(this.getClient(clientId)),
    kick: (clientId, reason) => Promise.resolve(this.kick(clientId, reason)),
  };

  constructor(private readonly broker: Broker) {}

  /** This broker's node id (every client view names it). */
  get nodeId(): string {
    return this.broker.nodeId;
  }

  /** Where apps find clients: the cluster's directory once one is set, else this broker's. */
  get directory(): ClientDirectory {
    return this.clusterDirectory ?? this.localDirectory;
  }

  /** Makes `directory` the cluster's (null: this broker's again). */
  useDirectory(directory: ClientDirectory | null): void {
    this.clusterDirectory = directory;
  }

  /** This broker's connected clients ordered by client id (stable paging), `limit` capped at MAX_CLIENT_PAGE. */
  listClients(offset = 0, limit = 100, prefix?: string): ClientPage {
    const page = clampPage(offset, limit);
    const sorted = this.sortedIds();
    const { start, end } = prefix === undefined || prefix === '' ? { start: 0, end: sorted.length } : prefixRange(sorted, prefix);
    const clients: ConnectedClientView[] = [];
    for (let i = start + page.offset; i < Math.min(end, start + page.offset + page.limit); i++) {
      const found = this.find(sorted[i]!);
      if (found !== null) clients.push(this.view(found[0], found[1]));
    }
    return { total: end - start, offset: page.offset, limit: page.limit, clients };
  }

  /**
   * The ids of this broker's connected clients after `after` (null: from the first), in
   * listing order, at most `limit`; `total` counts them all (a cluster listing merges these).
   */
  clientIds(after: string | null, limit: number, prefix?: string): { total: number; ids: string[] } {
    const sorted = this.sortedIds();
    const range = prefix === undefined ? { start: 0, end: sorted.length } : prefixRange(sorted, prefix);
    const start = after === null ? range.start : Math.max(range.start, positionAfter(sorted, after));
    return { total: range.end - range.start, ids: sorted.slice(start, Math.min(range.end, start + Math.max(0, Math.floor(limit)))) };
  }

  /** The connected client ids in listing order (the index catches up with what changed since the last listing). */
  private sortedIds(): readonly string[] {
    const connected: string[] = [];
    for (const [session] of this.online()) connected.push(session.clientId);
    return (this.listingIndex ??= new SortedClientIds()).refresh(connected);
  }

  /** The list view of one connected client, or null. */
  clientView(clientId: string): ConnectedClientView | null {
    const found = this.find(clientId);
    return found === null ? null : this.view(found[0], found[1]);
  }

  /** One connected client, or null when no client with this id is connected. */
  getClient(clientId: string): ConnectedClientDetail | null {
    const found = this.find(clientId);
    if (found === null) return null;
    const [session, client] = found;
    return {
      ...this.view(session, client),
      subscriptionFilters: [...session.subscriptions.values()].map((s) => ({ filter: s.filter, qos: s.qos })),
      inflight: session.inflightCount,
      queued: session.queuedCount,
      quota: this.quotaOf(client),
    };
  }

  private quotaOf(client: AuthorizedClient): ConnectedClientDetail['quota'] {
    const { limits } = this.broker;
    if (!limits.enabled) return null;
    const roleQuota = this.broker.quotas?.clientQuota(client, limits.client, Date.now()) !== undefined;
    return { publishRate: limits.client.publishRate, bandwidth: limits.client.bandwidth, maxSubscriptions: limits.client.maxSubscriptions, roleQuota };
  }

  /**
   * Disconnects one connected client (v5: DISCONNECT 0x98 Administrative action with
   * `reason`). Returns false when no client with this id is connected.
   */
  kick(clientId: string, reason: string): boolean {
    if (this.find(clientId) === null) return false;
    return this.broker.disconnectWhere((c) => c.clientId === clientId, ReasonCode.AdministrativeAction, reason).length > 0;
  }

  /** Disconnects every connected client `match` selects (v5: 0x98 with `reason`); returns their ids. */
  disconnectWhere(match: (client: AuthorizedClient) => boolean, reason: string): string[] {
    return this.broker.disconnectWhere(match, ReasonCode.AdministrativeAction, reason);
  }

  /**
   * Sets the publish quota of every connected client `match` selects (a throttle; null lifts
   * it back to unlimited for this connection, `quotaFor` may also return the client's normal
   * quota). Returns their client ids. New connections get their quota where sessions open
   * (the broker's ClientQuotaSource), so a throttle that must outlive a reconnect lives there too.
   */
  setPublishQuota(match: (client: AuthorizedClient) => boolean, quotaFor: (client: AuthorizedClient) => PublishQuota | null): string[] {
    const changed: string[] = [];
    for (const [session, owner] of this.broker.owners) {
      const client = this.broker.clients.get(session);
      if (client === undefined || !match(client)) continue;
      owner.replacePublishQuota(quotaFor(client));
      changed.push(owner.clientId);
    }
    return changed;
  }

  /**
   * Reads and resets each session's delivery counters (messages and bytes sent to its client
   * since the last call): `read` is called once per session that received something, with
   * the client it last knew. One reader only (behaviour detection): a second would see halves.
   */
  drainDeliveries(read: (client: AuthorizedClient, messages: number, bytes: number) => void): void {
    for (const session of this.broker.sessions.values()) {
      if (session.sentMessages === 0) continue;
      const client = this.broker.clients.get(session);
      const messages = session.sentMessages;
      const bytes = session.sentBytes;
      session.sentMessages = 0;
      session.sentBytes = 0;
      if (client !== undefined) read(client, messages, bytes);
    }
  }

  /** Adds a check every authenticated client passes before its session opens. */
  addAdmissionGuard(guard: AdmissionGuard): void {
    this.broker.addAdmissionGuard(guard);
  }

  private online(): Array<[Session, AuthorizedClient]> {
    const out: Array<[Session, AuthorizedClient]> = [];
    for (const session of this.broker.owners.keys()) {
      const client = this.broker.clients.get(session);
      if (client !== undefined) out.push([session, client]);
    }
    return out;
  }

  private find(clientId: string): [Session, AuthorizedClient] | null {
    const session = this.broker.sessions.get(clientId);
    if (session === undefined || !this.broker.owners.has(session)) return null;
    const client = this.broker.clients.get(session);
    return client === undefined ? null : [session, client];
  }

  private view(session: Session, client: AuthorizedClient): ConnectedClientView {
    const cert = client.identity.certificate;
    return {
      clientId: session.clientId,
      node: this.broker.nodeId,
      principal: client.principal,
      method: client.identity.method,
      username: client.identity.username ?? null,
      remoteAddress: client.identity.remoteAddress,
      listener: client.identity.listener,
      connectedSince: new Date(session.connectedAt).toISOString(),
      protocolVersion: session.protocolVersion,
      subscriptions: session.subscriptions.size,
      certificate:
        cert === undefined
          ? null
          : { commonName: cert.commonName, serialNumber: cert.serialNumber, organizationalUnits: [...cert.organizationalUnits], fingerprint256: cert.fingerprint256 },
      tls: client.identity.tls !== undefined ? { ...client.identity.tls } : null,
    };
  }
}
