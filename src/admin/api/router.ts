/**
 * The admin API's route table: method + path pattern → handler. Owns: 404 for unknown
 * paths and 405 (with Allow) for a known path asked with the wrong method. Must not:
 * authenticate (admin-server does it before routing) or know any endpoint.
 */
import type http from 'node:http';
import type { Actor } from './admin-change.js';
import { HttpError } from './http-io.js';

export interface RouteContext {
  actor: Actor;
  /** Decoded path parameters, in pattern order. */
  params: string[];
  query: URLSearchParams;
  /** The parsed JSON body (undefined when empty); errors are HttpErrors (400, 413, 415). */
  body(): Promise<unknown>;
}

export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/**
 * A reply written by the handler itself (an event stream, a download): the server writes the
 * status and headers, then calls `write`, which ends `res` (or leaves it open until `closed`
 * fires, for a stream). `closed` fires when the client goes or the server stops.
 */
export interface StreamReply {
  status: number;
  headers: Record<string, string>;
  write(res: http.ServerResponse, closed: AbortSignal): void | Promise<void>;
}

export type Handler = (ctx: RouteContext) => Reply | StreamReply | Promise<Reply | StreamReply>;

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Anchored pattern over the path; capture groups are the parameters. */
  path: RegExp;
  handler: Handler;
  /** A POST that changes nothing (explain): a viewer may send it. */
  readOnly?: boolean;
}

export type RouteMatch = { handler: Handler; params: string[]; readOnly: boolean };

/** The handler for `method path`, or an HttpError 404 / 405. */
export function matchRoute(routes: readonly Route[], method: string, path: string): RouteMatch {
  const allowed: string[] = [];
  for (const route of routes) {
    const m = route.path.exec(path);
    if (m === null) continue;
    if (route.method !== method) {
      allowed.push(route.method);
      continue;
    }
    let params: string[];
    try {
      params = m.slice(1).map((p) => decodeURIComponent(p ?? ''));
    } catch {
      throw new HttpError(400, 'malformed percent-encoding in the path');
    }
    return { handler: route.handler, params, readOnly: route.readOnly === true };
  }
  if (allowed.length > 0) throw new HttpError(405, `method ${method} not allowed on ${path}`, { allow: [...new Set(allowed)].join(', ') });
  throw new HttpError(404, `no such endpoint: ${path}`);
}

export const ok = (body: unknown, status = 200): Reply => ({ status, body });

/**
 * A Server-Sent Events reply. `start` gets `send` (one event: its name and its JSON data) and
 * returns what stops it; it runs when the stream opens and the stop when the client goes or
 * the server stops.
 */
export function eventStream(start: (send: (event: string, data: unknown) => void) => () => void): StreamReply {
  return {
    status: 200,
    // no-transform: a proxy must not buffer or compress the stream.
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store, no-transform', 'x-accel-buffering': 'no' },
    write: (res, closed) => {
      // A reconnecting EventSource waits this long (the browser's default is 3 s).
      res.write('retry: 2000\n\n');
      const stop = start((event, data) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
      closed.addEventListener('abort', () => {
        stop();
        res.end();
      });
    },
  };
}
