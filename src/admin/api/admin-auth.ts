/**
 * Who is calling the admin API: an operator client certificate (verified by TLS, with the
 * operators OU, or the viewers OU), a bearer token (looked up by its SHA-256 hash), or a
 * console session cookie (made from one of those), with what scope; and a light per-IP
 * backoff after failed attempts. Owns: the 401/403/429 decisions, and whether a caller may
 * make a change (scope, CSRF token, origin). Must not: route or change anything.
 *
 * SECURITY: fail closed: no credential, an unknown token, an unverified certificate → 401;
 * a verified certificate without an operator OU → 403 (it is someone, just not an
 * operator). A caller that keeps failing is refused (429) before its credential is looked at.
 * A session is only as good as what made it: its token must still exist and a certificate
 * session's requests must come over a connection that presents that same certificate, so
 * revoking either ends the session at once.
 */
import type { TLSSocket } from 'node:tls';
import type http from 'node:http';
import type { Actor } from './admin-change.js';
import { csrfMatches, type ConsoleSession, type ConsoleSessions } from './console-sessions.js';
import { HttpError } from './http-io.js';
import type { AdminScope, TokenStore } from './services.js';
import { hashAdminToken } from './tokens.js';

/** SECURITY: the `__Host-` prefix makes browsers refuse it unless Secure, Path=/ and without Domain. */
export const SESSION_COOKIE = '__Host-bastion-session';

/** Failures from one IP before backoff starts. */
const FREE_FAILURES = 5;
const MAX_BACKOFF_MS = 60_000;
/** A quiet IP's failure count is forgotten after this long. */
const FORGET_AFTER_MS = 10 * 60_000;
const MAX_TRACKED_IPS = 10_000;

interface FailureRecord {
  failures: number;
  blockedUntil: number;
  last: number;
}

/**
 * A failed-authentication counter per IP with exponential backoff (1 s, 2 s, 4 s ... 60 s
 * after the fifth failure). Issue 5 brings real limits; this keeps guessing slow until then.
 */
export class AuthFailureBackoff {
  private readonly records = new Map<string, FailureRecord>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Milliseconds `ip` must still wait, 0 when it may try. */
  retryAfterMs(ip: string): number {
    const r = this.records.get(ip);
    if (r === undefined) return 0;
    return Math.max(0, r.blockedUntil - this.now());
  }

  fail(ip: string): void {
    const now = this.now();
    let r = this.records.get(ip);
    if (r !== undefined && now - r.last > FORGET_AFTER_MS) r = undefined;
    if (r === undefined) {
      // SECURITY: bounded memory: when full, forget the quiet ones; the map never grows without limit.
      if (this.records.size >= MAX_TRACKED_IPS) this.prune(now);
      if (this.records.size >= MAX_TRACKED_IPS) return;
      r = { failures: 0, blockedUntil: 0, last: now };
      this.records.set(ip, r);
    }
    r.failures++;
    r.last = now;
    if (r.failures >= FREE_FAILURES) r.blockedUntil = now + Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (r.failures - FREE_FAILURES));
  }

  succeed(ip: string): void {
    this.records.delete(ip);
  }

  private prune(now: number): void {
    for (const [ip, r] of this.records) if (now - r.last > FORGET_AFTER_MS && r.blockedUntil <= now) this.records.delete(ip);
  }
}

export interface AdminAuthOptions {
  operatorOu: string;
  /** Certificates with this OU sign in with the viewer scope; undefined: none do. */
  viewerOu?: string | undefined;
  tokensEnabled: boolean;
  tokens: TokenStore;
  backoff: AuthFailureBackoff;
  sessions: ConsoleSessions;
}

/** An authenticated caller: who (for the change log), what they may do, and their console session if any. */
export interface Caller {
  actor: Actor;
  scope: AdminScope;
  /** Null unless the request came with a console session cookie. */
  session: ConsoleSession | null;
  /** The verified certificate's SHA-256 fingerprint, for a certificate caller. */
  fingerprint256?: string;
}

