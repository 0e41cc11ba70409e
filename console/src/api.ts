/**
 * The one door to the admin API: fetch with the session cookie, JSON in and out, the CSRF
 * header on every change, `{error}` replies turned into ApiError, and a 401 sending the
 * operator back to the login page. Owns: the session held in memory. Must not: render.
 *
 * SECURITY: the CSRF token lives only in this module's memory (never localStorage), and
 * the session cookie is HttpOnly: script never sees it.
 */

export type Scope = 'admin' | 'viewer';

export interface Session {
  actor: { kind: string; name: string };
  scope: Scope;
  csrfToken: string;
  expiresAt?: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let current: Session | null = null;
let onSignedOut: (reason: string) => void = () => {};

export function session(): Session | null {
  return current;
}

export function setSession(s: Session | null): void {
  current = s;
}

/** Called when a request answers 401: the app shows the login page with the reason. */
export function onUnauthorized(handler: (reason: string) => void): void {
  onSignedOut = handler;
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

interface Options {
  /** Send this as the JSON body; undefined: no body at all (no content-type either). */
  body?: unknown;
  /** Do not treat a 401 as the end of the session (the login call itself). */
  allow401?: boolean;
}

async function errorText(res: Response): Promise<string> {
  try {
    const body: unknown = await res.json();
    if (typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string') return (body as { error: string }).error;
  } catch {
    // not JSON: fall through to the status line
  }
  return `${res.status} ${res.statusText || 'request failed'}`.trim();
}

export async function api<T>(method: Method, path: string, opts: Options = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  // SECURITY: every state-changing request proves it comes from this page (double submit
  // of the token the session call handed out; the cookie alone is not enough).
  if (method !== 'GET' && current !== null) headers['x-csrf-token'] = current.csrfToken;
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store', ...(body !== undefined ? { body } : {}) });
  } catch {
    throw new ApiError(0, 'The broker did not answer (network error). Check that it is running and try again.');
  }
  if (!res.ok) {
    const message = await errorText(res);
    if (res.status === 401 && opts.allow401 !== true) {
      current = null;
      onSignedOut(`Your session has ended: ${message}. Sign in again.`);
    }
    throw new ApiError(res.status, message);
  }
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export const get = <T>(path: string): Promise<T> => api<T>('GET', path);
export const post = <T>(path: string, body?: unknown): Promise<T> => api<T>('POST', path, body === undefined ? {} : { body });
export const del = <T>(path: string): Promise<T> => api<T>('DELETE', path);

/** `/path?a=1&b=2`, leaving out empty values. */
export function withQuery(path: string, query: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s === '' ? path : `${path}?${s}`;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Where a live stream stands, for the page's status line. */
export type StreamState = 'connecting' | 'live' | 'interrupted';

/**
 * Opens a Server-Sent Events stream of the admin API and hands each `event`'s parsed JSON to
 * `onData`; `onState` follows the connection. Returns the close (call it when the page goes:
 * the server then keeps no subscriber for a page not shown). A malformed message is skipped.
 */
export function openStream(path: string, event: string, onData: (data: unknown) => void, onState: (state: StreamState) => void): () => void {
  const es = new EventSource(path);
  es.addEventListener(event, (ev) => {
    try {
      onData(JSON.parse((ev as MessageEvent<string>).data) as unknown);
      onState('live');
    } catch {
      // the next message comes soon and carries the whole state again
    }
  });
  es.onopen = () => onState('live');
  es.onerror = () => {
    onState('interrupted');
    // CLOSED: the browser gave up (e.g. 401): ask the session, which signs out on 401.
    if (es.readyState === EventSource.CLOSED) get('/api/v1/session').catch(() => {});
  };
  return () => es.close();
}
