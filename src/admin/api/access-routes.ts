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
    // SECURITY: passwords travel only inside the TLS session and are never logged; the
    // user store's own rules (length, characters) decide, with the CLI's wording.
    password: z.string().max(1024),
  })
  .strict();

const passwordBody = z.object({ password: z.string().max(1024) }).strict();

const names = z.array(z.string().max(1024)).max(64).default([]);

const explainBody = z
  .object({
    clientId: z.string().min(1).max(256),
    username: z.string().max(256).optional(),
    pskIdentity: z.string().max(256).optional(),
    /** The certificate attributes to explain for (what a verified certificate would carry). */
    certificate: z
      .object({
        commonName: z.string().max(1024).default(''),
        organizationalUnits: names,
        serialNumber: z.string().max(128).default(''),
        sans: z.object({ dns: names, uri: names, ip: names, email: names }).strict().default({ dns: [], uri: [], ip: [], email: [] }),
      })
      .strict()
      .optional(),
    publish: z.string().min(1).optional(),
    subscribe: z.string().min(1).optional(),
    qos: z.union([z.literal(0), z.literal(1), z.literal(2)]).optional(),
    retain: z.boolean().optional(),
  })
  .strict()
  .refine((b) => (b.publish === undefined) !== (b.subscribe === undefined), { message: 'give exactly one of publish or subscribe' });

/**
 * The console's form of an explain question, `{action, topic}`, as the API's own
 * `{publish: topic}` / `{subscribe: topic}`; anything else is left for the schema to judge.
 */
function actionTopicForm(body: unknown): unknown {
  if (typeof body !== 'object' || body === null || !('action' in body) || !('topic' in body)) return body;
  const { action, topic, ...rest } = body as Record<string, unknown>;
  if (action !== 'publish' && action !== 'subscribe') return body;
  return { ...rest, [action]: topic };
}

/** The rules of a role; each rule is checked by the policy service (its messages name the problem). */
const roleBody = z.object({ rules: z.array(z.record(z.string(), z.unknown())).max(1000) }).strict();
const bindingBody = z.object({ role: z.string().min(1).max(64), attribute: z.string().min(1).max(32), value: z.string().min(1).max(1024) }).strict();

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
    recordAdminChange(s, { actor, action, target, outcome, ...(detail !== undefined || extra !== undefined ? { detail: { ...detail, ...extra } } : {}) });
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
      const readonly = err.code === 'ERR_AUTHZ_READONLY' || err.code === 'ERR_AUTHZ_NO_STORE';
      record(readonly ? 'conflict' : 'invalid', { error: err.message });
      throw new HttpError(readonly ? 409 : 400, err.message);
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
      method: 'PUT',
      path: /^\/api\/v1\/users\/([^/]+)$/,
      handler: async (ctx) => {
        const users = needUsers(s);
        const name = ctx.params[0]!;
        const { password } = validate(passwordBody, await ctx.body());
        const outcome = await change(s, ctx.actor, 'user.put', name, () => users.put(name, password));
        return ok({ user: name, outcome }, outcome === 'added' ? 201 : 200);
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
    { method: 'GET', path: /^\/api\/v1\/roles$/, handler: () => ok({ roles: needPolicy(s).listRoles() }) },
    {
      method: 'GET',
      path: /^\/api\/v1\/roles\/([^/]+)$/,
      handler: (ctx) => {
        const name = ctx.params[0]!;
        const role = needPolicy(s)
          .listRoles()
          .find((r) => (r as { name?: unknown }).name === name);
        if (role === undefined) throw new HttpError(404, `no role "${name}"`);
        return ok(role);
      },
    },
    {
      method: 'PUT',
      path: /^\/api\/v1\/roles\/([^/]+)$/,
      handler: async (ctx) => {
        const policy = needPolicy(s);
        const name = ctx.params[0]!;
        const { rules } = validate(roleBody, await ctx.body());
        const saved = await change(s, ctx.actor, 'role.put', name, () => policy.putRole(name, rules), { rules: rules.length });
        return ok({ role: saved });
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/roles\/([^/]+)$/,
      handler: async (ctx) => {
        const policy = needPolicy(s);
        const name = ctx.params[0]!;
        await change(s, ctx.actor, 'role.del', name, () => {
          if (!policy.deleteRole(name)) throw new HttpError(404, `no role "${name}"`);
        });
        return ok({ deleted: name });
      },
    },
    { method: 'GET', path: /^\/api\/v1\/bindings$/, handler: () => ok({ bindings: needPolicy(s).listBindings() }) },
    {
      method: 'POST',
      path: /^\/api\/v1\/bindings$/,
      handler: async (ctx) => {
        const policy = needPolicy(s);
        const b = validate(bindingBody, await ctx.body());
        const saved = await change(s, ctx.actor, 'binding.put', `${b.attribute}=${b.value} → ${b.role}`, () => policy.putBinding(b));
        return ok({ binding: saved }, 201);
      },
    },
    {
      // A binding has no id of its own: it is named by its three fields, in the query.
      method: 'DELETE',
      path: /^\/api\/v1\/bindings$/,
      handler: async (ctx) => {
        const policy = needPolicy(s);
        const b = validate(bindingBody, Object.fromEntries(ctx.query), 'query');
        await change(s, ctx.actor, 'binding.del', `${b.attribute}=${b.value} → ${b.role}`, () => {
          if (!policy.deleteBinding(b)) throw new HttpError(404, 'no such binding');
        });
        return ok({ deleted: b });
      },
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/acl\/explain$/,
      // It only reads the policy: a viewer may ask why a client was denied.
      readOnly: true,
      handler: async (ctx) => {
        const policy = needPolicy(s);
        const b = validate(explainBody, actionTopicForm(await ctx.body()));
        const action = b.publish !== undefined ? 'publish' : 'subscribe';
        const topic = (b.publish ?? b.subscribe)!;
        const certificate = b.certificate === undefined ? undefined : { ...b.certificate, fingerprint256: '', issuer: '', subject: `CN=${b.certificate.commonName}` };
        try {
          return ok(
            policy.explain({
              clientId: b.clientId,
              action,
              topic,
              ...(b.username !== undefined ? { username: b.username } : {}),
              ...(b.pskIdentity !== undefined ? { pskIdentity: b.pskIdentity } : {}),
              ...(certificate !== undefined ? { certificate } : {}),
              ...(b.qos !== undefined ? { qos: b.qos } : {}),
              ...(b.retain !== undefined ? { retain: b.retain } : {}),
            }),
          );
        } catch (err) {
          if (err instanceof BastionError) throw new HttpError(400, err.message);
          throw err;
        }
      },
    },
    { method: 'GET', path: /^\/api\/v1\/acl\/lint$/, handler: () => ok({ findings: [...needPolicy(s).lint(), ...(s.setupFindings?.() ?? [])] }) },
  ];
}
