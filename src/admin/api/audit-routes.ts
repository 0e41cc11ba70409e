/**
 * `/api/v1/audit`: the audit log for the console: records newest first (filtered by time,
 * type and client, paged back by seq), the chain's verification, and an export of the
 * filtered records as NDJSON (one event per line, as `bastion audit query --json`).
 * Owns: these endpoints' input checks and the export's streaming. Must not: open the
 * database or judge the chain (the facade and security/audit do).
 */
import { z } from 'zod';
import { HttpError, validate } from './http-io.js';
import { ok, type Route } from './router.js';
import type { AdminServices, AuditFacade, AuditRecordView } from './services.js';

const MAX_PAGE = 1000;
const when = z.iso.datetime({ offset: true, local: true }).transform((v) => Date.parse(v));

const filterFields = {
  since: when.optional(),
  until: when.optional(),
  type: z.string().min(1).max(64).regex(/^[a-z.]+$/, 'an event type such as admin.change').optional(),
  clientId: z.string().min(1).max(256).optional(),
};
const listQuery = z
  .object({ ...filterFields, beforeSeq: z.coerce.number().int().min(1).optional(), limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(100) })
  .strict()
  .refine((q) => q.since === undefined || q.until === undefined || q.until > q.since, { message: 'until must be later than since' });
const exportQuery = z.object(filterFields).strict();

function needAudit(s: AdminServices): AuditFacade {
  if (s.audit === undefined || s.audit === null) throw new HttpError(501, 'the audit log is off on this broker (audit.enabled: false)');
  return s.audit;
}

function line(r: AuditRecordView): string {
  return `${JSON.stringify({ seq: r.seq, ts: new Date(r.ts).toISOString(), type: r.type, clientId: r.clientId, event: r.event })}\n`;
}

export function auditRoutes(s: AdminServices): Route[] {
  return [
    {
      method: 'GET',
      path: /^\/api\/v1\/audit$/,
      handler: (ctx) => {
        const q = validate(listQuery, Object.fromEntries(ctx.query), 'query');
        const records = needAudit(s).query(q);
        return ok({ records, nextBeforeSeq: records.length === q.limit ? records[records.length - 1]!.seq : null });
      },
    },
    { method: 'GET', path: /^\/api\/v1\/audit\/verify$/, handler: async () => ok(await needAudit(s).verify()) },
    {
      method: 'GET',
      path: /^\/api\/v1\/audit\/export$/,
      handler: (ctx) => {
        const q = validate(exportQuery, Object.fromEntries(ctx.query), 'query');
        const audit = needAudit(s);
        return {
          status: 200,
          headers: { 'content-type': 'application/x-ndjson; charset=utf-8', 'content-disposition': 'attachment; filename="bastion-audit.ndjson"' },
          write: async (res, closed) => {
            // Page by page, waiting for the socket to drain: a large log never sits in memory.
            await audit.exportPages(q, async (rows) => {
              if (closed.aborted) throw new Error('export abandoned by the client');
              if (!res.write(rows.map(line).join(''))) await new Promise((done) => res.once('drain', done));
            });
            res.end();
          },
        };
      },
    },
  ];
}
