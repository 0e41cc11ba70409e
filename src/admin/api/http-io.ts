/**
 * Request and response plumbing of the admin API: JSON replies, the capped body reader,
 * zod validation with the first problem named, and the HttpError type handlers throw.
 * Owns: status codes for malformed input (400, 413, 415). Must not: authenticate or
 * route.
 */
import type http from 'node:http';
import type { z } from 'zod';
import { readBodyCapped } from '../http-listen.js';

/** An expected failure with its HTTP status; the message goes to the client as JSON. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    // SECURITY: admin answers are never cached, and never sniffed as something else.
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

/**
 * Reads the body up to `limit` bytes and parses it as JSON. 413 past the limit (nothing
 * beyond it is buffered), 415 when it is not declared as JSON, 400 when it does not parse.
 * An empty body is `undefined`.
 */
export async function readJsonBody(req: http.IncomingMessage, limit: number): Promise<unknown> {
  const raw = await readBodyCapped(req, limit);
  // The connection is closed after the 413: the rest of an oversized body is not waited for.
  if (raw === 'too-large') throw new HttpError(413, `request body larger than ${limit} bytes`, { connection: 'close' });
  if (raw.length === 0) return undefined;
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new HttpError(415, 'expected content-type application/json');
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}

/** Validates `value` with `schema`; a failure is a 400 naming the first problem and where. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, what = 'body'): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (issue === undefined) throw new HttpError(400, `invalid ${what}`);
  const path = issue.path.length > 0 ? `${what}.${issue.path.map(String).join('.')}` : what;
  throw new HttpError(400, `${path}: ${issue.message}`);
}
