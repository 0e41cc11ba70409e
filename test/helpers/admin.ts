/**
 * Real HTTPS requests to Bastion's admin API for tests: with a bearer token, an operator
 * (or any) client certificate, or nothing; raw bodies for the 400/413 paths; an optional
 * loopback source address (127.0.0.x) to act as "another IP".
 * Must not: be imported by src/ (test-only).
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { TestClientFiles, TestPki } from './pki.js';

export interface AdminCall {
  method?: string;
  path: string;
  token?: string;
  /** Client certificate and key to present. */
  client?: TestClientFiles;
  /** JSON body (serialized here). */
  body?: unknown;
  /** Raw body bytes, sent as is (with `contentType`, default application/json). */
  rawBody?: Buffer | string;
  contentType?: string;
  localAddress?: string;
}

export interface AdminAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body (undefined when empty or not JSON). */
  json: Record<string, unknown> & { error?: string };
  text: string;
}

export function adminRequest(pki: TestPki, port: number, call: AdminCall): Promise<AdminAnswer> {
  const payload = call.rawBody !== undefined ? Buffer.from(call.rawBody) : call.body !== undefined ? Buffer.from(JSON.stringify(call.body)) : undefined;
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        path: call.path,
        method: call.method ?? 'GET',
        ca: readFileSync(pki.caCert),
        ...(call.client !== undefined ? { cert: readFileSync(call.client.cert), key: readFileSync(call.client.key) } : {}),
        ...(call.localAddress !== undefined ? { localAddress: call.localAddress } : {}),
        agent: false,
        headers: {
          ...(call.token !== undefined ? { authorization: `Bearer ${call.token}` } : {}),
          ...(payload !== undefined ? { 'content-type': call.contentType ?? 'application/json', 'content-length': payload.length } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: AdminAnswer['json'] = {};
          try {
            json = JSON.parse(text) as AdminAnswer['json'];
          } catch {
            // Not JSON: the test asserts on `text` or `status`.
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json, text });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