function valuesOf(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

const UNAUTHENTICATED = { 'www-authenticate': 'Bearer realm="bastion-admin"' };

function ipOf(req: http.IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown';
}

/** The value of cookie `name` in the request, if any. */
export function cookieOf(req: http.IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** 429 while the caller's address is backing off. */
export function refuseWhileBackingOff(req: http.IncomingMessage, opts: AdminAuthOptions): void {
  const wait = opts.backoff.retryAfterMs(ipOf(req));
  if (wait > 0) throw new HttpError(429, 'too many failed authentication attempts; try again later', { 'retry-after': String(Math.ceil(wait / 1000)) });
}

/** The token's caller, or a 401 (counted against the address). */
export function tokenCaller(req: http.IncomingMessage, token: string, opts: AdminAuthOptions): Caller {
  const ip = ipOf(req);
  if (!opts.tokensEnabled) {
    opts.backoff.fail(ip);
    throw new HttpError(401, 'bearer tokens are disabled on this admin API (admin.tokens: false)', UNAUTHENTICATED);
  }
  const found = opts.tokens.findTokenByHash(hashAdminToken(token));
  if (found === null) {
    opts.backoff.fail(ip);
    throw new HttpError(401, 'unknown or revoked token', UNAUTHENTICATED);
  }
  opts.backoff.succeed(ip);
  return { actor: { kind: 'token', name: found.name, remoteAddress: ip }, scope: found.scope, session: null };
}

/** The operator certificate's caller (TLS verified it), or a 401/403. */
export function certificateCaller(req: http.IncomingMessage, opts: AdminAuthOptions): Caller {
  const socket = req.socket as TLSSocket;
  const ip = ipOf(req);
  const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : null;
  const presented = cert !== null && Object.keys(cert).length > 0;
  if (!presented) {
    opts.backoff.fail(ip);
    throw new HttpError(401, 'authentication required: an operator client certificate or a bearer token', UNAUTHENTICATED);
  }
  if (!socket.authorized) {
    opts.backoff.fail(ip);
    throw new HttpError(401, `client certificate not trusted (${String(socket.authorizationError ?? 'unverified')})`, UNAUTHENTICATED);
  }
  const subject = cert.subject as unknown as Record<string, string | string[] | undefined>;
  const commonName = valuesOf(subject.CN)[0] ?? '';
  const units = valuesOf(subject.OU);
  // The operators OU wins when a certificate names both.
  const scope: AdminScope | null = units.includes(opts.operatorOu) ? 'admin' : opts.viewerOu !== undefined && units.includes(opts.viewerOu) ? 'viewer' : null;
  if (scope === null) {
    throw new HttpError(403, `certificate "${commonName}" is not an operator (needs OU ${opts.operatorOu}${opts.viewerOu !== undefined ? ` or ${opts.viewerOu}` : ''})`);
  }
  opts.backoff.succeed(ip);
  return { actor: { kind: 'certificate', name: commonName, remoteAddress: ip }, scope, session: null, fingerprint256: cert.fingerprint256 };
}

/** The session's caller, re-checking what made it; a 401 (the page signs in again) otherwise. */
function sessionCaller(req: http.IncomingMessage, cookie: string, opts: AdminAuthOptions): Caller {
  const session = opts.sessions.find(cookie);
  // Not counted as a failed attempt: a stale cookie after a restart is normal, and 256 random bits are not guessed.
  if (session === null) throw new HttpError(401, 'console session expired or unknown; sign in again');
  const ip = ipOf(req);
  const actor: Actor = { ...session.actor, remoteAddress: ip };
  if (session.proof.kind === 'token') {
    const hash = session.proof.tokenHash;
    if (!opts.tokensEnabled || opts.tokens.findTokenByHash(hash) === null) {
      opts.sessions.endWhere((s) => s.proof.kind === 'token' && s.proof.tokenHash === hash);
      throw new HttpError(401, 'the token this console session was made with is revoked; sign in again');
    }
    return { actor, scope: session.scope, session };
  }
  // SECURITY: a certificate session lives on that certificate: a connection without it (or with
  // a revoked one, which TLS refuses) cannot ride the cookie.
  const socket = req.socket as TLSSocket;
  const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : null;
  if (cert === null || !socket.authorized || cert.fingerprint256 !== session.proof.fingerprint256) {
    throw new HttpError(401, 'this console session belongs to a certificate this connection did not present; sign in again');
  }
  return { actor, scope: session.scope, session };
}

/** The caller's identity and scope, or an HttpError (401, 403, 429). */
export function authenticateAdmin(req: http.IncomingMessage, opts: AdminAuthOptions): Caller {
  refuseWhileBackingOff(req, opts);
  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (m === null) {
      opts.backoff.fail(ipOf(req));
      throw new HttpError(401, 'the Authorization header must be "Bearer <token>"', UNAUTHENTICATED);
    }
    return tokenCaller(req, m[1]!, opts);
  }
  const cookie = cookieOf(req, SESSION_COOKIE);
  if (cookie !== undefined) return sessionCaller(req, cookie, opts);
  return certificateCaller(req, opts);
}

/** True when the request's Origin (if the browser sent one) is this server's own. */
export function sameOrigin(req: http.IncomingMessage): boolean {
  const origin = req.headers.origin;
  return origin === undefined || origin === `https://${req.headers.host ?? ''}`;
}

/**
 * Whether `caller` may send this change request (POST, PUT, DELETE). `readOnly`: a POST that
 * only reads (explain), which a viewer may send. Throws 403 with the reason.
 *
 * SECURITY: a cookie and a browser's client certificate are sent by the browser on its own,
 * also for a page of another site (cross-site request forgery); a bearer header is not. So a
 * session's change needs its CSRF token in `x-csrf-token` and a same-origin Origin, and a
 * certificate request that a browser sent (it carries an Origin) must come through a session.
 */
export function assertMayChange(req: http.IncomingMessage, caller: Caller, readOnly: boolean): void {
  if (caller.session !== null) {
    const header = req.headers['x-csrf-token'];
    if (!sameOrigin(req)) throw new HttpError(403, 'cross-origin request refused');
    if (!csrfMatches(caller.session, typeof header === 'string' ? header : undefined)) throw new HttpError(403, 'missing or wrong CSRF token (header x-csrf-token); reload the console');
  } else if (caller.actor.kind === 'certificate' && req.headers.origin !== undefined) {
    throw new HttpError(403, 'a browser request with a certificate needs a console session (sign in) and its CSRF token');
  }
  if (!readOnly && caller.scope !== 'admin') throw new HttpError(403, `${caller.actor.kind} "${caller.actor.name}" has the viewer scope: it may read, not change`);
}
