/**
 * The broker facade for apps (admin API, OTA): read who is connected, disconnect clients,
 * add admission checks. Owns: the plain, serializable view of a connected client and the
 * administrative actions on it. Must not: hand out sessions or channels (apps never reach
 * into them, ARCHITECTURE "Imports"), or do I/O.
 */
import { ReasonCode } from '../protocol/reason-codes.js';
import type { AdmissionGuard, Broker } from './broker.js';
import type { AuthorizedClient } from './ports.js';
import type { Session } from './session/session.js';

/** One connected client as apps see it: plain data, safe to serialize. */
export interface ConnectedClientView {
  clientId: string;
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
}

export interface ClientPage {
  total: number;
  offset: number;
  limit: number;
  clients: ConnectedClientView[];
}

/** The largest page an app may ask for: a listing must not build an unbounded array. */
export const MAX_CLIENT_PAGE = 1000;

export class BrokerApi {
  constructor(private readonly broker: Broker) {}

  /** Connected clients ordered by client id (stable paging), `limit` capped at MAX_CLIENT_PAGE. */
  listClients(offset = 0, limit = 100): ClientPage {
    const safeOffset = Math.max(0, Math.floor(offset));
    const safeLimit = Math.min(MAX_CLIENT_PAGE, Math.max(1, Math.floor(limit)));
    const online = this.online();
    online.sort((a, b) => (a[0].clientId < b[0].clientId ? -1 : a[0].clientId > b[0].clientId ? 1 : 0));
    const clients = online.slice(safeOffset, safeOffset + safeLimit).map(([session, client]) => this.view(session, client));
    return { total: online.length, offset: safeOffset, limit: safeLimit, clients };
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
    };
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
