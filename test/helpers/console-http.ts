/**
 * HTTPS requests as the web console (or a forger) sends them: with a session cookie, a CSRF
 * header, an Origin, a bearer token or a client certificate, over a fresh connection each
 * time (so a certificate is presented, or not, per request). Also reads Server-Sent Events.
 * Must not: be imported by src/ (test-only).
 */
import https from 'node:https';
import type { IncomingMessage } from 'node:http';

export interface ConsoleCall {
  method?: string;
  path: string;
  /** The `__Host-bastion-session` cookie value. */
  cookie?: string;
  csrf?: string;
  origin?: string;
  token?: string;
  cert?: { cert: string; key: string };
  body?: unknown;
}

export interface ConsoleAnswer {
  status: number;
  headers: IncomingMessage['headers'];
  json: Record<string, unknown> & { error?: string };
  text: string;
}

export interface ConsoleTarget {
  port: number;
  caPem: string;
}

function options(t: ConsoleTarget, call: ConsoleCall, payload: Buffer | undefined): https.RequestOptions {
  return {
    host: '127.0.0.1',
    port: t.port,
    servername: 'localhost',
    path: call.path,
    method: call.method ?? 'GET',
    ca: t.caPem,
    agent: false,
    ...(call.cert !== undefined ? { cert: call.cert.cert, key: call.cert.key } : {}),
    headers: {
      host: `localhost:${t.port}`,
      ...(call.cookie !== undefined ? { cookie: `__Host-bastion-session=${call.cookie}` } : {}),
      ...(call.csrf !== undefined ? { 'x-csrf-token': call.csrf } : {}),
      ...(call.origin !== undefined ? { origin: call.origin } : {}),
      ...(call.token !== undefined ? { authorization: `Bearer ${call.token}` } : {}),
      ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
    },
  };
}

export function consoleRequest(t: ConsoleTarget, call: ConsoleCall): Promise<ConsoleAnswer> {
  const payload = call.body !== undefined ? Buffer.from(JSON.stringify(call.body)) : undefined;
  return new Promise((resolve, reject) => {
    const req = https.request(options(t, call, payload), (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: ConsoleAnswer['json'] = {};
        try {
          json = JSON.parse(text) as ConsoleAnswer['json'];
        } catch {
          // Not JSON (a page, an event stream, NDJSON): the text is there.
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json, text });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** The session cookie's value from a sign-in answer. */
export function sessionCookie(a: ConsoleAnswer): string {
  const set = a.headers['set-cookie'] ?? [];
  for (const c of set) {
    const m = /^__Host-bastion-session=([^;]*)/.exec(c);
    if (m !== null) return m[1]!;
  }
  throw new Error(`no session cookie in ${JSON.stringify(set)}`);
}

/** Opens an event stream and resolves with the first `count` events of `name` (then closes it). */
export function readEvents(t: ConsoleTarget, call: ConsoleCall, name: string, count: number, timeoutMs: number): Promise<{ status: number; headers: IncomingMessage['headers']; events: unknown[] }> {
  return new Promise((resolve, reject) => {
    const req = https.request(options(t, call, undefined), (res) => {
      const events: unknown[] = [];
      let buffer = '';
      const timer = setTimeout(() => {
        req.destroy();
        reject(new Error(`timed out after ${events.length} of ${count} "${name}" events`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, events });
      };
      if (res.statusCode !== 200) {
        res.resume();
        return done();
      }
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(frame)?.[1];
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          if (event === name && data !== undefined) events.push(JSON.parse(data) as unknown);
          if (events.length >= count) return done();
        }
      });
    });
    req.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
    });
    req.end();
  });
}
