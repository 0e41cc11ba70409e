/**
 * `/api/v1/bans`: list, add (applied at once: matching live sessions are disconnected
 * with 0x98) and remove bans. Owns: these endpoints' input checks and replies. Must not:
 * decide what a ban matches (security/limits/ban-list does).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { BAN_KINDS, banApplies, type Ban } from '../../security/limits/ban-list.js';
import { recordAdminChange } from './admin-change.js';
import { HttpError, validate } from './http-io.js';
import { ok, type Route } from './router.js';
import type { AdminServices } from './services.js';

const newBan = z
  .object({
    kind: z.enum(BAN_KINDS),
    value: z.string().trim().min(1).max(256),
    reason: z.string().max(500).default(''),
    /** ISO 8601 end of the ban; absent with no ttlSeconds: permanent. */
    expiresAt: z.iso.datetime({ offset: true }).optional(),
    ttlSeconds: z.number().int().positive().max(10 * 365 * 86400).optional(),
  })
  .strict()
  .refine((b) => b.expiresAt === undefined || b.ttlSeconds === undefined, { message: 'give expiresAt or ttlSeconds, not both' })
  // SECURITY: a ban that can never match (a typo) would look like protection and be none.
  .refine((b) => b.kind !== 'ip' || isIP(b.value.replace(/^::ffff:/i, '')) !== 0, { path: ['value'], message: 'not an IPv4 or IPv6 address' })
  .refine((b) => b.kind !== 'certSerial' || /^[0-9A-Fa-f]{1,2}(?::?[0-9A-Fa-f]{1,2})*$/.test(b.value), { path: ['value'], message: 'not a hex certificate serial' });

function view(ban: Ban): Record<string, unknown> {
  return { ...ban, createdAt: new Date(ban.createdAt).toISOString(), expiresAt: ban.expiresAt === null ? null : new Date(ban.expiresAt).toISOString() };
}

export function banRoutes(s: AdminServices): Route[] {
  const now = s.now ?? Date.now;
  return [
    { method: 'GET', path: /^\/api\/v1\/bans$/, handler: () => ok({ bans: s.bans.list().map(view) }) },
    {
      method: 'POST',
      path: /^\/api\/v1\/bans$/,
      handler: async (ctx) => {
        const b = validate(newBan, await ctx.body());
        const at = now();
        const expiresAt = b.expiresAt !== undefined ? Date.parse(b.expiresAt) : b.ttlSeconds !== undefined ? at + b.ttlSeconds * 1000 : null;
        if (expiresAt !== null && expiresAt <= at) throw new HttpError(400, 'body.expiresAt: lies in the past');
        const ban = s.bans.add({ kind: b.kind, value: b.value, reason: b.reason, createdBy: `${ctx.actor.kind}:${ctx.actor.name}`, createdAt: at, expiresAt });
        // SECURITY: a ban bites at once: live sessions it selects are closed, and the
        // admission guard refuses their next CONNECT.
        const disconnected = s.broker.disconnectWhere((client) => banApplies(ban, client), `banned by operator ${ctx.actor.name}`);
        recordAdminChange(s.logger, { actor: ctx.actor, action: 'ban.add', target: `${ban.kind}:${ban.value}`, outcome: 'ok', detail: { id: ban.id, reason: ban.reason, expiresAt: view(ban).expiresAt, disconnected } });
        return ok({ ban: view(ban), disconnected }, 201);
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/bans\/([^/]+)$/,
      handler: (ctx) => {
        const raw = ctx.params[0]!;
        const id = /^[1-9][0-9]{0,15}$/.test(raw) ? Number(raw) : NaN;
        if (Number.isNaN(id)) throw new HttpError(400, `ban id must be a positive integer, not "${raw}"`);
        const removed = s.bans.remove(id);
        recordAdminChange(s.logger, { actor: ctx.actor, action: 'ban.remove', target: removed === null ? String(id) : `${removed.kind}:${removed.value}`, outcome: removed === null ? 'not-found' : 'ok', detail: { id } });
        if (removed === null) throw new HttpError(404, `no ban with id ${id}`);
        return ok({ removed: view(removed) });
      },
    },
  ];
}
