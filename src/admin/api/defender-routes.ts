/**
 * `/api/v1/defender/…`: behaviour alerts (list, show), the restrictions in force, the
 * release of an identity, the detection rules in effect, and the security audit (the last
 * report, or a new run), and replacing the rules at run time (PUT, DELETE to reset). Owns: these endpoints' input checks, replies and the release's
 * change record. Must not: decide alarms or lift restrictions itself (the DefenderFacade
 * does). Without a wired defender: 501.
 *
 * SECURITY: a release takes a device out of quarantine or off the ban list: it is an
 * administrative change, recorded (who, which identity, what was lifted) like a ban or a kick.
 */
import { z } from 'zod';
import { BastionError } from '../../core/errors.js';
import { recordAdminChange } from './admin-change.js';
import { HttpError, validate } from './http-io.js';
import { ok, type Route } from './router.js';
import type { AdminServices, DefenderFacade } from './services.js';

/** The store caps a page at this many alerts; asking for more is a 400, not a silent cut. */
const MAX_ALERT_PAGE = 1000;

const alertQuery = z
  .object({
    state: z.enum(['active', 'cleared', 'released']).optional(),
    identity: z.string().min(1).max(1024).optional(),
    rule: z.string().min(1).max(64).optional(),
    offset: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
    limit: z.coerce.number().int().min(1).max(MAX_ALERT_PAGE).default(100),
  })
  .strict();

const noQuery = z.object({}).strict();

const releaseBody = z
  .object({
    // SECURITY: no control characters: the identity lands in the audit log and the broker's log lines.
    identity: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[^\u0000-\u001f\u007f]+$/, 'must not contain control characters'),
  })
  .strict();

function needDefender(s: AdminServices): DefenderFacade {
  if (s.defender === undefined || s.defender === null) throw new HttpError(501, 'behaviour detection (the defender) is not available on this broker');
  return s.defender;
}

export function defenderRoutes(s: AdminServices): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/api\/v1\/defender\/alerts$/,
      handler: (ctx) => {
        const d = needDefender(s);
        const q = validate(alertQuery, Object.fromEntries(ctx.query), 'query');
        return ok(d.listAlerts(q));
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/defender\/alerts\/([^/]+)$/,
      handler: (ctx) => {
        const d = needDefender(s);
        const raw = ctx.params[0]!;
        const id = /^[1-9][0-9]{0,15}$/.test(raw) ? Number(raw) : NaN;
        if (!Number.isSafeInteger(id)) throw new HttpError(400, `alert id must be a positive integer, not "${raw}"`);
        const alert = d.getAlert(id);
        if (alert === null) throw new HttpError(404, `no alert with id ${id}`);
        return ok(alert);
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/defender\/restrictions$/,
      handler: (ctx) => {
        const d = needDefender(s);
        validate(noQuery, Object.fromEntries(ctx.query), 'query');
        return ok({ restrictions: d.restrictions() });
      },
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/defender\/release$/,
      handler: async (ctx) => {
        const d = needDefender(s);
        const { identity } = validate(releaseBody, await ctx.body());
        let released: Awaited<ReturnType<DefenderFacade['release']>>;
        try {
          released = await d.release(identity, `${ctx.actor.kind}:${ctx.actor.name}`);
        } catch (err) {
          recordAdminChange(s, { actor: ctx.actor, action: 'defender.release', target: identity, outcome: 'failed', detail: { reason: err instanceof Error ? err.message : String(err) } });
          throw err;
        }
        const nothing = released.alerts === 0 && released.restrictions.length === 0;
        recordAdminChange(s, {
          actor: ctx.actor,
          action: 'defender.release',
          target: identity,
          outcome: nothing ? 'not-found' : 'ok',
          detail: { alerts: released.alerts, restrictions: released.restrictions.map((r) => r.kind) },
        });
        if (nothing) throw new HttpError(404, `nothing to release for ${identity}`);
        return ok({ alerts: released.alerts, restrictions: released.restrictions });
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/defender\/rules$/,
      handler: (ctx) => {
        const d = needDefender(s);
        validate(noQuery, Object.fromEntries(ctx.query), 'query');
        return ok(d.rules());
      },
    },
    {
      // SECURITY: rules decide who gets quarantined or banned: a change is an admin change, recorded with the new rule names.
      method: 'PUT',
      path: /^\/api\/v1\/defender\/rules$/,
      handler: async (ctx) => {
        const d = needDefender(s);
        const actor = `${ctx.actor.kind}:${ctx.actor.name}`;
        const body = await ctx.body();
        if (body === undefined) throw new HttpError(400, 'a JSON body {rules?, actions?, defaultActions?} is required');
        let view: object;
        try {
          view = await d.setRules(body, actor);
        } catch (err) {
          recordAdminChange(s, { actor: ctx.actor, action: 'defender.rules.set', target: 'rules', outcome: 'failed', detail: { reason: err instanceof Error ? err.message : String(err) } });
          // The facade names the bad key in a BastionError: the client's mistake, answered 400.
          if (err instanceof BastionError) throw new HttpError(400, err.message);
          throw err;
        }
        const names = ((view as { rules?: Array<{ name: string }> }).rules ?? []).map((r) => r.name);
        recordAdminChange(s, { actor: ctx.actor, action: 'defender.rules.set', target: 'rules', outcome: 'ok', detail: { rules: names } });
        return ok(view);
      },
    },
    {
      method: 'DELETE',
      path: /^\/api\/v1\/defender\/rules$/,
      handler: async (ctx) => {
        const d = needDefender(s);
        validate(noQuery, Object.fromEntries(ctx.query), 'query');
        const view = await d.resetRules(`${ctx.actor.kind}:${ctx.actor.name}`);
        recordAdminChange(s, { actor: ctx.actor, action: 'defender.rules.reset', target: 'rules', outcome: 'ok' });
        return ok(view);
      },
    },
    {
      method: 'GET',
      path: /^\/api\/v1\/defender\/audit$/,
      handler: (ctx) => {
        const d = needDefender(s);
        validate(noQuery, Object.fromEntries(ctx.query), 'query');
        const report = d.lastAudit();
        if (report === null) throw new HttpError(404, 'no security audit has run on this broker yet; POST /api/v1/defender/audit runs one');
        return ok(report);
      },
    },
    {
      method: 'POST',
      path: /^\/api\/v1\/defender\/audit$/,
      handler: async (ctx) => {
        const d = needDefender(s);
        // No body is expected; one that is not JSON (or not empty) is refused rather than ignored.
        const body = await ctx.body();
        if (body !== undefined) validate(noQuery, body);
        return ok(await d.runAudit(`${ctx.actor.kind}:${ctx.actor.name}`));
      },
    },
  ];
}
