/**
 * Console sessions: what an operator's sign-in (an admin token, or an operator certificate)
 * is exchanged for, carried by an HttpOnly cookie. Owns: the session records, their idle and
 * absolute lifetimes, the cookie value and the CSRF token of each. Must not: check a token or
 * a certificate (admin-auth.ts does, before and at every request) or touch HTTP.
 *
 * SECURITY: only the SHA-256 of the cookie value is kept, so a memory dump does not hand out
 * live sessions; the CSRF token is a second, independent random value the page reads from
 * the sign-in reply and echoes in a header (the cookie alone cannot make a change). Sessions
 * live in memory: a restart signs everyone out, which is the safe direction.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Actor } from './admin-change.js';
import type { AdminScope } from './services.js';

/** Signed-in console sessions end after this long without a request... */
export const SESSION_IDLE_MS = 30 * 60_000;
/** ...and after this long in any case. */
export const SESSION_MAX_AGE_MS = 8 * 3600_000;
/** SECURITY: bounded memory; the oldest session goes when a new one would pass this. */
const MAX_SESSIONS = 1000;

/** How the session's operator proved who they are; re-checked at every request. */
export type SessionProof = { kind: 'token'; tokenHash: string } | { kind: 'certificate'; fingerprint256: string };

export interface ConsoleSession {
  readonly actor: Actor;
  readonly scope: AdminScope;
  readonly proof: SessionProof;
  readonly csrfToken: string;
  readonly createdAt: number;
  lastSeen: number;
}

function digest(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

export class ConsoleSessions {
  /** By the SHA-256 of the cookie value; insertion order is age order. */
  private readonly sessions = new Map<string, ConsoleSession>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A new session and the cookie value that names it (given to the browser once). */
  create(actor: Actor, scope: AdminScope, proof: SessionProof): { cookie: string; session: ConsoleSession } {
    this.sweep();
    while (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const cookie = randomBytes(32).toString('base64url');
    const at = this.now();
    const session: ConsoleSession = { actor, scope, proof, csrfToken: randomBytes(32).toString('base64url'), createdAt: at, lastSeen: at };
    this.sessions.set(digest(cookie), session);
    return { cookie, session };
  }

  /** The live session the cookie names (its idle clock restarts), or null. */
  find(cookie: string): ConsoleSession | null {
    const key = digest(cookie);
    const session = this.sessions.get(key);
    if (session === undefined) return null;
    const at = this.now();
    if (at - session.lastSeen > SESSION_IDLE_MS || at - session.createdAt > SESSION_MAX_AGE_MS) {
      this.sessions.delete(key);
      return null;
    }
    session.lastSeen = at;
    return session;
  }

  /** When the session ends at the latest (absolute lifetime). */
  expiresAt(session: ConsoleSession): number {
    return session.createdAt + SESSION_MAX_AGE_MS;
  }

  end(cookie: string): boolean {
    return this.sessions.delete(digest(cookie));
  }

  /** Ends every session `match` selects (a revoked token's); returns how many. */
  endWhere(match: (s: ConsoleSession) => boolean): number {
    let n = 0;
    for (const [key, s] of this.sessions) {
      if (!match(s)) continue;
      this.sessions.delete(key);
      n++;
    }
    return n;
  }

  get size(): number {
    return this.sessions.size;
  }

  private sweep(): void {
    const at = this.now();
    for (const [key, s] of this.sessions) if (at - s.lastSeen > SESSION_IDLE_MS || at - s.createdAt > SESSION_MAX_AGE_MS) this.sessions.delete(key);
  }
}

/** SECURITY: constant-time comparison of the header's CSRF token with the session's. */
export function csrfMatches(session: ConsoleSession, presented: string | undefined): boolean {
  if (presented === undefined) return false;
  const a = Buffer.from(session.csrfToken, 'utf8');
  const b = Buffer.from(presented, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}
