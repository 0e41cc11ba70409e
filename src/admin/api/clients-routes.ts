/**
 * `/api/v1/clients`: list connected clients (paged), show one, kick one (v5 DISCONNECT
 * 0x98 Administrative action). Owns: these endpoints' input checks and replies. Must not:
 * reach past the broker facade.
 */
import { z } from 'zod';
import { MAX_CLIENT_PAGE } from '../../broker/api.js';
import { recordAdminChange } from './admin-change.js';
import { HttpError, validate } from './http-io.js';
import { ok, type Route } from './router.js';
import type { AdminServices } from './services.js';

const pageQuery = z
  .object({
    offset: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(MAX_CLIENT_PAGE).default(100),
  })
  .strict();

export function clientRoutes(s: AdminServices): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/api\/v1\/clients$/,
      handler: (ctx) => {
        const q = validate(pageQuery, Object.fromEntries(ctx.query), 'query');
        return ok(s.broker.listClients(q.offset, q.limit));
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/clients\/([^/]+)$/,
      handler: (ctx) => {
        const id = ctx.params[0]!;
        const client = s.broker.getClient(id);
        if (client === null) throw new HttpError(404, `no connected client with id "${id}"`);
        return ok(client);
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/clients\/([^/]+)$/,
      handler: (ctx) => {
        const id = ctx.params[0]!;
        const kicked = s.broker.kick(id, `disconnected by operator ${ctx.actor.name}`);
        recordAdminChange(s, { actor: ctx.actor, action: 'client.kick', target: id, outcome: kicked ? 'ok' : 'not-found' });
        if (!kicked) throw new HttpError(404, `no connected client with id "${id}"`);
        return ok({ kicked: id });
      },
    },
  ];
}
