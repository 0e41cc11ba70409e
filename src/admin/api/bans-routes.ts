/**
 * `/api/v1/bans`: list (`?list=deny|allow`, `?kind=`), add (a ban by default, or an allow
 * entry with `list: "allow"`; applied at once: live sessions the list now refuses are
 * disconnected with 0x98) and remove entries. Owns: these endpoints' input checks and
 * replies. Must not: decide what an entry matches (security/limits/ban-list does).
 */
import { z } from 'zod';
import { BAN_KINDS, BAN_LISTS, canonicalBanValue, type Ban } from '../../security/limits/ban-list.js';
import { recordAdminChange } from './admin-change.js';
import { HttpError, validate } from './http-io.js';
import { ok, type Route } from './router.js';
import type { AdminServices } from './services.js';

const newBan = z
  .object({
    kind: z.enum(BAN_KINDS),
    value: z.string().min(1).max(256),
    /** deny (default): a ban; allow: an allow-list entry. */
    list: z.enum(BAN_LISTS).default('deny'),
    reason: z.string().max(500).default(''),
    /** ISO 8601 end of the entry; absent with no ttlSeconds: permanent. */
    expiresAt: z.iso.datetime({ offset: true }).optional(),
    ttlSeconds: z.number().int().positive().max(10 * 365 * 86400).optional(),
  })
  .strict()
  .refine((b) => b.expiresAt === undefined || b.ttlSeconds === undefined, { message: 'give expiresAt or ttlSeconds, not both' })
  // SECURITY: a value that can never match (a typo) would look like protection and be none.
  .superRefine((b, ctx) => {
    const c = canonicalBanValue(b.kind, b.value);
    if (!c.ok) ctx.addIssue({ code: 'custom', path: ['value'], message: `${b.kind} ${c.error}` });
  });

const listQuery = z.object({ list: z.enum(BAN_LISTS).optional(), kind: z.enum(BAN_KINDS).optional() }).strict();

function view(ban: Ban): Record<string, unknown> {
  return { ...ban, createdAt: new Date(ban.createdAt).toISOString(), expiresAt: ban.expiresAt === null ? null : new Date(ban.expiresAt).toISOString() };
}

export function banRoutes(s: AdminServices): Route[] {
  const now = s.now ?? Date.now;
  return [
    {
      method: 'GET',
      path: /^\/api\/v1\/bans$/,
      handler: (ctx) => {
        const q = validate(listQuery, Object.fromEntries(ctx.query), 'query');
        return ok({ bans: s.bans.list({ ...(q.list !== undefined ? { list: q.list } : {}), ...(q.kind !== undefined ? { kind: q.kind } : {}) }).map(view) });
      },
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/bans$/,
      handler: async (ctx) => {
        const b = validate(newBan, await ctx.body());
        const at = now();
        const expiresAt = b.expiresAt !== undefined ? Date.parse(b.expiresAt) : b.ttlSeconds !== undefined ? at + b.ttlSeconds * 1000 : null;
        if (expiresAt !== null && expiresAt <= at) throw new HttpError(400, 'body.expiresAt: lies in the past');
        const ban = s.bans.add({ kind: b.kind, value: b.value, list: b.list, reason: b.reason, createdBy: `${ctx.actor.kind}:${ctx.actor.name}`, createdAt: at, expiresAt });
        // SECURITY: an entry bites at once: live sessions the list now refuses (a new ban,
        // or a new allow entry that others no longer match) are closed, and the admission
        // guard refuses their next CONNECT.
        const disconnected = s.broker.disconnectWhere((client) => s.bans.refusal(client) !== null, `${b.list === 'allow' ? 'not on the allow list' : 'banned'} by operator ${ctx.actor.name}`);
        recordAdminChange(s, {
          actor: ctx.actor,
          action: b.list === 'allow' ? 'allow.add' : 'ban.add',
          target: `${ban.kind}:${ban.value}`,
          outcome: 'ok',
          detail: { id: ban.id, list: ban.list, reason: ban.reason, expiresAt: view(ban).expiresAt, disconnected },
        });
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
        const removed = s.bans.remove(id, `${ctx.actor.kind}:${ctx.actor.name}`);
        // Removing one of several allow entries narrows the allow list: whoever matched only it is refused now.
        const disconnected = removed?.list === 'allow' ? s.broker.disconnectWhere((client) => s.bans.refusal(client) !== null, `not on the allow list (changed by operator ${ctx.actor.name})`) : [];
        const action = removed?.list === 'allow' ? 'allow.remove' : 'ban.remove';
        recordAdminChange(s, { actor: ctx.actor, action, target: removed === null ? String(id) : `${removed.kind}:${removed.value}`, outcome: removed === null ? 'not-found' : 'ok', detail: { id, disconnected } });
        if (removed === null) throw new HttpError(404, `no ban with id ${id}`);
        return ok({ removed: view(removed), disconnected });
      },
    },
  ];
}
