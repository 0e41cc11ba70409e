/**
 * `/api/v1/users`, `/api/v1/roles`, `/api/v1/bindings`, `/api/v1/acl/explain|lint`: the
 * access-control data, through the UsersFacade and PolicyFacade. Owns: these endpoints'
 * input checks, replies and change records. Must not: hash passwords or evaluate rules
 * (the user store and the policy service do). Without a wired service: 501.
 */
import { z } from 'zod';
import { BastionError } from '../../core/errors.js';
import { recordAdminChange, type Actor, type AdminChange } from './admin-change.js';
import { HttpError, validate } from './http-io.js';
import { ok, type Route } from './router.js';
import type { AdminServices, PolicyFacade, UsersFacade } from './services.js';

const newUser = z
  .object({
    username: z.string().min(1).max(128),
    // SECURITY: passwords travel only inside the TLS session and are never logged.
    password: z.string().min(8, 'must be at least 8 characters').max(1024),
  })
  .strict();

const explainBody = z
  .object({
    clientId: z.string().min(1).max(256),
    username: z.string().max(256).optional(),
    certificate: z
      .object({
        commonName: z.string().optional(),
        organizationalUnits: z.array(z.string()).optional(),
        serialNumber: z.string().optional(),
        sans: z.object({ dns: z.array(z.string()).optional(), uri: z.array(z.string()).optional() }).strict().optional(),
      })
      .strict()
      .optional(),
    publish: z.string().min(1).optional(),
    subscribe: z.string().min(1).optional(),
  })
  .strict()
  .refine((b) => (b.publish === undefined) !== (b.subscribe === undefined), { message: 'give exactly one of publish or subscribe' });

const anyObject = z.record(z.string(), z.unknown());

function needUsers(s: AdminServices): UsersFacade {
  if (s.users === null) throw new HttpError(501, 'the user store is not available on this broker');
  return s.users;
}

function needPolicy(s: AdminServices): PolicyFacade {
  if (s.policy === null) throw new HttpError(501, 'the policy service is not available on this broker');
  return s.policy;
}

/**
 * Runs a change, records it with its outcome, and maps a BastionError from the service
 * (its own validation) to 400 with the service's message.
 */
async function change<T>(s: AdminServices, actor: Actor, action: string, target: string, run: () => T | Promise<T>, detail?: Record<string, unknown>): Promise<T> {
  const record = (outcome: AdminChange['outcome'], extra?: Record<string, unknown>): void =>
    recordAdminChange(s.logger, { actor, action, target, outcome, ...(detail !== undefined || extra !== undefined ? { detail: { ...detail, ...extra } } : {}) });
  try {
    const result = await run();
    record('ok');
    return result;
  } catch (err) {
    if (err instanceof HttpError) {
      record(err.status === 404 ? 'not-found' : err.status === 409 ? 'conflict' : 'invalid', { error: err.message });
      throw err;
    }
    if (err instanceof BastionError) {
      record('invalid', { error: err.message });
      throw new HttpError(400, err.message);
    }
    record('failed', { error: (err as Error).message });
    throw err;
  }
}

export function accessRoutes(s: AdminServices): Route[] {
  return [
    { method: 'GET', path: /^\/api\/v1\/users$/, handler: async () => ok({ users: await needUsers(s).list() }) },
    {
      method: 'POST',
      path: /^\/api\/v1\/users$/,
      handler: async (ctx) => {
        const users = needUsers(s);
        const u = validate(newUser, await ctx.body());
        await change(s, ctx.actor, 'user.add', u.username, async () => {
          if ((await users.add(u.username, u.password)) === 'exists') throw new HttpError(409, `user "${u.username}" already exists`);
        });
        return ok({ added: u.username }, 201);
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/users\/([^/]+)$/,
      handler: async (ctx) => {
        const users = needUsers(s);
        const name = ctx.params[0]!;
        await change(s, ctx.actor, 'user.del', name, async () => {
          if (!(await users.remove(name))) throw new HttpError(404, `no user "${name}"`);
        });
        return ok({ deleted: name });
      },
    },
    { method: 'GET', path: /^\/api\/v1\/roles$/, handler: async () => ok({ roles: await needPolicy(s).listRoles() }) },
    {
      method: 'PUT',
      path: /^\/api\/v1\/roles\/([^/]+)$/,
      handler: async (ctx) => {
        const policy = needPolicy(s);
        const name = ctx.params[0]!;
        const role = validate(anyObject, await ctx.body());
        const saved = await change(s, ctx.actor, 'role.put', name, () => policy.putRole(name, role));
        return ok({ role: saved ?? role });
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/roles\/([^/]+)$/,
      handler: async (ctx) => {
        const policy = needPolicy(s);
        const name = ctx.params[0]!;
        await change(s, ctx.actor, 'role.del', name, async () => {
          if (!(await policy.deleteRole(name))) throw new HttpError(404, `no role "${name}"`);
        });
        return ok({ deleted: name });
      },
    },
    { method: 'GET', path: /^\/api\/v1\/bindings$/, handler: async () => ok({ bindings: await needPolicy(s).listBindings() }) },
    {
      method: 'POST',
      path: /^\/api\/v1\/bindings$/,
      handler: async (ctx) => {
        const policy = needPolicy(s);
        const binding = validate(anyObject, await ctx.body());
        const saved = await change(s, ctx.actor, 'binding.put', JSON.stringify(binding).slice(0, 200), () => policy.putBinding(binding));
        return ok({ binding: saved ?? binding }, 201);
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/bindings\/([^/]+)$/,
      handler: async (ctx) => {
        const policy = needPolicy(s);
        const id = ctx.params[0]!;
        await change(s, ctx.actor, 'binding.del', id, async () => {
          if (!(await policy.deleteBinding(id))) throw new HttpError(404, `no binding "${id}"`);
        });
        return ok({ deleted: id });
      },
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/acl\/explain$/,
      handler: async (ctx) => {
        const policy = needPolicy(s);
        const b = validate(explainBody, await ctx.body());
        const action = b.publish !== undefined ? 'publish' : 'subscribe';
        const topic = (b.publish ?? b.subscribe)!;
        try {
          return ok(await policy.explain({ clientId: b.clientId, ...(b.username !== undefined ? { username: b.username } : {}), ...(b.certificate !== undefined ? { certificate: b.certificate } : {}), action, topic }));
        } catch (err) {
          if (err instanceof BastionError) throw new HttpError(400, err.message);
          throw err;
        }
      },
    },
    { method: 'GET', path: /^\/api\/v1\/acl\/lint$/, handler: async () => ok(await needPolicy(s).lint()) },
  ];
}
