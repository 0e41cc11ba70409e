/**
 * `/api/v1/certificates`: the built-in PKI's inventory (filtered, paged), one certificate,
 * issuing a device or server certificate (the bundle is the answer: key, chain and root;
 * nothing is left on the broker's disk) and revoking one with a reason (the CRL is re-signed
 * and the broker drops live sessions that used it). Owns: these endpoints' input checks,
 * status codes and change records. Must not: touch the PKI's files (the facade does).
 */
import { z } from 'zod';
import { BastionError } from '../../core/errors.js';
import { recordAdminChange } from './admin-change.js';
import { HttpError, validate } from './http-io.js';
import { ok, type Route } from './router.js';
import type { AdminServices, CertificatesFacade } from './services.js';

/** RFC 5280 reasons an operator gives from the console (the CA ones are not for leaves). */
const REASONS = ['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'privilegeWithdrawn'] as const;
const MAX_PAGE = 1000;

const listQuery = z
  .object({
    status: z.enum(['valid', 'revoked']).optional(),
    kind: z.enum(['root', 'intermediate', 'server', 'client', 'claim']).optional(),
    q: z.string().max(256).optional(),
    expiringWithinDays: z.coerce.number().int().min(0).max(36500).optional(),
    offset: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(100),
  })
  .strict();

const issueBody = z
  .object({
    commonName: z.string().min(1).max(64),
    profile: z.enum(['client', 'server']).default('client'),
    organizationalUnit: z.string().min(1).max(64).optional(),
    days: z.number().int().min(1).max(3650).optional(),
    sans: z.array(z.string().min(3).max(1024)).max(50).optional(),
  })
  .strict();

const revokeBody = z.object({ reason: z.enum(REASONS).default('unspecified') }).strict();

const SERIAL = /^[0-9A-Fa-f]{1,40}$/;

function needPki(s: AdminServices): CertificatesFacade {
  if (s.certificates === undefined || s.certificates === null) throw new HttpError(501, 'the built-in PKI is not set up in this data directory (bastion ca init)');
  return s.certificates;
}

/** The PKI's refusals as HTTP answers: unknown serial 404, CA key offline 409, no CA 501, bad input 400. */
function asHttp(err: unknown): unknown {
  if (!(err instanceof BastionError)) return err;
  if (err.code === 'ERR_PKI_UNKNOWN_SERIAL') return new HttpError(404, err.message);
  if (err.code === 'ERR_PKI_NO_CA') return new HttpError(501, err.message);
  if (err.code === 'ERR_PKI_ROOT_KEY_OFFLINE' || err.code === 'ERR_PKI_PASSPHRASE') return new HttpError(409, err.message);
  return new HttpError(400, err.message);
}

async function reading<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    throw asHttp(err);
  }
}

function serialOf(raw: string): string {
  if (!SERIAL.test(raw)) throw new HttpError(400, `"${raw}" is not a certificate serial number (hex digits)`);
  return raw.toUpperCase();
}

export function certificateRoutes(s: AdminServices): Route[] {
  const now = s.now ?? Date.now;
  return [
    {
      method: 'GET',
      path: /^\/api\/v1\/certificates$/,
      handler: async (ctx) => {
        const q = validate(listQuery, Object.fromEntries(ctx.query), 'query');
        const expiringBefore = q.expiringWithinDays === undefined ? undefined : new Date(now() + q.expiringWithinDays * 86_400_000);
        return ok(await reading(needPki(s).list({ status: q.status, kind: q.kind, q: q.q, expiringBefore, offset: q.offset, limit: q.limit })));
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/certificates\/([^/]+)$/,
      handler: async (ctx) => {
        const serial = serialOf(ctx.params[0]!);
        const found = await reading(needPki(s).get(serial));
        if (found === null) throw new HttpError(404, `no certificate with serial ${serial} in the inventory`);
        return ok(found);
      },
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/certificates$/,
      handler: async (ctx) => {
        const pki = needPki(s);
        const b = validate(issueBody, await ctx.body());
        try {
          const issued = await pki.issue(b);
          recordAdminChange(s, { actor: ctx.actor, action: 'cert.issue', target: issued.serialNumber, outcome: 'ok', detail: { commonName: issued.commonName, profile: b.profile } });
          return ok(issued, 201);
        } catch (err) {
          recordAdminChange(s, { actor: ctx.actor, action: 'cert.issue', target: b.commonName, outcome: 'invalid', detail: { error: (err as Error).message } });
          throw asHttp(err);
        }
      },
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/certificates\/([^/]+)\/revoke$/,
      handler: async (ctx) => {
        const pki = needPki(s);
        const serial = serialOf(ctx.params[0]!);
        const { reason } = validate(revokeBody, (await ctx.body()) ?? {});
        try {
          const r = await pki.revoke(serial, reason);
          recordAdminChange(s, { actor: ctx.actor, action: 'cert.revoke', target: serial, outcome: r.result === 'revoked' ? 'ok' : 'conflict', detail: { reason, commonName: r.certificate.commonName } });
          return ok(r.certificate);
        } catch (err) {
          const mapped = asHttp(err);
          recordAdminChange(s, { actor: ctx.actor, action: 'cert.revoke', target: serial, outcome: mapped instanceof HttpError && mapped.status === 404 ? 'not-found' : 'failed', detail: { reason, error: (err as Error).message } });
          throw mapped;
        }
      },
    },
  ];
}
