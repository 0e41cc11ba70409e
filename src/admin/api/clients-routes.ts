/**
 * `/api/v1/clients`: list connected clients (paged), show one, kick one (v5 DISCONNECT
 * 0x98 Administrative action); in a cluster, those of every node (the broker facade's
 * client directory). Owns: these endpoints' input checks and replies. Must not: reach
 * past the broker facade.
 *
 * SECURITY: this API's operator authentication and authorization (admin-server.ts) is the
 * gate for acting on any node's clients: the nodes trust each other's requests over NATS.
 */
import { z } from 'zod';
import { DirectoryUnavailableError, MAX_CLIENT_PAGE } from '../../broker/api.js';
import { recordAdminChange } from './admin-change.js';
import { HttpError, validate } from './http-io.js';
import { ok, type Route } from './router.js';
import type { AdminServices } from './services.js';

const pageQuery = z
  .object({
    offset: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(MAX_CLIENT_PAGE).default(100),
    /** Only client ids starting with this (the console's search box). */
    prefix: z.string().max(256).optional(),
  })
  .strict();

/** A cluster node that owns the client id did not answer: 503, not a misleading 404. */
async function orUnavailable<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof DirectoryUnavailableError) throw new HttpError(503, err.message);
    throw err;
  }
}

export function clientRoutes(s: AdminServices): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/api\/v1\/clients$/,
      handler: async (ctx) => {
        const q = validate(pageQuery, Object.fromEntries(ctx.query), 'query');
        return ok(await orUnavailable(s.broker.directory.listClients(q.offset, q.limit, q.prefix)));
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/clients\/([^/]+)$/,
      handler: async (ctx) => {
        const id = ctx.params[0]!;
        const client = await orUnavailable(s.broker.directory.getClient(id));
        if (client === null) throw new HttpError(404, `no connected client with id "${id}"`);
        return ok(client);
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/clients\/([^/]+)$/,
      handler: async (ctx) => {
        const id = ctx.params[0]!;
        let kicked: boolean;
        try {
          kicked = await orUnavailable(s.broker.directory.kick(id, `disconnected by operator ${ctx.actor.name}`));
        } catch (err) {
          recordAdminChange(s, { actor: ctx.actor, action: 'client.kick', target: id, outcome: 'failed' });
          throw err;
        }
        recordAdminChange(s, { actor: ctx.actor, action: 'client.kick', target: id, outcome: kicked ? 'ok' : 'not-found' });
        if (!kicked) throw new HttpError(404, `no connected client with id "${id}"`);
        return ok({ kicked: id });
      },
    },
  ];
}
