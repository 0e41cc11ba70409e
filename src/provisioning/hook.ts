/**
 * The pre-provisioning hook: an HTTPS endpoint of the operator that allows or denies each
 * registration. Owns: the request (JSON POST), its deadline and reading the answer. Must
 * not: decide anything itself beyond "allow only on an explicit yes".
 *
 * SECURITY: fail closed. Anything but a 2xx answer of `{"allowProvisioning": true}` within
 * the deadline (at most 5 s) is a denial: a timeout, a refused connection, a certificate
 * that does not verify, a redirect, a body that is not JSON or is larger than 64 KiB.
 */
import { request } from 'node:https';
import { readFileSync } from 'node:fs';

export interface HookRequest {
  template: string;
  parameters: Record<string, string>;
  /** `claim:<serial>` or `provision-token:<id>`. */
  requester: string;
  clientId: string;
  certificateSerial: string;
}

export type HookVerdict = { allow: true } | { allow: false; reason: string };

const MAX_ANSWER_BYTES = 64 * 1024;

export interface HookTarget {
  url: string;
  /** A PEM file to verify the hook's server with (default: the system's trust store). */
  caFile?: string;
  timeoutMs: number;
}

export function callHook(target: HookTarget, body: HookRequest): Promise<HookVerdict> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (v: HookVerdict): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(v);
    };
    const payload = Buffer.from(JSON.stringify(body));
    let ca: Buffer | undefined;
    try {
      ca = target.caFile !== undefined ? readFileSync(target.caFile) : undefined;
    } catch (err) {
      done({ allow: false, reason: `the hook's CA file cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})` });
      return;
    }
    const req = request(target.url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': payload.length }, ...(ca !== undefined ? { ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) {
          req.destroy();
          done({ allow: false, reason: 'the hook answered more than 64 KiB' });
        } else chunks.push(c);
      });
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) return done({ allow: false, reason: `the hook answered HTTP ${status}` });
        try {
          const answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { allowProvisioning?: unknown };
          done(answer.allowProvisioning === true ? { allow: true } : { allow: false, reason: 'the hook denied provisioning' });
        } catch {
          done({ allow: false, reason: 'the hook answered something that is not JSON' });
        }
      });
      res.on('error', (err) => done({ allow: false, reason: `the hook's answer failed: ${err.message}` }));
    });
    const timer = setTimeout(() => {
      req.destroy();
      done({ allow: false, reason: `the hook did not answer within ${target.timeoutMs} ms` });
    }, target.timeoutMs);
    req.on('error', (err) => done({ allow: false, reason: `the hook cannot be reached: ${err.message}` }));
    req.end(payload);
  });
}
