/**
 * Who is calling the admin API: an operator client certificate (verified by TLS, with the
 * operators OU) or a bearer token (looked up by its SHA-256 hash), and a light per-IP
 * backoff after failed attempts. Owns: the 401/403/429 decisions. Must not: route or
 * change anything.
 *
 * SECURITY: fail closed: no credential, an unknown token, an unverified certificate → 401;
 * a verified certificate without the operators OU → 403 (it is someone, just not an
 * operator). A caller that keeps failing is refused (429) before its credential is looked at.
 */
import type { TLSSocket } from 'node:tls';
import type http from 'node:http';
import type { Actor } from './admin-change.js';
import { HttpError } from './http-io.js';
import type { TokenStore } from './services.js';
import { hashAdminToken } from './tokens.js';

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
  tokensEnabled: boolean;
  tokens: TokenStore;
  backoff: AuthFailureBackoff;
}

function valuesOf(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

const UNAUTHENTICATED = { 'www-authenticate': 'Bearer realm="bastion-admin"' };

/** The caller's identity, or an HttpError (401, 403, 429). */
export function authenticateAdmin(req: http.IncomingMessage, opts: AdminAuthOptions): Actor {
  const socket = req.socket as TLSSocket;
  const ip = socket.remoteAddress ?? 'unknown';
  const wait = opts.backoff.retryAfterMs(ip);
  if (wait > 0) throw new HttpError(429, 'too many failed authentication attempts; try again later', { 'retry-after': String(Math.ceil(wait / 1000)) });

  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (m === null) {
      opts.backoff.fail(ip);
      throw new HttpError(401, 'the Authorization header must be "Bearer <token>"', UNAUTHENTICATED);
    }
    if (!opts.tokensEnabled) {
      opts.backoff.fail(ip);
      throw new HttpError(401, 'bearer tokens are disabled on this admin API (admin.tokens: false)', UNAUTHENTICATED);
    }
    const found = opts.tokens.findTokenByHash(hashAdminToken(m[1]!));
    if (found === null) {
      opts.backoff.fail(ip);
      throw new HttpError(401, 'unknown or revoked token', UNAUTHENTICATED);
    }
    opts.backoff.succeed(ip);
    return { kind: 'token', name: found.name, remoteAddress: ip };
  }

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
  if (!valuesOf(subject.OU).includes(opts.operatorOu)) {
    throw new HttpError(403, `certificate "${commonName}" is not an operator (needs OU ${opts.operatorOu})`);
  }
  opts.backoff.succeed(ip);
  return { kind: 'certificate', name: commonName, remoteAddress: ip };
}
