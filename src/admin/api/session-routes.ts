/**
 * `/api/v1/session`: signing in to the web console. POST with `{"token": "bst_…"}` signs in
 * with an admin token, POST with no body with the operator certificate the browser presented;
 * either way the answer sets the session cookie and carries the CSRF token the page sends
 * with every change. GET tells the page who is signed in; DELETE signs out. Owns: these
 * three answers and the cookie's attributes. Must not: check credentials itself (admin-auth.ts).
 *
 * SECURITY: the cookie is `HttpOnly` (no script reads it), `Secure`, `SameSite=Strict` (no
 * other site's page sends it) and `__Host-` prefixed; sign-in refuses a cross-origin page
 * (login CSRF would sign the operator's browser in as someone else).
 */
import type http from 'node:http';
import { z } from 'zod';
import { recordAdminChange } from './admin-change.js';
import { assertMayChange, authenticateAdmin, certificateCaller, cookieOf, refuseWhileBackingOff, sameOrigin, SESSION_COOKIE, tokenCaller, type AdminAuthOptions, type Caller } from './admin-auth.js';
import type { ConsoleSession, ConsoleSessions } from './console-sessions.js';
import { HttpError, readJsonBody, validate } from './http-io.js';
import type { Reply } from './router.js';
import type { AdminServices } from './services.js';
import { hashAdminToken } from './tokens.js';

export const SESSION_PATH = '/api/v1/session';

const signIn = z.object({ token: z.string().min(1).max(200) }).strict();

function view(sessions: ConsoleSessions, session: ConsoleSession): object {
  return {
    actor: { kind: session.actor.kind, name: session.actor.name },
    scope: session.scope,
    csrfToken: session.csrfToken,
    expiresAt: new Date(sessions.expiresAt(session)).toISOString(),
  };
}

function cookieHeader(value: string, maxAgeSeconds: number): string {
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=${maxAgeSeconds}`;
}

/** Answers a request to SESSION_PATH (before the operator routes: signing in needs no session). */
export async function sessionRoute(req: http.IncomingMessage, auth: AdminAuthOptions, s: AdminServices, maxBodyBytes: number): Promise<Reply> {
  const method = req.method ?? 'GET';
  if (method === 'GET') {
    const cookie = cookieOf(req, SESSION_COOKIE);
    if (cookie === undefined) throw new HttpError(401, 'not signed in to the console');
    const caller = authenticateAdmin(req, auth);
    return { status: 200, body: view(auth.sessions, caller.session!) };
  }
  if (method === 'DELETE') {
    const caller = authenticateAdmin(req, auth);
    if (caller.session === null) throw new HttpError(400, 'no console session to end (bearer and certificate callers have none)');
    assertMayChange(req, caller, true);
    auth.sessions.end(cookieOf(req, SESSION_COOKIE)!);
    return { status: 200, body: { loggedOut: true }, headers: { 'set-cookie': cookieHeader('', 0) } };
  }
  if (method !== 'POST') throw new HttpError(405, `method ${method} not allowed on ${SESSION_PATH}`, { allow: 'GET, POST, DELETE' });
  refuseWhileBackingOff(req, auth);
  if (!sameOrigin(req)) throw new HttpError(403, 'cross-origin sign-in refused');
  const body = await readJsonBody(req, maxBodyBytes);
  let caller: Caller;
  let proof: Parameters<ConsoleSessions['create']>[2];
  if (body === undefined) {
    caller = certificateCaller(req, auth);
    proof = { kind: 'certificate', fingerprint256: caller.fingerprint256! };
  } else {
    const { token } = validate(signIn, body);
    caller = tokenCaller(req, token, auth);
    proof = { kind: 'token', tokenHash: hashAdminToken(token) };
  }
  const { cookie, session } = auth.sessions.create(caller.actor, caller.scope, proof);
  recordAdminChange(s, { actor: caller.actor, action: 'console.signin', target: caller.actor.name, outcome: 'ok', detail: { scope: caller.scope } });
  return { status: 200, body: view(auth.sessions, session), headers: { 'set-cookie': cookieHeader(cookie, Math.floor((auth.sessions.expiresAt(session) - session.createdAt) / 1000)) } };
}
