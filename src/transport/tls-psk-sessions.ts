/**
 * TLS-PSK identities across session resumption. Owns: remembering which PSK identity a
 * session ticket belongs to, and recovering it when a client resumes. Must not: decide
 * whether the identity is still valid (tls-context.ts checks it against the PSK file).
 *
 * Why: on resumption OpenSSL skips the PSK callback, so Node never says who the client
 * is. TLS 1.2 keeps the identity inside the session, which travels in the ticket (read
 * back with readSession). TLS 1.3 does not (OpenSSL builds the external-PSK session
 * without it), but a resumed session's master key is the ticket's PSK, which the server
 * saw as its own session's master key once it had issued the ticket. So after a
 * PSK-identified connection's first application data (its tickets are out by then) the
 * SHA-256 of that key is mapped to the identity, and a resumption that presents it finds
 * it again. Measured on Node 26.12.1 / OpenSSL 3.5.9 with Node clients.
 *
 * SECURITY: tickets are encrypted and authenticated with the listener's ticket keys, so
 * neither source can be forged by a client; only hashes of master keys are kept; the map
 * is bounded in size and age. A broker process that did not issue the ticket (shared
 * ticket keys) has no entry: the client is then not PSK-identified and is refused where
 * an identity is required, never given someone else's.
 */
import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { readSession } from './tls-session.js';

/** Node's default `sessionTimeout` (300 s): the server accepts no ticket older than this. */
const TICKET_LIFETIME_MS = 300_000;
/** At most this many remembered tickets: past it the oldest are forgotten (those clients do a full PSK handshake). */
const MAX_TICKETS = 100_000;

function keyOf(masterKey: Buffer): string {
  return createHash('sha256').update(masterKey).digest('base64');
}

export class PskSessionIdentities {
  private readonly tickets = new Map<string, { identity: string; expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Remembers the ticket a PSK-identified socket was given, once OpenSSL has issued it. */
  rememberTicket(socket: TLSSocket, identity: string): void {
    socket.once('data', () => {
      const session = socket.getSession();
      const masterKey = session !== undefined ? readSession(session).masterKey : undefined;
      if (masterKey === undefined || masterKey.length === 0) return;
      const key = keyOf(masterKey);
      this.tickets.delete(key);
      this.tickets.set(key, { identity, expiresAt: this.now() + TICKET_LIFETIME_MS });
      if (this.tickets.size > MAX_TICKETS) this.prune();
    });
  }

  /** The PSK identity of a resumed session, or undefined when it was not a PSK session we know. */
  recover(socket: TLSSocket): string | undefined {
    const session = socket.getSession();
    if (session === undefined) return undefined;
    const fields = readSession(session);
    if (fields.pskIdentity !== undefined) return fields.pskIdentity;
    if (fields.masterKey === undefined || fields.masterKey.length === 0) return undefined;
    const entry = this.tickets.get(keyOf(fields.masterKey));
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.tickets.delete(keyOf(fields.masterKey));
      return undefined;
    }
    return entry.identity;
  }

  /** How many tickets are remembered (for tests and metrics). */
  get size(): number {
    return this.tickets.size;
  }

  /** Drops expired entries, then the oldest until the map is within its bound. */
  private prune(): void {
    const now = this.now();
    for (const [key, entry] of this.tickets) if (entry.expiresAt <= now) this.tickets.delete(key);
    for (const key of this.tickets.keys()) {
      if (this.tickets.size <= MAX_TICKETS) break;
      this.tickets.delete(key);
    }
  }
}
